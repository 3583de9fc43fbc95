"""Read-only or read-write: what the token server granted, read from its token's ``access`` claim.

Against the real token-auth registry (its token server grants the intersection of what was asked and
what the user holds, as distribution's spec says; one user pull-only) and the registry itself (a push
is refused for the pull-only user, accepted for the other), then hostile token servers whose tokens
say nothing readable: those are ``unknown`` and the validation still passes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support.registry import RegistryFixture

from regauth.distribution import validate as validation
from regauth.distribution.access import probe_scope, read_granted
from regauth.distribution.client import RegistryClient
from regauth.distribution.credential import Credential
from regauth.distribution.errors import Outcome
from regauth.distribution.transport import Timeouts, make_session
from regauth.distribution.validate import ValidationResult
from regauth.registries import Registry

ServerFactory = Callable[..., Awaitable[TestServer]]
REPO = "team/app"
USER, PASSWORD = "ci", "s3cret-access-pw"


def record(fx: RegistryFixture, **changes: Any) -> Registry:
    fields: dict[str, Any] = {
        "id": "r1",
        "name": "acl",
        "registry": fx.host,
        "ca_file": fx.ca_file,
        "username": fx.username,
    }
    return Registry(**{**fields, **changes})


async def validate(
    record: Registry, credential: Credential | None, repository: str | None
) -> ValidationResult:
    return await validation.validate(record.target(), credential, repository, label=record.label)


async def push_status(fx: RegistryFixture, credential: Credential) -> int:
    """What the real registry answers a blob upload start with ``credential``'s push token (401: no push)."""
    from regauth.distribution.errors import UpstreamError

    async with make_session(Timeouts(connect=10, read=10, total=20)) as session:
        client = RegistryClient(session, record(fx).target(), credential)
        scope = f"repository:{fx.repository}:pull,push"
        try:
            async with client.request("POST", f"/v2/{fx.repository}/blobs/uploads/", scope=scope) as resp:
                return resp.status
        except UpstreamError as exc:
            return exc.status or 0


async def test_a_push_capable_user_is_read_write(registry_token: RegistryFixture) -> None:
    fx = registry_token
    assert fx.token_server is not None and fx.username and fx.password
    credential = Credential(fx.username, fx.password)
    result = await validate(record(fx), credential, fx.repository)
    assert result.ok and result.access == "read-write", result.message
    assert f"read-write: the token server grants delete and push on {fx.repository}" in result.message
    assert fx.password not in result.message
    # What the token server said is what the registry does.
    assert await push_status(fx, credential) == 202
    # The probe went to the realm the pull used, with the one wider scope.
    assert probe_scope(fx.repository) in [s for r in fx.token_server.requests for s in r.scopes]


async def test_a_pull_only_user_is_read_only(registry_token: RegistryFixture) -> None:
    fx = registry_token
    server = fx.token_server
    assert server is not None
    user = next(name for name in server.users if name != fx.username)
    credential = Credential(user, server.users[user])
    with server.granting(user, {"pull"}):
        result = await validate(record(fx, username=user), credential, fx.repository)
        assert result.ok and result.access == "read-only", result.message
        assert f"read-only: the token server grants pull only on {fx.repository}" in result.message
        assert await push_status(fx, credential) == 401


async def test_no_repository_anonymous_or_basic_is_unknown(
    registry_token: RegistryFixture, registry_htpasswd: RegistryFixture
) -> None:
    fx = registry_token
    assert fx.username and fx.password
    assert (await validate(record(fx), Credential(fx.username, fx.password), None)).access == "unknown"
    ht = registry_htpasswd
    assert ht.username and ht.password
    basic = await validate(record(ht), Credential(ht.username, ht.password), ht.repository)
    assert basic.ok and basic.access == "unknown"
    assert "whether it can push is unknown: the registry takes Basic auth" in basic.message


