"""The proxy's metrics under a hostile client: a label a client chooses (the method) cannot grow the
series without bound. llhttp (aiohttp's C parser) takes only the methods it knows, but aiohttp's own
Python parser, used where the C one is not built (``AIOHTTP_NO_EXTENSIONS``, PyPy), takes any token:
each made-up method was a series kept for ever. The real proxy process, real sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from support.proxy import Fake, ProxyProcess, add_upstream, host_of, start_fake

from regauth.config import Settings


async def _exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=20)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_made_up_methods_share_one_series(
    aiohttp_server: Any,
    settings: Settings,
    regauth_exe: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = await start_fake(aiohttp_server, Fake(auth="none"))
    add_upstream(settings, host_of(server), username=None)
    monkeypatch.setenv("AIOHTTP_NO_EXTENSIONS", "1")
    proxy = ProxyProcess(regauth_exe, tmp_path)
    try:
        await asyncio.to_thread(proxy.wait_ready)
        for number in range(40):
            request = f"M{number:04d}{'X' * 1000} /v2/ HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"
            assert (await _exchange(proxy.port, request.encode())).startswith(b"HTTP/1.1 ")
        scrape = b"GET /metrics HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"
        text = (await _exchange(proxy.port, scrape)).decode()
    finally:
        proxy.process.terminate()
        await asyncio.to_thread(proxy.process.wait, 30)
    series = [line for line in text.splitlines() if line.startswith("regauth_proxy_requests_total{")]
    assert "M0001" not in text
    assert any('method="other"' in line for line in series), series
