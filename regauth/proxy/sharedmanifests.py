"""Manifests by digest through the shared bucket (``sharedcache.py``), under the same rule as blobs: one
is answered for (upstream, repository) only once that upstream delivered it (to any instance) and
delivered or confirmed it for that repository (a ``HEAD`` first otherwise). Its bytes are checked
against the digest again when read back: the bucket is trusted no more than an upstream."""

from __future__ import annotations

import hashlib

from aiohttp import web
from multidict import CIMultiDict

from regauth.proxy import state
from regauth.proxy.errors import API_VERSION_HEADER, UpstreamFault
from regauth.proxy.manifestcache import ANY, AcceptKey, accept_header
from regauth.proxy.relay import upstream_error
from regauth.proxy.routing import Target
from regauth.proxy.sharedblobs import call
from regauth.proxy.sharedcache import SharedCache


async def from_bucket(
    request: web.Request, target: Target, shared: SharedCache, accept: AcceptKey
) -> web.StreamResponse | None:
    """The bucket's manifest for ``target`` (a digest); the upstream's refusal for this repository; or
    None to ask the upstream."""
    assert target.upstream is not None
    host, repository, digest = target.upstream.host, target.repository, target.reference
    facts = await call("reading confirmations", None, shared.facts, digest)
    if facts is None or host not in facts.delivered_by:
        return None
    found = await call("reading a manifest", None, shared.get_manifest, digest)
    if found is None:
        return None
    body, media_type = found
    algorithm, _, hex_part = digest.partition(":")
    if hashlib.new(algorithm, body).hexdigest() != hex_part or (
        media_type not in accept and ANY not in accept
    ):
        return None
    if (host, repository) not in facts.pairs:
        refusal = await _confirm(request, target, accept)
        if refusal is not None:
            return refusal
        await call(
            "recording a confirmation", None, shared.remember, host, repository, digest, delivered=False
        )
    request.app[state.METRICS].hit("manifest")
    request[state.SOURCE] = "shared-cache"
    headers = CIMultiDict(API_VERSION_HEADER)
    headers["Content-Type"] = media_type
    headers["Docker-Content-Digest"] = digest
    return web.Response(status=200, body=body, headers=headers)


async def keep(shared: SharedCache, target: Target, body: bytes, headers: CIMultiDict[str]) -> None:
    """A manifest fetched by digest and matched: who delivered it first, then the bytes."""
    assert target.upstream is not None
    digest = target.reference
    await call(
        "recording a delivery",
        None,
        shared.remember,
        target.upstream.host,
        target.repository,
        digest,
        delivered=True,
    )
    media_type = headers.get("Content-Type", "application/octet-stream")
    await call("writing a manifest", None, shared.put_manifest, digest, body, media_type)


async def _confirm(request: web.Request, target: Target, accept: AcceptKey) -> web.StreamResponse | None:
    assert target.upstream is not None
    client = request.app[state.CLIENT]
    path = f"/v2/{target.repository}/manifests/{target.reference}"
    async with client.open(target.upstream, "HEAD", path, accept_header(accept), target.scope) as resp:
        if resp.status == 200:
            return None
        if resp.status < 400:
            raise UpstreamFault(502, f"{target.upstream.host} answered {resp.status} to a HEAD of a manifest")
        return await upstream_error(request, target, resp)
