"""Bearer tokens for the API: who asks (401 when no known token), and whether their scope allows it (403).

``read`` may list, get and validate saved records; ``write`` may also create, update, delete and check
an unsaved body. A saved record's validation is a POST that changes nothing but its
``last_validation``, so ``read`` may run it; an unsaved body's check runs what the caller chose (a
provider reading the server's environment, its cloud identity) against a host of its choosing. The token
book is read on every request, so a revoked token stops working at once.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from regauth.api import state
from regauth.api.errors import FORBIDDEN, UNAUTHORIZED, ApiError, Handler
from regauth.api.tokens import READ, WRITE, ApiToken, TokenBook

API_PREFIX = "/api/v1/"
# Served to anyone: a client needs the document to learn how to authenticate.
_PUBLIC = frozenset({"/api/v1/openapi.json"})
_RECORDS = API_PREFIX + "registries/"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="regauth"'}
# Longest header value worth hashing: a token is 47 characters.
_TOKEN_MAX = 512


def needed_scope(method: str, path: str) -> str:
    # A saved record's check is a POST to its validate path; any other method there names a record
    # called "validate". An unsaved check (/validate) runs a configuration the caller chose with the
    # server's environment and ambient credentials, so it is a write.
    saved_check = method == "POST" and path.startswith(_RECORDS) and path.endswith("/validate")
    if method in ("GET", "HEAD", "OPTIONS") or saved_check:
        return READ
    return WRITE


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > _TOKEN_MAX:
        return None
    return value


async def identify(tokens: TokenBook, token: str | None) -> ApiToken:
    """The token's record, or a 401."""
    found = await asyncio.to_thread(tokens.verify, token) if token else None
    if found is None:
        reason = "no API token given" if not token else "unknown or revoked API token"
        raise ApiError(
            401,
            UNAUTHORIZED,
            f"{reason}: send Authorization: Bearer TOKEN (`regauth token create`)",
            _CHALLENGE,
        )
    return found


def require(token: ApiToken, scope: str) -> None:
    if not token.may(scope):
        raise ApiError(
            403, FORBIDDEN, f"token {token.name!r} has scope {token.scope!r}; this needs {scope!r}"
        )


@web.middleware
async def bearer_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if not path.startswith(API_PREFIX) or path in _PUBLIC:
        return await handler(request)
    token = await identify(request.app[state.TOKENS], bearer_token(request.headers.get("Authorization")))
    require(token, needed_scope(request.method, path))
    request[state.CALLER] = token
    return await handler(request)
