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
        if metrics is not None:
            metrics.request(request.method, kind, response.status)
            metrics.sent(kind, source, response.body_length)
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
            response.body_length,
            time,
            upstream,
            source,
        )
