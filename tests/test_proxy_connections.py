"""The proxy under connections that misbehave, over real sockets on 127.0.0.1: idle and half-sent
connections, a connection cap, and slow pulls from one upstream beside pulls from another.

Counts are bounded and waits are bounded; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support.proxy import MANIFEST_V2, Fake, add_upstream, digest_of, host_of, start_fake
from support.proxy_net import Served, close_all, closed_by_peer, connect, served_proxy, wait_until

from regauth.config import Settings
from regauth.proxy import state

HALF_SENT = b"GET /v2/b/org/app/manifests/1.0 HTTP/1.1\r\nHost: proxy\r\nAccept: "


@dataclass
class Holding:
    """A hostile upstream whose blob responses send a first chunk and then hold the body open until
    ``release`` is set: every pull through the proxy keeps one upstream connection busy, as a client
    that reads slowly does."""

    blob: bytes = field(default_factory=lambda: os.urandom(256 * 1024))
    held: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.blob).hexdigest()

    def app(self) -> web.Application:
        async def base(request: web.Request) -> web.Response:
            return web.json_response({})

        async def blob(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Docker-Content-Digest": self.digest})
            response.content_length = len(self.blob)
            response.content_type = "application/octet-stream"
            await response.prepare(request)
            await response.write(self.blob[:65536])
            self.held += 1
            try:
                await self.release.wait()
                await response.write(self.blob[65536:])
            finally:
                self.held -= 1
            return response

        app = web.Application()
        app.router.add_get("/v2/", base)
        app.router.add_get(r"/v2/{name:.+}/blobs/{digest}", blob)
        return app


async def _pull(proxy: Served, image: dict[str, Any], name: str = "b") -> None:
    """A normal pull through the proxy: the manifest, then its layer."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        url = f"{proxy.url}/v2/{name}/org/app/manifests/1.0"
        async with session.get(url, headers={"Accept": MANIFEST_V2}) as resp:
            assert resp.status == 200, await resp.text()
            assert await resp.read() == image["manifest"]
        async with session.get(f"{proxy.url}/v2/{name}/org/app/blobs/{digest_of(image['layer'])}") as resp:
            assert resp.status == 200
            assert await resp.read() == image["layer"]


@pytest.mark.parametrize("max_connections", [100, 1024])
async def test_idle_and_half_sent_connections_do_not_stop_a_pull(
    aiohttp_server: Any, settings: Settings, max_connections: int
) -> None:
    fake = Fake(auth="none")
    image = fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    book = add_upstream(settings, host_of(server), name="b", username=None)
    async with served_proxy(settings, book, max_connections=max_connections) as proxy:
        idle = [await connect(proxy.port) for _ in range(150)]
        half = [await connect(proxy.port) for _ in range(150)]
        for _, writer in half:
            writer.write(HALF_SENT)
            await writer.drain()
        # Every one of them has been accepted (or has made room for a later one).
        await wait_until(
            lambda: proxy.guard.open + proxy.guard.evicted >= 300, "all 300 connections accepted"
        )
        await _pull(proxy, image)
        assert proxy.guard.open <= max_connections
        if max_connections < 300:
            # At the cap the longest-waiting ones were closed for room: the first idle ones.
            assert proxy.guard.evicted >= 300 - max_connections
            assert await closed_by_peer(idle[0][0])
        assert proxy.guard.refused == 0
        async with aiohttp.ClientSession() as session, session.get(f"{proxy.url}/metrics") as resp:
            metrics = set((await resp.text()).splitlines())
        assert f"regauth_proxy_connections_evicted_total {proxy.guard.evicted}" in metrics
        assert "regauth_proxy_connections_refused_total 0" in metrics
        close_all([w for _, w in idle + half])


