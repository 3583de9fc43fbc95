"""``regauth configure docker``: ``credHelpers`` (or ``credsStore``) in the Docker CLI's config.json."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from regauth.configure import jsonfile
from regauth.configure.core import Change, Plan
from regauth.configure.files import read_state
from regauth.configure.hosts import HELPER, no_hosts_error
from regauth.errors import RegauthError
from regauth.servers import normalize_registry, server_url_for

CLIENT = "docker"


def config_file(environ: Mapping[str, str], config_dir: str | None) -> Path:
    """Where the docker CLI reads: ``--config DIR``, else ``$DOCKER_CONFIG``, else ``~/.docker``."""
    directory = config_dir or environ.get("DOCKER_CONFIG") or str(Path(environ.get("HOME", "~"), ".docker"))
    return Path(directory).expanduser() / "config.json"


def docker_key(host: str) -> str:
    """The docker CLI looks Docker Hub up as its v1 URL, every other registry as ``host[:port]``."""
    return server_url_for(host)


def plan(path: Path, hosts: Sequence[str], *, creds_store: bool) -> Plan:
    if not hosts and not creds_store:
        raise no_hosts_error("docker", "--creds-store for every registry")
    state = read_state(path)
    before = jsonfile.load_object(state)
    after = copy.deepcopy(before)
    if creds_store:
        after["credsStore"] = HELPER
    if hosts:
        helpers = jsonfile.section(after, "credHelpers", state)
        for host in hosts:
            helpers[docker_key(host)] = HELPER
    data = jsonfile.rewrite(state, before, after)
    # The docker CLI creates ~/.docker 0700 and config.json 0600: it can hold plaintext auths.
    change = Change(state, data, new_mode=0o600, dir_mode=0o700)
    return Plan(
        CLIENT, [change], notes=replaced_helpers(before, after) + _notes(after, hosts, creds_store, path)
    )


def _notes(config: dict[str, Any], hosts: Sequence[str], creds_store: bool, path: Path) -> list[str]:
    notes = []
    if shutil.which(f"docker-credential-{HELPER}") is None:
        notes.append(f"warning: docker-credential-{HELPER} is not on PATH; docker will not find the helper")
    plaintext = plaintext_hosts(config)
    covered = plaintext if creds_store else [h for h in plaintext if _canonical(h) in set(hosts)]
    if covered:
        notes.append(
            f"note: {path} still holds plaintext credentials for {', '.join(covered)}; "
            f"`regauth import {CLIENT}` moves them into regauth's store"
        )
    return notes


def replaced_helpers(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """A line for each helper regauth took the place of: the diff shows it, this says it plainly."""
    notes = []
    old_store = before.get("credsStore")
    if old_store and old_store != after.get("credsStore"):
        notes.append(f"note: credsStore was {old_store!r}; it is now {after.get('credsStore')!r}")
    old = before.get("credHelpers")
    new = after.get("credHelpers")
    if isinstance(old, dict) and isinstance(new, dict):
        for key, helper in old.items():
            if new.get(key) != helper:
                notes.append(f"note: {key} was served by {helper!r}; it is now {new.get(key)!r}")
    return notes


def plaintext_hosts(config: Mapping[str, Any]) -> list[str]:
    """The ``auths`` keys that carry a credential (``auth`` or ``identitytoken``), never the values."""
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return []
    return [
        key
        for key, entry in auths.items()
        if isinstance(entry, dict) and (entry.get("auth") or entry.get("identitytoken"))
    ]


def _canonical(key: str) -> str:
    try:
        return normalize_registry(key)
    except RegauthError:  # a key no client could use is nobody's host
        return key
