"""One access-log line per request, and the request metrics, recorded where aiohttp reports each
finished request; and aiohttp's own server log, kept to one line per event.

A line never holds a header value, query values that look like secrets are redacted, and everything a
client chose (the path, the method) goes through ``printable``: a ``%0a`` in a path, decoded to a
newline, is written ``\\x0a`` on the same line, so no request can forge a line. A request aiohttp
could not parse (a TLS handshake on the plain-HTTP port, a broken header) gets aiohttp's 400 and one
short line, never a traceback.
"""

from __future__ import annotations

import logging
import traceback

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from regauth.logs import redact
from regauth.printable import printable
from regauth.proxy import state
from regauth.proxy.connections import GUARD

ACCESS_LOG = logging.getLogger("regauth.proxy.access")
# Passed to aiohttp's server as its ``logger`` (instead of ``aiohttp.server``), through the filter below.
SERVER_LOG = logging.getLogger("regauth.proxy.server")


class AccessLogger(AbstractAccessLogger):
    @property
    def enabled(self) -> bool:
        # Always on: the metrics are counted here too, and the connection guard learns a request ended.
        return True

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        guard = request.get(GUARD)
        if guard is None:
            # aiohttp could not parse it, so it never reached the application (no app, no route).
            if self.logger.isEnabledFor(logging.INFO):
                self.logger.info(
                    "%s - malformed request (not HTTP, or TLS to this plain-HTTP port) %d",
                    request.remote or "-",
                    response.status,
                )
            return
        guard.finished(request.transport)
        kind = request.get(state.KIND, "other")
        source = request.get(state.SOURCE, "proxy")
        metrics = request.app.get(state.METRICS) if isinstance(request, web.Request) else None
        sent = _body_bytes(request, response)
        if metrics is not None:
            metrics.request(request.method, kind, response.status)
            metrics.sent(kind, source, sent)
        if not self.logger.isEnabledFor(logging.INFO):
            return
        upstream = request.get(state.UPSTREAM, "-")
        path = request.path + (f"?{request.query_string}" if request.query_string else "")
        self.logger.info(
            "%s %s %s %d %d %.3fs upstream=%s from=%s",
            request.remote or "-",
            printable(request.method),
            # Decoded (readable), then escaped: a %0a in the path shows as \x0a on the same line.
            printable(redact(path)),
            response.status,
            sent,
            time,
            upstream,
            source,
        )


def _body_bytes(request: web.BaseRequest, response: web.StreamResponse) -> int:
    # body_length counts headers too, and misses what sendfile sent: count bodies by what was promised,
    # except for streams, which record what they actually sent.
    sent = request.get(state.SENT)
    if sent is not None:
        return int(sent)
    if request.method == "HEAD" or response.status in (204, 304):
        return 0
    return response.content_length or 0


class _OneLine(logging.Filter):
    """aiohttp's server records, without their tracebacks: a parse error is the client's, and the
    access log already has its line; anything else keeps one line naming the type and the place."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            return False
        if record.levelno < logging.WARNING:
            return False
        if exc is not None:
            frames = traceback.extract_tb(exc.__traceback__)
            where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
            # The type and where, not the text: an exception's text can hold what a client sent.
            record.msg = f"{record.getMessage()}: {type(exc).__name__}{where}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


SERVER_LOG.addFilter(_OneLine())
