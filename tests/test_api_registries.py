"""The JSON API against the real registries (htpasswd over TLS, token auth) and small hostile servers:
create (201, 400 with each outcome, 409, 422), get by id or name, list with filters and paging, patch,
delete, validate, the audit log, and the host-move rule."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from support.api import app_for, body_for, call, events, token
from support.registry import RegistryFixture, free_port

from regauth import usage
from regauth.config import Settings
from regauth.registries import RegistryBook

ClientFactory = Callable[..., Awaitable[TestClient]]
ServerFactory = Callable[..., Awaitable[TestServer]]
RECORD_FIELDS = {
    "id", "name", "url", "username", "provider", "options", "insecure", "repository", "active",
    "has_secret", "created_at", "updated_at", "created_by", "updated_by", "last_validation",
}  # fmt: skip
V2 = {"Docker-Distribution-API-Version": "registry/2.0"}


@pytest.fixture
async def api(aiohttp_client: ClientFactory, settings: Settings) -> tuple[TestClient, str, str]:
    client = await aiohttp_client(app_for(settings))
    return client, token(settings, "writer", "write"), token(settings, "reader", "read")


def _fake(routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]) -> web.Application:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    return app


async def test_create_validates_then_answers_the_record(
    api: tuple[TestClient, str, str], registry_htpasswd: RegistryFixture, settings: Settings
) -> None:
    client, writer, reader = api
    fx = registry_htpasswd
    body = body_for(fx, "ht", url=f"https://{fx.host.upper()}/v2/", repository=fx.repository)
    status, data, _ = await call(client, "POST", "/api/v1/registries", writer, body)
    assert status == 201, data
    assert set(data) == RECORD_FIELDS
    assert data["url"] == fx.host and data["name"] == "ht" and data["username"] == fx.username
    assert data["has_secret"] is True and data["active"] is True
    assert data["created_by"] == data["updated_by"] == "writer"
    assert data["last_validation"]["outcome"] == "valid" and data["last_validation"]["at"]
    for key in (data["id"], "ht"):
        status, got, _ = await call(client, "GET", f"/api/v1/registries/{key}", reader)
        assert status == 200 and got == data
    # The same record the CLI and the helper read.
    saved = RegistryBook.for_settings(settings).get("ht")
    assert saved.id == data["id"] and saved.ca_file and saved.created_by == "writer"
    assert fx.password and fx.password not in str(data)
    [event] = events(settings)
    assert event["action"] == "created" and event["actor"] == "writer" and event["secret"] == "set"
    assert "password" not in event["fields"] and fx.password not in str(event)


@pytest.mark.parametrize("kind", ["htpasswd", "token"])
async def test_wrong_password_is_400_and_saves_nothing(
    kind: str, request: pytest.FixtureRequest, api: tuple[TestClient, str, str], settings: Settings
) -> None:
    client, writer, _ = api
    fx: RegistryFixture = request.getfixturevalue(f"registry_{kind}")
    status, data, _ = await call(
        client, "POST", "/api/v1/registries", writer, body_for(fx, kind, password="wrong-pw-4711")
    )
    assert status == 400, data
    [error] = data["errors"]
    assert error["code"] == "VALIDATION_FAILED" and error["outcome"] == "wrong_credentials"
    assert "nothing was saved" in error["message"] and "wrong-pw-4711" not in str(data)
    assert RegistryBook.for_settings(settings).all() == [] and events(settings) == []


async def test_token_registry_valid_and_pull_outcomes(
    api: tuple[TestClient, str, str], registry_token: RegistryFixture
) -> None:
    client, writer, _ = api
    fx = registry_token
    assert fx.token_server is not None
    status, data, _ = await call(
        client, "POST", "/api/v1/validate", writer, body_for(fx, "t", repository="test/does-not-exist")
    )
    assert status == 200 and data["valid"] is False and data["outcome"] == "repository_not_found", data
    with fx.token_server.refusing(fx.repository):
        status, data, _ = await call(
            client, "POST", "/api/v1/validate", writer, body_for(fx, "t", repository=fx.repository)
        )
    assert data["outcome"] == "no_pull_permission", data
    status, data, _ = await call(
        client, "POST", "/api/v1/registries", writer, body_for(fx, "tok", repository=fx.repository)
    )
    assert status == 201 and data["last_validation"]["outcome"] == "valid", data


async def test_tls_unreachable_not_v2_rate_limited_realm_refused(
    api: tuple[TestClient, str, str], registry_htpasswd: RegistryFixture, aiohttp_server: ServerFactory
) -> None:
    client, writer, _ = api
    fx = registry_htpasswd

    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404, text="nothing here")

    async def limited(request: web.Request) -> web.Response:
        return web.json_response(
            {"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}, status=429
        )

    async def elsewhere(request: web.Request) -> web.Response:
        challenge = 'Bearer realm="https://127.0.0.2:1/token",service="x"'
        return web.Response(status=401, headers={**V2, "WWW-Authenticate": challenge})

    web_server = await aiohttp_server(_fake({"/v2/": not_found}))
    limited_server = await aiohttp_server(_fake({"/v2/": limited}))
    realm_server = await aiohttp_server(_fake({"/v2/": elsewhere}))
    no_ca = {k: v for k, v in body_for(fx, "ht").items() if k != "ca_pem"}
    plain = {"name": "p", "insecure": True, "username": "u", "password": "pw-never-sent-1"}
    cases: list[tuple[dict[str, Any], str]] = [
        (no_ca, "tls_error"),
        ({**plain, "url": f"http://127.0.0.1:{free_port()}"}, "unreachable"),
        ({**plain, "url": f"http://127.0.0.1:{web_server.port}"}, "not_v2"),
        ({**plain, "url": f"http://127.0.0.1:{limited_server.port}"}, "rate_limited"),
        ({**plain, "url": f"http://127.0.0.1:{realm_server.port}"}, "realm_refused"),
    ]
    for body, outcome in cases:
        status, data, _ = await call(client, "POST", "/api/v1/validate", writer, body)
        assert status == 200 and data["outcome"] == outcome and data["valid"] is False, (outcome, data)
        status, data, _ = await call(client, "POST", "/api/v1/registries", writer, body)
        assert status == 400 and data["errors"][0]["outcome"] == outcome, (outcome, data)
        assert "pw-never-sent-1" not in str(data) and (fx.password or "") not in str(data)


async def test_conflicts_are_409_and_malformed_fields_422(
    api: tuple[TestClient, str, str], settings: Settings
) -> None:
    client, writer, _ = api
    base = {"name": "one", "url": "http://127.0.0.1:1", "insecure": True, "validate": False}
    assert (await call(client, "POST", "/api/v1/registries", writer, base))[0] == 201
    for body in ({**base, "url": "http://127.0.0.1:2"}, {**base, "name": "two"}):
        status, data, _ = await call(client, "POST", "/api/v1/registries", writer, body)
        assert status == 409 and data["errors"][0]["code"] == "CONFLICT", data
    malformed: list[tuple[Any, str]] = [
        ({**base, "name": "Bad Name"}, "name"),
        ({**base, "url": "ftp://x"}, "url"),
        ({**base, "insecure": "yes"}, "insecure"),
        ({**base, "colour": "red"}, "colour"),
        ({**base, "password": "a", "token": "b", "username": "u"}, "token"),
        ({**base, "username": "a:b", "password": "p"}, "username"),
        ({**base, "repository": "UPPER/case"}, "repository"),
        ({**base, "options": {"profle": "prod"}}, "options"),
        ({**base, "options": {"k": 1}}, "options"),
        ({**base, "ca_pem": "not a certificate"}, "ca_pem"),
        ({**base, "ca_pem": "-----BEGIN CERTIFICATE-----\nü\n-----END CERTIFICATE-----\n"}, "ca_pem"),
        ({**base, "username": "u"}, "password"),
        ({"url": "x.io"}, "name"),
        (["a list"], "body"),
    ]
    for body, field in malformed:
        status, data, _ = await call(client, "POST", "/api/v1/registries", writer, body)
        assert status == 422 and data["errors"][0]["field"] == field, (field, data)
    for raw in (b"{nope", b"[" * 100_000, b"\xff\xfe"):
        resp = await client.post(
            "/api/v1/registries", data=raw, headers={"Authorization": f"Bearer {writer}"}
        )
        assert resp.status == 422 and (await resp.json())["errors"][0]["field"] == "body"
    status, data, _ = await call(
        client, "POST", "/api/v1/registries", writer, {"name": "x", "url": "http://h.io", "validate": False}
    )
    assert status == 422 and "insecure" in data["errors"][0]["message"]
    assert [r.name for r in RegistryBook.for_settings(settings).all()] == ["one"]
    # A PATCH that would take a name or host already in use is 409 as well, and changes nothing.
    other = {**base, "name": "two", "url": "http://127.0.0.1:2"}
    assert (await call(client, "POST", "/api/v1/registries", writer, other))[0] == 201
    for change in ({"name": "one"}, {"url": "http://127.0.0.1:1", "validate": False}):
        status, data, _ = await call(client, "PATCH", "/api/v1/registries/two", writer, change)
        assert status == 409 and data["errors"][0]["code"] == "CONFLICT", data
    assert RegistryBook.for_settings(settings).get("two").registry == "127.0.0.1:2"


async def test_list_filters_and_pages(api: tuple[TestClient, str, str]) -> None:
    client, writer, reader = api
    for n in range(5):
        body = {
            "name": f"reg-{n}",
            "url": f"http://127.0.0.1:{1000 + n}",
            "insecure": True,
            "validate": False,
        }
        assert (await call(client, "POST", "/api/v1/registries", writer, body))[0] == 201
    env = {"name": "ci", "url": "ghcr.io", "provider": "env", "validate": False}
    assert (await call(client, "POST", "/api/v1/registries", writer, env))[0] == 201
    status, data, headers = await call(client, "GET", "/api/v1/registries?page=2&page_size=2", reader)
    assert (
        status == 200 and [r["name"] for r in data] == ["reg-2", "reg-3"] and headers["X-Total-Count"] == "6"
    )
    _, data, headers = await call(client, "GET", "/api/v1/registries?provider=env", reader)
    assert [r["name"] for r in data] == ["ci"] and headers["X-Total-Count"] == "1"
    _, data, _ = await call(client, "GET", "/api/v1/registries?q=1003", reader)
    assert [r["name"] for r in data] == ["reg-3"]
    for query in ("page=0", "page_size=101", "page=x", "provider=nope"):
        status, data, _ = await call(client, "GET", f"/api/v1/registries?{query}", reader)
        assert status == 422, query


async def test_patch_delete_and_the_audit_log(
    api: tuple[TestClient, str, str], registry_htpasswd: RegistryFixture, settings: Settings
) -> None:
    client, writer, reader = api
    fx = registry_htpasswd
    status, created, _ = await call(client, "POST", "/api/v1/registries", writer, body_for(fx, "ht"))
    assert status == 201
    rid = created["id"]
    status, data, _ = await call(
        client, "PATCH", f"/api/v1/registries/{rid}", writer, {"password": "wrong-pw-99"}
    )
    assert status == 400 and data["errors"][0]["outcome"] == "wrong_credentials"
    status, data, _ = await call(
        client, "PATCH", "/api/v1/registries/ht", writer, {"name": "ht2", "active": False}
    )
    assert status == 200 and data["name"] == "ht2" and data["active"] is False and data["has_secret"]
    status, data, _ = await call(client, "PATCH", f"/api/v1/registries/{rid}", writer, {"username": "carol"})
    assert status == 422 and data["errors"][0]["field"] == "password"
    status, result, _ = await call(client, "POST", f"/api/v1/registries/{rid}/validate", reader)
    assert status == 200 and result["valid"] is True and result["outcome"] == "valid"
    # Basic auth shows no granted actions (the token registry's cases are validation's tests).
    assert result["access"] == "unknown"
    _, data, _ = await call(client, "GET", f"/api/v1/registries/{rid}", reader)
    assert data["last_validation"]["outcome"] == "valid" and data["updated_by"] == "writer"
    usage.mark_used(str(settings.state_dir), rid)
    assert (await call(client, "DELETE", f"/api/v1/registries/{rid}", writer))[0] == 204
    # As `registry remove`: a later record can never inherit the removed one's last use.
    assert usage.last_used(str(settings.state_dir), rid) is None
    assert (await call(client, "GET", f"/api/v1/registries/{rid}", reader))[0] == 404
    assert (await call(client, "DELETE", f"/api/v1/registries/{rid}", writer))[0] == 404
    status, log, headers = await call(client, "GET", "/api/v1/events", reader)
    assert status == 200 and headers["X-Total-Count"] == str(len(log))
    assert [e["action"] for e in log] == ["created", "updated", "validated", "deleted"]
    assert all(e["registry_id"] == rid for e in log) and log[-1]["actor"] == "writer"
    assert "wrong-pw-99" not in str(log) and (fx.password or "") not in str(log)


async def test_moving_to_another_host_keeps_no_secret(
    api: tuple[TestClient, str, str], registry_htpasswd: RegistryFixture, aiohttp_server: ServerFactory,
    settings: Settings,
) -> None:  # fmt: skip
    client, writer, reader = api
    fx = registry_htpasswd
    seen: list[str] = []

    async def capture(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(status=401, headers={**V2, "WWW-Authenticate": 'Basic realm="x"'})

    hostile = await aiohttp_server(_fake({"/v2/": capture}))
    status, created, _ = await call(client, "POST", "/api/v1/registries", writer, body_for(fx, "ht"))
    assert status == 201
    move = {"url": f"http://127.0.0.1:{hostile.port}", "insecure": True}
    # Validated, the move needs the secret again: the stored one is never sent to the new host.
    status, data, _ = await call(client, "PATCH", "/api/v1/registries/ht", writer, move)
    assert status == 422 and "keeps no stored secret" in data["errors"][0]["message"]
    # Unvalidated, the record moves and its secret is dropped.
    status, data, _ = await call(
        client, "PATCH", "/api/v1/registries/ht", writer, {**move, "validate": False}
    )
    assert status == 200 and data["url"] == f"127.0.0.1:{hostile.port}" and data["has_secret"] is False
    # With no secret, a check has nothing to send: it says so, and the new host saw no credential.
    status, data, _ = await call(client, "POST", "/api/v1/registries/ht/validate", reader)
    assert status == 404 and "has no secret" in data["errors"][0]["message"]
    assert all("Basic" not in header for header in seen)
    assert events(settings)[-1]["secret"] == "dropped"


async def test_a_url_with_a_repository_prefix_is_a_prefix_record(
    api: tuple[TestClient, str, str], settings: Settings
) -> None:
    client, writer, _ = api
    base = {"insecure": True, "validate": False}
    status, data, _ = await call(
        client, "POST", "/api/v1/registries", writer, {**base, "name": "a", "url": "http://127.0.0.1:1/org-a"}
    )
    assert status == 201 and data["url"] == "127.0.0.1:1/org-a", data
    assert RegistryBook.for_settings(settings).get("a").prefix == "org-a"
    other = {**base, "name": "b", "url": "http://127.0.0.1:1/org-b"}
    assert (await call(client, "POST", "/api/v1/registries", writer, other))[0] == 201
    same = {**base, "name": "c", "url": "http://127.0.0.1:1/org-a/"}
    assert (await call(client, "POST", "/api/v1/registries", writer, same))[0] == 409
    bad = {**base, "name": "d", "url": "http://127.0.0.1:1/Org A"}
    status, data, _ = await call(client, "POST", "/api/v1/registries", writer, bad)
    assert status == 422 and data["errors"][0]["field"] == "url"


async def test_a_registry_that_never_answers_is_timed_out(
    api: tuple[TestClient, str, str], aiohttp_server: ServerFactory
) -> None:
    client, writer, _ = api

    async def silent(request: web.Request) -> web.Response:
        await asyncio.sleep(30)  # past validation's 10 s bound; cancelled when regauth gives up
        return web.Response(status=500)

    server = await aiohttp_server(_fake({"/v2/": silent}))
    body = {"name": "slow", "url": f"http://127.0.0.1:{server.port}", "insecure": True, "username": "u"}
    body["password"] = "pw-never-sent-2"
    status, data, _ = await call(client, "POST", "/api/v1/registries", writer, body)
    assert status == 400 and data["errors"][0]["outcome"] == "timed_out", data
    assert "pw-never-sent-2" not in str(data)
    status, data, _ = await call(client, "GET", "/api/v1/registries", writer)
    assert status == 200 and [r["name"] for r in data] == [], data
