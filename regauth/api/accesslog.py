"""One access-log line per API or console request: who (the token's name), what, the answer.

A line never holds a header value or a body (where the secrets travel); the path and query a client
chose go through ``redact`` and ``printable``, so no request can forge a line or leave a secret there.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from regauth.api import state
from regauth.logs import redact
from regauth.printable import printable

ACCESS_LOG = logging.getLogger("regauth.api.access")


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        caller = request.get(state.CALLER)
        path = request.path + (f"?{request.query_string}" if request.query_string else "")
        self.logger.info(
            "%s %s %s %d %.3fs caller=%s",
            request.remote or "-",
            printable(request.method)[:16],
            printable(redact(path))[:512],
            response.status,
            time,
            caller.name if caller is not None else "-",
        )
