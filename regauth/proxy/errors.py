"""Errors as the registry API speaks them: ``{"errors": [{"code", "message", "detail"}]}``.

``ApiError`` carries a status and a registry error code; the middleware turns it, any other
``RegauthError`` and upstream faults into that JSON, so every client sees a status it understands and
a message that says what happened. Messages never carry secrets: they are built from hosts,
repositories and digests only, and pass through ``redact`` on the way out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from regauth.distribution.errors import Outcome, UpstreamError
from regauth.errors import (
    ConfigError,
    NotFoundError,
    ProviderError,
    RegauthError,
    RegistryError,
    StoreError,
    UsageError,
)
from regauth.logs import redact

log = logging.getLogger("regauth.proxy")

# The registry error codes this proxy uses (distribution's errcode and the OCI distribution spec).
NAME_UNKNOWN = "NAME_UNKNOWN"
NAME_INVALID = "NAME_INVALID"
DENIED = "DENIED"
UNAUTHORIZED = "UNAUTHORIZED"
UNSUPPORTED = "UNSUPPORTED"
UNAVAILABLE = "UNAVAILABLE"
UNKNOWN = "UNKNOWN"
TOOMANYREQUESTS = "TOOMANYREQUESTS"

API_VERSION_HEADER = {"Docker-Distribution-Api-Version": "registry/2.0"}


class ApiError(RegauthError):
    """An answer the proxy gives instead of the upstream's: a status, a code and one line."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: object = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


class UpstreamFault(ApiError):
    """The upstream failed (5xx, reset, timeout, token endpoint down): 502, 503 or 504."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, UNAVAILABLE, message)


def error_body(code: str, message: str, detail: object = None) -> bytes:
    entry = {"code": code, "message": redact(message), "detail": detail}
    return json.dumps({"errors": [entry]}).encode()


def error_response(error: ApiError) -> web.Response:
    headers = {**API_VERSION_HEADER, **error.headers}
    return web.Response(
        status=error.status,
        body=error_body(error.code, error.message, error.detail),
        content_type="application/json",
        headers=headers,
    )


def as_api_error(exc: BaseException) -> ApiError:
    """Map anything a handler can raise to the error the client gets."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotFoundError):
        return ApiError(404, NAME_UNKNOWN, str(exc))
    if isinstance(exc, UsageError):
        return ApiError(400, NAME_INVALID, str(exc))
    if isinstance(exc, UpstreamError):
        return _upstream_error(exc)
    if isinstance(exc, ProviderError):
        return UpstreamFault(502, f"cannot get a credential for the upstream: {exc}")
    if isinstance(exc, (ConfigError, StoreError)):
        return ApiError(500, UNKNOWN, f"proxy configuration: {exc}")
    if isinstance(exc, RegistryError):
        return UpstreamFault(502, str(exc))
    if isinstance(exc, RegauthError):
        return ApiError(500, UNKNOWN, str(exc))
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamFault(504, "the upstream did not answer in time")
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamFault(502, f"the upstream connection failed: {type(exc).__name__}")
    return ApiError(500, UNKNOWN, "internal proxy error (see the proxy's log)")


def _upstream_error(exc: UpstreamError) -> ApiError:
    if exc.outcome is Outcome.TIMED_OUT:
        return UpstreamFault(504, str(exc))
    if exc.outcome is Outcome.RATE_LIMITED:
        return ApiError(429, TOOMANYREQUESTS, str(exc))
    if exc.outcome in (Outcome.WRONG_CREDENTIALS, Outcome.NO_PULL_PERMISSION):
        return ApiError(403, DENIED, str(exc))
    if exc.outcome is Outcome.REPOSITORY_NOT_FOUND:
        return ApiError(404, NAME_UNKNOWN, str(exc))
    if exc.status in (503, 504):
        return UpstreamFault(exc.status, str(exc))
    return UpstreamFault(502, str(exc))


def is_internal(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault of the proxy itself rather than of the upstream, the client or the
    configuration (which all arrive as regauth errors, or as aiohttp's and asyncio's transport errors)."""
    return not isinstance(exc, ApiError | RegauthError | aiohttp.ClientError | asyncio.TimeoutError | OSError)


def internal_failure(exc: BaseException) -> str:
    """``TypeError at regauth/proxy/relay.py:123``: the type and where, not the message, since a foreign
    exception's text can hold a URL's query."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"internal error {type(exc).__name__}{where}"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        error = as_api_error(exc)
        if error.status >= 500 and is_internal(exc):
            log.error("%s %s: %s", request.method, redact(request.path), internal_failure(exc))
        elif error.status >= 500:
            log.warning("%s %s: %s", request.method, redact(request.path), error.message)
        return error_response(error)
