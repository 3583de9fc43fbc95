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

import tomlkit
from tomlkit.container import Container
from tomlkit.items import Comment, Table, Whitespace

from regauth.configure import tomlfile
from regauth.configure.core import Change, Plan
from regauth.configure.files import FileState, read_state
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
# The comment on the header of regauth's [host."PROXY"] table: the entry regauth owns in a hosts.toml,
# so a run with another --proxy replaces it rather than adding a second mirror.
MARK = "# regauth"
_CAPABILITIES = ["pull", "resolve"]


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
        legacy = server_certificates(directory, path.parent)
        if state.data:
            content = merged_hosts_toml(state, server_url(upstream), proxy, proxy_ca, legacy)
        else:
            # containerd reads an empty hosts.toml as none: the directory's certificate files were in use.
            content = hosts_toml(upstream, proxy, proxy_ca, legacy)
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
    # An existing directory is the host's (hostDirFromRoot: the first that exists), certificates or not.
    if host_dir.exists() or (default / "hosts.toml").exists():
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


def server_url(upstream: Upstream) -> str:
    if upstream.host == DOCKER_HUB:
        return _HUB_SERVER
    return f"{'http' if upstream.insecure else 'https'}://{upstream.host}"


def hosts_toml(upstream: Upstream, proxy: str, proxy_ca: str | None, legacy: TLSFiles) -> bytes:
    server = server_url(upstream)
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
        f"[host.{json.dumps(proxy)}]  {MARK}",
        '  capabilities = ["pull", "resolve"]',
    ]
    if proxy_ca:
        lines.append(f"  ca = {json.dumps(proxy_ca)}")
    return ("\n".join(lines) + "\n").encode()


def merged_hosts_toml(
    state: FileState, server: str, proxy: str, proxy_ca: str | None, legacy: TLSFiles
) -> bytes:
    """The user's hosts.toml with regauth's proxy as its first host (containerd tries the hosts in the
    order of their tables, getSortedHosts in hosts.go, the server last): every other key, table and
    comment stays, ``server`` is set only where there is none. The ``legacy`` certificate files are
    named only in a file without a ``[host]`` table: containerd cannot use such a file (getSortedHosts
    fails) and takes the directory's certificates instead; from a file it reads, it takes none."""
    doc = tomlfile.parse(state)
    hosts = doc.get("host", None)
    if hosts is not None and not (
        isinstance(hosts, Table) and all(isinstance(v, Table) for v in hosts.values())
    ):
        # Inline, split around other tables (tomlkit's out-of-order proxy) or holding plain keys.
        raise ConfigError(
            f'{state.path}: host is not one run of [host."URL"] tables, so regauth cannot put its mirror '
            "first; it was left as it was"
        )
    entries: list[tuple[str, Table]] = [(key, table) for key, table in (hosts or {}).items()]
    stale = [key for key, table in entries if key != proxy and _is_mine(table)]
    mine = next((table for key, table in entries if key == proxy), None)
    if (
        "server" in doc
        and not stale
        and mine is not None
        and entries[0][0] == proxy
        and _is_mine(mine)
        and mine.get("capabilities") == _CAPABILITIES
        and (proxy_ca is None or mine.get("ca") == proxy_ca)
    ):
        return state.data or b""
    if "server" not in doc:
        doc["server"] = server
    if hosts is None:
        # The user's own ca or client, if any, stays theirs.
        if legacy.ca and "ca" not in doc:
            doc["ca"] = legacy.ca
        if legacy.client and "client" not in doc:
            doc["client"] = [list(pair) for pair in legacy.client]
    fresh = mine is None
    if mine is None:
        mine = tomlkit.table()
    if mine.get("capabilities") != _CAPABILITIES:
        mine["capabilities"] = _CAPABILITIES
    if proxy_ca is not None and mine.get("ca") != proxy_ca:
        mine["ca"] = proxy_ca
    if not _is_mine(mine):
        mine.comment(MARK.lstrip("# "))
    if fresh and any(key not in stale for key, _ in entries):
        mine.value.append(None, Whitespace("\n"))
        if entries[0][0] not in stale:
            # The comment right above the user's first mirror is that mirror's: it stays above it.
            _move_comments(*_above_hosts(doc, hosts), mine)
    ordered: list[tuple[str, Table]] = [(proxy, mine)]
    for key, table in entries:
        if key == proxy or key in stale:
            # What ends a table is the comment above the next one: it stays with the table before.
            tail = _tail(table.value)
            _move_comments(tail, len(tail.body), ordered[-1][1])
        else:
            ordered.append((key, table))
    rebuilt = tomlkit.table(is_super_table=hosts is None or hosts.is_super_table())
    # As tomlkit's parser adds them: no blank line of its own before each table.
    rebuilt.value.parsing(True)
    for key, table in ordered:
        rebuilt.append(key, table)
    rebuilt.value.parsing(False)
    doc["host"] = rebuilt
    return tomlfile.render(state, doc)


def _is_mine(table: Table) -> bool:
    return table.trivia.comment.strip() == MARK


def _above_hosts(doc: tomlkit.TOMLDocument, hosts: Table | None) -> tuple[Container | None, int]:
    """Where the comment just above the first ``[host."URL"]`` header ends: tomlkit keeps it at the end
    of what comes before the header (the document's lines, or the last table's)."""
    index = next((i for i, (_, item) in enumerate(doc.body) if item is hosts), 0)
    if all(key is None for key, _ in doc.body[:index]):
        return None, 0  # nothing but the file's opening comments above it: they stay the file's
    key, node = doc.body[index - 1]
    if key is None:
        return doc, index
    if isinstance(node, Table):
        tail = _tail(node.value)
        return tail, len(tail.body)
    return None, 0


def _tail(container: Container) -> Container:
    while container.body and isinstance(container.body[-1][1], Table):
        container = container.body[-1][1].value
    return container


def _move_comments(source: Container | None, end: int, sink: Table) -> None:
    """Move the comment lines just before ``end`` in ``source`` (back to a blank line or a key) to the
    end of ``sink``."""
    if source is None:
        return
    body = source.body
    start = end
    while start and body[start - 1][0] is None and isinstance(body[start - 1][1], Comment):
        start -= 1
    for index in range(start, end):
        sink.value.append(None, body[index][1])
        # Blanked where it was, not deleted: the container's key index points into its body.
        body[index] = (None, Whitespace(""))


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
