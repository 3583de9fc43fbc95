"""Refusals and upstream faults: the client always gets the registry error JSON or a cut body, never a
hang or a short 200 that looks complete, and the proxy keeps serving."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.proxy import (
    MANIFEST_V2,
    Fake,
    add_upstream,
    cache_files,
    cached_blobs,
    digest_of,
    host_of,
    proxy_client,
    start_fake,
)

from regauth.config import Settings


async def _setup(aiohttp_server: Any, aiohttp_client: Any, settings: Settings, fake: Fake, **options: Any):  # type: ignore[no-untyped-def]
    image = fake.add_image(size=256 * 1024)
    server = await start_fake(aiohttp_server, fake)
    book = add_upstream(settings, host_of(server), username=None if fake.auth == "none" else "proxyuser")
    client = await proxy_client(aiohttp_client, settings, book, **options)
    return image, server, client


async def _error(resp: aiohttp.ClientResponse, *, relayed: bool = False) -> dict[str, Any]:
    assert resp.headers["Content-Type"].startswith("application/json")
    body = await resp.json()
    (entry,) = body["errors"]
    # The proxy's own errors have all three fields; a registry's own error is relayed as it came.
    assert relayed or (set(entry) == {"code", "message", "detail"} and entry["message"])
    return entry


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE", "PATCH"])
async def test_pull_only(aiohttp_server: Any, aiohttp_client: Any, settings: Settings, method: str) -> None:
    _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, Fake(auth="none"))
    resp = await client.request(method, "/v2/fake/org/app/manifests/1.0", data=b"{}")
    assert resp.status == 405
    assert (await _error(resp))["code"] == "UNSUPPORTED"


async def test_paths_outside_v2_get_the_error_json(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, Fake(auth="none"))
    for path in ("/", "/v1/_ping", "/v2/_catalog"):
        resp = await client.get(path)
        assert resp.status in (404, 405)
        assert (await _error(resp))["code"] == "UNSUPPORTED"


async def test_upload_path_is_refused(aiohttp_server: Any, aiohttp_client: Any, settings: Settings) -> None:
    _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, Fake(auth="none"))
    resp = await client.get("/v2/fake/org/app/blobs/uploads/")
    assert resp.status == 405 and (await _error(resp))["code"] == "UNSUPPORTED"


@pytest.mark.parametrize(
    "path",
    [
        "/v2/evil.example.com/org/app/manifests/1.0",
        "/v2/org/app/manifests/1.0?ns=evil.example.com",
        "/v2/localhost:9/org/app/manifests/1.0",
    ],
)
async def test_never_an_open_proxy(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, path: str
) -> None:
    fake = Fake(auth="none")
    _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, fake)
    before = len(fake.seen)
    resp = await client.get(path)
    assert resp.status == 403
    entry = await _error(resp)
    assert entry["code"] == "DENIED" and "not a registry configured on this proxy" in entry["message"]
    assert len(fake.seen) == before


async def test_no_prefix_without_docker_hub(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, Fake(auth="none"))
    resp = await client.get("/v2/library/alpine/manifests/latest")
    assert resp.status == 404
    entry = await _error(resp)
    assert entry["code"] == "NAME_UNKNOWN" and "Docker Hub is not enabled" in entry["message"]


async def test_upstream_404_is_relayed(aiohttp_server: Any, aiohttp_client: Any, settings: Settings) -> None:
    _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, Fake(auth="none"))
    resp = await client.get("/v2/fake/org/app/manifests/nope")
    assert resp.status == 404 and (await _error(resp, relayed=True))["code"] == "MANIFEST_UNKNOWN"


@pytest.mark.parametrize(("upstream", "expected"), [(500, 502), (502, 502), (503, 503)])
async def test_upstream_5xx(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, upstream: int, expected: int
) -> None:
    fake = Fake(auth="none")
    _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, fake)
    fake.fail_status = upstream
    resp = await client.get("/v2/fake/org/app/manifests/1.0")
    assert resp.status == expected
    assert (await _error(resp))["code"] == "UNAVAILABLE"
    fake.fail_status = None
    resp = await client.get("/v2/fake/org/app/manifests/1.0", headers={"Accept": MANIFEST_V2})
    assert resp.status == 200


async def test_reset_mid_blob_cuts_the_client_and_leaves_cache_clean(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    fake = Fake(auth="bearer", cut_blob=True)
    cache = tmp_path / "cache"
    image, _, client = await _setup(aiohttp_server, aiohttp_client, settings, fake, cache_dir=cache)
    path = f"/v2/fake/org/app/blobs/{digest_of(image['layer'])}"
    with pytest.raises(aiohttp.ClientPayloadError):
        async with client.get(path) as resp:
            assert resp.status == 200
            await asyncio.wait_for(resp.read(), timeout=20)
    assert cache_files(cache) == []
    fake.cut_blob = False
    async with client.get(path) as resp:
        assert await resp.read() == image["layer"]
    assert len(cached_blobs(cache)) == 1


async def test_corrupt_blob_is_cut_and_never_cached(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    fake = Fake(auth="none", corrupt_blob=True)
    cache = tmp_path / "cache"
    image, _, client = await _setup(aiohttp_server, aiohttp_client, settings, fake, cache_dir=cache)
    with pytest.raises(aiohttp.ClientPayloadError):
        async with client.get(f"/v2/fake/org/app/blobs/{digest_of(image['layer'])}") as resp:
            await asyncio.wait_for(resp.read(), timeout=20)
    assert cache_files(cache) == []


async def test_slow_upstream_times_out(aiohttp_server: Any, aiohttp_client: Any, settings: Settings) -> None:
    fake = Fake(auth="none")
    _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, fake, read_timeout=0.3)
    fake.slow = 5.0
    resp = await asyncio.wait_for(client.get("/v2/fake/org/app/manifests/1.0"), timeout=20)
    assert resp.status == 504
    assert (await _error(resp))["code"] == "UNAVAILABLE"


async def test_upstream_stalling_mid_blob_is_cut_not_hung(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    fake = Fake(auth="none", stall_blob=2.0)
    cache = tmp_path / "cache"
    image, _, client = await _setup(
        aiohttp_server, aiohttp_client, settings, fake, cache_dir=cache, read_timeout=0.3
    )
    with pytest.raises(aiohttp.ClientPayloadError):
        async with client.get(f"/v2/fake/org/app/blobs/{digest_of(image['layer'])}") as resp:
            assert resp.status == 200
            await asyncio.wait_for(resp.read(), timeout=20)
    assert cache_files(cache) == []


async def test_token_endpoint_down(aiohttp_server: Any, aiohttp_client: Any, settings: Settings) -> None:
    fake = Fake(auth="bearer", token_down=True)
    _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, fake)
    resp = await client.get("/v2/fake/org/app/manifests/1.0")
    assert resp.status in (502, 503)
    entry = await _error(resp)
    assert entry["code"] == "UNAVAILABLE" and "token server" in entry["message"]


async def test_unreachable_upstream(aiohttp_client: Any, settings: Settings) -> None:
    book = add_upstream(settings, "127.0.0.1:9", username=None)
    client = await proxy_client(aiohttp_client, settings, book, connect_timeout=2)
    resp = await client.get("/v2/fake/org/app/manifests/1.0")
    assert resp.status == 502 and (await _error(resp))["code"] == "UNAVAILABLE"


async def test_wrong_credential_is_denied(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    fake = Fake(auth="basic")
    fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    book = add_upstream(settings, host_of(server), username="someone-else")
    client = await proxy_client(aiohttp_client, settings, book)
    resp = await client.get("/v2/fake/org/app/manifests/1.0")
    assert resp.status == 403 and (await _error(resp))["code"] == "DENIED"
