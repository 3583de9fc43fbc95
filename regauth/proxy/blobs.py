"""``/v2/<name>/blobs/<digest>``: from the cache where the upstream would serve it, else relayed, verified.

A cached blob is answered for (upstream, repository) only when that upstream has delivered the blob or
confirmed it for that repository (``confirmations.py``). When it has delivered it for another of its
repositories, a ``HEAD`` with the proxy's credential for this one asks first: 200 serves the cache, a
refusal (404, 403) is relayed. An upstream that never delivered the blob is sent the request itself,
as on a miss: the cache holds only what some registry sent, not what this one has.

Every blob relayed whole (a 200) is hashed as it passes, with or without a cache, and cut before its
last chunk when it does not match its digest. A 206 (a Range the upstream honoured) cannot be checked:
a part has no digest of its own.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from regauth.proxy import sharedblobs, state
from regauth.proxy.blobcache import BlobCache, Verifier
from regauth.proxy.errors import API_VERSION_HEADER, UpstreamFault
from regauth.proxy.flights import Flight, Writer
from regauth.proxy.relay import corked, head, relayed_headers, stream, upstream_error, widen_send_buffer
from regauth.proxy.routing import Target
from regauth.proxy.sharedcache import SharedCache

_FORWARDED = ("Range", "If-Range", "If-None-Match")
# Times a pull looks again after the fetch it followed ended before its first byte; then it fetches.
_ROUNDS = 4


async def blob(request: web.Request, target: Target) -> web.StreamResponse:
    cache = request.app[state.BLOBS]
    if cache is not None:
        if target.reference in cache:
            answer = await _from_cache(request, target, cache)
            if answer is not None:
                return answer
        request.app[state.METRICS].miss("blob")
    if not _shareable(request):
        return await _relay(request, target, cache, None)
    return await _shared_get(request, target, cache)


async def _shared_get(request: web.Request, target: Target, cache: BlobCache | None) -> web.StreamResponse:
    """A GET of a whole blob that is not in the local cache: follow this instance's fetch of it, or
    read it from the shared bucket, or lead the fetch. A fetch that ends before its first byte sends
    its followers round again (another instance may have published the blob meanwhile)."""
    assert target.upstream is not None
    flights = request.app[state.FLIGHTS]
    shared = request.app[state.SHARED]
    in_bucket_checked = False
    for _ in range(_ROUNDS):
        flight = flights.find(target.upstream.host, target.reference)
        if flight is not None:
            answer = await _follow(request, target, flight, cache)
            if answer is not None:
                return answer
            in_bucket_checked = False
        elif shared is not None and not in_bucket_checked:
            answer = await sharedblobs.from_bucket(
                request, target, shared, lambda: _confirm(request, target, cache)
            )
            if answer is not None:
                return answer
            in_bucket_checked = True
        else:
            # No await since find(): this request is the one that fetches.
            return await _lead(request, target, cache)
    return await _relay(request, target, cache, None)


def _shareable(request: web.Request) -> bool:
    """A plain GET of the whole blob: what a shared fetch answers (a Range or a condition is relayed)."""
    return request.method == "GET" and not any(name in request.headers for name in _FORWARDED)


async def _follow(
    request: web.Request, target: Target, flight: Flight, cache: BlobCache | None
) -> web.StreamResponse | None:
    """Stream ``flight``'s blob once the upstream confirmed it for this repository; its refusal if it
    does not; None to fetch it (the flight ended before its first byte)."""
    assert target.upstream is not None
    # Joined at once: the file stays open for this pull from now on, however soon the fetch ends.
    request.app[state.FLIGHTS].follow(flight)
    try:
        if flight.repository != target.repository:
            refusal = await _confirm(request, target, cache)
            if refusal is not None:
                return refusal
        if not await flight.wait_started():
            return None
        out, whole = await flight.serve(request)
    finally:
        flight.leave()
    if whole and cache is not None:
        # Published by now; the leader's delivery, and this repository's HEAD or own leader, count.
        cache.remember(target.upstream.host, target.repository, target.reference, delivered=False)
    return out


async def _from_cache(request: web.Request, target: Target, cache: BlobCache) -> web.StreamResponse | None:
    """The cached blob if this upstream serves it for this repository; its refusal if it does not; None
    to fetch it from the upstream."""
    assert target.upstream is not None
    host, repository, digest = target.upstream.host, target.repository, target.reference
    if not cache.seen.knows(host, repository, digest):
        if not cache.seen.delivered_by(host, digest):
            return None
        refusal = await _confirm(request, target, cache)
        if refusal is not None:
            return refusal
    path = cache.lookup(digest)
    if path is None:
        return None
    request[state.SOURCE] = "cache"
    request.app[state.METRICS].hit("blob")
    headers = {**API_VERSION_HEADER, "Docker-Content-Digest": digest, "ETag": f'"{digest}"'}
    headers["Content-Type"] = "application/octet-stream"
    widen_send_buffer(request)
    return _CachedFile(path, chunk_size=request.app[state.OPTIONS].chunk_size, headers=headers)


class _CachedFile(web.FileResponse):
    """A cached blob, sent with sendfile straight from the page cache (aiohttp's ``FileResponse``: also
    Range and conditional requests), corked, so that it leaves in full segments. The file was verified
    when it was written: it is not hashed again. Measured on loopback: with the wider send buffer and
    the cork, hits went from about 0.9x of nginx serving the same file to par with it."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        with corked(request):
            return await super().prepare(request)


