"""Errors as the API speaks them: ``{"errors": [{"code", "message", ...}]}``, as Harbor's API does.

The middleware turns every ``RegauthError`` into that JSON with the status its kind means (a bad field
422, no such record 404, a taken name or host 409, a failed validation 400 with its ``outcome``), and
anything unforeseen into a 500 that says nothing of its cause (the log has the exception's type).
Messages are built from names, hosts and outcomes, never from a secret, and pass through ``redact``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from regauth.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    ProviderError,
    RegauthError,
    RegistryError,
    StoreError,
    UsageError,
    ValidationError,
)
from regauth.logs import redact
from regauth.printable import printable

log = logging.getLogger("regauth.api")

INVALID = "INVALID"
NOT_FOUND = "NOT_FOUND"
CONFLICT = "CONFLICT"
VALIDATION_FAILED = "VALIDATION_FAILED"
PROVIDER_FAILED = "PROVIDER_FAILED"
UNAUTHORIZED = "UNAUTHORIZED"
FORBIDDEN = "FORBIDDEN"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
UNAVAILABLE = "UNAVAILABLE"
INTERNAL = "INTERNAL"


class ApiError(RegauthError):
    """An answer of the API's own: a status, a code and one line, in the API's own words (names and
    scopes, never a client's or a registry's text)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


class FieldError(UsageError):
    """A malformed field of a request body or query: 422, naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    outcome: str | None = None,
    headers: dict[str, str] | None = None,
    ours: bool = False,
) -> web.Response:
    # ``ours``: a message of the API's own words, which redaction would garble ("token: send
    # Authorization: Bearer TOKEN"); any other may quote a client's or a registry's text.
    entry: dict[str, str] = {"code": code, "message": printable(message if ours else redact(message))}
    if field is not None:
        # The field's name is ours, not redacted: "password: is empty" must not read "password: [REDACTED]".
        entry["message"] = printable(f"{field}: {redact(message)}")
        entry["field"] = field
    if outcome is not None:
        entry["outcome"] = outcome
    return web.Response(
        status=status,
        text=json.dumps({"errors": [entry]}),
        content_type="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def response_for(exc: RegauthError) -> web.Response:
    """The answer for a regauth error: one status per kind of error, decided here only."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers, ours=True)
    if isinstance(exc, FieldError):
        return error_response(422, INVALID, exc.detail, field=exc.field)
    if isinstance(exc, ValidationError):
        return error_response(400, VALIDATION_FAILED, exc.message, outcome=str(exc.outcome))
    if isinstance(exc, UsageError):
        return error_response(422, INVALID, exc.message)
    if isinstance(exc, NotFoundError):
        return error_response(404, NOT_FOUND, exc.message)
    if isinstance(exc, ConflictError):
        return error_response(409, CONFLICT, exc.message)
    if isinstance(exc, (StoreError, ConfigError)):
        # The server's own files: the operator's to fix, so said in full (they never hold a secret).
        log.error("%s", redact(exc.message))
        return error_response(503, UNAVAILABLE, exc.message)
    if isinstance(exc, ProviderError):
        # The record's provider could not make a credential to check it with (no cloud login, a
        # bad option): the request's to fix, as a failed validation is.
        return error_response(400, PROVIDER_FAILED, exc.message)
    if isinstance(exc, RegistryError):
        return error_response(502, UNAVAILABLE, exc.message)
    return error_response(500, INTERNAL, exc.message)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegauthError as exc:
        return response_for(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 401: UNAUTHORIZED, 403: FORBIDDEN}.get(
            exc.status, INVALID
        )
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(exc.status, code, exc.reason, headers=headers)
    except Exception as exc:  # the edge: nothing unforeseen leaves as a traceback or a detail
        log.error("internal error on %s %s: %s", request.method, request.path, type(exc).__name__)
        return error_response(500, INTERNAL, "internal error (see the server's log)")
