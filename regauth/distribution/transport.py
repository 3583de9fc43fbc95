"""How regauth reaches a registry (a ``target.RegistryTarget``): sessions, timeouts, redirects, capped
reads and error mapping.

* TLS as the target says: HTTPS with the system roots and the record's CA, plain HTTP only for a record
  marked ``insecure`` (the host is named in that record, so it never spreads to other hosts).
* Every request has connect, read and total timeouts, and its response head must arrive within the
  connect and read timeouts (the read timeout alone is per read).
* Redirects are followed by hand: ``Authorization`` is sent only to the origin it was meant for, never
  to the blob storage a registry redirects to; a request body (a token form, which holds a credential)
  is never re-sent to another origin; a redirect goes only over HTTPS (plain HTTP only to an insecure
  record's own host) and never into loopback, link-local or private addresses unless the registry is
  itself on such an address (``addresses``).
* Bodies are asked for as they are (``Accept-Encoding: identity``): the session never decompresses.
* Bodies read whole are read with a cap (``read_capped``): an upstream cannot make regauth hold more
  than the cap in memory.
* aiohttp, ssl and asyncio exceptions become ``UpstreamError`` here, with a one-line message that names
  the host and never a header or a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from regauth.distribution.addresses import check_redirect_host
from regauth.distribution.errors import Outcome, UpstreamError
from regauth.distribution.target import RegistryTarget

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Caps for bodies read whole: an error body or a ping is a few KiB, a token response well under 1 MiB.
SMALL_BODY_MAX = 64 * 1024
TOKEN_BODY_MAX = 1024 * 1024
# What distribution itself accepts for a manifest; a tag list of this size holds some 100,000 tags.
MANIFEST_MAX = 4 * 1024 * 1024
TAGS_MAX = 4 * 1024 * 1024


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    read: float = 30.0
    total: float | None = 300.0

    def client_timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=self.total, connect=self.connect, sock_connect=self.connect, sock_read=self.read
        )


def make_session(
    timeouts: Timeouts | None = None,
    *,
    limit: int = 100,
    limit_per_host: int = 0,
    read_bufsize: int = 2**16,
) -> aiohttp.ClientSession:
    """A session for any number of upstreams (TLS is chosen per request). The caller closes it.
    ``limit_per_host`` caps each host's share of the pool (0: only ``limit``, which 0 lifts)."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit_per_host, ttl_dns_cache=60)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=(timeouts or Timeouts()).client_timeout(),
        # Environment proxies and netrc are not read behind the user's back.
        trust_env=False,
        auto_decompress=False,
        read_bufsize=read_bufsize,
    )


