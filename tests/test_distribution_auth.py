"""The Authenticator and the token flows, against the real token registry and small fake token servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support.registry import RegistryFixture

from regauth.distribution.auth import Authenticator
from regauth.distribution.challenge import Challenge, parse_challenges
from regauth.distribution.client import RegistryClient
from regauth.distribution.credential import Credential
from regauth.distribution.errors import Outcome, UpstreamError
from regauth.distribution.target import RegistryTarget
from regauth.distribution.token import TokenResponse, fetch_token, parse_issued_at, realm_url
from regauth.distribution.transport import make_session

ServerFactory = Callable[..., Awaitable[TestServer]]
SCOPE = "repository:test/app:pull"


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session() as session:
        yield session


def upstream_of(fx: RegistryFixture) -> RegistryTarget:
    return RegistryTarget(fx.host, fx.url, fx.ca_file)


def cred(fx: RegistryFixture) -> Credential:
    assert fx.username and fx.password
    return Credential(fx.username, fx.password)


async def challenges_of(session: aiohttp.ClientSession, fx: RegistryFixture) -> list[Challenge]:
    ping = await RegistryClient(session, upstream_of(fx), None).ping()
    assert ping.status == 401
    return ping.challenges


# --- against the real token registry ----------------------------------------------------------------


async def test_token_is_cached(session: aiohttp.ClientSession, registry_token: RegistryFixture) -> None:
    fx, server = registry_token, registry_token.token_server
    assert server is not None
    auth = Authenticator(session)
    challenges = await challenges_of(session, fx)
    before = server.issued_count
    first = await auth.authorize(upstream_of(fx), cred(fx), challenges, SCOPE)
    second = await auth.authorize(upstream_of(fx), cred(fx), challenges, SCOPE)
    assert first is not None and first.startswith("Bearer ") and first == second
    assert auth.mints == 1 and server.issued_count == before + 1
    assert auth.cached(upstream_of(fx), cred(fx), SCOPE) == first
    # Another scope, another token; the scope set is order-insensitive.
    two = "repository:test/app:pull repository:test/other:pull"
    await auth.authorize(upstream_of(fx), cred(fx), challenges, two)
    assert auth.cached(upstream_of(fx), cred(fx), " ".join(reversed(two.split()))) is not None
    assert auth.mints == 2


async def test_fifty_concurrent_callers_share_one_mint(
    session: aiohttp.ClientSession, registry_token: RegistryFixture
) -> None:
    fx, server = registry_token, registry_token.token_server
    assert server is not None
    auth = Authenticator(session)
    challenges = await challenges_of(session, fx)
    before = server.issued_count
    # One upstream for all: building its SSL context is what would take time here.
    upstream = upstream_of(fx)
    headers = await asyncio.gather(
        *(auth.authorize(upstream, cred(fx), challenges, SCOPE) for _ in range(50))
    )
    assert len(set(headers)) == 1
    assert auth.mints == 1 and server.issued_count == before + 1


async def test_token_expires_with_a_margin(
    session: aiohttp.ClientSession, registry_token: RegistryFixture
) -> None:
    fx, server = registry_token, registry_token.token_server
    assert server is not None
    clock = Clock(time.time())
    auth = Authenticator(session, margin=10.0, clock=clock)
    challenges = await challenges_of(session, fx)
    first = await auth.authorize(upstream_of(fx), cred(fx), challenges, SCOPE)
    clock.now += server.expires_in - 12
    assert await auth.authorize(upstream_of(fx), cred(fx), challenges, SCOPE) == first
    clock.now += 3
    assert auth.cached(upstream_of(fx), cred(fx), SCOPE) is None
    assert await auth.authorize(upstream_of(fx), cred(fx), challenges, SCOPE) != first
    assert auth.mints == 2


async def test_credentials_do_not_share_tokens(
    session: aiohttp.ClientSession, registry_token: RegistryFixture
) -> None:
    fx = registry_token
    assert fx.token_server is not None
    other_user, other_password = list(fx.token_server.users.items())[1]
    auth = Authenticator(session)
    challenges = await challenges_of(session, fx)
    mine = await auth.authorize(upstream_of(fx), cred(fx), challenges, SCOPE)
    theirs = await auth.authorize(upstream_of(fx), Credential(other_user, other_password), challenges, SCOPE)
    anonymous = await auth.authorize(upstream_of(fx), None, challenges, SCOPE)
    assert len({mine, theirs, anonymous}) == 3 and auth.mints == 3
    auth.invalidate(upstream_of(fx), cred(fx), SCOPE)
    assert auth.cached(upstream_of(fx), cred(fx), SCOPE) is None
    assert auth.cached(upstream_of(fx), None, SCOPE) == anonymous


async def test_a_cancelled_waiter_does_not_cancel_the_fetch(
    session: aiohttp.ClientSession, registry_token: RegistryFixture
) -> None:
    fx = registry_token
    auth = Authenticator(session)
    challenges = await challenges_of(session, fx)
    tasks = [
        asyncio.ensure_future(auth.authorize(upstream_of(fx), cred(fx), challenges, SCOPE)) for _ in range(3)
    ]
    await asyncio.sleep(0)
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1] == results[2] and isinstance(results[1], str)
    assert auth.mints == 1


async def test_wrong_password_fails_every_waiter_and_is_not_cached(
    session: aiohttp.ClientSession, registry_token: RegistryFixture
) -> None:
    fx = registry_token
    auth = Authenticator(session)
    challenges = await challenges_of(session, fx)
    bad = Credential(cred(fx).username, "wrong-password-1")
    results = await asyncio.gather(
        *(auth.authorize(upstream_of(fx), bad, challenges, SCOPE) for _ in range(5)), return_exceptions=True
    )
    for result in results:
        assert isinstance(result, UpstreamError) and result.outcome is Outcome.WRONG_CREDENTIALS
        assert "wrong-password-1" not in str(result)
    assert auth.mints == 0 and auth.cached(upstream_of(fx), bad, SCOPE) is None


async def test_password_grant_and_refresh_token(
    session: aiohttp.ClientSession, registry_token: RegistryFixture
) -> None:
    fx, server = registry_token, registry_token.token_server
    assert server is not None and fx.username is not None
    (bearer,) = await challenges_of(session, fx)
    response = await fetch_token(session, upstream_of(fx), bearer, cred(fx), SCOPE, password_grant=True)
    last = server.requests[-1]
    assert (last.method, last.grant_type, last.client_id) == ("POST", "password", "regauth")
    assert response.token and response.expires_in == server.expires_in
    identity = Credential("<token>", server.new_refresh_token(fx.username))
    auth = Authenticator(session)
    header = await auth.authorize(upstream_of(fx), identity, [bearer], SCOPE)
    assert header and header.startswith("Bearer ")
    last = server.requests[-1]
    assert (last.grant_type, last.scopes, last.client_id) == ("refresh_token", [SCOPE], "regauth")


# --- fake token servers ----------------------------------------------------------------------------


async def _fake_realm(
    aiohttp_server: ServerFactory, status: int, body: Any
) -> tuple[RegistryTarget, Challenge]:
    async def token(request: web.Request) -> web.Response:
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_get("/token", token)
    server = await aiohttp_server(app)
    upstream = RegistryTarget(f"127.0.0.1:{server.port}", f"http://127.0.0.1:{server.port}")
    (challenge,) = parse_challenges(f'Bearer realm="http://127.0.0.1:{server.port}/token",service="svc"')
    return upstream, challenge


async def test_access_token_and_default_lifetime(
    session: aiohttp.ClientSession, aiohttp_server: ServerFactory
) -> None:
    upstream, challenge = await _fake_realm(aiohttp_server, 200, {"access_token": "tok-1"})
    clock = Clock(1_000_000.0)
    auth = Authenticator(session, clock=clock, margin=10.0)
    assert await auth.authorize(upstream, None, [challenge], SCOPE) == "Bearer tok-1"
    clock.now += 49
    assert auth.cached(upstream, None, SCOPE) == "Bearer tok-1"
    clock.now += 2
    assert auth.cached(upstream, None, SCOPE) is None
    # Stale tokens are dropped when the next one is stored, so a long-running proxy does not grow.
    await auth.authorize(upstream, None, [challenge], "repository:other:pull")
    assert len(auth._tokens) == 1


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (429, {"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}, Outcome.RATE_LIMITED),
        (500, {}, Outcome.UNREACHABLE),
        (200, {"nothing": "here"}, Outcome.NOT_V2),
        (400, {"error": "invalid_grant"}, Outcome.WRONG_CREDENTIALS),
        (403, {}, Outcome.WRONG_CREDENTIALS),
    ],
)
async def test_token_server_failures(
    session: aiohttp.ClientSession, aiohttp_server: ServerFactory, status: int, body: Any, outcome: Outcome
) -> None:
    upstream, challenge = await _fake_realm(aiohttp_server, status, body)
    with pytest.raises(UpstreamError) as caught:
        await Authenticator(session).authorize(upstream, Credential("u", "pw-secret-9"), [challenge], SCOPE)
    assert caught.value.outcome is outcome
    assert "pw-secret-9" not in str(caught.value)


async def test_basic_challenge(session: aiohttp.ClientSession) -> None:
    upstream = RegistryTarget("h:1", "https://h:1", None)
    (basic,) = parse_challenges('Basic realm="r"')
    auth = Authenticator(session)
    assert await auth.authorize(upstream, None, [basic]) is None
    header = await auth.authorize(upstream, Credential("u", "p"), [basic])
    assert header == "Basic dTpw" and auth.cached(upstream, Credential("u", "p")) == header
    assert auth.cached(upstream, Credential("<token>", "refresh")) is None
    with pytest.raises(UpstreamError) as caught:
        await auth.authorize(upstream, None, parse_challenges('Negotiate, Digest realm="x"'))
    assert caught.value.outcome is Outcome.NOT_V2


# --- pure parts ----------------------------------------------------------------------------------------


def test_plain_http_realm_is_refused_for_an_https_registry() -> None:
    (challenge,) = parse_challenges('Bearer realm="http://auth.example/token"')
    with pytest.raises(UpstreamError) as caught:
        realm_url(RegistryTarget("r.example", "https://r.example", None), challenge, None)
    assert caught.value.outcome is Outcome.REALM_REFUSED
    # Anonymous, from an insecure registry: nothing to leak.
    assert realm_url(RegistryTarget("r.example", "http://r.example"), challenge, None).host == "auth.example"
    for bad in ('Bearer service="x"', 'Bearer realm="ftp://x/token"', 'Bearer realm="http://[::1"'):
        with pytest.raises(UpstreamError):
            realm_url(RegistryTarget("r", "https://r", None), parse_challenges(bad)[0], None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05Z", 1704164645.0),
        ("2024-01-02T03:04:05.123456789Z", 1704164645.123456789),
        ("2024-01-02T04:04:05+01:00", 1704164645.0),
        ("2024-01-02T03:04:05", 1704164645.0),
        ("yesterday", None),
        (12345, None),
        ("2024-13-02T03:04:05Z", None),
    ],
)
def test_parse_issued_at(text: object, expected: float | None) -> None:
    result = parse_issued_at(text)
    assert result == pytest.approx(expected) if expected is not None else result is None


def test_expiry_counts_from_a_plausible_issued_at() -> None:
    now = 1_000_000.0
    assert TokenResponse("t", 300, issued_at=now - 100).expires_at(now) == now + 200
    # A future issued_at, or one older than the lifetime, says the clocks disagree: count from now.
    assert TokenResponse("t", 300, issued_at=now + 50).expires_at(now) == now + 300
    assert TokenResponse("t", 300, issued_at=now - 3600).expires_at(now) == now + 300
    assert TokenResponse("t", 300).expires_at(now) == now + 300
