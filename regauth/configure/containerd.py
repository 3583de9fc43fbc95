"""``regauth configure containerd``: a ``hosts.toml`` mirror per upstream and CRI's ``config_path``.

containerd never runs a credential helper: it reaches a registry's credentials through regauth's
proxy, named as the upstream's mirror in ``CERTS_DIR/<host[:port]>/hosts.toml`` (read on each pull).
The CRI plugin finds those files through ``config_path`` in config.toml, under a key that depends on
the file's schema: ``version = 3`` is containerd 2.x's, 2 and 1 are 1.x's (2.x migrates them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from regauth.configure import tomlfile
from regauth.configure.core import Change, Plan
from regauth.configure.files import read_state
from regauth.configure.hosts import no_hosts_error
from regauth.errors import ConfigError, UsageError
from regauth.servers import DOCKER_HUB

CLIENT = "containerd"
DEFAULT_CERTS_DIR = Path("/etc/containerd/certs.d")
DEFAULT_CONFIG = Path("/etc/containerd/config.toml")
# The CRI registry table per config schema version.
REGISTRY_TABLES: dict[int, tuple[str, ...]] = {
    1: ("plugins", "cri", "registry"),
    2: ("plugins", "io.containerd.grpc.v1.cri", "registry"),
    3: ("plugins", "io.containerd.cri.v1.images", "registry"),
}
# Docker Hub's API host, where containerd sends docker.io pulls.
_HUB_SERVER = "https://registry-1.docker.io"


class TLSFiles(NamedTuple):
    """A host directory's docker-style certificates, named relative to it (containerd resolves them
    against the directory)."""

    ca: list[str]
    client: list[tuple[str, str]]


class Upstream(NamedTuple):
    host: str  # canonical host[:port]
    insecure: bool = False  # plain HTTP (a record's --insecure)


def check_proxy(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise UsageError(f"--proxy {url!r}: give the proxy as http://HOST:PORT or https://HOST:PORT")
    return f"{parts.scheme}://{parts.netloc}"


def plan(
    upstreams: Sequence[Upstream],
    *,
    proxy: str,
    certs_dir: Path | None,
    config: Path | None,
    proxy_ca: str | None,
) -> Plan:
    """``config`` None: leave config.toml alone (for ``ctr --hosts-dir``, which reads no config)."""
    if not upstreams:
        raise no_hosts_error("containerd")
    changes: list[Change] = []
    notes: list[str] = []
    chosen_dir = certs_dir
    if config is not None:
        change, configured_dir = _config_change(config, certs_dir)
        chosen_dir = configured_dir
        changes.append(change)
        if change.changes:
            notes.append(
                f"restart containerd to read config_path from {config} (hosts.toml is read on each pull)"
            )
    directory = chosen_dir or DEFAULT_CERTS_DIR
    for upstream in upstreams:
        path = hosts_file(directory, upstream.host)
        state = read_state(path)
        content = hosts_toml(upstream, proxy, proxy_ca, server_certificates(directory, path.parent))
        changes.append(Change(state, content, new_mode=0o644))
    return Plan(CLIENT, changes, notes=notes)


def hosts_file(directory: Path, host: str) -> Path:
    """The file containerd reads for ``host``: it takes the first directory that exists, ``host_port_``
    before ``host:port``, hosts.toml in it or not (a docker-style directory of certificates alone), so
    in an existing ``host_port_`` directory is where the file goes."""
    # containerd's hostDirectory: the last ":" (an IPv6 address's own too) becomes "_", with one more.
    cut = host.rfind(":")
    if cut > 0:
        underscored = directory / f"{host[:cut]}_{host[cut + 1 :]}_"
        if underscored.exists():
            return underscored / "hosts.toml"
    return directory / host / "hosts.toml"


def server_certificates(directory: Path, host_dir: Path) -> TLSFiles:
    """The certificates containerd takes for the server before regauth's hosts.toml: those of the host's
    directory, else those of ``_default``, which it reads for a host without a directory of its own
    (unless a hosts.toml is there, which is no certificate files to name)."""
    own = legacy_certificates(host_dir)
    default = directory / "_default"
    if own.ca or own.client or (default / "hosts.toml").exists():
        return own
    found = legacy_certificates(default)
    ca = [f"../_default/{name}" for name in found.ca]
    return TLSFiles(ca, [(f"../_default/{cert}", f"../_default/{key}") for cert, key in found.client])


def legacy_certificates(directory: Path) -> TLSFiles:
    """What containerd takes from a host directory without hosts.toml, and no longer once it has one
    (loadCertFiles in remotes/docker/config/hosts.go): each ``*.crt`` a CA, each ``*.cert`` a client
    certificate with the ``*.key`` of its name, else its own file as the key. In ReadDir's order."""
    try:
        entries = sorted((e for e in os.scandir(directory) if not e.is_dir(follow_symlinks=False)), key=_name)
    except (FileNotFoundError, NotADirectoryError):
        return TLSFiles([], [])
    except OSError as exc:
        raise ConfigError(f"cannot list {directory}: {exc.strerror or exc}") from exc
    names = {entry.name for entry in entries}
    ca = [entry.name for entry in entries if entry.name.endswith(".crt")]
    client: list[tuple[str, str]] = []
    for entry in entries:
        if entry.name.endswith(".cert"):
            key = entry.name[: -len(".cert")] + ".key"
            # A pair of the same file is containerd's own reading of a .cert without its .key.
            client.append((entry.name, key if key in names else entry.name))
    return TLSFiles(ca, client)


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


