"""Hostile token realms with odd answers: each test plays the realm (and the registry) on 127.0.0.1 and
asserts what the realm saw, and that the answer is an outcome, never a traceback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from test_distribution_hostile import SECRET, Seen, _record, validate

from regauth.distribution.credential import Credential
from regauth.distribution.errors import Outcome, UpstreamError
from regauth.distribution.target import RegistryTarget
from regauth.distribution.token import basic_authorization
from regauth.distribution.transport import make_session, send

ServerFactory = Callable[..., Awaitable[TestServer]]
TOKEN = "realm-issued-token"


def _registry(realm: str, seen: Seen) -> web.Application:
    """A registry that sends its Bearer challenge and takes the realm's token."""

    async def v2(request: web.Request) -> web.Response:
        await seen.note(request)
        if request.headers.get("Authorization") == f"Bearer {TOKEN}":
            return web.json_response({})
        challenge = f'Bearer realm="{realm}",service="reg"'
        return web.json_response({"errors": []}, status=401, headers={"WWW-Authenticate": challenge})

    app = web.Application()
    app.router.add_route("*", "/v2/{tail:.*}", v2)
    return app


def _realm(seen: Seen, body: bytes) -> web.Application:
    async def token(request: web.Request) -> web.Response:
        await seen.note(request)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", token)
    return app


async def test_an_expires_in_of_four_hundred_digits_is_a_token_not_a_traceback(
    aiohttp_server: ServerFactory,
) -> None:
    seen = Seen()
    body = b'{"token": "%s", "expires_in": 1%s}' % (TOKEN.encode(), b"0" * 400)
    realm = await aiohttp_server(_realm(seen, body))
    registry = await aiohttp_server(_registry(f"http://127.0.0.1:{realm.port}/token", Seen()))
    result = await validate(_record(f"127.0.0.1:{registry.port}", None), Credential("user", SECRET))
    assert result.outcome is Outcome.VALID, result.message
    assert len(seen.requests) == 1


async def test_a_realm_url_with_a_user_in_it_gets_the_credential_not_a_traceback(
    aiohttp_server: ServerFactory,
) -> None:
    seen = Seen()
    realm = await aiohttp_server(_realm(seen, b'{"token": "%s"}' % TOKEN.encode()))
    realm_url = f"http://someone:else@127.0.0.1:{realm.port}/token"
    registry = await aiohttp_server(_registry(realm_url, Seen()))
    result = await validate(_record(f"127.0.0.1:{registry.port}", None), Credential("user", SECRET))
    assert result.outcome is Outcome.VALID, result.message
    # The record's credential, as Docker sends it: a header set wins over the URL's userinfo.
    assert [auth for _, _, auth, _ in seen.requests] == [basic_authorization("user", SECRET)]


async def test_a_redirect_with_a_user_in_it_is_followed_with_the_header_not_a_traceback(
    aiohttp_server: ServerFactory,
) -> None:
    seen = Seen()

    async def blob(request: web.Request) -> web.Response:
        await seen.note(request)
        if request.path == "/v2/a/blobs/x":
            raise web.HTTPTemporaryRedirect(f"http://u:p@127.0.0.1:{request.url.port}/storage/x")
        return web.Response(body=b"blob")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", blob)
    server = await aiohttp_server(app)
    upstream = RegistryTarget(f"127.0.0.1:{server.port}", f"http://127.0.0.1:{server.port}")
    async with (
        make_session() as session,
        send(
            session, upstream, "GET", upstream.url("/v2/a/blobs/x"), headers={"Authorization": "Bearer t"}
        ) as resp,
    ):
        assert resp.status == 200
    assert [(path, auth) for _, path, auth, _ in seen.requests] == [
        ("/v2/a/blobs/x", "Bearer t"),
        ("/storage/x", "Bearer t"),
    ]


@pytest.mark.parametrize("token", ["abc\\r\\nX-Injected: 1", "abc\\u0000"])
async def test_a_token_with_control_characters_is_refused_not_sent(
    aiohttp_server: ServerFactory, token: str
) -> None:
    registry_seen = Seen()
    realm = await aiohttp_server(_realm(Seen(), b'{"token": "%s"}' % token.encode()))
    registry = await aiohttp_server(_registry(f"http://127.0.0.1:{realm.port}/token", registry_seen))
    result = await validate(_record(f"127.0.0.1:{registry.port}", None), Credential("user", SECRET))
    assert result.outcome is Outcome.NOT_V2 and "control characters" in result.message
    # Only the first, unauthenticated ping reached the registry.
    assert [auth for _, _, auth, _ in registry_seen.requests] == [None]


# Hosts yarl or the resolver cannot take (an empty A-label, an empty label, a label of 64 characters):
# each raised UnicodeError from wherever the host was first used.
UNUSABLE_HOSTS = ["xn--", "xn--zz-ssssss.invalid", "a..b", "a" * 64 + ".invalid"]


@pytest.mark.parametrize("host", UNUSABLE_HOSTS)
async def test_a_realm_with_an_unusable_host_is_an_outcome_not_a_traceback(
    aiohttp_server: ServerFactory, host: str
) -> None:
    registry = await aiohttp_server(_registry(f"https://{host}/token", Seen()))
    for credential in (Credential("user", SECRET), None):
        result = await validate(_record(f"127.0.0.1:{registry.port}", None), credential, "a")
        assert result.outcome is Outcome.NOT_V2 and "unusable token realm" in result.message


@pytest.mark.parametrize("host", UNUSABLE_HOSTS)
async def test_a_redirect_to_an_unusable_host_is_an_outcome_not_a_traceback(
    aiohttp_server: ServerFactory, host: str
) -> None:
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"https://{host}/blob")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", moved)
    server = await aiohttp_server(app)
    upstream = RegistryTarget(f"127.0.0.1:{server.port}", f"http://127.0.0.1:{server.port}")
    async with make_session() as session:
        with pytest.raises(UpstreamError, match="redirected to a URL with no usable host"):
            async with send(session, upstream, "GET", upstream.url("/v2/a/blobs/x")):
                pass


async def test_a_token_server_and_registry_that_compress_what_is_asked_are_read(
    aiohttp_server: ServerFactory,
) -> None:
    """As nginx with ``gzip on`` for JSON does: compressed when the request accepts gzip."""
    encodings: list[str | None] = []

    def compressing(answer: Callable[[web.Request], web.Response]) -> web.Application:
        async def handler(request: web.Request) -> web.Response:
            encodings.append(request.headers.get("Accept-Encoding"))
            response = answer(request)
            response.enable_compression()
            return response

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        return app

    def token(request: web.Request) -> web.Response:
        return web.json_response({"token": TOKEN, "expires_in": 300})

    def registry(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            challenge = f'Bearer realm="http://127.0.0.1:{realm.port}/token",service="reg"'
            return web.json_response({"errors": []}, status=401, headers={"WWW-Authenticate": challenge})
        return web.json_response({"name": "a", "tags": ["1.0"]})

    realm = await aiohttp_server(compressing(token))
    server = await aiohttp_server(compressing(registry))
    result = await validate(_record(f"127.0.0.1:{server.port}", None), Credential("user", SECRET), "a")
    assert result.ok, result.message
    assert encodings and set(encodings) == {"identity"}
