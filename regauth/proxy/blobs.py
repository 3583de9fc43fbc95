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

from aiohttp import web

from regauth.proxy import state
from regauth.proxy.blobcache import BlobCache, Verifier
from regauth.proxy.errors import API_VERSION_HEADER, UpstreamFault
from regauth.proxy.relay import head, relayed_headers, stream, upstream_error
from regauth.proxy.routing import Target

_FORWARDED = ("Range", "If-Range", "If-None-Match")


async def blob(request: web.Request, target: Target) -> web.StreamResponse:
    cache = request.app[state.BLOBS]
    metrics = request.app[state.METRICS]
    if cache is None:
        return await _fetch(request, target, None)
    if target.reference in cache:
        answer = await _from_cache(request, target, cache)
        if answer is not None:
            return answer
    metrics.miss("blob")
    return await _fetch(request, target, cache)


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
    return web.FileResponse(path, chunk_size=request.app[state.OPTIONS].chunk_size, headers=headers)


async def _confirm(request: web.Request, target: Target, cache: BlobCache) -> web.StreamResponse | None:
    """Ask the upstream whether it serves the blob for this repository: None if so, else its refusal."""
    assert target.upstream is not None
    client = request.app[state.CLIENT]
    path = f"/v2/{target.repository}/blobs/{target.reference}"
    async with client.open(target.upstream, "HEAD", path, {}, target.scope) as resp:
        if resp.status == 200:
            cache.remember(target.upstream.host, target.repository, target.reference, delivered=False)
            return None
        if resp.status < 400:
            raise UpstreamFault(502, f"{target.upstream.host} answered {resp.status} to a HEAD of a blob")
        return await upstream_error(request, target, resp)


async def _fetch(request: web.Request, target: Target, cache: BlobCache | None) -> web.StreamResponse:
    upstream = target.upstream
    assert upstream is not None
    digest = target.reference
    forwarded = {name: request.headers[name] for name in _FORWARDED if name in request.headers}
    client = request.app[state.CLIENT]
    path = f"/v2/{target.repository}/blobs/{digest}"
    async with client.open(upstream, request.method, path, forwarded, target.scope) as resp:
        if resp.status not in (200, 206, 304):
            return await upstream_error(request, target, resp)
        headers = relayed_headers(resp, target)
        confirmed = resp.status == 206 or (resp.status == 200 and request.method == "HEAD")
        if cache is not None and confirmed:
            # It has the blob for this repository; that it has its bytes, only once a whole body matched.
            cache.remember(upstream.host, target.repository, digest, delivered=False)
        if request.method == "HEAD" or resp.status == 304:
            return await head(request, resp, headers)
        if resp.status == 206:
            out, _ = await stream(request, resp, headers, None)
            return out
        writer = cache.begin(digest, resp.content_length) if cache is not None else None
        out, whole = await stream(request, resp, headers, writer or Verifier(digest))
    if whole and cache is not None:
        cache.remember(upstream.host, target.repository, digest, delivered=True)
    return out
