"""The proxy as a network service, for the tests: served in-process the way ``regauth proxy`` serves it
(``main.start``: the connection guard, the timeouts, the server logger), and raw client sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from regauth.config import Settings
from regauth.proxy.app import CONNECTIONS, make_proxy_app
from regauth.proxy.connections import ConnectionGuard
from regauth.proxy.main import start
from regauth.proxy.options import ProxyOptions
from regauth.registries import RegistryBook
from regauth.store.lazy import LazyStore


@dataclass
class Served:
    app: web.Application
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def guard(self) -> ConnectionGuard:
        return self.app[CONNECTIONS]


@contextlib.asynccontextmanager
async def served_proxy(settings: Settings, book: RegistryBook, **options: Any) -> AsyncIterator[Served]:
    app = make_proxy_app(settings, book, LazyStore.for_settings(settings), options=ProxyOptions(**options))
    runner = await start(app, "127.0.0.1", 0, shutdown_timeout=5.0)
    try:
        yield Served(app, runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 20.0) -> bool:
    """Whether the proxy closes this connection (EOF or reset) within ``timeout``: a bounded wait."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def wait_until(predicate: Any, what: str, timeout: float = 60.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` (a bound, not a measurement)."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"{what}: not reached in {timeout}s") from None


def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.transport.abort()
