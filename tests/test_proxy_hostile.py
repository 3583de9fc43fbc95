"""Hostile upstreams against the proxy's authorized path: blob storage that answers 401 with a realm of
its own, a realm on another host, a token server that never stops. Each asserts what the attacker saw."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from aiohttp import web
from support.proxy import PASSWORD, Fake, add_upstream, digest_of, host_of, proxy_client, start_fake

from regauth.config import Settings


def _thief(seen: list[tuple[str, str | None]]) -> web.Application:
    async def steal(request: web.Request) -> web.Response:
        seen.append((request.path_qs, request.headers.get("Authorization")))
        return web.json_response({"token": "stolen", "expires_in": 300})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", steal)
    return app


def _storage_that_challenges(realm: str, seen: list[tuple[str, str | None]]) -> web.Application:
    async def stored(request: web.Request) -> web.Response:
        seen.append((request.path_qs, request.headers.get("Authorization")))
        challenge = f'Bearer realm="{realm}",service="evil"'
        return web.Response(status=401, headers={"WWW-Authenticate": challenge})

    app = web.Application()
    app.router.add_get("/store/{digest}", stored)
    return app


async def test_a_401_from_blob_storage_is_not_the_registrys_challenge(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    fake = Fake(auth="basic")
    image = fake.add_image()
    registry = await start_fake(aiohttp_server, fake)
    thief_seen: list[tuple[str, str | None]] = []
    thief = await aiohttp_server(_thief(thief_seen))
    storage_seen: list[tuple[str, str | None]] = []
    # The realm is on the registry's own host (127.0.0.1): only the origin of the 401 tells it apart.
    storage = await aiohttp_server(_storage_that_challenges(f"http://127.0.0.1:{thief.port}/t", storage_seen))
    fake.redirect_to = str(storage.make_url("")).rstrip("/")
    client = await proxy_client(aiohttp_client, settings, add_upstream(settings, host_of(registry)))
    digest = digest_of(image["layer"])
    for _ in range(2):
        resp = await client.get(f"/v2/fake/org/app/blobs/{digest}")
        assert resp.status == 502, await resp.text()
        assert "not the registry's challenge" in (await resp.json())["errors"][0]["message"]
    assert thief_seen == []
    assert storage_seen and all(auth is None for _, auth in storage_seen)
    # The registry's own Basic challenge still answers the manifest.
    resp = await client.get("/v2/fake/org/app/manifests/1.0")
    assert resp.status == 200
    assert thief_seen == []


async def test_the_proxy_sends_no_credential_to_a_realm_on_another_host(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    fake = Fake(auth="bearer")
    fake.add_image()
    registry = await start_fake(aiohttp_server, fake)
    thief_seen: list[tuple[str, str | None]] = []
    thief = await aiohttp_server(_thief(thief_seen))
    fake.url = f"http://localhost:{thief.port}"  # the challenge names the thief's token endpoint
    client = await proxy_client(aiohttp_client, settings, add_upstream(settings, host_of(registry)))
    resp = await client.get("/v2/fake/org/app/manifests/1.0")
    assert resp.status == 502
    message = (await resp.json())["errors"][0]["message"]
    assert "plain-HTTP token realm (localhost); refused" in message and PASSWORD not in message
    assert thief_seen == []


async def test_a_token_server_that_never_stops_does_not_take_the_proxy_down(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    fake = Fake(auth="bearer")
    fake.add_image()
    registry = await start_fake(aiohttp_server, fake)
    streamed = [0]

    async def forever(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            for _ in range(300 * 16):
                await response.write(b"{" * 65536)
                streamed[0] += 65536
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    app = web.Application()
    app.router.add_get("/token", forever)
    realm = await aiohttp_server(app)
    fake.url = str(realm.make_url("")).rstrip("/")
    client = await proxy_client(aiohttp_client, settings, add_upstream(settings, host_of(registry)))
    resp = await client.get("/v2/fake/org/app/manifests/1.0")
    assert resp.status == 502
    assert "token response of more than" in (await resp.json())["errors"][0]["message"]
    assert streamed[0] < 64 * 1024 * 1024
    resp = await client.get("/v2/")
    assert resp.status == 200


async def test_a_registries_file_damaged_while_the_proxy_runs_keeps_the_last_good_records(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, caplog: Any
) -> None:
    fake = Fake(auth="basic")
    fake.add_image()
    registry = await start_fake(aiohttp_server, fake)
    book = add_upstream(settings, host_of(registry))
    client = await proxy_client(aiohttp_client, settings, book)
    assert (await client.get("/v2/fake/org/app/manifests/1.0")).status == 200
    book.path.write_text('{"version": 1, "registries": [{"name": 123}]}')
    os.utime(book.path, ns=(time.time_ns(), time.time_ns() + 10**9))
    await asyncio.sleep(1.1)  # the proxy looks at the file at most once a second
    for _ in range(2):
        resp = await client.get("/v2/fake/org/app/manifests/1.0")
        assert resp.status == 200, await resp.text()
    damaged = [r for r in caplog.records if "still serving the registries read before" in r.getMessage()]
    assert len(damaged) == 1 and str(book.path) in damaged[0].getMessage()


def test_an_unexpected_failure_is_logged_as_the_proxys_own_with_its_place() -> None:
    from regauth.distribution.errors import Outcome, UpstreamError
    from regauth.proxy.errors import internal_failure, is_internal

    def broken() -> None:
        raise TypeError("secret-looking text https://x/?token=abc")

    try:
        broken()
    except TypeError as exc:
        line = internal_failure(exc)
        assert is_internal(exc)
    assert line.startswith("internal error TypeError at ") and "test_proxy_hostile.py:" in line
    assert "token" not in line
    assert not is_internal(UpstreamError("x", Outcome.UNREACHABLE))
    assert not is_internal(ConnectionResetError())


async def test_a_manifest_that_never_ends_is_cut_at_its_cap(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    streamed = [0]

    async def forever(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        await response.prepare(request)
        try:
            for _ in range(300 * 16):
                await response.write(b" " * 65536)
                streamed[0] += 65536
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    async def base(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/v2/", base)
    app.router.add_get("/v2/{name:.+}/manifests/{ref}", forever)
    registry = await aiohttp_server(app)
    client = await proxy_client(
        aiohttp_client, settings, add_upstream(settings, host_of(registry), username=None)
    )
    resp = await client.get("/v2/fake/org/app/manifests/1.0")
    assert resp.status == 502
    assert "manifest of more than" in (await resp.json())["errors"][0]["message"]
    assert streamed[0] < 64 * 1024 * 1024
