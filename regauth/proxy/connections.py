"""Client connections as a bounded resource: a cap, a header-read timeout, room made from idle ones.

aiohttp's server closes idle keep-alive connections (``keepalive_timeout``, set by ``main.py``) but has
no cap on connections and no header-read timeout: clients that connect and say nothing, or send half a
request and stop, each hold a socket for as long as they like. ``ConnectionGuard`` wraps each
connection's protocol (aiohttp's ``RequestHandler``) and follows it through three phases:

- idle: before the first request or between two; aiohttp's keep-alive timeout closes it;
- reading: a request's first bytes arrived, its head is not complete; ``header_timeout`` closes it;
- active: the application is answering a request (from ``middleware`` to ``finished``, which the
  access logger calls once the response is written).

At the cap, the connection that has been idle or reading the longest is closed to make room, so idle
and half-sent connections can never lock out a real pull; only when every connection is active does a
newcomer get a 503 (after its request head has been read, so the client sees the answer, not a reset).
"""

from __future__ import annotations

import asyncio
import enum
import ssl
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from yarl import URL

from regauth.proxy.errors import API_VERSION_HEADER, UNAVAILABLE, Handler, error_body

# How long, and how many bytes, a refused connection may take to send its request head.
_REFUSAL_WAIT = 5.0
_REFUSAL_HEAD_MAX = 16 * 1024


class Phase(enum.Enum):
    IDLE = "idle"
    READING = "reading"
    ACTIVE = "active"


class _Connection(asyncio.Protocol):
    """One accepted connection: delegates every callback to aiohttp's handler, or to a refusal."""

    def __init__(self, guard: ConnectionGuard, make: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make = make
        self._inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.phase = Phase.IDLE
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._inner = self._make() if self._guard.admit(self) else _Refusal(self._guard)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        assert self._inner is not None
        if self.phase is Phase.IDLE and not isinstance(self._inner, _Refusal):
            self._guard.reading(self)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        assert self._inner is not None
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.closed(self)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class _Refusal(asyncio.Protocol):
    """Reads a request head (bounded in bytes and time), answers 503 and closes."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._transport: asyncio.Transport | None = None
        self._tail = b""
        self._read = 0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._guard.refused += 1
        self._guard.refusing += 1
        if self._guard.refusing > self._guard.refusing_max:
            # A flood: no room even to say why.
            transport.abort()
            return
        self._timer = asyncio.get_running_loop().call_later(_REFUSAL_WAIT, transport.abort)

    def data_received(self, data: bytes) -> None:
        self._read += len(data)
        seen = self._tail + data
        self._tail = seen[-3:]
        if b"\r\n\r\n" in seen or self._read > _REFUSAL_HEAD_MAX:
            self._answer()

    def _answer(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._transport.write(self._guard.refusal_response())
        # close() sends what was written first.
        self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.refusing -= 1
        if self._timer is not None:
            self._timer.cancel()


class ConnectionGuard:
    def __init__(self, *, limit: int, header_timeout: float) -> None:
        self.limit = limit
        self.header_timeout = header_timeout
        # Refused connections being answered at once; beyond it they are dropped without an answer.
        self.refusing_max = max(16, limit // 4)
        self._open: dict[asyncio.Transport, _Connection] = {}
        # Idle and reading connections, the longest-waiting first: the ones to close for room.
        self._waiting: OrderedDict[_Connection, None] = OrderedDict()
        self.refusing = 0
        self.refused = 0
        self.evicted = 0
        self.header_timeouts = 0

    @property
    def open(self) -> int:
        return len(self._open)

    def protocol_factory(self, make: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """What to give ``loop.create_server``: aiohttp's protocol factory behind this guard."""
        return lambda: _Connection(self, make)

    def admit(self, conn: _Connection) -> bool:
        if len(self._open) >= self.limit and not self._make_room():
            return False
        assert conn.transport is not None
        self._open[conn.transport] = conn
        self._waiting[conn] = None
        return True

    def _make_room(self) -> bool:
        if not self._waiting:
            return False
        oldest, _ = self._waiting.popitem(last=False)
        self.evicted += 1
        self._forget(oldest)
        assert oldest.transport is not None
        oldest.transport.close()
        return True

    def reading(self, conn: _Connection) -> None:
        if conn.transport not in self._open:
            return
        conn.phase = Phase.READING
        if self.header_timeout > 0:
            conn.timer = asyncio.get_running_loop().call_later(self.header_timeout, self._expire, conn)

    def _expire(self, conn: _Connection) -> None:
        conn.timer = None
        if conn.phase is Phase.READING and conn.transport is not None:
            self.header_timeouts += 1
            conn.transport.close()

    def dispatched(self, transport: asyncio.BaseTransport | None) -> None:
        conn = self._open.get(transport) if isinstance(transport, asyncio.Transport) else None
        if conn is None:
            return
        conn.phase = Phase.ACTIVE
        self._cancel_timer(conn)
        self._waiting.pop(conn, None)

    def finished(self, transport: asyncio.BaseTransport | None) -> None:
        conn = self._open.get(transport) if isinstance(transport, asyncio.Transport) else None
        if conn is None or conn.phase is not Phase.ACTIVE:
            return
        conn.phase = Phase.IDLE
        self._waiting[conn] = None

    def closed(self, conn: _Connection) -> None:
        self._forget(conn)

    def _forget(self, conn: _Connection) -> None:
        self._cancel_timer(conn)
        self._waiting.pop(conn, None)
        if conn.transport is not None and self._open.get(conn.transport) is conn:
            del self._open[conn.transport]

    @staticmethod
    def _cancel_timer(conn: _Connection) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None

    def refusal_response(self) -> bytes:
        body = error_body(
            UNAVAILABLE,
            f"the proxy is serving {self.limit} connections, its limit (--max-connections); try again",
        )
        headers = {
            **API_VERSION_HEADER,
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Retry-After": "1",
            "Connection": "close",
        }
        head = "HTTP/1.1 503 Service Unavailable\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return (head + "\r\n").encode("ascii") + body

    def middleware(self) -> Middleware:
        @web.middleware
        async def connection_active(request: web.Request, handler: Handler) -> web.StreamResponse:
            request[GUARD] = self
            self.dispatched(request.transport)
            return await handler(request)

        return connection_active


# Set on every request that reached the application (the access logger reads it; a request aiohttp
# could not parse never gets it).
GUARD = web.RequestKey("connection_guard", ConnectionGuard)


class GuardedSite(web.BaseSite):
    """A TCP site (like ``web.TCPSite``) whose connections go through a ``ConnectionGuard``."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        guard: ConnectionGuard,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 512,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return str(URL.build(scheme=scheme, host=self._host, port=self._port))

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        # A TLS handshake comes before the guard sees the connection: bound it like a request head.
        handshake = (
            self._guard.header_timeout if self._ssl_context and self._guard.header_timeout > 0 else None
        )
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=handshake,
        )