def jwt_with(claims: Any) -> str:
    def part(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'ES256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def hostile_app(
    probe_token: str, seen: list[tuple[str, list[str], bool]], probe_status: int = 200
) -> web.Application:
    """A registry and its token realm on one host: pulls work with any token it issued; what it
    answers for the wider probe scope is ``probe_token`` (or ``probe_status``)."""
    issued: set[str] = set()

    async def token(request: web.Request) -> web.Response:
        scopes = request.query.getall("scope", [])
        seen.append((request.path, scopes, request.headers.get("Authorization", "").startswith("Basic ")))
        if any(",push" in s for s in scopes):
            if probe_status != 200:
                return web.json_response({"errors": [{"code": "DENIED"}]}, status=probe_status)
            value = probe_token
        else:
            value = jwt_with({"access": [{"type": "repository", "name": REPO, "actions": ["pull"]}]})
        issued.add(value)
        return web.json_response({"token": value, "expires_in": 300})

    async def v2(request: web.Request) -> web.Response:
        seen.append((request.path, [], False))
        header = request.headers.get("Authorization", "")
        if header.removeprefix("Bearer ") in issued:
            return web.json_response({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})
        realm = f"http://{request.host}/token"
        challenge = f'Bearer realm="{realm}",service="hostile"'
        return web.json_response({}, status=401, headers={"WWW-Authenticate": challenge})

    async def tags(request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in issued:
            return await v2(request)
        return web.json_response({"name": REPO, "tags": ["1.0"]})

    app = web.Application()
    app.router.add_get("/token", token)
    app.router.add_get("/v2/", v2)
    app.router.add_get(f"/v2/{REPO}/tags/list", tags)
    return app


HOSTILE = {
    "opaque": "not-a-jwt-at-all",
    "two-part": "abc.def",
    "garbage-payload": "aGVhZA.%%%%.c2ln",
    "claims-a-list": jwt_with([1, 2]),
    "access-a-string": jwt_with({"access": "everything"}),
    "entry-not-an-object": jwt_with({"access": ["repository:team/app:push"]}),
    "actions-a-string": jwt_with({"access": [{"type": "repository", "name": REPO, "actions": "push"}]}),
    "actions-not-strings": jwt_with({"access": [{"type": "repository", "name": REPO, "actions": [1]}]}),
    "push-for-another-repo": jwt_with(
        {"access": [{"type": "repository", "name": "other", "actions": ["push"]}]}
    ),
    "no-access-claim": jwt_with({"sub": "ci"}),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_a_token_that_says_nothing_readable_is_unknown(
    aiohttp_server: ServerFactory, kind: str
) -> None:
    seen: list[tuple[str, list[str], bool]] = []
    server = await aiohttp_server(hostile_app(HOSTILE[kind], seen))
    hostile = Registry(
        id="r1", name="hostile", registry=f"127.0.0.1:{server.port}", username=USER, insecure=True
    )
    result = await validate(hostile, Credential(USER, PASSWORD), REPO)
    assert result.outcome is Outcome.VALID and result.access == "unknown", result.message
    assert "whether it can push is unknown" in result.message
    assert PASSWORD not in result.message and HOSTILE[kind] not in result.message
    # The wider request went once, to the realm the pull used, with the credential.
    probes = [entry for entry in seen if entry[0] == "/token" and entry[1] == [probe_scope(REPO)]]
    assert probes == [("/token", [probe_scope(REPO)], True)]


async def test_a_refused_probe_is_unknown_and_the_check_still_passes(aiohttp_server: ServerFactory) -> None:
    seen: list[tuple[str, list[str], bool]] = []
    server = await aiohttp_server(hostile_app("", seen, probe_status=403))
    hostile = Registry(
        id="r1", name="hostile", registry=f"127.0.0.1:{server.port}", username=USER, insecure=True
    )
    result = await validate(hostile, Credential(USER, PASSWORD), REPO)
    assert result.ok and result.access == "unknown", result.message
    assert "refused a request for push" in result.message


def test_granted_actions_as_harbor_and_hub_write_them() -> None:
    # Harbor lists every action the account holds, "*" when it has pull, push and delete.
    harbor = jwt_with(
        {"access": [{"type": "repository", "name": REPO, "actions": ["pull", "push", "delete", "*"]}]}
    )
    assert read_granted(harbor, REPO) == ("read-write", f"the token server grants all actions on {REPO}")
    scanner = jwt_with(
        {"access": [{"type": "repository", "name": REPO, "actions": ["scanner-pull", "pull"]}]}
    )
    assert read_granted(scanner, REPO).access == "read-only"
    # Two entries for one repository: their union.
    split = jwt_with(
        {
            "access": [
                {"type": "repository", "name": REPO, "actions": ["pull"]},
                {"type": "repository", "name": REPO, "actions": ["push"]},
            ]
        }
    )
    assert read_granted(split, REPO).access == "read-write"
    assert read_granted(
        jwt_with({"access": [{"type": "repository", "name": REPO, "actions": []}]}), REPO
    ).access == ("unknown")
