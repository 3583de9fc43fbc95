"""Request -> upstream and repository: a path prefix (host or record NAME), ``ns``, or Docker Hub.

Only configured registries (and Docker Hub when enabled) are upstreams: the proxy is never an open
proxy. Ways in, all of which end here:

- ``/v2/ghcr.io/org/app/...``  the prefix is a configured host (podman/CRI-O mirror ``location``s too);
- ``/v2/NAME/org/app/...``     the prefix is a record's name (the only way to a host with a port),
  or its id, as the platforms reference "their" registry; it stands for the record's location, so
  ``/v2/org-a/app`` of a record for ``ghcr.io/org-a`` is ``ghcr.io/org-a/app``;
- ``/v2/org/app/...?ns=HOST``  containerd's mirror, which names the upstream in ``ns``;
- ``/v2/library/ubuntu/...``   no prefix and no ``ns``: Docker Hub (Docker's ``registry-mirrors``).

A record's name wins over a host of the same spelling (a record named like a host is the rare case).

However the path names the upstream, its record is then chosen by the repository, as the kubelet
plugin chooses it: the longest per-repository prefix that covers it (``ghcr.io/org-a`` for
``ghcr.io/org-a/app``), else the host's host-wide record. A repository that no record covers is
refused as an unconfigured host is: a record for ``ghcr.io/org-a`` does not open the rest of ghcr.io.
So each ``Upstream`` carries one record, and everything keyed by it (the credential, the SSL context,
bearer tokens through the credential) is per record, never shared across the prefixes of a host.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

from regauth.distribution.target import RegistryTarget
from regauth.errors import ConfigError, UsageError
from regauth.printable import quoted
from regauth.proxy.errors import DENIED, NAME_INVALID, NAME_UNKNOWN, UNSUPPORTED, ApiError
from regauth.reference import check_repository, is_digest, is_repository, is_tag, pull_scope
from regauth.registries import Registry, RegistryBook, for_image
from regauth.servers import DOCKER_HUB, normalize_registry

_RELOAD_EVERY = 1.0

log = logging.getLogger("regauth.proxy")


@dataclass(frozen=True)
class Upstream:
    """A configured upstream: the distribution ``RegistryTarget`` (host, base URL, TLS) and its record, if any
    (Docker Hub enabled with no record is reached anonymously)."""

    transport: RegistryTarget
    record: Registry | None = None

    @property
    def host(self) -> str:
        return self.transport.host


@dataclass(frozen=True)
class Target:
    """What one V2 request asks of which upstream. ``client_name`` is the name as the client wrote it."""

    kind: str  # "base", "manifest", "blob", "tags", "referrers"
    upstream: Upstream | None = None
    repository: str = ""
    reference: str = ""
    client_name: str = ""

    @property
    def is_digest(self) -> bool:
        return is_digest(self.reference)

    @property
    def scope(self) -> str:
        return pull_scope(self.repository)


class Upstreams:
    """The configured upstreams, re-read from the book when its file changes (at most once a second)."""

    def __init__(self, book: RegistryBook, *, docker_hub: bool | None, docker_hub_url: str) -> None:
        self._book = book
        self._hub = docker_hub
        self._hub_url = docker_hub_url
        self._stamp: int | None = None
        self._checked = 0.0
        self._by_name: dict[str, Registry] = {}
        self._by_host: dict[str, list[Registry]] = {}
        # SSL contexts cost milliseconds to build: one per record version, not per request.
        self._made: dict[tuple[str, str], Upstream] = {}
        self._hub_anonymous: Upstream | None = None

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < _RELOAD_EVERY and self._stamp is not None:
            return
        self._checked = now
        try:
            stamp = self._book.path.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = 0
        if stamp != self._stamp:
            try:
                records = self._book.all()
            except ConfigError as exc:
                # A file damaged while the proxy runs (a bad hand edit) must not turn every pull into a
                # 500: keep serving the last good records, and say so once per change of the file.
                log.error("%s; still serving the registries read before", exc)
                self._stamp = stamp
                return
            # A disabled record is out of use: refused by name, id and host alike.
            records = [r for r in records if r.active]
            self._by_name = {**{r.id: r for r in records}, **{r.name: r for r in records}}
            by_host: dict[str, list[Registry]] = {}
            for record in records:
                by_host.setdefault(record.registry, []).append(record)
            self._by_host = by_host
            self._made = {}
            self._stamp = stamp

    @property
    def hub_route(self) -> bool:
        """Whether requests with no prefix and no ``ns`` may go to Docker Hub (not ``--no-docker-hub``)."""
        return self._hub is not False

    def default(self, repository: str) -> Upstream | None:
        """Where requests with no prefix and no ``ns`` go: Docker Hub, if enabled."""
        return self.for_image(DOCKER_HUB, repository) if self.hub_route else None

    def named(self, name: str) -> Registry | None:
        """The record called ``name`` (or with that id), if it is in use."""
        self._refresh()
        return self._by_name.get(name)

    def by_name(self, name: str) -> Upstream | None:
        """The upstream of the record called ``name``, for its whole location (tests, the flights)."""
        record = self.named(name)
        return self._upstream(record) if record else None

    def knows_host(self, host: str) -> bool:
        """Whether any record in use is for ``host`` (a per-prefix one, perhaps: then only part of it)."""
        self._refresh()
        return host in self._by_host

    def for_image(self, host: str, repository: str) -> Upstream | None:
        """The upstream for ``repository`` of ``host``: by the longest prefix record covering it, else
        the host-wide record, else (for Docker Hub with ``--docker-hub``) anonymous; None: refused."""
        self._refresh()
        record = for_image(self._by_host.get(host, ()), host, repository)
        if record is not None:
            return self._upstream(record)
        if host == DOCKER_HUB and self._hub is True:
            if self._hub_anonymous is None:
                self._hub_anonymous = Upstream(self._hub_transport(None))
            return self._hub_anonymous
        return None

    def _upstream(self, record: Registry) -> Upstream:
        key = (record.id, record.updated_at)
        made = self._made.get(key)
        if made is None:
            if record.registry == DOCKER_HUB:
                made = Upstream(self._hub_transport(record), record)
            else:
                made = Upstream(record.target(), record)
            self._made[key] = made
        return made

    def _hub_transport(self, record: Registry | None) -> RegistryTarget:
        # The URL is an option so that tests can stand a local server in for Docker Hub.
        hub = RegistryTarget.for_registry(
            DOCKER_HUB, ca_file=record.ca_file if record else None, options=record.options if record else None
        )
        return dataclasses.replace(hub, base_url=self._hub_url.rstrip("/"))


def kind_of(tail: str) -> str:
    """What a path asks for, before it is checked: for the access log and metrics of refusals too."""
    if tail in ("", "/"):
        return "base"
    if tail.endswith("/tags/list"):
        return "tags"
    if "/referrers/" in tail:
        return "referrers"
    if "/manifests/" in tail:
        return "manifest"
    return "blob" if "/blobs/" in tail else "other"


def parse_target(tail: str, ns: str | None, upstreams: Upstreams) -> Target:
    """``tail`` is the path after ``/v2/``; raises ``ApiError`` for what the proxy does not serve."""
    if tail in ("", "/"):
        return Target("base")
    if tail.endswith("/tags/list"):
        kind, name, reference = "tags", tail[: -len("/tags/list")], ""
    elif "/referrers/" in tail:
        name, _, reference = tail.rpartition("/referrers/")
        kind = "referrers"
    elif "/manifests/" in tail:
        name, _, reference = tail.rpartition("/manifests/")
        kind = "manifest"
    elif "/blobs/" in tail:
        name, _, reference = tail.rpartition("/blobs/")
        kind = "blob"
    else:
        raise ApiError(405, UNSUPPORTED, f"/v2/{tail} is not part of the pull API this proxy serves")
    _check(kind, name, reference)
    upstream, repository = resolve(name, ns, upstreams)
    return Target(kind, upstream, repository, reference, name)


def resolve(name: str, ns: str | None, upstreams: Upstreams) -> tuple[Upstream, str]:
    if ns:
        try:
            host = normalize_registry(ns)
        except UsageError:
            raise ApiError(400, NAME_INVALID, f"ns={ns!r} is not a registry host") from None
        return _routed(upstreams, host, _hub_path(host, name))
    first, slash, rest = name.partition("/")
    if slash:
        record = upstreams.named(first)
        if record is not None:
            # The name stands for the record's location: its host, and below its prefix if it has one.
            path = rest if record.prefix is None else f"{record.prefix}/{rest}"
            return _routed(upstreams, record.registry, _hub_path(record.registry, path))
        if "." in first or ":" in first or first == "localhost":
            host = normalize_registry(first)
            return _routed(upstreams, host, _hub_path(host, rest))
    repository = _hub_path(DOCKER_HUB, name)
    hub = upstreams.default(repository)
    if hub is not None:
        return hub, repository
    if upstreams.hub_route and upstreams.knows_host(DOCKER_HUB):
        # Records for parts of Docker Hub only: the rest is refused as an unconfigured host is.
        raise _refused(DOCKER_HUB, repository, partly=True)
    raise ApiError(
        404,
        NAME_UNKNOWN,
        f"{name!r} names no configured registry (prefix the path with a registry host or name), "
        "and Docker Hub is not enabled on this proxy",
    )


def _routed(upstreams: Upstreams, host: str, repository: str) -> tuple[Upstream, str]:
    upstream = upstreams.for_image(host, repository)
    if upstream is None:
        raise _refused(host, repository, partly=upstreams.knows_host(host))
    return upstream, repository


def _hub_path(host: str, path: str) -> str:
    # Docker Hub's official images live under library/; clients may ask for `ubuntu` alone.
    if host == DOCKER_HUB and "/" not in path:
        return f"library/{path}"
    return path


def _refused(host: str, repository: str, *, partly: bool = False) -> ApiError:
    # Either way never contacted: records for some prefixes of a host open only those.
    what = (
        f"{host}/{repository} is under no registry configured on this proxy (its records for {host} "
        "are for other repository prefixes)"
        if partly
        else f"{host} is not a registry configured on this proxy"
    )
    return ApiError(
        403,
        DENIED,
        f"{what}; it only forwards to configured registries (add one with `regauth registry add`)",
    )


def _check(kind: str, name: str, reference: str) -> None:
    try:
        check_repository(name)
    except UsageError as exc:
        # A host or record name may stand first: the rest must be a repository, and resolve() checks
        # the first part.
        first, slash, rest = name.partition("/")
        if not (first and slash and is_repository(rest)):
            raise ApiError(400, NAME_INVALID, str(exc)) from None
    if kind == "blob" and not is_digest(reference):
        if reference.startswith("uploads"):
            raise ApiError(405, UNSUPPORTED, "this proxy is pull-only: pushing is not supported")
        raise ApiError(400, "DIGEST_INVALID", f"invalid blob digest {quoted(reference)}")
    if kind == "referrers" and not is_digest(reference):
        raise ApiError(400, "DIGEST_INVALID", f"invalid subject digest {quoted(reference)}")
    if kind == "manifest" and not (is_digest(reference) or is_tag(reference)):
        raise ApiError(400, "MANIFEST_INVALID", f"invalid tag or digest {quoted(reference)}")
