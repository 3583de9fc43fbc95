"""Every validation outcome, produced for real: the registry binary, the token server, small fake servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer
from support.registry import RegistryFixture, free_port
from support.tls import PKI

from regauth.distribution import validate as validation
from regauth.distribution.credential import Credential
from regauth.distribution.errors import Outcome
from regauth.distribution.validate import ValidationResult, validate_sync
from regauth.registries import Registry

ServerFactory = Callable[..., Awaitable[TestServer]]
TOOMANY = {
    "errors": [
        {
            "code": "TOOMANYREQUESTS",
            "message": "You have reached your pull rate limit. You may increase the limit by authenticating "
            "and upgrading: https://www.docker.com/increase-rate-limit",
        }
    ]
}


def record(fx: RegistryFixture | None = None, host: str = "", **changes: Any) -> Registry:
    fields: dict[str, Any] = {"id": "r1", "name": "test-reg", "registry": host}
    if fx is not None:
        fields.update(registry=fx.host, ca_file=fx.ca_file, insecure=fx.ca_file is None, username=fx.username)
    fields.update(changes)
    return Registry(**fields)


def cred(fx: RegistryFixture, password: str | None = None) -> Credential:
    assert fx.username is not None and fx.password is not None
    return Credential(fx.username, fx.password if password is None else password)


def check(result: ValidationResult, outcome: Outcome, *secrets: str | None) -> None:
    assert result.outcome is outcome, result.message
    assert result.ok is (outcome is Outcome.VALID)
    assert "test-reg" in result.message and "\n" not in result.message
    for secret in filter(None, secrets):
        assert secret not in result.message


# --- valid ---------------------------------------------------------------------------------------


async def test_anonymous_registry_is_valid(registry_anon: RegistryFixture) -> None:
    result = await validate(record(registry_anon), None)
    check(result, Outcome.VALID)
    assert registry_anon.host in result.message
    check(await validate(record(registry_anon), None, "test/app"), Outcome.VALID)


async def test_htpasswd_valid(registry_htpasswd: RegistryFixture) -> None:
    fx = registry_htpasswd
    check(await validate(record(fx), cred(fx)), Outcome.VALID, fx.password)
    check(await validate(record(fx), cred(fx), fx.repository), Outcome.VALID, fx.password)


async def test_token_valid(registry_token: RegistryFixture) -> None:
    fx = registry_token
    check(await validate(record(fx), cred(fx)), Outcome.VALID, fx.password)
    check(await validate(record(fx), cred(fx), fx.repository), Outcome.VALID, fx.password)


def test_validate_sync(registry_htpasswd: RegistryFixture) -> None:
    fx = registry_htpasswd
    saved = record(fx)
    result = validate_sync(saved.target(), cred(fx), fx.repository, label=saved.label)
    check(result, Outcome.VALID, fx.password)


async def test_anonymous_record_on_an_auth_registry_is_reachable(registry_token: RegistryFixture) -> None:
    # docker login is not possible anonymously; what can be checked is that it is a V2 registry.
    check(await validate(record(registry_token, username=None), None), Outcome.VALID)


async def test_identity_token_valid(registry_token: RegistryFixture) -> None:
    fx = registry_token
    assert fx.token_server is not None and fx.username is not None
    refresh = fx.token_server.new_refresh_token(fx.username)
    result = await validate(record(fx, username="<token>"), Credential("<token>", refresh), fx.repository)
    check(result, Outcome.VALID, refresh)
    last = fx.token_server.requests[-1]
    assert (last.method, last.grant_type, last.client_id) == ("POST", "refresh_token", "regauth")


# --- wrong credentials ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["htpasswd", "token"])
async def test_wrong_password(kind: str, request: pytest.FixtureRequest) -> None:
    fx: RegistryFixture = request.getfixturevalue(f"registry_{kind}")
    bad = "not-the-password-123"
    result = await validate(record(fx), cred(fx, bad), fx.repository)
    check(result, Outcome.WRONG_CREDENTIALS, bad, fx.password)
    assert repr(fx.username) in result.message


async def test_unknown_identity_token(registry_token: RegistryFixture) -> None:
    bogus = "bogus-refresh-token-xyz"
    result = await validate(record(registry_token, username="<token>"), Credential("<token>", bogus))
    check(result, Outcome.WRONG_CREDENTIALS, bogus)
    assert "identity token" in result.message


async def test_identity_token_on_basic_registry(registry_htpasswd: RegistryFixture) -> None:
    result = await validate(record(registry_htpasswd), Credential("<token>", "abc-refresh"))
    check(result, Outcome.WRONG_CREDENTIALS, "abc-refresh")


# --- permission and existence --------------------------------------------------------------------


async def test_no_pull_permission(registry_token: RegistryFixture) -> None:
    fx = registry_token
    assert fx.token_server is not None
    with fx.token_server.refusing(fx.repository):
        result = await validate(record(fx), cred(fx), fx.repository)
    check(result, Outcome.NO_PULL_PERMISSION, fx.password)
    assert fx.repository in result.message


async def test_anonymous_pull_refused_by_a_private_registry(registry_token: RegistryFixture) -> None:
    result = await validate(record(registry_token, username=None), None, registry_token.repository)
    check(result, Outcome.NO_PULL_PERMISSION)


@pytest.mark.parametrize("kind", ["anon", "htpasswd", "token"])
async def test_repository_not_found(kind: str, request: pytest.FixtureRequest) -> None:
    fx: RegistryFixture = request.getfixturevalue(f"registry_{kind}")
    credential = cred(fx) if fx.username else None
    result = await validate(record(fx), credential, "test/does-not-exist")
    check(result, Outcome.REPOSITORY_NOT_FOUND, fx.password)
    assert "test/does-not-exist" in result.message


# --- not a registry, TLS, network ----------------------------------------------------------------


def _app(routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]) -> web.Application:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    return app


async def test_not_v2_plain_http(aiohttp_server: ServerFactory) -> None:
    server = await aiohttp_server(web.Application())
    result = await validate(record(host=f"127.0.0.1:{server.port}", insecure=True), None)
    check(result, Outcome.NOT_V2)
    assert "404" in result.message


async def test_not_v2_https_web_server(aiohttp_server: ServerFactory, test_pki: PKI) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    server = await aiohttp_server(_app({"/v2/": hello}), ssl=test_pki.server_context())
    result = await validate(record(host=f"127.0.0.1:{server.port}", ca_file=str(test_pki.ca_file)), None)
    check(result, Outcome.NOT_V2)


async def test_not_v2_401_without_challenge(aiohttp_server: ServerFactory) -> None:
    async def denied(request: web.Request) -> web.Response:
        return web.Response(status=401)

    server = await aiohttp_server(_app({"/v2/": denied}))
    result = await validate(record(host=f"127.0.0.1:{server.port}", insecure=True), Credential("u", "pw-123"))
    check(result, Outcome.NOT_V2, "pw-123")


async def test_plain_http_to_an_https_registry(registry_htpasswd: RegistryFixture) -> None:
    result = await validate(record(registry_htpasswd, insecure=True), cred(registry_htpasswd))
    check(result, Outcome.NOT_V2, registry_htpasswd.password)
    assert "HTTPS" in result.message


async def test_tls_without_the_ca(registry_htpasswd: RegistryFixture) -> None:
    fx = registry_htpasswd
    result = await validate(record(fx, ca_file=None), cred(fx))
    check(result, Outcome.TLS_ERROR, fx.password)
    assert "certificate" in result.message


async def test_tls_with_a_wrong_ca(registry_token: RegistryFixture, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    result = await validate(record(registry_token, ca_file=str(other)), cred(registry_token))
    check(result, Outcome.TLS_ERROR, registry_token.password)


async def test_tls_to_a_plain_http_registry(registry_anon: RegistryFixture) -> None:
    result = await validate(record(registry_anon, insecure=False), None)
    check(result, Outcome.TLS_ERROR)
    assert "insecure" in result.message


async def test_unreadable_ca_file(registry_htpasswd: RegistryFixture, tmp_path: Path) -> None:
    result = await validate(record(registry_htpasswd, ca_file=str(tmp_path / "missing.pem")), None)
    check(result, Outcome.TLS_ERROR)
    assert "missing.pem" in result.message


async def test_unreachable() -> None:
    port = free_port()
    result = await validate(record(host=f"127.0.0.1:{port}", insecure=True), Credential("u", "pw-123"))
    check(result, Outcome.UNREACHABLE, "pw-123")
    assert f"127.0.0.1:{port}" in result.message


async def test_timed_out(aiohttp_server: ServerFactory) -> None:
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response()

    server = await aiohttp_server(_app({"/v2/": hang}))
    result = await validate(record(host=f"127.0.0.1:{server.port}", insecure=True), None, timeout=0.3)
    check(result, Outcome.TIMED_OUT)


# --- rate limits ---------------------------------------------------------------------------------


async def test_rate_limited_on_v2(aiohttp_server: ServerFactory) -> None:
    async def limited(request: web.Request) -> web.Response:
        return web.json_response(TOOMANY, status=429)

    server = await aiohttp_server(_app({"/v2/": limited}))
    result = await validate(record(host=f"127.0.0.1:{server.port}", insecure=True), None)
    check(result, Outcome.RATE_LIMITED)
    assert f"rate limited by 127.0.0.1:{server.port} (toomanyrequests): You have reached" in result.message


async def test_rate_limited_on_pull(aiohttp_server: ServerFactory) -> None:
    async def v2(request: web.Request) -> web.Response:
        return web.json_response({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})

    async def limited(request: web.Request) -> web.Response:
        return web.json_response(TOOMANY, status=429)

    server = await aiohttp_server(_app({"/v2/": v2, "/v2/library/alpine/tags/list": limited}))
    result = await validate(record(host=f"127.0.0.1:{server.port}", insecure=True), None, "library/alpine")
    check(result, Outcome.RATE_LIMITED)


async def validate(
    record: Registry, credential: Credential | None, repository: str | None = None, **options: Any
) -> ValidationResult:
    """Validate a record as the CLI does: its target, named by its label."""
    return await validation.validate(record.target(), credential, repository, label=record.label, **options)
