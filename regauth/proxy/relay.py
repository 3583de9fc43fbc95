"""Relaying one upstream response to the client: headers, refusals, and bodies that stream.

Bodies stream: upstream chunks are written to the client as they come, so memory stays flat whatever
the size. Once a 200 has started, an upstream failure aborts the client connection: the client sees a
cut body, never a short 200 that looks complete. A blob relayed whole goes through a ``Sink`` that
hashes it (and, when it is being cached, writes it to the cache file); its last chunk is held back
until the digest is checked, so a body that does not match its digest is cut as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from regauth.distribution.transport import SMALL_BODY_MAX, read_capped
from regauth.logs import redact
from regauth.proxy import state
from regauth.proxy.errors import (
    API_VERSION_HEADER,
    UpstreamFault,
    as_api_error,
    error_body,
    internal_failure,
    is_internal,
)
from regauth.proxy.routing import Target

log = logging.getLogger("regauth.proxy")

_RELAYED = (
    "Content-Type",
    "Docker-Content-Digest",
    "Content-Range",
    "Accept-Ranges",
    "ETag",
    "Last-Modified",
    # The referrers API says with it which filters (artifactType) the registry applied.
    "OCI-Filters-Applied",
)
# Hashing goes to a worker thread in batches: at least _HASH_MIN bytes (a thread hand-off per 64 KiB
# chunk costs more than it saves), handed over as soon as the worker is idle, and never more than
# _HASH_MAX waiting: one stream holds at most about two batches besides what the sockets buffer.
_HASH_MIN = 1024 * 1024
_HASH_MAX = 2 * 1024 * 1024
# What one read from a plain-TCP upstream takes at most (asyncio's default is 256 KiB): fewer reads,
# parser calls and loop turns per byte. Measured on loopback, the cold relay's CPU per GiB: 1.64 s at
# 256 KiB, 1.42 at 1 MiB, 1.32 at 2 MiB, and 1.8 at 4 MiB (each read then a fresh allocation beyond
# malloc's thresholds: tens of thousands of page faults per blob).
_READ_MAX = 2 * 1024 * 1024
_UNKNOWN_CODE = {
    "manifest": "MANIFEST_UNKNOWN",
    "blob": "BLOB_UNKNOWN",
    "tags": "NAME_UNKNOWN",
    "referrers": "MANIFEST_UNKNOWN",
}
# A link-value's URL and its parameters (RFC 8288: token, or token=token / quoted-string); what may
# follow is only another link-value, after a comma.
_LINK = re.compile(
    r'\s*<([^>]*)>((?:\s*;\s*[!#$%&\'*+.^_`|~0-9A-Za-z-]+(?:\s*=\s*(?:"[^"\\]*"|[!#$%&\'*+.^_`|~0-9A-Za-z-]+))?)*)'
    r"\s*(?:,.*)?\Z",
    re.DOTALL,
)


class Sink(Protocol):
    """Where the bytes of a blob relayed whole go as well: a ``Verifier`` or a ``CacheWriter``.
    ``threaded``: its work may block (a disk write), so it runs in a worker thread, in batches."""

    digest: str
    threaded: bool

    def update(self, chunk: bytes) -> None: ...

    def write_all(self, chunks: list[bytes]) -> None: ...

    def finish(self) -> bool: ...

    def abort(self) -> None: ...

    def shared(self) -> bool:
        """True while other pulls read these bytes (``flights.py``): the fetch outlives its client."""
        ...


async def stream(
    request: web.Request, resp: aiohttp.ClientResponse, headers: CIMultiDict[str], sink: Sink | None
) -> tuple[web.StreamResponse, bool]:
    """Relay ``resp``'s body; True with the response if all of it went out (and matched ``sink``)."""
    if sink is not None and resp.content_length == 0 and not sink.finish():
        # No last chunk to hold back: refuse before a 200 with an empty body can look complete.
        sink.abort()
        raise _mismatch(request, sink)
    out = web.StreamResponse(status=resp.status, headers=headers)
    if resp.content_length is not None:
        out.content_length = resp.content_length
    request[state.SOURCE] = "upstream"
    widen_send_buffer(request)
    _widen_reads(resp)
    counter = [0]
    try:
        if sink is None:
            await out.prepare(request)
            async for chunk in _buffers(resp):
                await out.write(chunk)
                counter[0] += len(chunk)
        elif not sink.threaded:
            await _stream_hashed(request, resp, out, sink, counter)
        else:
            await _stream_through(request, resp, out, sink, counter)
        await out.write_eof()
    except Exception as exc:
        cut(request, exc)
        return out, False
    finally:
        request[state.SENT] = counter[0]
    return out, True


