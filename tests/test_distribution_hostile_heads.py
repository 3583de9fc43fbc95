"""An upstream whose response head never ends: played by a raw server on 127.0.0.1 that drips one
header byte at a time, against the proxy's timeouts (a read timeout, no total)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from regauth.distribution.errors import Outcome, UpstreamError
from regauth.distribution.target import RegistryTarget
from regauth.distribution.transport import Timeouts, make_session, send

DRIP_MAX = 600  # bytes: a bound for the test itself (two minutes of dripping)


class Dripper:
    """Answers a status line, then one byte of a header line every 0.2 s."""

    def __init__(self) -> None:
        self.dripped = 0
        self.cut = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Never-Ends: ")
        try:
            while self.dripped < DRIP_MAX:
                await asyncio.sleep(0.2)
                writer.write(b"y")
                await writer.drain()
                self.dripped += 1
        except ConnectionError:
            pass
        self.cut.set()
        writer.close()


@pytest.fixture
async def dripper() -> AsyncIterator[tuple[Dripper, int]]:
    drip = Dripper()
    server = await asyncio.start_server(drip.handle, "127.0.0.1", 0)
    yield drip, server.sockets[0].getsockname()[1]
    server.close()


async def test_a_head_that_never_ends_is_a_timeout_of_its_read_timeout(
    dripper: tuple[Dripper, int],
) -> None:
    drip, port = dripper
    upstream = RegistryTarget(f"127.0.0.1:{port}", f"http://127.0.0.1:{port}")
    # The proxy's session: a read timeout, no total (a blob may stream for minutes).
    async with make_session(Timeouts(connect=1.0, read=1.0, total=None)) as session:

        async def fetch() -> None:
            async with send(session, upstream, "GET", upstream.url("/v2/")):
                pass

        with pytest.raises(UpstreamError) as caught:
            await asyncio.wait_for(fetch(), 60)
    assert caught.value.outcome is Outcome.TIMED_OUT
    await asyncio.wait_for(drip.cut.wait(), 10)
    assert drip.dripped < DRIP_MAX  # the connection was closed, not left to drip
