"""A cached blob or manifest is answered only where the upstream would answer it: for the repository
of the upstream that delivered it, or one that upstream confirms with a HEAD. A client that knows a
digest from a private registry cannot read it through another repository, another upstream, or an
upstream that answers HEAD 200 for anything."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from aiohttp import web
from support.proxy import (
    Fake,
    add_upstream,
    cached_blobs,
    digest_of,
    fake_app,
    host_of,
    proxy_client,
)

from regauth.config import Settings
from regauth.proxy.confirmations import Confirmations
from regauth.registries import Registry

_OBJECT = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>blobs|manifests)/(?P<ref>sha256:[0-9a-f]{64})$")
Seen = list[tuple[str, str, str | None]]


def private_registry(
    fake: Fake, owners: dict[str, set[str]], seen: Seen, *, lies: bool = False
) -> web.Application:
    """``fake`` serving a digest only under the repositories ``owners`` names for it (404 elsewhere,
    403 for ``org/denied``), as a registry does; ``lies``: answer HEAD 200 for any blob and 404 to
    every GET of one, as a hostile upstream that wants the proxy's cache would."""

    @web.middleware
    async def scoped(request: web.Request, handler: Any) -> web.StreamResponse:
        found = _OBJECT.match(request.path)
        if found is None:
            return await handler(request)
        seen.append((request.method, request.path, request.headers.get("Authorization")))
        if fake.fail_status:
            return web.json_response({"errors": [{"code": "UNAVAILABLE"}]}, status=fake.fail_status)
        if not fake.authorized(request):
            return await handler(request)  # its 401 first, as a registry checks who asks first
        name, ref = found["name"], found["ref"]
        if lies and found["kind"] == "blobs":
            if request.method == "HEAD":
                return web.Response(headers={"Content-Length": "4096", "Docker-Content-Digest": ref})
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN", "message": "no"}]}, status=404)
        if name == "org/denied":
            return web.json_response({"errors": [{"code": "DENIED", "message": "no"}]}, status=403)
        if name not in owners.get(ref, set()):
            code = "BLOB_UNKNOWN" if found["kind"] == "blobs" else "MANIFEST_UNKNOWN"
            return web.json_response({"errors": [{"code": code, "message": "no"}]}, status=404)
        return await handler(request)

    app = fake_app(fake)
    app.middlewares.append(scoped)
    return app


async def _registry(
    aiohttp_server: Any, fake: Fake, owners: dict[str, set[str]], *, lies: bool = False
) -> tuple[str, Seen]:
    seen: Seen = []
    server = await aiohttp_server(private_registry(fake, owners, seen, lies=lies))
    fake.url = str(server.make_url("")).rstrip("/")
    return host_of(server), seen


async def _two_upstreams(aiohttp_server: Any, settings: Settings, *, lies: bool = False) -> dict[str, Any]:
    """A private Basic-auth registry holding one image under org/a and org/c, and a public one that
    holds nothing (or lies)."""
    private = Fake(auth="basic")
    image = private.add_image(size=200_000)
    layer = digest_of(image["layer"])
    owners = {layer: {"org/a", "org/c"}, image["digest"]: {"org/a"}}
    host, seen = await _registry(aiohttp_server, private, owners)
    public_host, public_seen = await _registry(aiohttp_server, Fake(auth="none"), {}, lies=lies)
    book = add_upstream(settings, host, name="private")
    book.add(Registry(id="", name="public", registry=public_host, insecure=True), None)
    return {
        "fake": private,
        "image": image,
        "layer": layer,
        "seen": seen,
        "public_seen": public_seen,
        "book": book,
    }


async def _status(client: Any, method: str, path: str) -> tuple[int, bytes]:
    async with client.request(method, path) as resp:
        return resp.status, await resp.read()


