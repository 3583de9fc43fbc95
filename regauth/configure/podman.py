"""``regauth configure podman``: the containers clients (podman, skopeo, buildah, CRI-O).

Two ways, as containers-auth.json(5) and containers-registries.conf(5) allow: ``credHelpers`` for the
named hosts in the auth file (the default), or ``--registries-conf``: ``credential-helpers`` with
regauth first for every registry, in the file ``$CONTAINERS_REGISTRIES_CONF`` names or else in a drop-in
of regauth's own in ``registries.conf.d``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from regauth.configure import jsonfile, tomlfile
from regauth.configure.core import Change, Plan
from regauth.configure.docker import config_file as docker_config_file
from regauth.configure.docker import plaintext_hosts, replaced_helpers
from regauth.configure.files import read_state
from regauth.configure.hosts import HELPER, no_hosts_error
from regauth.errors import RegauthError
from regauth.servers import normalize_registry

CLIENT = "podman"
# The special helper name for "the auth files" (containers-registries.conf(5)); kept after regauth so
# credentials already in an auth file still work.
AUTH_FILES = "containers-auth.json"
DROP_IN = "50-regauth.conf"
SYSTEM_CONF_DIR = Path("/etc/containers/registries.conf.d")


def auth_file(environ: Mapping[str, str], flag: str | None) -> Path:
    """``--auth-file``, else ``$REGISTRY_AUTH_FILE``, else the persistent user file
    ``$XDG_CONFIG_HOME/containers/auth.json`` (the runtime one under ``$XDG_RUNTIME_DIR`` is gone at
    the next boot)."""
    if flag or environ.get("REGISTRY_AUTH_FILE"):
        return Path(flag or environ["REGISTRY_AUTH_FILE"]).expanduser()
    return _config_home(environ) / "containers" / "auth.json"


def runtime_auth_file(environ: Mapping[str, str]) -> Path:
    """Where ``podman login`` writes by default, and the file the containers clients read first:
    ``${XDG_RUNTIME_DIR}/containers/auth.json``, else ``/run/containers/UID/auth.json``."""
    if environ.get("XDG_RUNTIME_DIR"):
        return Path(environ["XDG_RUNTIME_DIR"], "containers", "auth.json")
    return Path(f"/run/containers/{os.getuid()}/auth.json")


def login_auth_file(environ: Mapping[str, str], flag: str | None) -> Path:
    """The file ``podman login`` wrote, which ``regauth import podman`` reads: ``--auth-file``,
    ``$REGISTRY_AUTH_FILE``, else the runtime file where it exists, else the persistent one."""
    if not flag and not environ.get("REGISTRY_AUTH_FILE"):
        runtime = runtime_auth_file(environ)
        if runtime.exists():
            return runtime
    return auth_file(environ, flag)


def auth_files(environ: Mapping[str, str]) -> list[Path]:
    """The files the containers clients look a registry up in, in their order
    (containers-auth.json(5)): the first that has it, in ``credHelpers`` or as a credential in
    ``auths``, answers. ``$REGISTRY_AUTH_FILE`` alone when set (newer clients read nothing else)."""
    if environ.get("REGISTRY_AUTH_FILE"):
        return [auth_file(environ, None)]
    return [runtime_auth_file(environ), auth_file(environ, None), docker_config_file(environ, None)]


def registries_conf(environ: Mapping[str, str], conf_dir: str | None, system: bool) -> Path:
    """The file that gets ``credential-helpers``: ``$CONTAINERS_REGISTRIES_CONF`` when it names one
    (the clients read that file), else regauth's drop-in in ``--conf-dir``, the system's with
    ``--system``, or the user's."""
    if conf_dir:
        return Path(conf_dir).expanduser() / DROP_IN
    if environ.get("CONTAINERS_REGISTRIES_CONF") and not system:
        return Path(environ["CONTAINERS_REGISTRIES_CONF"]).expanduser()
    if system:
        return SYSTEM_CONF_DIR / DROP_IN
    return _user_conf_dir(environ) / DROP_IN