async def _stream_hashed(
    request: web.Request,
    resp: aiohttp.ClientResponse,
    out: web.StreamResponse,
    sink: Sink,
    counter: list[int],
) -> None:
    """Start ``out`` and relay, hashing each chunk on the loop; the last chunk is held back until the
    digest is checked. On the loop rather than in a worker thread: measured here, handing chunks to a
    thread cost a quarter more CPU per GiB than the hashing itself (the GIL changes hands per chunk),
    and a relay with no core to spare ran no faster for it."""
    pending = b""
    client: web.StreamResponse | None = out
    try:
        await out.prepare(request)
        async for chunk in _buffers(resp):
            sink.update(chunk)
            if pending and client is not None:
                client = await _send_on(client, pending, sink, counter)
            pending = chunk
        await _send_last(request, out, sink, client, pending, counter)
    finally:
        sink.abort()


async def _stream_through(
    request: web.Request,
    resp: aiohttp.ClientResponse,
    out: web.StreamResponse,
    sink: Sink,
    counter: list[int],
) -> None:
    """Start ``out`` and relay while ``sink`` hashes and writes in a worker thread, overlapping the
    network and the disk; the last chunk is held back until the digest is checked. ``sink`` is
    finished or aborted whatever happens."""
    loop = asyncio.get_running_loop()
    hashing: asyncio.Future[None] | None = None
    batch: list[bytes] = []
    batched = 0
    pending = b""
    client: web.StreamResponse | None = out
    try:
        await out.prepare(request)
        async for chunk in _buffers(resp):
            batch.append(chunk)
            batched += len(chunk)
            if batched >= _HASH_MIN and (hashing is None or hashing.done() or batched >= _HASH_MAX):
                if hashing is not None:
                    await hashing
                hashing = loop.run_in_executor(None, sink.write_all, batch)
                batch, batched = [], 0
            if pending and client is not None:
                client = await _send_on(client, pending, sink, counter)
            pending = chunk
        if hashing is not None:
            await hashing
            hashing = None
            # The rest goes to the worker too: a sink's write may block (a disk, or a part of an
            # upload to the shared bucket it must wait for).
            await loop.run_in_executor(None, sink.write_all, batch)
        else:
            # A small blob never leaves the loop: one batch under _HASH_MIN is cheaper done here.
            sink.write_all(batch)
        await _send_last(request, out, sink, client, pending, counter)
    finally:
        # Also on cancellation: a cache temp file goes, once the worker is done with it.
        if hashing is not None and not hashing.done():
            hashing.add_done_callback(lambda _: sink.abort())
        else:
            sink.abort()


