"""The access log under hostile requests, over real sockets: a ``%0a`` cannot forge a line, no header
value is ever printed, and a request aiohttp cannot parse (a TLS ClientHello, a broken header) gets
aiohttp's 400 and at most one short line, never a traceback."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any

import pytest
from support.proxy import Fake, add_upstream, host_of, start_fake
from support.proxy_net import connect, served_proxy

from regauth.config import Settings
from regauth.registries import RegistryBook

FORGED = "127.0.0.1 GET /v2/forged 200"


def _regauth_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(("regauth", "aiohttp"))]


async def _exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await connect(port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=20)
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def book(aiohttp_server: Any, settings: Settings) -> RegistryBook:
    fake = Fake(auth="none")
    fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    return add_upstream(settings, host_of(server), username=None)


async def test_a_path_cannot_forge_a_line_and_headers_are_never_printed(
    settings: Settings, book: RegistryBook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with served_proxy(settings, book) as proxy:
        path = "/v2/x%0a" + FORGED.replace(" ", "%20") + "%0d%0aend/manifests/1"
        raw = (
            f"GET {path} HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer HEADER-SECRET-1\r\n"
            "X-Anything: HEADER-VALUE-2\r\nUser-Agent: AGENT-VALUE-3\r\nConnection: close\r\n\r\n"
        ).encode()
        answer = await _exchange(proxy.port, raw)
    assert answer.startswith(b"HTTP/1.1 ")
    access = [r.getMessage() for r in caplog.records if r.name == "regauth.proxy.access"]
    assert len(access) == 1
    line = access[0]
    assert "\n" not in line and "\r" not in line
    # Decoded and escaped, on one line (raw control bytes never parse at all: see below).
    assert "/v2/x\\x0a127.0.0.1 GET /v2/forged 200\\x0d\\x0aend/manifests/1 " in line
    everything = "\n".join(r.getMessage() for r in _regauth_records(caplog))
    for value in ("HEADER-SECRET-1", "HEADER-VALUE-2", "AGENT-VALUE-3"):
        assert value not in everything


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /v2/ HTTP/1.1\r\nHost: proxy\r\nBroken header line\r\n\r\n",
        b"GET /v2/\x1b[2J HTTP/1.1\r\nHost: proxy\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),
        b"NOT-A-METHOD\x00 / HTTP/1.1\r\n\r\n",
    ],
    ids=["broken-header", "control-in-path", "tls-record", "binary-method"],
)
async def test_a_malformed_request_gets_400_and_one_short_line(
    settings: Settings, book: RegistryBook, caplog: pytest.LogCaptureFixture, raw: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    async with served_proxy(settings, book) as proxy:
        answer = await _exchange(proxy.port, raw)
    assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.0 400 Bad Request", b"HTTP/1.1 400 Bad Request")
    records = [r for r in _regauth_records(caplog) if r.levelno >= logging.INFO]
    assert len(records) <= 1, [r.getMessage() for r in records]
    for record in records:
        assert record.exc_info is None and len(record.getMessage()) < 120
        assert "malformed request" in record.getMessage()


async def test_a_tls_handshake_on_the_http_port_leaves_one_short_line(
    settings: Settings, book: RegistryBook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with served_proxy(settings, book) as proxy:
        await asyncio.to_thread(_tls_hello, proxy.port)
        # A normal request after it: the proxy still serves, and the handshake has been logged by then.
        assert (await _exchange(proxy.port, b"GET /v2/ HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"))[
            :15
        ] == b"HTTP/1.1 200 OK"
    records = [r for r in _regauth_records(caplog) if r.levelno >= logging.INFO]
    assert len(records) == 2, [r.getMessage() for r in records]
    assert "malformed request" in records[0].getMessage() and records[0].exc_info is None
    assert "GET /v2/ 200" in records[1].getMessage()


def _tls_hello(port: int) -> None:
    """A real ClientHello from Python's ssl, as skopeo, podman or `curl -k https://` send first."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(sock, server_hostname="127.0.0.1")