def _user_conf_dir(environ: Mapping[str, str]) -> Path:
    # Under $HOME whatever $XDG_CONFIG_HOME says: containers/image joins ".config/containers/..." to
    # the home directory for registries.conf (only the auth file follows XDG_CONFIG_HOME).
    return Path(environ.get("HOME", "~")).expanduser() / ".config" / "containers" / "registries.conf.d"


def registries_conf_files(environ: Mapping[str, str]) -> list[Path]:
    """The registries.conf files the containers clients read, in their order: the main file
    (``$CONTAINERS_REGISTRIES_CONF``, else the user's if it exists, else the system's), then every
    ``*.conf`` drop-in, the system's directory before the user's (the user's alone beside a user main
    file). A later file that sets ``credential-helpers`` replaces the list (containers-registries.conf(5))."""
    user_dir = _user_conf_dir(environ)
    user_main = user_dir.parent / "registries.conf"
    dirs = [SYSTEM_CONF_DIR, user_dir]
    if environ.get("CONTAINERS_REGISTRIES_CONF"):
        main = Path(environ["CONTAINERS_REGISTRIES_CONF"]).expanduser()
    elif user_main.exists():
        main, dirs = user_main, [user_dir]
    else:
        main = SYSTEM_CONF_DIR.parent / "registries.conf"
    files = [main]
    for directory in dirs:
        files += sorted(p for p in directory.rglob("*.conf") if p.is_file())
    return files


def _host(key: str) -> str:
    try:
        return normalize_registry(key)
    except RegauthError:  # a key no client could use is nobody's host
        return key


def _config_home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("XDG_CONFIG_HOME") or Path(environ.get("HOME", "~"), ".config")).expanduser()


def plan_auth_file(path: Path, hosts: Sequence[str], read_before: Sequence[Path] = ()) -> Plan:
    """``read_before``: the auth files the clients read ahead of ``path``, whose plaintext for one of
    ``hosts`` would be used instead of the helper."""
    if not hosts:
        raise no_hosts_error("podman", "--registries-conf for every registry")
    state = read_state(path)
    before = jsonfile.load_object(state)
    after = copy.deepcopy(before)
    helpers = jsonfile.section(after, "credHelpers", state)
    for host in hosts:
        # containers/image asks for Docker Hub as docker.io: the canonical host is its key.
        helpers[host] = HELPER
    change = Change(state, jsonfile.rewrite(state, before, after), new_mode=0o600, dir_mode=0o700)
    notes = replaced_helpers(before, after)
    if plaintext := plaintext_hosts(after):
        notes.append(
            f"note: {path} still holds plaintext credentials for {', '.join(plaintext)}; "
            f"`regauth import {CLIENT}` moves them into regauth's store"
        )
    for earlier in read_before:
        try:
            config = jsonfile.load_object(read_state(earlier))
            shadowing = [key for key in plaintext_hosts(config) if _host(key) in hosts]
        except RegauthError:
            continue
        if shadowing:
            notes.append(
                f"warning: {earlier}, which the clients read first, holds plaintext credentials for "
                f"{', '.join(shadowing)}: they are used instead of regauth until "
                f"`regauth import {CLIENT} --auth-file {earlier}` moves them"
            )
    return Plan(CLIENT, [change], notes=notes)


def plan_registries_conf(path: Path) -> Plan:
    state = read_state(path)
    data = tomlfile.with_first_helper(state, HELPER, AUTH_FILES, header=_DROP_IN_HEADER)
    return Plan(CLIENT, [Change(state, data, new_mode=0o644)])


_DROP_IN_HEADER = (
    "# Written by `regauth configure podman --registries-conf`: podman, skopeo, buildah and CRI-O ask\n"
    "# docker-credential-regauth first, then the auth files (containers-registries.conf(5)).\n"
)
