"""The proxy as a process: SIGTERM lets in-flight pulls finish, and a large blob streams through with a
flat resident set (the full 1 GiB run is in bench/bench_proxy.py; here 64 MiB, no timing asserted)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
from support.proxy import MANIFEST_V2, Fake, ProxyProcess, add_upstream, digest_of, host_of, start_fake

from regauth.config import Settings

MIB = 1024 * 1024


async def _start(
    aiohttp_server: Any, settings: Settings, regauth_exe: str, tmp_path: Path, fake: Fake, *args: str
) -> ProxyProcess:
    server = await start_fake(aiohttp_server, fake)
    add_upstream(settings, host_of(server), username=None)
    proxy = ProxyProcess(regauth_exe, tmp_path, *args)
    # Polled off the loop: the fake upstream runs on it.
    await asyncio.to_thread(proxy.wait_ready)
    return proxy


async def test_sigterm_lets_in_flight_pulls_finish(
    aiohttp_server: Any, settings: Settings, regauth_exe: str, tmp_path: Path
) -> None:
    fake = Fake(auth="none")
    image = fake.add_image()
    proxy = await _start(aiohttp_server, settings, regauth_exe, tmp_path, fake)
    fake.slow = 1.0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        url = f"{proxy.url}/v2/fake/org/app/manifests/1.0"
        pull = asyncio.ensure_future(session.get(url, headers={"Accept": MANIFEST_V2}))
        await asyncio.sleep(0.4)
        proxy.process.send_signal(signal.SIGTERM)
        async with await pull as resp:
            assert resp.status == 200
            assert await resp.read() == image["manifest"]
    code = await asyncio.wait_for(asyncio.to_thread(proxy.process.wait), timeout=30)
    assert code == 0, proxy.log()
    assert "stopping" in proxy.log()


async def test_large_blob_streams_with_flat_rss(
    aiohttp_server: Any, settings: Settings, regauth_exe: str, tmp_path: Path
) -> None:
    fake = Fake(auth="none")
    fake.add_image()
    blob = os.urandom(64 * MIB)
    digest = digest_of(blob)
    fake.blobs[digest] = blob
    cache = tmp_path / "cache"
    proxy = await _start(aiohttp_server, settings, regauth_exe, tmp_path, fake, "--cache-dir", str(cache))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            # Warm up the code paths first, so the baseline includes what any pull needs.
            async with session.get(f"{proxy.url}/v2/fake/org/app/manifests/1.0") as resp:
                await resp.read()
            before = proxy.peak_rss_kib()
            received = 0
            async with session.get(f"{proxy.url}/v2/fake/org/app/blobs/{digest}") as resp:
                assert resp.status == 200
                async for chunk in resp.content.iter_chunked(MIB):
                    received += len(chunk)
            after = proxy.peak_rss_kib()
        assert received == len(blob)
        growth_mib = (after - before) / 1024
        assert growth_mib < 16, f"peak RSS grew by {growth_mib:.1f} MiB for a 64 MiB blob"
        assert (cache / "blobs" / "sha256" / digest[7:9] / digest[7:]).stat().st_size == len(blob)
    finally:
        proxy.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.to_thread(proxy.process.wait), timeout=30)