async def _confirm(
    request: web.Request, target: Target, cache: BlobCache | None
) -> web.StreamResponse | None:
    """Ask the upstream whether it serves the blob for this repository: None if so, else its refusal."""
    assert target.upstream is not None
    client = request.app[state.CLIENT]
    path = f"/v2/{target.repository}/blobs/{target.reference}"
    async with client.open(target.upstream, "HEAD", path, {}, target.scope) as resp:
        if resp.status == 200:
            if cache is not None:
                cache.remember(target.upstream.host, target.repository, target.reference, delivered=False)
            return None
        if resp.status < 400:
            raise UpstreamFault(502, f"{target.upstream.host} answered {resp.status} to a HEAD of a blob")
        return await upstream_error(request, target, resp)


async def _lead(request: web.Request, target: Target, cache: BlobCache | None) -> web.StreamResponse:
    assert target.upstream is not None
    # Taken before the request goes out: pulls that arrive while it is on its way follow this one.
    flight = request.app[state.FLIGHTS].begin(target.upstream.host, target.repository, target.reference)
    if flight is None:
        return await _relay(request, target, cache, None)
    # In a task of its own: if this request's handler is cancelled (its client went away, with
    # handler cancellation on), the fetch goes on for the pulls that stream from it.
    task = asyncio.ensure_future(_relay(request, target, cache, flight))
    task.add_done_callback(_retrieve)
    # However it ends, cancelled too (before its first step, or while it waits its turn in the
    # shared bucket): a flight left under way would hold every later pull of the blob.
    task.add_done_callback(lambda _: flight.end(False))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if flight.followers == 0:
            task.cancel()
        raise


def _retrieve(task: asyncio.Future[web.StreamResponse]) -> None:
    # A fetch that outlived its handler has no one to raise to; what went wrong is logged by the relay.
    if not task.cancelled():
        task.exception()


async def _relay(
    request: web.Request, target: Target, cache: BlobCache | None, flight: Flight | None
) -> web.StreamResponse:
    shared = request.app[state.SHARED] if flight is not None else None
    if shared is None:
        return await _relay_upstream(request, target, cache, flight, None)
    assert flight is not None and target.upstream is not None
    # One instance fetches a cold blob; the others wait for it to land in the bucket.
    generation = await sharedblobs.turn(shared, target.reference)
    if generation is None:
        if not await sharedblobs.delivered_by(shared, target.upstream.host, target.reference):
            # Published from another upstream's delivery: this one is asked itself, once for this
            # instance's pulls, and its delivery of the same bytes recorded for the next ones.
            return await _relay_upstream(request, target, cache, flight, None, record=shared)
        flight.end(False)  # this instance's other pulls read the bucket too
        answer = await sharedblobs.from_bucket(
            request, target, shared, lambda: _confirm(request, target, cache)
        )
        if answer is not None:
            return answer
        return await _relay_upstream(request, target, cache, None, None)
    async with sharedblobs.holding(shared, target.reference, generation):
        return await _relay_upstream(request, target, cache, flight, shared)


async def _relay_upstream(
    request: web.Request,
    target: Target,
    cache: BlobCache | None,
    flight: Flight | None,
    shared: SharedCache | None,
    *,
    record: SharedCache | None = None,
) -> web.StreamResponse:
    """``shared``: upload the blob to the bucket; ``record``: it is there already, only note this
    upstream's delivery of it."""
    upstream = target.upstream
    assert upstream is not None
    digest = target.reference
    forwarded = {name: request.headers[name] for name in _FORWARDED if name in request.headers}
    client = request.app[state.CLIENT]
    path = f"/v2/{target.repository}/blobs/{digest}"
    uploading: sharedblobs.SharedWriter | None = None
    try:
        async with client.open(upstream, request.method, path, forwarded, target.scope) as resp:
            if resp.status not in (200, 206, 304):
                return await upstream_error(request, target, resp)
            if resp.status == 206 and "Range" not in forwarded:
                # Part of a blob asked for whole: nothing to check it against, nor what was asked.
                raise UpstreamFault(
                    502, f"{upstream.host} answered part of {digest} to a request for all of it"
                )
            headers = relayed_headers(resp, target)
            confirmed = resp.status == 206 or (resp.status == 200 and request.method == "HEAD")
            if cache is not None and confirmed:
                # It has the blob for this repository; that it has its bytes, only once a whole body
                # matched.
                cache.remember(upstream.host, target.repository, digest, delivered=False)
            if request.method == "HEAD" or resp.status == 304:
                return await head(request, resp, headers)
            if resp.status == 206:
                out, _ = await stream(request, resp, headers, None)
                return out
            flights = request.app[state.FLIGHTS]
            writer: Writer | None = cache.begin(digest, resp.content_length) if cache is not None else None
            if shared is not None:
                base = writer or flights.spool(digest)
                if base is not None:
                    writer = uploading = sharedblobs.SharedWriter(base, shared.upload(digest))
            if flight is not None:
                sink = flights.feed(flight, writer, headers, resp.content_length)
            else:
                sink = writer or Verifier(digest)
            out, whole = await stream(request, resp, headers, sink)
    finally:
        if flight is not None:
            flight.end(False)
    # Delivered whole and matched, also when the fetch went on for followers after its client left.
    delivered = whole or (flight is not None and flight.outcome is True)
    if delivered and cache is not None:
        cache.remember(upstream.host, target.repository, digest, delivered=True)
    if uploading is not None and shared is not None:
        await sharedblobs.publish(shared, uploading, upstream.host, target.repository)
    if delivered and record is not None:
        await sharedblobs.call(
            "recording a delivery",
            None,
            record.remember,
            upstream.host,
            target.repository,
            digest,
            delivered=True,
        )
    return out
