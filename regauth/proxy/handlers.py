"""The V2 pull API: ``/v2/``, manifests, blobs, tag lists and referrers, relayed from the routed upstream.

Blobs are ``blobs.py``'s; how bodies stream and refusals are relayed is ``relay.py``'s. A manifest is
read whole (it is small, and checked against its digest when asked by one) and kept in the manifest
cache under the ``Accept`` media types the proxy knows, which are also what it asks the upstream for.
"""

from __future__ import annotations

import hashlib
import logging
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from regauth.distribution.errors import UpstreamError
from regauth.distribution.transport import MANIFEST_MAX, TAGS_MAX, read_capped
from regauth.proxy import sharedmanifests, state
from regauth.proxy.blobs import blob
from regauth.proxy.errors import API_VERSION_HEADER, UNSUPPORTED, ApiError, UpstreamFault, as_api_error
from regauth.proxy.manifestcache import Key, accept_header, accept_key
from regauth.proxy.relay import (
    bytes_response,
    head,
    relayed_headers,
    upstream_error,
)
from regauth.proxy.routing import Target, kind_of, parse_target

_FORWARDED = ("Accept", "If-None-Match")
log = logging.getLogger("regauth.proxy")


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
        return await blob(request, target)
    if target.kind == "manifest":
        return await _manifest(request, target)
    if target.kind == "referrers":
        return await _referrers(request, target)
    return await _tags(request, target)


async def _manifest(request: web.Request, target: Target) -> web.StreamResponse:
    manifests = request.app[state.MANIFESTS]
    metrics = request.app[state.METRICS]
    upstream = target.upstream
    assert upstream is not None
    accept = accept_key(request.headers.getall("Accept", []))
    # The repository is part of the key, by digest too: a manifest is answered only where the
    # upstream has answered it.
    key = (upstream.host, target.repository, target.reference, accept)
    if manifests is not None:
        entry = manifests.get(key)
        if entry is not None:
            metrics.hit("manifest")
            request[state.SOURCE] = "cache"
            return bytes_response(200, entry.headers, entry.body)
        metrics.miss("manifest")
    shared = request.app[state.SHARED]
    if shared is not None and target.is_digest and request.method == "GET":
        answer = await sharedmanifests.from_bucket(request, target, shared, accept)
        if answer is not None:
            return answer
    try:
        return await _manifest_upstream(request, target, key)
    except (UpstreamError, UpstreamFault) as exc:
        stale = _stale(request, target, key, as_api_error(exc).message)
        if stale is None:
            raise
        return stale


def _stale(request: web.Request, target: Target, key: Key, why: str) -> web.Response | None:
    """The tag's last known manifest, if serving stale is on and it is young enough, marked stale."""
    manifests = request.app[state.MANIFESTS]
    max_age = request.app[state.OPTIONS].serve_stale
    if manifests is None or max_age <= 0 or target.is_digest or target.upstream is None:
        return None
    found = manifests.stale(key, max_age)
    if found is None:
        return None
    entry, age = found
    request.app[state.METRICS].stale(target.upstream.host)
    request[state.SOURCE] = "stale"
    log.warning(
        "%s:%s: serving its manifest of %.0fs ago: %s", target.client_name, target.reference, age, why
    )
    headers = CIMultiDict(entry.headers)
    # RFC 9111 dropped Warning, but clients and caches still show it; Age says how stale.
    headers["Warning"] = f'110 regauth "Response is Stale: {target.upstream.host} is unreachable"'
    headers["Age"] = str(int(age))
    return bytes_response(200, headers, entry.body)


async def _manifest_upstream(request: web.Request, target: Target, key: Key) -> web.StreamResponse:
    manifests = request.app[state.MANIFESTS]
    upstream = target.upstream
    assert upstream is not None
    accept = key[3]
    path = f"/v2/{target.repository}/manifests/{target.reference}"
    client = request.app[state.CLIENT]
    async with client.open(upstream, request.method, path, accept_header(accept), target.scope) as resp:
        if resp.status == 429 and (stale := _stale(request, target, key, "rate limited (429)")) is not None:
            # Docker Hub's pull limit: what a pull-through proxy is there to ride out.
            return stale
        if resp.status != 200:
            return await upstream_error(request, target, resp)
        relayed = relayed_headers(resp, target)
        if request.method == "HEAD":
            return await head(request, resp, relayed)
        body = await _read_manifest(resp)
        request[state.SOURCE] = "upstream"
    if target.is_digest and not _matches(body, target.reference):
        raise UpstreamFault(502, f"{upstream.host} sent a manifest that does not match {target.reference}")
    if manifests is not None:
        keep = request.app[state.OPTIONS].serve_stale > 0
        manifests.put(key, body, relayed, by_digest=target.is_digest, keep=keep)
    shared = request.app[state.SHARED]
    if shared is not None and target.is_digest:
        await sharedmanifests.keep(shared, target, body, relayed)
    return bytes_response(200, relayed, body)


async def _tags(request: web.Request, target: Target) -> web.StreamResponse:
    # A page of a tag list: n and last, passed on; the Link to the next page is rewritten to here.
    path = f"/v2/{target.repository}/tags/list"
    return await _listing(request, target, path, ("n", "last"), TAGS_MAX, "tag list")


async def _referrers(request: web.Request, target: Target) -> web.StreamResponse:
    # OCI distribution 1.1: an image index of the manifests whose subject is the digest, filtered by
    # artifactType where the registry supports it (it says so in OCI-Filters-Applied, relayed). A 404,
    # from a registry without the API, is passed on: clients then read the referrers tag schema.
    path = f"/v2/{target.repository}/referrers/{target.reference}"
    return await _listing(request, target, path, ("artifactType",), MANIFEST_MAX, "referrers list")


async def _listing(
    request: web.Request, target: Target, path: str, params: tuple[str, ...], cap: int, what: str
) -> web.StreamResponse:
    """A JSON listing relayed whole: read within ``cap`` (a body that never ends is a 502, not an
    endless answer), with the client's query ``params`` passed on and nothing else (``ns`` is the
    proxy's own)."""
    upstream = target.upstream
    assert upstream is not None
    query = urlencode([(k, v) for k, v in request.query.items() if k in params])
    if query:
        path = f"{path}?{query}"
    forwarded = {name: request.headers[name] for name in _FORWARDED if name in request.headers}
    client = request.app[state.CLIENT]
    async with client.open(upstream, request.method, path, forwarded, target.scope) as resp:
        if resp.status not in (200, 304):
            return await upstream_error(request, target, resp)
        relayed = relayed_headers(resp, target, request.query.get("ns"))
        if request.method == "HEAD" or resp.status == 304:
            return await head(request, resp, relayed)
        try:
            body = await read_capped(resp, cap, what)
        except UpstreamError as exc:
            raise UpstreamFault(502, str(exc)) from exc
        request[state.SOURCE] = "upstream"
    return bytes_response(200, relayed, body)


async def _read_manifest(resp: aiohttp.ClientResponse) -> bytes:
    try:
        return await read_capped(resp, MANIFEST_MAX, "manifest")
    except UpstreamError as exc:
        raise UpstreamFault(502, str(exc)) from exc


def _matches(body: bytes, digest: str) -> bool:
    algorithm, _, hex_part = digest.partition(":")
    return hashlib.new(algorithm, body).hexdigest() == hex_part
