"""The registry a request goes to: its canonical host, base URL, TLS trust and allowed token realms.

A ``RegistryTarget`` is what the Registry V2 client knows of a registry record, so that ``distribution``
needs nothing of ``registries``: HTTPS with the system roots plus the record's CA file, or plain HTTP
for a record marked insecure (Docker Hub never is). The TLS context is built on first use and kept, since
building one costs milliseconds; a CA file that cannot be loaded is an ``UpstreamError`` then.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

from regauth.distribution.errors import Outcome, UpstreamError
from regauth.distribution.realms import REALM_HOSTS_OPTION, parse_realm_hosts
from regauth.servers import DOCKER_HUB

# Docker Hub's API lives on another host than its name.
DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True)
class RegistryTarget:
    """``host`` is the canonical ``host[:port]`` (``docker.io`` for Docker Hub); ``base_url`` has no
    trailing slash; ``realm_hosts`` are token realm hosts beyond its own and its domain's that may
    receive the credential."""

    host: str
    base_url: str
    ca_file: str | None = None
    realm_hosts: frozenset[str] = frozenset()

    @classmethod
    def for_registry(
        cls,
        host: str,
        *,
        insecure: bool = False,
        ca_file: str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> RegistryTarget:
        realm_hosts = parse_realm_hosts((options or {}).get(REALM_HOSTS_OPTION))
        api = DOCKER_HUB_API if host == DOCKER_HUB else host
        if insecure:
            if host == DOCKER_HUB:
                raise UpstreamError("Docker Hub is never reached over plain HTTP", Outcome.TLS_ERROR)
            return cls(host, f"http://{api}", None, realm_hosts)
        return cls(host, f"https://{api}", ca_file, realm_hosts)

    @property
    def secure(self) -> bool:
        return not self.base_url.startswith("http://")

    @property
    def hostname(self) -> str:
        """The host regauth connects to (``registry-1.docker.io`` for ``docker.io``), without a port."""
        return URL(self.base_url).host or self.host

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def context_for(self, url: URL) -> ssl.SSLContext | bool:
        """The TLS setting for ``url``: this registry's context for HTTPS (it holds the system roots
        too), none for plain HTTP."""
        if url.scheme != "https":
            return False
        return make_ssl_context(self.ca_file)


def make_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The system roots plus ``ca_file``: kept per file and version, so a replaced CA file is read
    again, and a long-running proxy does not build a context (milliseconds) per request."""
    try:
        stamp = os.stat(ca_file).st_mtime_ns if ca_file else 0
    except OSError:
        stamp = -1
    return _context(ca_file, stamp)


@functools.lru_cache(maxsize=64)
def _context(ca_file: str | None, stamp: int) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
            raise UpstreamError(f"cannot load CA file {ca_file}: {reason}", Outcome.TLS_ERROR) from exc
    return context
