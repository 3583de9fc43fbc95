"""A hostile upstream that sends other bytes than the digest it is asked for: whatever the path (no
cache, the request that writes the cache, the ones that arrive while it does, a Range answered whole),
the client gets a cut body, never a complete 200 of tampered bytes, and nothing lands in the cache.
Concurrent pulls of one blob share one fetch: their tampered and good cases are test_proxy_flights.py's."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from support.proxy import add_upstream, cache_files, digest_of, host_of, proxy_client

from regauth.config import Settings

LARGE = 3 * 1024 * 1024 + 17  # more than one batch of the cache writer's worker thread


@dataclass
class Tamperer:
    """Serves ``good`` under its digest, but with one byte flipped near the end while ``tamper`` is on;
    with ``chunked`` the body goes without a Content-Length. ``barrier``: hold every blob response
    until that many requests wait, so that they are in flight together."""

    good: bytes
    tamper: bool = True
    chunked: bool = False
    ignore_range: bool = False
    partial: bool = False  # a 206 of the first half, whatever was asked
    empty: bool = False
    barrier: int = 0
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    waiting: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def digest(self) -> str:
        return digest_of(self.good)

    def body(self) -> bytes:
        if self.empty:
            return b""
        if not self.tamper:
            return self.good
        at = len(self.good) - 2
        return self.good[:at] + bytes([self.good[at] ^ 0xFF]) + self.good[at + 1 :]


def tamperer_app(hostile: Tamperer) -> web.Application:
    async def base(request: web.Request) -> web.Response:
        return web.json_response({})

    async def blob(request: web.Request) -> web.StreamResponse:
        hostile.seen.append((request.method, request.path, request.headers.get("Range")))
        if request.match_info["digest"] != hostile.digest:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        if hostile.barrier:
            hostile.waiting += 1
            if hostile.waiting >= hostile.barrier:
                hostile.released.set()
            await asyncio.wait_for(hostile.released.wait(), timeout=20)
        body = hostile.body()
        headers = {"Docker-Content-Digest": hostile.digest, "Content-Type": "application/octet-stream"}
        if hostile.partial:
            half = len(body) // 2
            headers["Content-Range"] = f"bytes 0-{half - 1}/{len(body)}"
            return web.Response(status=206, body=body[:half], headers=headers)
        if "Range" in request.headers and not hostile.ignore_range:
            first, _, last = request.headers["Range"].removeprefix("bytes=").partition("-")
            start, end = int(first), int(last) + 1
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(body)}"
            return web.Response(status=206, body=body[start:end], headers=headers)
        response = web.StreamResponse(headers=headers)
        if hostile.chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(body)
        await response.prepare(request)
        if request.method == "GET":
            for at in range(0, len(body), 256 * 1024):
                await response.write(body[at : at + 256 * 1024])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/v2/", base)
    app.router.add_get(r"/v2/{name:.+}/blobs/{digest}", blob)
    return app


async def _proxy(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, hostile: Tamperer, **options: Any
) -> Any:
    server = await aiohttp_server(tamperer_app(hostile))
    book = add_upstream(settings, host_of(server), name="evil", username=None)
    return await proxy_client(aiohttp_client, settings, book, **options)


async def _is_cut(client: Any, path: str, **kwargs: Any) -> int:
    """Pull ``path``; assert the client could not read it whole; return how much it got."""
    got = 0
    with pytest.raises(aiohttp.ClientPayloadError):
        async with client.get(path, **kwargs) as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_any():
                got += len(chunk)
    return got


@pytest.mark.parametrize("size", [LARGE, 1000])
@pytest.mark.parametrize("chunked", [False, True])
async def test_tampered_blob_without_cache_is_cut(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, size: int, chunked: bool
) -> None:
    hostile = Tamperer(os.urandom(size), chunked=chunked)
    client = await _proxy(aiohttp_server, aiohttp_client, settings, hostile)
    path = f"/v2/evil/org/app/blobs/{hostile.digest}"
    got = await asyncio.wait_for(_is_cut(client, path), timeout=30)
    assert got < size
    assert hostile.seen == [("GET", f"/v2/org/app/blobs/{hostile.digest}", None)]
    # The same path with the right bytes goes through whole, and the proxy is still serving.
    hostile.tamper = False
    async with client.get(path) as resp:
        assert resp.status == 200 and await resp.read() == hostile.good


async def test_a_range_answered_whole_is_verified(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    hostile = Tamperer(os.urandom(LARGE), ignore_range=True)
    client = await _proxy(aiohttp_server, aiohttp_client, settings, hostile, cache_dir=tmp_path / "c")
    path = f"/v2/evil/org/app/blobs/{hostile.digest}"
    await asyncio.wait_for(_is_cut(client, path, headers={"Range": "bytes=0-99"}), timeout=30)
    assert hostile.seen[-1][2] == "bytes=0-99"
    assert cache_files(tmp_path / "c") == []
    # A 206 has no digest of its own: it is relayed as the upstream sent it (see the README).
    hostile.ignore_range = False
    async with client.get(path, headers={"Range": "bytes=0-99"}) as resp:
        assert resp.status == 206 and await resp.read() == hostile.good[:100]


async def test_an_empty_body_for_a_digest_is_refused_before_any_200(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    hostile = Tamperer(os.urandom(100), empty=True)
    client = await _proxy(aiohttp_server, aiohttp_client, settings, hostile, cache_dir=tmp_path / "c")
    resp = await client.get(f"/v2/evil/org/app/blobs/{hostile.digest}")
    assert resp.status == 502
    (entry,) = (await resp.json())["errors"]
    assert entry["code"] == "UNAVAILABLE" and "does not match its digest" in entry["message"]
    assert cache_files(tmp_path / "c") == []


@pytest.mark.parametrize("cached", [True, False])
async def test_a_part_the_client_did_not_ask_for_is_refused(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path, cached: bool
) -> None:
    # A 206 to a request without a Range is no answer to it: its bytes cannot be checked, and a
    # client that asked for the whole blob must not be handed part of it as if it were.
    hostile = Tamperer(os.urandom(1000), tamper=False, partial=True)
    options = {"cache_dir": tmp_path / "c"} if cached else {}
    client = await _proxy(aiohttp_server, aiohttp_client, settings, hostile, **options)
    path = f"/v2/evil/org/app/blobs/{hostile.digest}"
    for _ in range(2):
        resp = await client.get(path)
        assert resp.status == 502
        assert hostile.good[:500] not in await resp.read()
    assert [method for method, _, _ in hostile.seen] == ["GET", "GET"]
    if cached:
        assert cache_files(tmp_path / "c") == []
