"""Server addresses as clients spell them, and the canonical registry host that is the credential key.

On the credential helper's hot path: it imports nothing but regauth's errors and ``printable``.
"""

from __future__ import annotations

from regauth.errors import UsageError
from regauth.printable import quoted

DOCKER_HUB = "docker.io"
# What the Docker CLI sends for Docker Hub, and so what `list` must give back for it.
DOCKER_HUB_SERVER_URL = "https://index.docker.io/v1/"
_DOCKER_HUB_ALIASES = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)


def normalize_registry(server: str) -> str:
    """Return the canonical ``host[:port]`` of a server address as clients spell it.

    Scheme, userinfo, path, query and trailing slash are dropped, the host is lower-cased, the port is
    kept unless it is the scheme's default (nerdctl asks for ``host:443`` and ``host`` alike), and every
    Docker Hub alias becomes ``docker.io``.
    """
    text = server.strip()
    scheme = ""
    if "://" in text:
        scheme, _, text = text.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise UsageError(f"unsupported scheme {quoted(scheme)} in server address {quoted(server)}")
    text = text.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    text = text.rpartition("@")[2]
    host, port = _split_port(text, server)
    if not host:
        raise UsageError(f"no registry host in server address {quoted(server)}")
    host = host.lower()
    _check_host(host, server)
    if port and ((port == "443" and scheme != "http") or (port == "80" and scheme == "http")):
        port = ""
    if host in _DOCKER_HUB_ALIASES and not port:
        return DOCKER_HUB
    return f"{host}:{port}" if port else host


def server_url_for(registry: str) -> str:
    """The server address a client expects to see listed for a canonical registry."""
    return DOCKER_HUB_SERVER_URL if registry == DOCKER_HUB else registry


def _split_port(text: str, original: str) -> tuple[str, str]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UsageError(f"unterminated IPv6 address in server address {quoted(original)}")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise UsageError(f"unexpected {quoted(rest)} after IPv6 address in {quoted(original)}")
        sep, port = rest[:1], rest[1:]
    else:
        host, sep, port = text.partition(":")
    # isascii: str.isdigit() is true for "²" (int() fails) and "５" (a non-ASCII port).
    if sep and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise UsageError(f"invalid port {quoted(port)} in server address {quoted(original)}")
    return host, port


def _check_host(host: str, original: str) -> None:
    if host.startswith("["):
        body = host[1:-1]
        if not body or any(c not in "0123456789abcdef:." for c in body):
            raise UsageError(f"invalid IPv6 address {quoted(host)} in server address {quoted(original)}")
        return
    for label in host.split("."):
        if not label or label.startswith("-") or label.endswith("-"):
            raise UsageError(f"invalid host name {quoted(host)} in server address {quoted(original)}")
        if any(not (c.isascii() and (c.isalnum() or c in "-_")) for c in label):
            raise UsageError(f"invalid host name {quoted(host)} in server address {quoted(original)}")
