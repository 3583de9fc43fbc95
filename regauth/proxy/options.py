"""What the proxy is told at start-up: the listen address, the cache, timeouts, Docker Hub, client auth,
and the limits that keep it standing as a network service.

``ProxyOptions`` is frozen and made once by ``main.py`` from the command line; tests build their own.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from pathlib import Path

from regauth.errors import UsageError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


@dataclass(frozen=True)
class ProxyOptions:
    cache_dir: Path | None = None
    cache_max_size: int | None = None
    # A bucket shared by several instances (s3://BUCKET/PREFIX), and how long one instance's claim to
    # fetch a cold blob lives without renewal (a dead instance's is taken over after it).
    cache_url: str | None = None
    cache_lease: float = 30.0
    # Bucket hits answered with a redirect to a presigned URL valid this long; 0 streams them.
    cache_redirect: float = 0.0
    # How long a manifest fetched by tag is served from memory; 0 turns that off.
    manifest_tag_ttl: float = 30.0
    # While the upstream is unreachable, a tag's last known manifest is served up to this many seconds
    # after it was fetched (with a Warning header); 0 turns that off.
    serve_stale: float = 0.0
    # Requests with no registry prefix and no ns go to Docker Hub: True always (anonymously if there
    # is no docker.io record), None when a docker.io record exists, False never.
    docker_hub: bool | None = None
    docker_hub_url: str = "https://registry-1.docker.io"
    connect_timeout: float = 10.0
    # Between two reads of one upstream body, not for a whole blob: a 1 GiB blob may take minutes.
    read_timeout: float = 60.0
    chunk_size: int = 1024 * 1024
    read_buffer: int = 1024 * 1024
    # SO_SNDBUF of a client socket a body is streamed to (Linux doubles it); 0, or a kernel whose
    # net.core.wmem_max is lower, leaves the kernel's auto-tuning. Kernel memory, bounded per connection.
    send_buffer: int = 4 * 1024 * 1024
    # Client auth: a shared token (Bearer, or Basic with any user name) and/or an htpasswd file.
    client_token: str | None = None
    htpasswd: Path | None = None
    # Open client connections; beyond it the longest-idle one is closed to make room, and when none is
    # idle the newcomer gets a 503. Each can hold one upstream connection and a cache file: two fds.
    max_connections: int = 1024
    # Connections to one upstream host: slow pulls from one registry cannot use up the others'.
    upstream_connections: int = 256
    # From a request's first byte to its last header byte (Go's ReadHeaderTimeout; nginx's
    # client_header_timeout): a half-sent request cannot hold a connection longer.
    header_timeout: float = 20.0
    # An idle keep-alive connection (and one that never sends a byte) is closed after this, where
    # aiohttp's default is an hour.
    idle_timeout: float = 60.0
    # Concurrent bcrypt checks, each on a worker thread; more waiting than ``bcrypt_queue`` get a 429.
    bcrypt_workers: int = 2
    bcrypt_queue: int = 64

    @property
    def client_auth(self) -> bool:
        return self.client_token is not None or self.htpasswd is not None


def parse_size(text: str) -> int:
    """``10GiB``, ``500M``, ``1.5g``, ``1048576`` -> bytes. Decimal units are powers of 1000."""
    raw = text.strip().lower().replace(" ", "")
    number = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(number) :]
    if unit not in _UNITS or not number:
        raise UsageError(f"invalid size {text!r}: use bytes or a unit such as 500M, 10GiB")
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # 1e309 is a float, infinite
        raise UsageError(f"invalid size {text!r}: use bytes or a unit such as 500M, 10GiB")
    size = int(value * _UNITS[unit])
    if size <= 0:
        raise UsageError(f"invalid size {text!r}: it must be more than zero")
    return size


def parse_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:5000``, ``[::1]:5000``, ``:5000`` (loopback) -> (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"--listen {text!r}: use HOST:PORT, e.g. 127.0.0.1:5000")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def check_exposure(listen: str, host: str, *, client_auth: bool, tls: bool, cleartext: bool) -> None:
    """The rule for who may reach the proxy. Loopback: anything. Elsewhere: client auth always (anyone
    who reaches it would pull with your credentials), and TLS for that auth unless the user says, with
    ``--accept-cleartext-credentials``, that the client credential may cross the network in clear."""
    if is_loopback(host):
        return
    if not client_auth:
        raise UsageError(
            f"--listen {listen} is not a loopback address: anyone who can reach it could pull with "
            "your credentials; set --client-token-file or --htpasswd to require client auth"
        )
    if not tls and not cleartext:
        raise UsageError(
            f"--listen {listen} is not a loopback address and has no TLS: the client token or password "
            "would cross the network in clear; set --tls-cert and --tls-key, or pass "
            "--accept-cleartext-credentials if that network is trusted"
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