async def _buffers(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The body as the buffers were received. ``iter_chunks`` hands each over as is, where
    ``iter_any`` and ``iter_chunked`` join the buffers they find waiting (a copy of every byte); its
    empty chunk at the end of each chunk of a chunked body is left out."""
    async for chunk, _ in resp.content.iter_chunks():
        if chunk:
            yield chunk


def _widen_reads(resp: aiohttp.ClientResponse) -> None:
    """Let the upstream's transport read up to ``_READ_MAX`` at once. Only asyncio's plain socket
    transport has the knob (``max_size``); a TLS transport reads TLS records, and is left alone."""
    transport = resp.connection.transport if resp.connection is not None else None
    if transport is not None and isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = _READ_MAX  # type: ignore[attr-defined]


async def _send_on(
    out: web.StreamResponse, chunk: bytes, sink: Sink, counter: list[int]
) -> web.StreamResponse | None:
    """Write ``chunk`` to the client; None once it is gone, if other pulls share the fetch (so it goes
    on for them), else the failure."""
    try:
        await out.write(chunk)
    except (ConnectionError, aiohttp.ClientConnectionResetError):
        if not sink.shared():
            raise
        return None
    counter[0] += len(chunk)
    return out


async def _send_last(
    request: web.Request,
    out: web.StreamResponse,
    sink: Sink,
    client: web.StreamResponse | None,
    pending: bytes,
    counter: list[int],
) -> None:
    """Check the whole blob, then send the chunk held back: a mismatch cuts the client before its end."""
    if not sink.finish():
        raise _mismatch(request, sink)
    if client is None:
        raise ConnectionResetError("the client went away; the fetch went on for the pulls sharing it")
    if pending:
        await out.write(pending)
        counter[0] += len(pending)


def _mismatch(request: web.Request, sink: Sink) -> UpstreamFault:
    where = request.get(state.UPSTREAM, "the upstream")
    return UpstreamFault(502, f"blob {sink.digest} from {where} does not match its digest")


def widen_send_buffer(request: web.Request) -> None:
    """Let the client socket take each relayed chunk whole. Under the kernel's auto-tuned buffer a
    write is often taken only in part, and asyncio sends the rest on later wake-ups: more syscalls
    and loop turns per byte (measured on loopback: the relay's CPU per GiB fell by about a fifth)."""
    size = request.app[state.SEND_BUFFER]
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if sock is None or not size:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except OSError as exc:
        # Only a tuning knob: the relay works the same with the kernel's own buffer size.
        log.debug("cannot set SO_SNDBUF: %s", exc.strerror)


@contextlib.contextmanager
def corked(request: web.BaseRequest) -> Iterator[None]:
    """Hold back partial TCP segments while a body goes out with sendfile (``TCP_CORK``, as nginx's
    ``tcp_nopush``): aiohttp sets TCP_NODELAY, so the tail of every sendfile call would leave as a
    small segment of its own, and the client would wake up for it. Uncorking sends what is left."""
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    cork = getattr(socket, "TCP_CORK", None)
    if sock is None or cork is None:
        yield
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
    except OSError:
        yield  # only a tuning knob
        return
    try:
        yield
    finally:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, cork, 0)
        except OSError:
            pass  # the connection is gone: nothing left to send


def usable_send_buffer(size: int) -> int:
    """``size`` if the kernel grants a socket a send buffer that large, else 0 (leave it alone).

    Setting SO_SNDBUF turns the kernel's auto-tuning off for that socket, and Linux silently caps the
    value at net.core.wmem_max (208 KiB on a stock kernel): there, a client on a long link would get a
    smaller buffer than auto-tuning grows (4 MiB), and a slower pull."""
    if size <= 0:
        return 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
            granted = probe.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        except OSError:
            return 0
    # Linux reports twice what it was asked for (its bookkeeping overhead); others, what was set.
    return size if granted >= size else 0


def cut(request: web.Request, exc: BaseException) -> None:
    """End a response that has started: close the connection so the client cannot take it as whole."""
    if is_internal(exc):
        log.error("%s %s: cut after an %s", request.method, redact(request.path), internal_failure(exc))
    elif not isinstance(exc, (ConnectionResetError, aiohttp.ClientConnectionResetError)):
        where = request.get(state.UPSTREAM, "?")
        log.warning(
            "%s %s: cut after upstream %s failed: %s",
            request.method,
            redact(request.path),
            where,
            as_api_error(exc).message,
        )
    request[state.SOURCE] = "cut"
    if request.transport is not None:
        request.transport.abort()


async def head(
    request: web.Request, resp: aiohttp.ClientResponse, headers: CIMultiDict[str]
) -> web.StreamResponse:
    out = web.StreamResponse(status=resp.status, headers=headers)
    if resp.content_length is not None:
        out.content_length = resp.content_length
    request[state.SOURCE] = "upstream"
    await out.prepare(request)
    await out.write_eof()
    return out


async def upstream_error(
    request: web.Request, target: Target, resp: aiohttp.ClientResponse
) -> web.StreamResponse:
    """Relay a registry's refusal (404, 400, 403, 429) as is; a 5xx becomes the proxy's own fault."""
    host = target.upstream.host if target.upstream else "?"
    if resp.status >= 500:
        status = resp.status if resp.status in (503, 504) else 502
        raise UpstreamFault(status, f"{host} answered {resp.status} for {target.repository}")
    body = b""
    if request.method != "HEAD":
        body = await read_capped(resp, SMALL_BODY_MAX, truncate=True)
    headers = CIMultiDict(API_VERSION_HEADER)
    if body.lstrip().startswith(b"{") and b'"errors"' in body:
        headers["Content-Type"] = "application/json"
    elif request.method != "HEAD":
        code = _UNKNOWN_CODE.get(target.kind, "UNKNOWN") if resp.status == 404 else "UNKNOWN"
        body = error_body(code, f"{host} answered {resp.status} for {target.repository}")
        headers["Content-Type"] = "application/json"
    if "Retry-After" in resp.headers:
        headers["Retry-After"] = resp.headers["Retry-After"]
    return bytes_response(resp.status, headers, body)


def bytes_response(status: int, headers: CIMultiDict[str], body: bytes) -> web.Response:
    # aiohttp sends no body for HEAD and keeps the Content-Length of the one it would have sent.
    return web.Response(status=status, body=body, headers=headers)


def relayed_headers(resp: aiohttp.ClientResponse, target: Target, ns: str | None = None) -> CIMultiDict[str]:
    """The upstream's headers a client needs; a pagination ``Link`` as the client must follow it (see
    ``own_link``), with ``ns`` when the client routed by it."""
    headers: CIMultiDict[str] = CIMultiDict(API_VERSION_HEADER)
    for name in _RELAYED:
        if name in resp.headers:
            headers[name] = resp.headers[name]
    if target.kind == "blob" and "Docker-Content-Digest" not in headers:
        # Blob storage behind a redirect does not send it; the digest is the blob's name.
        headers["Docker-Content-Digest"] = target.reference
    if "Link" in resp.headers:
        link = own_link(resp.headers["Link"], target, ns)
        if link is not None:
            headers["Link"] = link
    return headers


def own_link(value: str, target: Target, ns: str | None) -> str | None:
    """An upstream's ``Link: <URL>; rel="next"`` as a path on this proxy, under the name the client
    used (and its ``ns``); None when it leads anywhere but this repository on this upstream, which a
    client must not be sent to: it would leave the proxy, or reach another repository through it.
    Only the first link-value is kept: any others are URLs this check has not seen."""
    found = _LINK.match(value)
    if found is None or target.upstream is None:
        return None
    url, params = found.groups()
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        origin = urlsplit(target.upstream.transport.base_url)
        if (parts.scheme, parts.netloc) != (origin.scheme, origin.netloc):
            return None
    prefix = f"/v2/{target.repository}/"
    if not parts.path.startswith(prefix) or ".." in parts.path:
        return None
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "ns"]
    if ns:
        query.append(("ns", ns))
    path = f"/v2/{target.client_name}/{parts.path[len(prefix) :]}"
    encoded = urlencode(query)
    return f"<{path}{'?' + encoded if encoded else ''}>{params}"
