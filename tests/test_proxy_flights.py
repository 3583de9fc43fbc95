"""One upstream fetch per cold blob: pulls that arrive while a fetch runs stream from its file (the
cache's temporary file, or a spool without a cache), each held back before its last byte until the
digest matched. A hostile upstream counts its GETs, cuts the body, sends tampered bytes or stalls;
every client is cut when the fetch fails, and nothing is cached. A follower for another repository is
served only once the upstream confirmed the blob there."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from support.proxy import add_upstream, cache_files, cached_blobs, digest_of, host_of, proxy_client

from regauth.config import Settings
from regauth.proxy import state

SIZE = 3 * 1024 * 1024 + 17  # more than one batch of the writer's worker thread
PULLS = 8


@dataclass
class Hostile:
    """An upstream for ``good`` under its digest, in ``repositories`` only (404 elsewhere). Each GET
    sends the first part of the body, then waits for ``release`` (so the test can gather followers),
    then does what ``mode`` says: "good", "tamper" (a flipped byte near the end), "cut" (the
    connection aborted halfway) or "stall" (no more bytes, ever)."""

    good: bytes
    mode: str = "good"
    repositories: set[str] = field(default_factory=lambda: {"org/app"})
    chunked: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[tuple[str, str]] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return digest_of(self.good)

    def gets(self) -> int:
        return sum(1 for method, _ in self.seen if method == "GET")


def hostile_app(hostile: Hostile) -> web.Application:
    async def base(request: web.Request) -> web.Response:
        return web.json_response({})

    async def blob(request: web.Request) -> web.StreamResponse:
        hostile.seen.append((request.method, request.path))
        name = request.match_info["name"]
        if request.match_info["digest"] != hostile.digest or name not in hostile.repositories:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        body = hostile.good
        if hostile.mode == "tamper":
            at = len(body) - 2
            body = body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1 :]
        headers = {"Docker-Content-Digest": hostile.digest, "Content-Type": "application/octet-stream"}
        response = web.StreamResponse(headers=headers)
        if hostile.chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(body)
        await response.prepare(request)
        if request.method == "HEAD":
            await response.write_eof()
            return response
        half = len(body) // 2
        await response.write(body[:half])
        await asyncio.wait_for(hostile.release.wait(), timeout=30)
        if hostile.mode == "cut":
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.abort()
            return response
        if hostile.mode == "stall":
            await asyncio.sleep(3600)
        for at in range(half, len(body), 256 * 1024):
            await response.write(body[at : at + 256 * 1024])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/v2/", base)
    app.router.add_get(r"/v2/{name:.+}/blobs/{digest}", blob)
    return app


async def _proxy(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, hostile: Hostile, **options: Any
) -> Any:
    server = await aiohttp_server(hostile_app(hostile))
    book = add_upstream(settings, host_of(server), name="evil", username=None)
    return await proxy_client(aiohttp_client, settings, book, **options)


async def _until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"waited {timeout}s for {what}")


def _flights(client: Any) -> Any:
    return client.server.app[state.FLIGHTS]


async def _pull(client: Any, path: str) -> bytes | None:
    """The whole body, or None if the proxy cut the connection."""
    try:
        async with client.get(path) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.read()
    except aiohttp.ClientPayloadError:
        return None


async def _pull_together(client: Any, hostile: Hostile, paths: list[str]) -> list[bytes | None]:
    """Start every pull, wait until all but the first stream from its fetch, then let the upstream
    go on."""
    flights = _flights(client)
    joined = flights.joined
    tasks = [asyncio.ensure_future(_pull(client, paths[0]))]
    await _until(lambda: flights.find(_host(client, hostile), hostile.digest) is not None, "the fetch")
    tasks += [asyncio.ensure_future(_pull(client, path)) for path in paths[1:]]
    await _until(lambda: flights.joined - joined >= len(paths) - 1, "the followers")
    hostile.release.set()
    return list(await asyncio.wait_for(asyncio.gather(*tasks), timeout=60))


def _host(client: Any, hostile: Hostile) -> str:
    upstreams = client.server.app[state.UPSTREAMS]
    upstream = upstreams.by_name("evil")
    assert upstream is not None
    return str(upstream.host)


@pytest.mark.parametrize("cached", [True, False])
@pytest.mark.parametrize("chunked", [False, True])
async def test_concurrent_pulls_make_one_upstream_get(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path, cached: bool, chunked: bool
) -> None:
    hostile = Hostile(os.urandom(SIZE), chunked=chunked)
    options = {"cache_dir": tmp_path / "cache"} if cached else {}
    client = await _proxy(aiohttp_server, aiohttp_client, settings, hostile, **options)
    path = f"/v2/evil/org/app/blobs/{hostile.digest}"
    bodies = await _pull_together(client, hostile, [path] * PULLS)
    assert bodies == [hostile.good] * PULLS
    assert hostile.seen == [("GET", f"/v2/org/app/blobs/{hostile.digest}")]
    if cached:
        (blob,) = cached_blobs(tmp_path / "cache")
        assert blob.read_bytes() == hostile.good
        # Served from the cache from now on.
        assert await _pull(client, path) == hostile.good
        assert hostile.gets() == 1
    else:
        # The spool is gone with the fetch; the next pull fetches again.
        assert await _pull(client, path) == hostile.good
        assert hostile.gets() == 2


@pytest.mark.parametrize("mode", ["cut", "tamper", "stall"])
@pytest.mark.parametrize("cached", [True, False])
async def test_a_failed_fetch_cuts_every_client_and_caches_nothing(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path, mode: str, cached: bool
) -> None:
    hostile = Hostile(os.urandom(SIZE), mode=mode)
    options: dict[str, Any] = {"read_timeout": 3.0}
    if cached:
        options["cache_dir"] = tmp_path / "cache"
    client = await _proxy(aiohttp_server, aiohttp_client, settings, hostile, **options)
    path = f"/v2/evil/org/app/blobs/{hostile.digest}"
    bodies = await _pull_together(client, hostile, [path] * PULLS)
    assert bodies == [None] * PULLS
    assert hostile.gets() == 1
    if cached:
        assert cache_files(tmp_path / "cache") == []
    # The proxy is still serving; the right bytes go through whole.
    hostile.mode = "good"
    assert await _pull(client, path) == hostile.good


async def test_no_spool_is_left_behind(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path, monkeypatch: Any
) -> None:
    # The spool directory is made under the temporary directory: point that at this test's own.
    spools = tmp_path / "tmp"
    spools.mkdir()
    monkeypatch.setenv("TMPDIR", str(spools))
    monkeypatch.setattr("tempfile.tempdir", None)
    hostile = Hostile(os.urandom(SIZE))
    client = await _proxy(aiohttp_server, aiohttp_client, settings, hostile)
    path = f"/v2/evil/org/app/blobs/{hostile.digest}"
    assert await _pull_together(client, hostile, [path] * 3) == [hostile.good] * 3
    (spool,) = spools.iterdir()
    assert oct(spool.stat().st_mode & 0o777) == "0o700"
    assert list(spool.iterdir()) == []
    await client.close()
    assert list(spools.iterdir()) == []


@pytest.mark.parametrize("cached", [True, False])
async def test_a_follower_for_another_repository_needs_the_upstreams_word(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path, cached: bool
) -> None:
    hostile = Hostile(os.urandom(SIZE), repositories={"org/app", "org/other"})
    options = {"cache_dir": tmp_path / "cache"} if cached else {}
    client = await _proxy(aiohttp_server, aiohttp_client, settings, hostile, **options)
    app, other, secret = (
        f"/v2/evil/{repo}/blobs/{hostile.digest}" for repo in ("org/app", "org/other", "org/x")
    )
    flights = _flights(client)
    first = asyncio.ensure_future(_pull(client, app))
    await _until(lambda: flights.find(_host(client, hostile), hostile.digest) is not None, "the fetch")
    # A repository the upstream does not hold the blob in: its refusal, and none of the bytes.
    async with client.get(secret) as resp:
        assert resp.status == 404
        assert hostile.digest.encode() not in await resp.read()
    follower = asyncio.ensure_future(_pull(client, other))
    # Both waited on the fetch: the refused one, and this one.
    await _until(lambda: flights.joined >= 2, "the follower")
    hostile.release.set()
    assert await asyncio.wait_for(asyncio.gather(first, follower), timeout=60) == [hostile.good] * 2
    blob_path = f"/blobs/{hostile.digest}"
    assert hostile.seen == [
        ("GET", f"/v2/org/app{blob_path}"),
        ("HEAD", f"/v2/org/x{blob_path}"),
        ("HEAD", f"/v2/org/other{blob_path}"),
    ]


async def test_the_fetch_goes_on_for_followers_when_the_first_client_leaves(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    hostile = Hostile(os.urandom(SIZE))
    client = await _proxy(aiohttp_server, aiohttp_client, settings, hostile, cache_dir=tmp_path / "c")
    path = f"/v2/evil/org/app/blobs/{hostile.digest}"
    flights = _flights(client)
    first = await client.get(path)
    assert first.status == 200
    await first.content.readexactly(1024)
    followers = [asyncio.ensure_future(_pull(client, path)) for _ in range(3)]
    await _until(lambda: flights.joined >= 3, "the followers")
    first.close()  # the first client goes away mid-body
    hostile.release.set()
    assert await asyncio.wait_for(asyncio.gather(*followers), timeout=60) == [hostile.good] * 3
    assert hostile.gets() == 1
    (blob,) = cached_blobs(tmp_path / "c")
    assert blob.read_bytes() == hostile.good
    # The upstream delivered it whole and verified, whoever received it: the next pull is a hit.
    assert await _pull(client, path) == hostile.good
    assert hostile.gets() == 1


async def test_a_refusal_before_the_body_lets_each_follower_ask_itself(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    hostile = Hostile(os.urandom(1000), repositories=set())
    hostile.release.set()
    client = await _proxy(aiohttp_server, aiohttp_client, settings, hostile)
    path = f"/v2/evil/org/app/blobs/{hostile.digest}"
    answers = await asyncio.gather(*(client.get(path) for _ in range(4)))
    assert [resp.status for resp in answers] == [404] * 4
    assert _flights(client).find(_host(client, hostile), hostile.digest) is None