@contextlib.asynccontextmanager
async def send(
    session: aiohttp.ClientSession,
    upstream: RegistryTarget,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    data: bytes | Mapping[str, str] | None = None,
    follow_redirects: bool = True,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """Send one request and yield the final response (released on exit), following redirects safely.
    ``response.url`` is where the final answer came from."""
    target = URL(url)
    sent = dict(headers or {})
    if not any(k.lower() == "accept-encoding" for k in sent):
        # aiohttp asks for gzip by default, and the session does not decompress (the proxy relays bodies
        # byte for byte): a token server that honoured it (nginx's gzip for JSON) sent an unreadable token.
        sent["Accept-Encoding"] = "identity"
    origin = target.origin()
    for _ in range(MAX_REDIRECTS + 1):
        if target.origin() != origin:
            # Blob storage gets a pre-signed URL: our credential must not leak to it.
            sent = {k: v for k, v in sent.items() if k.lower() != "authorization"}
            if data is not None:
                # 307/308 re-send the body, and a token form holds the credential itself.
                raise UpstreamError(
                    f"{upstream.host} redirected a request with a credential in its body to another host "
                    f"({target.host}); refused, nothing was sent there",
                    Outcome.NOT_V2,
                )
        if target.user is not None and any(k.lower() == "authorization" for k in sent):
            # As Go's client: a header set wins over a URL's userinfo (aiohttp raises on both).
            target = target.with_user(None)
        with map_errors(target):
            response = await asyncio.wait_for(
                session.request(
                    method,
                    target,
                    headers=sent,
                    data=data,
                    ssl=upstream.context_for(target),
                    allow_redirects=False,
                ),
                _head_within(session.timeout),
            )
        location = response.headers.get("Location")
        if not (follow_redirects and response.status in _REDIRECTS and location):
            try:
                with map_errors(target):
                    yield response
            finally:
                response.release()
            return
        response.release()
        target = await _redirect_target(target, location, upstream)
        if response.status == 303 or (response.status in (301, 302) and method == "POST"):
            method, data = "GET", None
    raise UpstreamError(f"{upstream.host}: more than {MAX_REDIRECTS} redirects", Outcome.NOT_V2)


def _head_within(timeout: aiohttp.ClientTimeout) -> float | None:
    # The read timeout is per read: a head dripped a byte at a time (8 KiB per header line, a hundred
    # lines) would hold a request for hours where the proxy has no total. Connect, then the whole head
    # within one read timeout.
    if timeout.sock_read is None:
        return None
    return (timeout.sock_connect or timeout.connect or 0.0) + timeout.sock_read


def usable_host(url: URL) -> str | None:
    """``url``'s host, or None when it has none or one no resolver takes: yarl decodes an A-label
    lazily and the resolver encodes with IDNA, and both raise ``UnicodeError`` (``xn--``, ``a..b``, a
    label of 64 characters), which would escape as a traceback from wherever the host is first used."""
    try:
        host = url.host
        (url.raw_host or "").encode("idna")
    except UnicodeError:
        return None
    return host or None


async def _redirect_target(current: URL, location: str, upstream: RegistryTarget) -> URL:
    try:
        target = current.join(URL(location))
    except ValueError as exc:
        raise UpstreamError(f"{upstream.host} redirected to a malformed URL", Outcome.NOT_V2) from exc
    if target.raw_host is not None and usable_host(target) is None:
        raise UpstreamError(f"{upstream.host} redirected to a URL with no usable host", Outcome.NOT_V2)
    if target.scheme not in ("http", "https") or not target.host:
        raise UpstreamError(f"{upstream.host} redirected to a {target.scheme!r} URL; refused", Outcome.NOT_V2)
    if target.scheme == "http" and (upstream.secure or target.host != upstream.hostname):
        raise UpstreamError(
            f"{upstream.host} redirected to plain HTTP on {target.host}; refused (plain HTTP is allowed "
            "only to an insecure registry's own host)",
            Outcome.TLS_ERROR,
        )
    await check_redirect_host(upstream.host, upstream.hostname, target.host)
    return target


async def read_capped(
    response: aiohttp.ClientResponse,
    limit: int,
    what: str = "response",
    *,
    within: float = 30.0,
    truncate: bool = False,
) -> bytes:
    """The whole body, or once it passes ``limit`` bytes or ``within`` seconds an ``UpstreamError``
    (or, with ``truncate``, its first ``limit`` bytes). The rest is never read: the connection is
    closed rather than drained."""
    length = response.content_length
    if length is not None and length > limit and not truncate:
        response.close()
        raise _too_large(response, what, limit)
    try:
        with map_errors(response.url):
            body = await asyncio.wait_for(_read_at_most(response.content, limit + 1), within)
    except UpstreamError:
        response.close()
        raise
    if len(body) > limit:
        response.close()
        if not truncate:
            raise _too_large(response, what, limit)
        body = body[:limit]
    return body


async def _read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _too_large(response: aiohttp.ClientResponse, what: str, limit: int) -> UpstreamError:
    return UpstreamError(f"{response.url.host} sent a {what} of more than {limit} bytes", Outcome.NOT_V2)


@contextlib.contextmanager
def map_errors(url: URL) -> Iterator[None]:
    """Turn aiohttp/ssl/asyncio exceptions for ``url`` into ``UpstreamError`` (host only, no query)."""
    where = f"{url.host}:{url.port}" if url.port and not url.is_default_port() else str(url.host)
    try:
        yield
    except aiohttp.ClientConnectorCertificateError as exc:
        raise UpstreamError(
            f"TLS error talking to {where}: {_cert_reason(exc.certificate_error)}", Outcome.TLS_ERROR
        ) from exc
    except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
        reason = _ssl_reason(exc)
        if "WRONG_VERSION_NUMBER" in reason.upper():
            reason += " (is it plain HTTP? then mark the registry insecure)"
        raise UpstreamError(f"TLS error talking to {where}: {reason}", Outcome.TLS_ERROR) from exc
    except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamError(f"timed out talking to {where}", Outcome.TIMED_OUT) from exc
    except aiohttp.ClientConnectorError as exc:
        error = exc.os_error
        if isinstance(error, socket.gaierror):
            # Not "Unknown error -2": say what failed.
            raise UpstreamError(f"cannot resolve {url.host}", Outcome.UNREACHABLE) from exc
        reason = os.strerror(error.errno) if error.errno else error.strerror or type(error).__name__
        raise UpstreamError(f"cannot connect to {where}: {reason}", Outcome.UNREACHABLE) from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(
            f"connection to {where} failed: {_client_reason(exc)}", Outcome.UNREACHABLE
        ) from exc


def _cert_reason(exc: Exception) -> str:
    return getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or type(exc).__name__


def _ssl_reason(exc: Exception) -> str:
    inner = getattr(exc, "os_error", exc)
    return getattr(inner, "verify_message", None) or getattr(inner, "reason", None) or type(inner).__name__


def _client_reason(exc: aiohttp.ClientError) -> str:
    # Only fixed texts: the str() of some aiohttp errors embeds request URLs and headers.
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the response body was cut short"
    if isinstance(exc, aiohttp.ClientOSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__
