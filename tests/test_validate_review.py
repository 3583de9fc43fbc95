"""Defects found in a review of the registry check: each test names the rule it holds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from regauth.distribution.credential import Credential
from regauth.distribution.errors import Outcome
from regauth.distribution.validate import validate
from regauth.registries import Registry

ServerFactory = Callable[..., Awaitable[TestServer]]
_V2 = {"Docker-Distribution-API-Version": "registry/2.0"}
# Nested past Python's recursion limit: json.loads raises RecursionError, not ValueError.
_NESTED = b"[" * 60_000


def _hostile(where: str) -> web.Application:
    """A registry whose answer at ``where`` is a body nested too deeply to parse, all else well-formed."""

    async def v2(request: web.Request) -> web.Response:
        if where == "ping":
            return web.Response(body=_NESTED, content_type="application/json")
        if where == "rate-limit":
            return web.Response(status=429, body=_NESTED, headers=_V2)
        if where == "token" and "Authorization" not in request.headers:
            realm = f"http://{request.host}/token"
            return web.Response(status=401, headers={**_V2, "WWW-Authenticate": f'Bearer realm="{realm}"'})
        return web.json_response({}, headers=_V2)

    async def token(request: web.Request) -> web.Response:
        return web.Response(body=_NESTED, content_type="application/json")

    async def tags(request: web.Request) -> web.Response:
        return web.Response(body=_NESTED, content_type="application/json", headers=_V2)

    app = web.Application()
    app.router.add_get("/v2/", v2)
    app.router.add_get("/token", token)
    app.router.add_get("/v2/team/app/tags/list", tags)
    return app


@pytest.mark.parametrize(
    ("where", "outcome"),
    [
        ("ping", Outcome.NOT_V2),
        ("rate-limit", Outcome.RATE_LIMITED),
        ("token", Outcome.NOT_V2),
        ("tags", Outcome.NOT_V2),
    ],
)
async def test_a_body_nested_too_deeply_is_a_malformed_answer(
    aiohttp_server: ServerFactory, where: str, outcome: Outcome
) -> None:
    # Every JSON body a registry sends is read as "not the JSON wanted" when it cannot be parsed, a
    # nesting too deep for the parser included: one outcome, never an exception out of the check.
    server = await aiohttp_server(_hostile(where))
    record = Registry(id="", name="lab", registry=f"127.0.0.1:{server.port}", username="ci", insecure=True)
    result = await validate(record.target(), Credential("ci", "pw-9"), "team/app")
    assert result.outcome is outcome, result
    assert "pw-9" not in result.message