def hosts_toml(upstream: Upstream, proxy: str, proxy_ca: str | None, legacy: TLSFiles) -> bytes:
    if upstream.host == DOCKER_HUB:
        server = _HUB_SERVER
    else:
        server = f"{'http' if upstream.insecure else 'https'}://{upstream.host}"
    lines = [
        "# Written by `regauth configure containerd`: pulls go through regauth's proxy, which adds the",
        "# registry's credentials. What this replaced is in regauth's backups (`--undo` restores it).",
        f"server = {json.dumps(server)}",
    ]
    if legacy.ca or legacy.client:
        lines.append("# The certificate files containerd took for the server, and reads no more beside this.")
    if legacy.ca:
        lines.append(f"ca = {json.dumps(legacy.ca)}")
    if legacy.client:
        lines.append(f"client = {json.dumps([list(pair) for pair in legacy.client])}")
    lines += [
        "",
        f"[host.{json.dumps(proxy)}]",
        '  capabilities = ["pull", "resolve"]',
    ]
    if proxy_ca:
        lines.append(f"  ca = {json.dumps(proxy_ca)}")
    return ("\n".join(lines) + "\n").encode()


def _config_change(config: Path, certs_dir: Path | None) -> tuple[Change, Path]:
    state = read_state(config)
    doc = tomlfile.parse(state)
    version = doc.get("version", 1 if state.data is not None else 2)
    if state.data is None:
        # Schema 2 is read by containerd 1.x as it is and by 2.x after its own migration.
        doc["version"] = 2
    if version not in REGISTRY_TABLES:
        raise ConfigError(f"{config}: config version {version!r} is not one regauth knows (1, 2 or 3)")
    table = REGISTRY_TABLES[version]
    if tomlfile.get_path(doc, [*table, "mirrors"]):
        raise ConfigError(
            f"{config} sets {'.'.join(table)}.mirrors, which containerd refuses beside config_path: "
            "move those mirrors into hosts.toml files first; nothing was changed"
        )
    current = tomlfile.get_path(doc, [*table, "config_path"])
    # A list (filepath.SplitList), each host looked up in the first root that has it: regauth's files
    # go in the first, and the others (other registries' hosts.toml) stay named.
    roots = [root for root in str(current or "").split(":") if root]
    directory = certs_dir or (Path(roots[0]) if roots else DEFAULT_CERTS_DIR)
    if roots[:1] == [str(directory)]:
        return Change(state, state.data or b""), directory
    value = ":".join([str(directory), *(root for root in roots if root != str(directory))])
    tomlfile.set_path(state, doc, [*table, "config_path"], value)
    return Change(state, tomlfile.render(state, doc), new_mode=0o644), directory
