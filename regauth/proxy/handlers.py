"""The V2 pull API: ``/v2/``, manifests, blobs and tag lists, relayed from the routed upstream.

Bodies stream: upstream chunks are written to the client as they come (and, for a blob being cached,
to the cache file beside), so memory stays flat whatever the blob size. Once a 200 has started, an
upstream failure aborts the client connection: the client sees a cut body, never a short 200 that looks
complete. A blob being cached is verified before its last chunk goes out, so a body that does not match
its digest is cut as well.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from regauth.logs import redact
from regauth.proxy import state
from regauth.proxy.blobcache import CacheWriter
from regauth.proxy.errors import (
    API_VERSION_HEADER,
    UNSUPPORTED,
    ApiError,
    UpstreamFault,
    as_api_error,
    error_body,
)
from regauth.proxy.routing import Target, kind_of, parse_target

log = logging.getLogger("regauth.proxy")

MANIFEST_MAX = 4 * 1024 * 1024
_ERROR_BODY_MAX = 64 * 1024
_RELAYED = (
    "Content-Type",
    "Docker-Content-Digest",
    "Content-Range",
    "Accept-Ranges",
    "ETag",
    "Last-Modified",
    "Link",
)
_HASH_BATCH = 4 * 1024 * 1024
_FORWARDED = ("Accept", "Range", "If-Range", "If-None-Match")
_UNKNOWN_CODE = {"manifest": "MANIFEST_UNKNOWN", "blob": "BLOB_UNKNOWN", "tags": "NAME_UNKNOWN"}


async def v2(request: web.Request) -> web.StreamResponse:
    tail = request.match_info.get("tail", "")
    request[state.KIND] = kind_of(tail)
    if request.method not in ("GET", "HEAD"):
        raise ApiError(405, UNSUPPORTED, f"{request.method} is not supported: this proxy is pull-only")
    target = parse_target(tail, request.query.get("ns"), request.app[state.UPSTREAMS])
    request[state.KIND] = target.kind
    if target.kind == "base":
        return web.json_response({}, headers=API_VERSION_HEADER)
    assert target.upstream is not None
    request[state.UPSTREAM] = target.upstream.host
    if target.kind == "blob":
        return await _blob(request, target)
    if target.kind == "manifest":
        return await _manifest(request, target)
    return await _relay(request, target, f"/v2/{target.repository}/tags/list")


async def _blob(request: web.Request, target: Target) -> web.StreamResponse:
    cache = request.app[state.BLOBS]
    metrics = request.app[state.METRICS]
    digest = target.reference
    if cache is not None:
        path = cache.lookup(digest)
        if path is not None:
            metrics.hit("blob")
            request[state.SOURCE] = "cache"
            headers = {**API_VERSION_HEADER, "Docker-Content-Digest": digest, "ETag": f'"{digest}"'}
            headers["Content-Type"] = "application/octet-stream"
            return web.FileResponse(path, chunk_size=request.app[state.OPTIONS].chunk_size, headers=headers)
        metrics.miss("blob")
    return await _relay(request, target, f"/v2/{target.repository}/blobs/{digest}", cache_blob=True)


async def _manifest(request: web.Request, target: Target) -> web.StreamResponse:
    manifests = request.app[state.MANIFESTS]
    metrics = request.app[state.METRICS]
    upstream = target.upstream
    assert upstream is not None
    accept = ", ".join(request.headers.getall("Accept", []))
    key = (upstream.host, target.repository, target.reference, accept)
    if manifests is not None:
        entry = manifests.get(key)
        if entry is not None:
            metrics.hit("manifest")
            request[state.SOURCE] = "cache"
            return _bytes_response(request, 200, entry.headers, entry.body)
        metrics.miss("manifest")
    headers = {"Accept": accept} if accept else {}
    path = f"/v2/{target.repository}/manifests/{target.reference}"
    client = request.app[state.CLIENT]
    async with client.open(upstream, request.method, path, headers, target.scope) as resp:
        if resp.status != 200:
            return await _upstream_error(request, target, resp)
        relayed = _relayed_headers(resp, target)
        if request.method == "HEAD":
            return await _head(request, resp, relayed)
        body = await _read_manifest(resp, upstream.host)
        request[state.SOURCE] = "upstream"
    if target.is_digest and not _matches(body, target.reference):
        raise UpstreamFault(502, f"{upstream.host} sent a manifest that does not match {target.reference}")
    if manifests is not None:
        manifests.put(key, body, relayed, by_digest=target.is_digest)
    return _bytes_response(request, 200, relayed, body)


async def _relay(
    request: web.Request, target: Target, path: str, *, cache_blob: bool = False
) -> web.StreamResponse:
    upstream = target.upstream
    assert upstream is not None
    forwarded = {name: request.headers[name] for name in _FORWARDED if name in request.headers}
    # Only a tag list takes a query (n, last); ns is the proxy's own and stays here.
    query = _without_ns(request) if target.kind == "tags" else ""
    if query:
        path = f"{path}?{query}"
    client = request.app[state.CLIENT]
    async with client.open(upstream, request.method, path, forwarded, target.scope) as resp:
        if resp.status not in (200, 206, 304):
            return await _upstream_error(request, target, resp)
        relayed = _relayed_headers(resp, target)
        if request.method == "HEAD" or resp.status == 304:
            return await _head(request, resp, relayed)
        writer = None
        cache = request.app[state.BLOBS]
        if cache_blob and cache is not None and resp.status == 200 and "Range" not in forwarded:
            writer = cache.begin(target.reference, resp.content_length)
        return await _stream(request, resp, relayed, writer)


async def _stream(
    request: web.Request, resp: aiohttp.ClientResponse, headers: CIMultiDict[str], writer: CacheWriter | None
) -> web.StreamResponse:
    out = web.StreamResponse(status=resp.status, headers=headers)
    if resp.content_length is not None:
        out.content_length = resp.content_length
    request[state.SOURCE] = "upstream"
    _widen_send_buffer(request)
    counter = [0]
    try:
        await out.prepare(request)
        if writer is None:
            # iter_any hands over each received buffer as is; iter_chunked would join them (a copy).
            async for chunk in resp.content.iter_any():
                await out.write(chunk)
                counter[0] += len(chunk)
        else:
            await _stream_caching(resp, out, writer, counter)
        await out.write_eof()
    except Exception as exc:
        _cut(request, exc)
    finally:
        request[state.SENT] = counter[0]
    return out


async def _stream_caching(
    resp: aiohttp.ClientResponse, out: web.StreamResponse, writer: CacheWriter, counter: list[int]
) -> None:
    """Relay and cache at once. Hashing and the file write run in a worker thread (both release the
    GIL), one chunk at a time, overlapping the network; the last chunk is held back until the digest
    is checked, so a body that does not match is cut, not sent whole."""
    loop = asyncio.get_running_loop()
    hashing: asyncio.Future[None] | None = None
    batch: list[bytes] = []
    batched = 0
    pending = b""
    try:
        async for chunk in resp.content.iter_any():
            batch.append(chunk)
            batched += len(chunk)
            # Batches, not chunks, go to the worker: a thread hand-off per 64 KiB costs more than it saves.
            if batched >= _HASH_BATCH:
                if hashing is not None:
                    await hashing
                hashing = loop.run_in_executor(None, writer.write_all, batch)
                batch, batched = [], 0
            if pending:
                await out.write(pending)
                counter[0] += len(pending)
            pending = chunk
        if hashing is not None:
            await hashing
            hashing = None
        writer.write_all(batch)
        if not writer.commit() and not writer.failed:
            raise UpstreamFault(502, f"blob {writer.digest} from upstream does not match its digest")
        if pending:
            await out.write(pending)
            counter[0] += len(pending)
    finally:
        # Also on cancellation: the temp file goes, once the worker is done with it.
        if hashing is not None and not hashing.done():
            hashing.add_done_callback(lambda _: writer.abort())
        else:
            writer.abort()


def _widen_send_buffer(request: web.Request) -> None:
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


def _cut(request: web.Request, exc: BaseException) -> None:
    """End a response that has started: close the connection so the client cannot take it as whole."""
    if not isinstance(exc, (ConnectionResetError, aiohttp.ClientConnectionResetError)):
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


async def _head(
    request: web.Request, resp: aiohttp.ClientResponse, headers: CIMultiDict[str]
) -> web.StreamResponse:
    out = web.StreamResponse(status=resp.status, headers=headers)
    if resp.content_length is not None:
        out.content_length = resp.content_length
    request[state.SOURCE] = "upstream"
    await out.prepare(request)
    await out.write_eof()
    return out


async def _upstream_error(
    request: web.Request, target: Target, resp: aiohttp.ClientResponse
) -> web.StreamResponse:
    """Relay a registry's refusal (404, 400, 403, 429) as is; a 5xx becomes the proxy's own fault."""
    host = target.upstream.host if target.upstream else "?"
    if resp.status >= 500:
        status = resp.status if resp.status in (503, 504) else 502
        raise UpstreamFault(status, f"{host} answered {resp.status} for {target.repository}")
    body = b"" if request.method == "HEAD" else (await _read_at_most(resp, _ERROR_BODY_MAX, cut=True) or b"")
    headers = CIMultiDict(API_VERSION_HEADER)
    if body.lstrip().startswith(b"{") and b'"errors"' in body:
        headers["Content-Type"] = "application/json"
    elif request.method != "HEAD":
        code = _UNKNOWN_CODE.get(target.kind, "UNKNOWN") if resp.status == 404 else "UNKNOWN"
        body = error_body(code, f"{host} answered {resp.status} for {target.repository}")
        headers["Content-Type"] = "application/json"
    if "Retry-After" in resp.headers:
        headers["Retry-After"] = resp.headers["Retry-After"]
    return _bytes_response(request, resp.status, headers, body)


def _bytes_response(
    request: web.Request, status: int, headers: CIMultiDict[str], body: bytes
) -> web.Response:
    # aiohttp sends no body for HEAD and keeps the Content-Length of the one it would have sent.
    return web.Response(status=status, body=body, headers=headers)


def _relayed_headers(resp: aiohttp.ClientResponse, target: Target) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict(API_VERSION_HEADER)
    for name in _RELAYED:
        if name in resp.headers:
            headers[name] = resp.headers[name]
    if target.kind == "blob" and "Docker-Content-Digest" not in headers:
        # Blob storage behind a redirect does not send it; the digest is the blob's name.
        headers["Docker-Content-Digest"] = target.reference
    if "Link" in headers and target.upstream is not None:
        headers["Link"] = headers["Link"].replace(f"/v2/{target.repository}/", f"/v2/{target.client_name}/")
    return headers


async def _read_manifest(resp: aiohttp.ClientResponse, host: str) -> bytes:
    if resp.content_length is not None and resp.content_length > MANIFEST_MAX:
        raise UpstreamFault(502, f"{host} sent a manifest larger than {MANIFEST_MAX} bytes")
    body = await _read_at_most(resp, MANIFEST_MAX)
    if body is None:
        raise UpstreamFault(502, f"{host} sent a manifest larger than {MANIFEST_MAX} bytes")
    return body


async def _read_at_most(resp: aiohttp.ClientResponse, limit: int, *, cut: bool = False) -> bytes | None:
    """The body if it is at most ``limit`` bytes; else its first ``limit`` bytes if ``cut``, or None."""
    parts: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(parts)[:limit] if cut else None
    return b"".join(parts)


def _matches(body: bytes, digest: str) -> bool:
    algorithm, _, hex_part = digest.partition(":")
    return hashlib.new(algorithm, body).hexdigest() == hex_part


def _without_ns(request: web.Request) -> str:
    from urllib.parse import urlencode

    return urlencode([(k, v) for k, v in request.query.items() if k != "ns"])