async def test_a_half_sent_request_and_an_idle_connection_are_closed(
    aiohttp_server: Any, settings: Settings
) -> None:
    fake = Fake(auth="none")
    image = fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    book = add_upstream(settings, host_of(server), name="b", username=None)
    async with served_proxy(settings, book, header_timeout=0.3, idle_timeout=3.0) as proxy:
        half_reader, half = await connect(proxy.port)
        half.write(HALF_SENT)
        await half.drain()
        assert await closed_by_peer(half_reader)
        assert proxy.guard.header_timeouts == 1

        silent_reader, silent = await connect(proxy.port)
        assert await closed_by_peer(silent_reader)

        # A keep-alive connection that finished a request and then says nothing is closed too.
        reader, writer = await connect(proxy.port)
        writer.write(b"GET /v2/ HTTP/1.1\r\nHost: proxy\r\n\r\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        assert await closed_by_peer(reader)
        assert proxy.guard.header_timeouts == 1
        await _pull(proxy, image)
        close_all([half, silent, writer])


async def test_beyond_the_cap_a_client_gets_a_clear_503(aiohttp_server: Any, settings: Settings) -> None:
    holding = Holding()
    server: TestServer = await aiohttp_server(holding.app())
    book = add_upstream(settings, host_of(server), name="a", username=None)
    async with served_proxy(settings, book, max_connections=5) as proxy:
        pulls = []
        for _ in range(5):
            reader, writer = await connect(proxy.port)
            # A Range: each pull its own upstream GET (plain GETs of one blob would share one fetch).
            ask = f"GET /v2/a/org/app/blobs/{holding.digest} HTTP/1.1\r\nHost: p\r\nRange: bytes=0-\r\n\r\n"
            writer.write(ask.encode())
            await writer.drain()
            pulls.append((reader, writer))
        await wait_until(lambda: holding.held == 5, "five pulls in flight")
        reader, writer = await connect(proxy.port)
        writer.write(b"GET /v2/ HTTP/1.1\r\nHost: proxy\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), timeout=20)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert b"Retry-After: 1" in head
        assert b'"code": "UNAVAILABLE"' in body and b"--max-connections" in body
        assert proxy.guard.refused == 1
        # The pulls in flight were not disturbed.
        holding.release.set()
        for pull_reader, _ in pulls:
            head = await asyncio.wait_for(pull_reader.readuntil(b"\r\n\r\n"), timeout=20)
            assert head.startswith(b"HTTP/1.1 200")
            assert await asyncio.wait_for(pull_reader.readexactly(len(holding.blob)), 20) == holding.blob
        close_all([w for _, w in pulls] + [writer])


async def test_slow_pulls_from_one_upstream_do_not_starve_another(
    aiohttp_server: Any, settings: Settings
) -> None:
    holding = Holding()
    slow: TestServer = await aiohttp_server(holding.app())
    fake = Fake(auth="none")
    image = fake.add_image()
    other = await start_fake(aiohttp_server, fake)
    add_upstream(settings, host_of(slow), name="a", username=None)
    book = add_upstream(settings, host_of(other), name="b", username=None)
    async with served_proxy(settings, book) as proxy:
        # 260 clients that never read, pulling one blob of upstream "a": more than its pool holds.
        readers = []
        # With a Range, each pull is its own upstream GET (plain GETs of one blob would share one fetch).
        request = (
            f"GET /v2/a/org/app/blobs/{holding.digest} HTTP/1.1\r\nHost: proxy\r\nRange: bytes=0-\r\n\r\n"
        )
        request = request.encode()
        for _ in range(260):
            reader, writer = await connect(proxy.port)
            writer.write(request)
            readers.append((reader, writer))
        per_upstream = proxy.app[state.OPTIONS].upstream_connections
        await wait_until(lambda: holding.held == per_upstream, f"{per_upstream} pulls held by upstream a")
        # Upstream "a" holds all the connections the proxy gives it; "b" still answers.
        await _pull(proxy, image)
        assert holding.held == per_upstream
        holding.release.set()
        close_all([w for _, w in readers])
