"""One access-log line per request (no secrets: no headers, query values redacted), and the request
metrics, recorded where aiohttp reports each finished request."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from regauth.logs import redact
from regauth.proxy import state

ACCESS_LOG = logging.getLogger("regauth.proxy.access")


class AccessLogger(AbstractAccessLogger):
    @property
    def enabled(self) -> bool:
        # Always on: the metrics are counted here too.
        return True

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        kind = request.get(state.KIND, "other")
        source = request.get(state.SOURCE, "proxy")
        metrics = request.app.get(state.METRICS) if isinstance(request, web.Request) else None
        sent = _body_bytes(request, response)
        if metrics is not None:
            metrics.request(request.method, kind, response.status)
            metrics.sent(kind, source, sent)
        if not self.logger.isEnabledFor(logging.INFO):
            return
        path = request.path + (f"?{request.query_string}" if request.query_string else "")
        upstream = request.get(state.UPSTREAM, "-")
        self.logger.info(
            "%s %s %s %d %d %.3fs upstream=%s from=%s",
            request.remote or "-",
            request.method,
            redact(path),
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
        return sent
    if request.method == "HEAD" or response.status in (204, 304):
        return 0
    return response.content_length or 0
