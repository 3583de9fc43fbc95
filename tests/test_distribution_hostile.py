"""Hostile upstreams against the one authorized path: each test plays the attacker's server on 127.0.0.1
and asserts what that server saw.

* a realm on another host gets no credential unless the record names it (``realm_hosts``);
* a token POST (an identity token in the form) never follows a redirect to another origin;
* a token server, a tag list or an error body that never ends is cut at its cap;
* redirects never lead to ``file:``, to plain HTTP elsewhere, or into link-local and private addresses.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support.tls import PKI
from yarl import URL

from regauth.distribution import validate as validation
from regauth.distribution.client import RegistryClient
from regauth.distribution.credential import Credential
from regauth.distribution.errors import Outcome, UpstreamError
from regauth.distribution.realms import check_realm
from regauth.distribution.target import RegistryTarget
from regauth.distribution.transport import (
    TOKEN_BODY_MAX,
    make_session,
    map_errors,
    send,
)
from regauth.distribution.validate import ValidationResult
from regauth.registries import Registry

ServerFactory = Callable[..., Awaitable[TestServer]]
SECRET = "hostile-test-SECRET-value"
CHUNK = b"x" * 65536


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session() as session:
        yield session


@dataclass
class Seen:
    """What a hostile server was sent: (method, path, Authorization, body)."""

    requests: list[tuple[str, str, str | None, bytes]] = field(default_factory=list)
    streamed: int = 0

    async def note(self, request: web.Request) -> None:
        body = await request.read()
        self.requests.append((request.method, request.path_qs, request.headers.get("Authorization"), body))

    def carried(self, text: str) -> bool:
        return any(text in repr(entry) for entry in self.requests)


def _bearer_registry(realm: str, seen: Seen) -> web.Application:
    async def v2(request: web.Request) -> web.Response:
        await seen.note(request)
        challenge = f'Bearer realm="{realm}",service="reg",scope="repository:a:pull"'
        return web.json_response({"errors": []}, status=401, headers={"WWW-Authenticate": challenge})

    app = web.Application()
    app.router.add_route("*", "/v2/{tail:.*}", v2)
    return app


def _thief(seen: Seen) -> web.Application:
    async def steal(request: web.Request) -> web.Response:
        await seen.note(request)
        return web.json_response({"token": "stolen", "expires_in": 300})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", steal)
    return app


async def _tls_server(aiohttp_server: ServerFactory, app: web.Application, pki: PKI) -> TestServer:
    return await aiohttp_server(app, ssl=pki.server_context())


def _record(host: str, pki: PKI | None, **options: str) -> Registry:
    ca = str(pki.ca_file) if pki else None
    return Registry(id="i", name="hostile", registry=host, ca_file=ca, insecure=pki is None, options=options)


# --- which realms get the credential -------------------------------------------------------------------


async def test_a_realm_on_another_host_gets_no_credential(
    aiohttp_server: ServerFactory, test_pki: PKI
) -> None:
    thief_seen, registry_seen = Seen(), Seen()
    # "localhost" is another host than the registry's 127.0.0.1, and in no shared domain.
    thief = await _tls_server(aiohttp_server, _thief(thief_seen), test_pki)
    realm = f"https://localhost:{thief.port}/token"
    registry = await _tls_server(aiohttp_server, _bearer_registry(realm, registry_seen), test_pki)
    record = _record(f"127.0.0.1:{registry.port}", test_pki)
    result = await validate(record, Credential("user", SECRET), "a")
    assert result.outcome is Outcome.REALM_REFUSED
    assert "realm_hosts=localhost" in result.message and SECRET not in result.message
    assert thief_seen.requests == []


async def test_a_realm_the_record_names_gets_the_credential(
    aiohttp_server: ServerFactory, test_pki: PKI
) -> None:
    server_seen, registry_seen = Seen(), Seen()
    token_server = await _tls_server(aiohttp_server, _thief(server_seen), test_pki)
    realm = f"https://localhost:{token_server.port}/token"
    registry = await _tls_server(aiohttp_server, _bearer_registry(realm, registry_seen), test_pki)
    record = _record(f"127.0.0.1:{registry.port}", test_pki, realm_hosts="localhost")
    await validate(record, Credential("user", SECRET), "a")
    assert server_seen.requests and server_seen.requests[0][2] is not None
    assert server_seen.requests[0][2].startswith("Basic ")


@pytest.mark.parametrize(
    ("realm", "kind"),
    [
        ("http://169.254.169.254/latest/meta-data/iam/", "link-local"),
        ("https://10.1.2.3/token", "private"),
        ("https://[fe80::1]/token", "link-local"),
        ("https://100.100.100.200/token", "private"),
    ],
)
async def test_a_realm_in_the_local_network_is_not_asked_even_anonymously(
    aiohttp_server: ServerFactory, realm: str, kind: str
) -> None:
    # A realm is a host the registry chooses, as a redirect is: an anonymous token request must not
    # become a request into the proxy's own network (the session's guard fails the test if it goes).
    registry = await aiohttp_server(_bearer_registry(realm, Seen()))
    result = await validate(_record(f"127.0.0.1:{registry.port}", None), None, "a")
    assert result.outcome is Outcome.REALM_REFUSED
    assert f"a {kind} address" in result.message and "--option realm_hosts=" in result.message


async def test_a_realm_like_the_registrys_own_address_is_asked(aiohttp_server: ServerFactory) -> None:
    seen = Seen()
    token_server = await aiohttp_server(_thief(seen))
    registry = await aiohttp_server(_bearer_registry(f"http://localhost:{token_server.port}/t", Seen()))
    await validate(_record(f"127.0.0.1:{registry.port}", None), None, "a")
    assert seen.requests  # loopback, like the registry's own 127.0.0.1


async def test_an_insecure_registry_sends_no_credential_in_clear_to_another_host(
    aiohttp_server: ServerFactory,
) -> None:
    thief_seen = Seen()
    thief = await aiohttp_server(_thief(thief_seen))
    registry = await aiohttp_server(_bearer_registry(f"http://localhost:{thief.port}/token", Seen()))
    record = _record(f"127.0.0.1:{registry.port}", None, realm_hosts="localhost")
    result = await validate(record, Credential("user", SECRET), "a")
    assert result.outcome is Outcome.REALM_REFUSED and "plain-HTTP" in result.message
    assert thief_seen.requests == []
    # Anonymous: nothing to steal, so the realm is asked.
    await validate(record, None, "a")
    assert thief_seen.requests and thief_seen.requests[0][2] is None


def test_the_realm_rule_by_domain() -> None:
    def allowed(registry: str, realm: str, realm_hosts: frozenset[str] = frozenset()) -> bool:
        upstream = RegistryTarget(registry, f"https://{registry}", None, realm_hosts)
        try:
            check_realm(upstream, URL(realm), credentialed=True)
        except UpstreamError as exc:
            assert exc.outcome is Outcome.REALM_REFUSED
            return False
        return True

    assert allowed("registry-1.docker.io", "https://auth.docker.io/token")
    assert allowed("registry.gitlab.com", "https://gitlab.com/jwt/auth")
    assert allowed("ghcr.io", "https://ghcr.io/token")
    assert allowed("reg.example.com:5000", "https://reg.example.com:8443/token")
    assert not allowed("registry.gitlab.com", "https://gitlab.com.evil.net/jwt/auth")
    assert not allowed("registry.example.com", "https://evil.example.org/token")
    # github.io is a public suffix: two users' pages are two domains.
    assert not allowed("alice.github.io", "https://mallory.github.io/token")
    assert not allowed("127.0.0.1:5000", "https://127.0.0.2/token")
    assert not allowed("registry.gitlab.com", "http://gitlab.com/jwt/auth")
    assert allowed("registry.example.com", "https://sso.corp.net/token", frozenset({"sso.corp.net"}))
    assert not allowed("registry.example.com", "http://sso.corp.net/token", frozenset({"sso.corp.net"}))


# --- a credential in a body never follows a redirect ------------------------------------------------


async def test_an_identity_token_is_not_reposted_to_another_origin(
    aiohttp_server: ServerFactory, test_pki: PKI
) -> None:
    thief_seen, realm_seen = Seen(), Seen()
    thief = await _tls_server(aiohttp_server, _thief(thief_seen), test_pki)

    async def moved(request: web.Request) -> web.Response:
        await realm_seen.note(request)
        raise web.HTTPTemporaryRedirect(f"https://127.0.0.1:{thief.port}/steal")

    realm_app = web.Application()
    realm_app.router.add_route("*", "/token", moved)
    realm_server = await _tls_server(aiohttp_server, realm_app, test_pki)
    realm = f"https://127.0.0.1:{realm_server.port}/token"
    registry = await _tls_server(aiohttp_server, _bearer_registry(realm, Seen()), test_pki)
    result = await validate(_record(f"127.0.0.1:{registry.port}", test_pki), Credential("<token>", SECRET))
    assert not result.ok and "redirected a request with a credential" in result.message
    assert realm_seen.carried(SECRET)  # the realm the registry named was asked, once
    assert thief_seen.requests == []


# --- bodies that never end ----------------------------------------------------------------------------


def _endless(seen: Seen, status: int = 200, headers: dict[str, str] | None = None) -> web.Application:
    async def forever(request: web.Request) -> web.StreamResponse:
        await seen.note(request)
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        try:
            for _ in range(300 * 16):  # 300 MiB at the most: a bound for the test itself
                await response.write(CHUNK)
                seen.streamed += len(CHUNK)
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forever)
    return app


async def test_a_token_server_that_never_stops_is_cut_at_its_cap(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    realm_seen = Seen()
    realm_server = await aiohttp_server(_endless(realm_seen))
    registry = await aiohttp_server(_bearer_registry(f"http://127.0.0.1:{realm_server.port}/t", Seen()))
    upstream = RegistryTarget(f"127.0.0.1:{registry.port}", f"http://127.0.0.1:{registry.port}")
    client = RegistryClient(session, upstream, Credential("user", SECRET))
    with pytest.raises(UpstreamError, match="token response of more than"):
        await client.tags_list("a")
    await asyncio.sleep(0.2)
    # The connection was closed at the cap: the server could not push the rest (socket buffers aside).
    assert realm_seen.streamed < TOKEN_BODY_MAX + 32 * 1024 * 1024


@pytest.mark.parametrize(("status", "what"), [(200, "tag list"), (404, "error body"), (500, "error body")])
async def test_registry_bodies_that_never_end_are_cut(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession, status: int, what: str
) -> None:
    seen = Seen()
    registry = await aiohttp_server(_endless(seen, status, {"Content-Type": "application/json"}))
    upstream = RegistryTarget(f"127.0.0.1:{registry.port}", f"http://127.0.0.1:{registry.port}")
    client = RegistryClient(session, upstream, None)
    with pytest.raises(UpstreamError, match=f"{what} of more than"):
        await client.tags_list("a")


# --- redirects ----------------------------------------------------------------------------------------


def _redirecting(location: str, seen: Seen) -> web.Application:
    async def v2(request: web.Request) -> web.Response:
        await seen.note(request)
        raise web.HTTPTemporaryRedirect(location)

    app = web.Application()
    app.router.add_route("*", "/v2/{tail:.*}", v2)
    return app


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("file:///etc/passwd", "'file' URL"),
        ("http://169.254.169.254/latest/meta-data/", "plain HTTP"),
        ("https://169.254.169.254/latest/meta-data/", "link-local address"),
        ("https://10.1.2.3/internal", "private address"),
        # Carrier-grade NAT space, where Alibaba Cloud's metadata service is; IPv6 site-local.
        ("https://100.100.100.200/latest/meta-data/", "private address"),
        ("https://[fec0::1]/x", "private address"),
        ("https://[fe80::1]/x", "link-local address"),
        ("https://[::ffff:169.254.169.254]/x", "link-local address"),
        ("https://0.0.0.0/x", "reserved address"),
        ("gopher://127.0.0.1:70/", "'gopher' URL"),
    ],
)
async def test_redirects_into_the_local_network_are_refused(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession, location: str, message: str
) -> None:
    registry = await aiohttp_server(_redirecting(location, Seen()))
    upstream = RegistryTarget(f"127.0.0.1:{registry.port}", f"http://127.0.0.1:{registry.port}")
    with pytest.raises(UpstreamError, match=message):
        async with send(session, upstream, "GET", upstream.url("/v2/a/blobs/x")):
            pass


async def test_an_https_registry_cannot_redirect_to_plain_http(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession, test_pki: PKI
) -> None:
    storage_seen = Seen()
    storage = await aiohttp_server(_thief(storage_seen))
    registry = await _tls_server(
        aiohttp_server, _redirecting(f"http://127.0.0.1:{storage.port}/b", Seen()), test_pki
    )
    upstream = RegistryTarget(
        f"127.0.0.1:{registry.port}",
        f"https://127.0.0.1:{registry.port}",
        str(test_pki.ca_file),
    )
    with pytest.raises(UpstreamError, match="plain HTTP"):
        async with send(session, upstream, "GET", upstream.url("/v2/a/blobs/x")):
            pass
    assert storage_seen.requests == []


async def test_a_registry_on_loopback_may_redirect_to_loopback(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession, test_pki: PKI
) -> None:
    storage_seen = Seen()
    storage = await _tls_server(aiohttp_server, _thief(storage_seen), test_pki)
    registry = await _tls_server(
        aiohttp_server, _redirecting(f"https://localhost:{storage.port}/b", Seen()), test_pki
    )
    upstream = RegistryTarget(
        f"127.0.0.1:{registry.port}",
        f"https://127.0.0.1:{registry.port}",
        str(test_pki.ca_file),
    )
    async with send(
        session, upstream, "GET", upstream.url("/v2/a/blobs/x"), headers={"Authorization": "Basic x"}
    ) as resp:
        assert resp.status == 200
    assert [(m, a) for m, _, a, _ in storage_seen.requests] == [("GET", None)]


def test_an_unresolvable_host_is_named() -> None:
    # Built by hand: resolving a real name would send a DNS query off this machine.
    key = aiohttp.client_reqrep.ConnectionKey("nowhere.invalid", 443, True, True, None, None, None)
    cause = aiohttp.ClientConnectorError(key, socket.gaierror(-2, "Name or service not known"))
    with pytest.raises(UpstreamError) as caught, map_errors(URL("https://nowhere.invalid/v2/")):
        raise cause
    assert str(caught.value) == "cannot resolve nowhere.invalid"
    assert caught.value.outcome is Outcome.UNREACHABLE


async def validate(
    record: Registry, credential: Credential | None, repository: str | None = None, **options: Any
) -> ValidationResult:
    """Validate a record as the CLI does: its target, named by its label."""
    return await validation.validate(record.target(), credential, repository, label=record.label, **options)
