"""``regauth doctor``: one report on whether the clients reach regauth and the records are healthy.

Every check gives a ``Finding`` (``findings.py``): ``ok``, ``action`` (something to do; the exit status
is 1), ``warn`` (worth changing, not wrong) or ``info``. A finding names hosts, files and commands, never
a secret: plaintext credentials are found by the presence of their fields, and their values are not
read into a message. The helper's PATHs (``doctor_path``), the proxy (``doctor_proxy``) and the records
(``doctor_records``) have modules of their own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from regauth.config import Settings
from regauth.configure import docker, jsonfile, podman, tomlfile
from regauth.configure.doctor_kubelet import kubelet_findings
from regauth.configure.doctor_path import helper_findings
from regauth.configure.doctor_proxy import proxy_findings
from regauth.configure.doctor_records import Limits, record_findings
from regauth.configure.files import read_state
from regauth.configure.findings import ACTION, INFO, OK, WARN, Finding
from regauth.configure.hosts import HELPER
from regauth.errors import RegauthError
from regauth.registries import Registry
from regauth.servers import normalize_registry
from regauth.store.base import SecretStore

__all__ = ["ACTION", "INFO", "OK", "WARN", "Finding", "Options", "examine", "render"]


class Options(NamedTuple):
    max_age_days: float = 90.0
    validate: bool = False
    unused_days: float = 90.0  # a record not used here for longer is named (`--unused-days`)
    containerd_certs_dir: Path | None = None
    proxy: str | None = None  # a running proxy's URL to ask
    kubelet_config: Path | None = None  # the kubelet's CredentialProviderConfig; None: the default's, if any
    kubelet_bin_dir: Path | None = None  # its --image-credential-provider-bin-dir; None: configure's default


def examine(
    settings: Settings, records: Sequence[Registry], options: Options, store: SecretStore | None = None
) -> list[Finding]:
    in_use = [record for record in records if record.active]
    # The helper answers from host-wide records only (see hosts.registry_hosts); the proxy from all.
    host_wide = [record for record in in_use if record.prefix is None]
    system_podman = _first_helper(podman.SYSTEM_CONF_DIR / podman.DROP_IN) == HELPER
    findings = list(helper_findings(settings.environ, system_podman))
    findings += _docker(settings.environ, host_wide)
    findings += _podman(settings.environ, host_wide)
    if options.containerd_certs_dir is not None:
        findings += _containerd(options.containerd_certs_dir, in_use)
    findings += _kubelet(options.kubelet_config, options.kubelet_bin_dir, in_use)
    if options.proxy is not None:
        findings += proxy_findings(options.proxy, in_use, str(settings.state_dir))
    findings += _store(settings)
    if store is not None:
        findings += _tokens(store)
    limits = Limits(options.max_age_days, options.unused_days, options.validate)
    findings += record_findings(settings, records, limits, store)
    return findings


def _docker(environ: Mapping[str, str], records: Sequence[Registry]) -> Iterator[Finding]:
    path = docker.config_file(environ, None)
    try:
        state = read_state(path)
        config = None if state.data is None else jsonfile.load_object(state)
    except RegauthError as exc:
        # The docker CLI warns and goes on with no credentials from the file at all.
        why = str(exc).removesuffix("; it was left as it was")
        yield Finding("docker", ACTION, f"{why}: the docker CLI reads no credentials from it; fix it by hand")
        return
    if config is None:
        yield Finding("docker", INFO, f"{path}: no docker config (`regauth configure docker` writes one)")
        return
    helpers = _helpers(config)
    store_is_ours = config.get("credsStore") == HELPER
    # A credHelpers entry is asked before credsStore (the docker CLI's getConfiguredCredentialStore).
    default = HELPER if store_is_ours else None
    missing = [r.registry for r in records if helpers.get(docker.docker_key(r.registry), default) != HELPER]
    if missing:
        yield Finding(
            "docker",
            ACTION,
            f"{path}: not pointed at regauth for {', '.join(missing)}; run `regauth configure docker`",
        )
    elif store_is_ours:
        yield Finding("docker", OK, f"{path}: credsStore is regauth (every registry)")
    elif records:
        yield Finding("docker", OK, f"{path}: credHelpers name regauth for every configured registry")
    yield from _plaintext("docker", path, config)


def _podman(environ: Mapping[str, str], records: Sequence[Registry]) -> Iterator[Finding]:
    path = podman.auth_file(environ, None)
    files = [(auth, _json(auth) or {}) for auth in podman.auth_files(environ)]
    docker_file = docker.config_file(environ, None)
    imported = podman.login_auth_file(environ, None)
    for auth, config in files:
        if auth != docker_file:  # the docker check names docker's own
            flag = "" if auth == imported else f" --auth-file {auth}"
            yield from _plaintext("podman", auth, config, flag)
    # The last registries.conf file that sets credential-helpers decides, for every registry.
    ours, conf, helpers = None, None, [podman.AUTH_FILES]
    for candidate in podman.registries_conf_files(environ):
        listed = _helper_list(candidate)
        if listed is not None:
            # An empty list is the default one (containers/image fills it in).
            conf, helpers = candidate, listed or [podman.AUTH_FILES]
            ours = candidate if listed[:1] == [HELPER] else ours
    if conf is not None and helpers[:1] == [HELPER]:
        yield Finding("podman", OK, f"{conf}: credential-helpers asks regauth first")
        return
    # Past that list, the auth files are asked only if it names them.
    asked = podman.AUTH_FILES in helpers
    missing = [r.registry for r in records if not asked or _containers_answer(files, r.registry) != HELPER]
    if missing:
        where = f"{path}: " if ours is None else f"{conf} sets credential-helpers after {ours}: "
        yield Finding(
            "podman",
            ACTION,
            f"{where}not pointed at regauth for {', '.join(missing)}; run `regauth configure podman`",
        )
    elif records:
        yield Finding("podman", OK, f"{path}: credHelpers name regauth for every configured registry")


def _containers_answer(files: Sequence[tuple[Path, Mapping[str, Any]]], host: str) -> str | None:
    """The helper the containers clients ask for ``host`` (None: a plaintext credential, or nothing):
    the first file that has the host decides, its ``credHelpers`` before its ``auths``."""
    for _, config in files:
        helper = _helpers(config).get(host)
        if helper is not None:
            return str(helper)
        if any(_auths_host(key) == host for key in docker.plaintext_hosts(config)):
            return None
    return None


def _auths_host(key: str) -> str:
    # A namespaced key (host/ns) answers first for the images under it: the host is not regauth's.
    try:
        return normalize_registry(key)
    except RegauthError:
        return key


def _helpers(config: Mapping[str, Any]) -> dict[str, Any]:
    value = config.get("credHelpers")
    return value if isinstance(value, dict) else {}


def _first_helper(path: Path) -> str | None:
    listed = _helper_list(path)
    return listed[0] if listed else None


def _helper_list(path: Path) -> list[str] | None:
    """``credential-helpers`` in ``path``; None where the file, or the key, is not there."""
    try:
        doc = tomlfile.parse(read_state(path))
    except RegauthError:
        return None
    value = doc.get("credential-helpers")
    return [str(item) for item in value] if isinstance(value, list) else None


def _containerd(certs_dir: Path, records: Sequence[Registry]) -> Iterator[Finding]:
    from regauth.configure.containerd import hosts_file

    missing = [r.registry for r in records if not _pulls_through_a_mirror(hosts_file(certs_dir, r.registry))]
    if missing:
        yield Finding(
            "containerd",
            ACTION,
            f"{certs_dir}: no mirror for {', '.join(missing)}; "
            "run `regauth configure containerd --proxy URL`",
        )
    elif records:
        yield Finding("containerd", OK, f"{certs_dir}: a hosts.toml mirror for every configured registry")


def _pulls_through_a_mirror(path: Path) -> bool:
    """Whether containerd would pull through a ``[host."..."]`` of ``path``: one it can resolve and
    pull from (a host without ``capabilities`` has them all). A file that does not parse is as none
    (containerd falls back to the directory's certificates alone)."""
    try:
        hosts = tomlfile.parse(read_state(path)).unwrap().get("host")
    except RegauthError:
        return False
    if not isinstance(hosts, dict):
        return False
    for host in hosts.values():
        capabilities = host.get("capabilities", ["pull", "resolve"]) if isinstance(host, dict) else []
        if isinstance(capabilities, list) and {"pull", "resolve"} <= set(capabilities):
            return True
    return False


_KUBELET_SUFFIXES = (".json", ".yaml", ".yml")


def _kubelet(flag: Path | None, bin_dir: Path | None, records: Sequence[Registry]) -> Iterator[Finding]:
    from regauth.kube.kubeletconfig import DEFAULT_CONFIG
    from regauth.kube.main import PROGRAM

    path = flag or DEFAULT_CONFIG
    if flag is None and not DEFAULT_CONFIG.is_file():
        return
    # A directory (newer kubelets): the providers of every config file in it, in name order.
    files = sorted(p for p in path.iterdir() if p.suffix in _KUBELET_SUFFIXES) if path.is_dir() else [path]
    providers: list[Any] = []
    unread: list[Path] = []
    for file in files:
        try:
            state = read_state(file)
            if state.data is None:
                yield Finding(
                    "kubelet", ACTION, f"{path}: no such file; `regauth configure kubelet` writes it"
                )
                return
            if state.data.strip() and not state.data.lstrip().startswith(b"{"):
                unread.append(file)  # YAML, which the kubelet reads as well
                continue
            config = jsonfile.load_object(state)
        except RegauthError as exc:
            yield Finding("kubelet", ACTION, str(exc).removesuffix("; it was left as it was"))
            return
        listed = config.get("providers")
        providers += listed if isinstance(listed, list) else []
    for file in unread:
        yield Finding(
            "kubelet",
            WARN,
            f"{file} is YAML, which doctor does not read: its providers were not checked "
            "(the kubelet reads JSON too)",
        )
    if unread and not any(isinstance(p, dict) and p.get("name") == PROGRAM for p in providers):
        return  # regauth's entry may well be in the YAML
    yield from kubelet_findings(path, {"providers": providers}, records, bin_dir)


def _tokens(store: SecretStore) -> Iterator[Finding]:
    """Cached provider tokens past their fresh time: the next pull mints again (a slower pull, and a
    failed one if the cloud login has gone meanwhile). Named by provider and host, never the token."""
    import time

    from regauth.providers.cache import PREFIX, CachedToken

    now = time.time()
    try:
        keys = [key for key in store.keys() if key.startswith(PREFIX)]
        tokens = [(key, CachedToken.from_text(store.get(key) or "")) for key in keys]
    except RegauthError:
        return  # the store finding already says it does not open
    for key, token in tokens:
        if token is None or token.is_fresh(now):
            continue
        _, provider, host, _ = key.split("/", 3)
        left = token.expires_at - now
        when = f"expires in {left / 60:.0f} min" if left > 0 else "has expired"
        yield Finding(
            "tokens", INFO, f"the cached {provider} token for {host} {when}; the next pull mints another"
        )


def _plaintext(client: str, path: Path, config: Mapping[str, Any], flag: str = "") -> Iterator[Finding]:
    hosts = docker.plaintext_hosts(config)
    if hosts:
        yield Finding(
            client,
            ACTION,
            f"{path} holds plaintext credentials for {', '.join(hosts)}; run `regauth import {client}{flag}`",
        )


def _json(path: Path) -> dict[str, Any] | None:
    try:
        state = read_state(path)
        return None if state.data is None else jsonfile.load_object(state)
    except RegauthError:
        return None


def _store(settings: Settings) -> Iterator[Finding]:
    from regauth.store import open_store, resolve_backend

    try:
        backend = resolve_backend(settings)
        store = open_store(settings)
        store.get("regauth-doctor/probe")
    except RegauthError as exc:
        yield Finding("store", ACTION, f"the secret store does not open: {exc}")
        return
    how = "chosen by auto" if settings.store == "auto" else "set by REGAUTH_STORE"
    yield Finding("store", OK, f"the {backend} store ({how}) opens")


def render(findings: Sequence[Finding], as_json: bool) -> str:
    if as_json:
        return json.dumps([f.to_json() for f in findings], indent=2)
    marks = {OK: "ok    ", ACTION: "ACTION", WARN: "WARN  ", INFO: "info  "}
    from regauth.printable import printable

    return "\n".join(f"{marks[f.status]} {f.check}: {printable(f.message)}" for f in findings)