async def test_a_cached_blob_is_not_served_for_another_repository_or_upstream(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    up = await _two_upstreams(aiohttp_server, settings)
    client = await proxy_client(aiohttp_client, settings, up["book"], cache_dir=tmp_path / "c")
    layer, seen, public_seen = up["layer"], up["seen"], up["public_seen"]
    assert await _status(client, "GET", f"/v2/private/org/a/blobs/{layer}") == (200, up["image"]["layer"])
    assert len(cached_blobs(tmp_path / "c")) == 1
    seen.clear()

    # Another repository of the same registry: asked first, with the proxy's credential; its 404 stands.
    for method in ("GET", "HEAD"):
        status, body = await _status(client, method, f"/v2/private/org/b/blobs/{layer}")
        assert status == 404 and up["image"]["layer"] not in body
    assert [(m, p) for m, p, _ in seen] == [("HEAD", f"/v2/org/b/blobs/{layer}")] * 2
    assert all(auth is not None and auth.startswith("Basic ") for _, _, auth in seen)
    status, _ = await _status(client, "GET", f"/v2/private/org/denied/blobs/{layer}")
    assert status == 403 and seen[-1][:2] == ("HEAD", f"/v2/org/denied/blobs/{layer}")

    # Another upstream, which never sent these bytes: it is asked for the blob itself, and has none.
    status, body = await _status(client, "GET", f"/v2/public/org/a/blobs/{layer}")
    assert status == 404 and up["image"]["layer"] not in body
    assert [(m, p) for m, p, _ in public_seen] == [("GET", f"/v2/org/a/blobs/{layer}")]

    # A repository that has it: one HEAD, then served from the cache with no GET upstream, and later
    # with no request at all.
    seen.clear()
    for _ in range(2):
        assert await _status(client, "GET", f"/v2/private/org/c/blobs/{layer}") == (200, up["image"]["layer"])
    assert [(m, p) for m, p, _ in seen] == [("HEAD", f"/v2/org/c/blobs/{layer}")]


async def test_an_upstream_answering_head_200_for_anything_gets_nothing_from_the_cache(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    up = await _two_upstreams(aiohttp_server, settings, lies=True)
    client = await proxy_client(aiohttp_client, settings, up["book"], cache_dir=tmp_path / "c")
    layer = up["layer"]
    assert (await _status(client, "GET", f"/v2/private/org/a/blobs/{layer}"))[0] == 200
    # It confirms the digest for any repository, but it never delivered the bytes itself.
    assert (await _status(client, "HEAD", f"/v2/public/org/x/blobs/{layer}"))[0] == 200
    for _ in range(2):
        status, body = await _status(client, "GET", f"/v2/public/org/x/blobs/{layer}")
        assert status == 404 and up["image"]["layer"] not in body
    assert [m for m, _, _ in up["public_seen"]] == ["HEAD", "GET", "GET"]


async def test_confirmations_survive_a_restart_and_an_upstream_outage(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    up = await _two_upstreams(aiohttp_server, settings)
    cache = tmp_path / "c"
    first = await proxy_client(aiohttp_client, settings, up["book"], cache_dir=cache)
    layer, seen = up["layer"], up["seen"]
    for repo in ("org/a", "org/c"):
        assert (await _status(first, "GET", f"/v2/private/{repo}/blobs/{layer}"))[0] == 200
    assert (await _status(first, "GET", f"/v2/private/org/b/blobs/{layer}"))[0] == 404
    seen.clear()

    # Restarted while the upstream is down: what it delivered or confirmed is still served.
    up["fake"].fail_status = 503
    again = await proxy_client(aiohttp_client, settings, up["book"], cache_dir=cache)
    for repo in ("org/a", "org/c"):
        assert await _status(again, "GET", f"/v2/private/{repo}/blobs/{layer}") == (200, up["image"]["layer"])
    assert seen == []
    assert (await _status(again, "GET", f"/v2/private/org/b/blobs/{layer}"))[0] == 503
    # A refusal is not remembered: org/b is asked again (and could have been given the blob since).
    up["fake"].fail_status = None
    seen.clear()
    assert (await _status(again, "GET", f"/v2/private/org/b/blobs/{layer}"))[0] == 404
    assert [(m, p) for m, p, auth in seen if auth] == [("HEAD", f"/v2/org/b/blobs/{layer}")]


async def test_a_cached_manifest_by_digest_is_not_served_for_another_repository_or_upstream(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    up = await _two_upstreams(aiohttp_server, settings)
    client = await proxy_client(aiohttp_client, settings, up["book"], cache_dir=tmp_path / "c")
    digest, manifest, seen = up["image"]["digest"], up["image"]["manifest"], up["seen"]
    for _ in range(2):
        assert await _status(client, "GET", f"/v2/private/org/a/manifests/{digest}") == (200, manifest)
    assert len([auth for _, _, auth in seen if auth]) == 1
    for path in (f"/v2/private/org/b/manifests/{digest}", f"/v2/public/org/a/manifests/{digest}"):
        status, body = await _status(client, "GET", path)
        assert status == 404 and manifest not in body
    assert seen[-1][:2] == ("GET", f"/v2/org/b/manifests/{digest}")
    assert [(m, p) for m, p, _ in up["public_seen"]] == [("GET", f"/v2/org/a/manifests/{digest}")]


def test_confirmations_bounded_in_memory_read_again_from_their_file(tmp_path: Path) -> None:
    blob, other = (digest_of(os.urandom(8)) for _ in range(2))
    seen = Confirmations(tmp_path, max_pairs=3)
    seen.remember("h", "org/a", blob, delivered=True)
    seen.remember("h", "org/b", blob, delivered=False)
    assert seen.knows("h", "org/a", blob) and seen.knows("h", "org/b", blob)
    # Confirmed by another upstream that never delivered it: not enough.
    seen.remember("g", "org/a", blob, delivered=False)
    assert not seen.knows("g", "org/a", blob) and not seen.delivered_by("g", blob)
    # Over the bound, the least recently used blob leaves memory; its file brings it back.
    seen.remember("h", "org/x", other, delivered=True)
    assert seen.knows("h", "org/x", other) and seen.knows("h", "org/b", blob)
    path = tmp_path / "sha256" / blob[7:9] / blob[7:]
    path.write_text(path.read_text() + "d h org/torn")  # a line cut by a crash mid-append
    fresh = Confirmations(tmp_path)
    assert fresh.knows("h", "org/a", blob) and fresh.knows("h", "org/b", blob)
    assert not fresh.knows("h", "org/torn", blob)
    fresh.prune({other})
    assert not path.exists() and Confirmations(tmp_path).knows("h", "org/x", other)
    fresh.forget(other)
    assert not Confirmations(tmp_path).knows("h", "org/x", other)
