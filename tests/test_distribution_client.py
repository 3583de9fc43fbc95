"""The transport (upstream, TLS, redirects) and the V2 client, against real registries and fake servers."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from support.registry import RegistryFixture
from support.tls import PKI

from regauth.distribution.client import MANIFEST_TYPES, RegistryClient, response_error
from regauth.distribution.credential import Credential
from regauth.distribution.errors import Outcome, UpstreamError
from regauth.distribution.target import DOCKER_HUB_API, RegistryTarget, make_ssl_context
from regauth.distribution.transport import make_session, send
from regauth.reference import pull_scope
from regauth.registries import Registry

ServerFactory = Callable[..., Awaitable[TestServer]]
BLOB = b"blob bytes " * 100
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session() as session:
        yield session


def client_for(session: aiohttp.ClientSession, fx: RegistryFixture) -> RegistryClient:
    record = Registry(id="i", name="n", registry=fx.host, ca_file=fx.ca_file, insecure=fx.ca_file is None)
    credential = Credential(fx.username, fx.password) if fx.username and fx.password else None
    return RegistryClient(session, Registry.target(record), credential)


# --- upstreams ---------------------------------------------------------------------------------------


def test_upstream_from_record(tmp_path: Path) -> None:
    hub = Registry.target(Registry(id="i", name="n", registry="docker.io"))
    assert (hub.host, hub.base_url, hub.secure) == ("docker.io", f"https://{DOCKER_HUB_API}", True)
    plain = Registry.target(Registry(id="i", name="n", registry="reg.local:5000", insecure=True))
    assert (plain.base_url, plain.secure) == ("http://reg.local:5000", False)
    with pytest.raises(UpstreamError):
        Registry.target(Registry(id="i", name="n", registry="docker.io", insecure=True))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(UpstreamError) as caught:
        make_ssl_context(str(bad))
    assert caught.value.outcome is Outcome.TLS_ERROR and "bad.pem" in str(caught.value)


# --- redirects -----------------------------------------------------------------------------------------


async def _storage(aiohttp_server: ServerFactory, seen: list[str | None], body: bytes = BLOB) -> TestServer:
    async def blob(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=body)

    app = web.Application()
    app.router.add_get("/bucket/blob", blob)
    return await aiohttp_server(app)


async def _registry(aiohttp_server: ServerFactory, location: str, seen: list[str | None]) -> TestServer:
    """A registry that wants Basic auth and redirects blob reads to ``location``."""

    async def v2(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != "Basic dTpw":
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        if request.path.startswith("/v2/a/blobs/"):
            raise web.HTTPTemporaryRedirect(location)
        return web.json_response({})

    async def local(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=BLOB)

    app = web.Application()
    app.router.add_get("/v2/{tail:.*}", v2)
    app.router.add_get("/local/blob", local)
    return await aiohttp_server(app)


async def test_redirect_to_another_host_drops_authorization(
    session: aiohttp.ClientSession, aiohttp_server: ServerFactory
) -> None:
    storage_seen: list[str | None] = []
    registry_seen: list[str | None] = []
    storage = await _storage(aiohttp_server, storage_seen)
    # Another port: another origin (plain HTTP goes only to an insecure registry's own host).
    registry = await _registry(aiohttp_server, f"http://127.0.0.1:{storage.port}/bucket/blob", registry_seen)
    upstream = RegistryTarget(f"127.0.0.1:{registry.port}", f"http://127.0.0.1:{registry.port}")
    client = RegistryClient(session, upstream, Credential("u", "p"))
    async with client.request("GET", f"/v2/a/blobs/{BLOB_DIGEST}", scope=pull_scope("a")) as resp:
        assert await resp.read() == BLOB
    assert registry_seen == [None, "Basic dTpw"]
    assert storage_seen == [None]


async def test_redirect_on_the_same_origin_keeps_authorization(
    session: aiohttp.ClientSession, aiohttp_server: ServerFactory
) -> None:
    seen: list[str | None] = []
    registry = await _registry(aiohttp_server, "/local/blob", seen)
    upstream = RegistryTarget(f"127.0.0.1:{registry.port}", f"http://127.0.0.1:{registry.port}")
    async with send(
        session,
        upstream,
        "GET",
        upstream.url(f"/v2/a/blobs/{BLOB_DIGEST}"),
        headers={"Authorization": "Basic dTpw"},
    ) as response:
        assert response.status == 200 and await response.read() == BLOB
    assert seen == ["Basic dTpw", "Basic dTpw"]


async def test_redirect_loops_and_downgrades_are_refused(
    session: aiohttp.ClientSession, aiohttp_server: ServerFactory, test_pki: PKI
) -> None:
    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def downgrade(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.1:1/blob")

    app = web.Application()
    app.router.add_get("/loop", loop)
    app.router.add_get("/downgrade", downgrade)
    server = await aiohttp_server(app, ssl=test_pki.server_context())
    upstream = RegistryTarget(
        f"127.0.0.1:{server.port}", f"https://127.0.0.1:{server.port}", str(test_pki.ca_file)
    )
    with pytest.raises(UpstreamError, match="redirects"):
        async with send(session, upstream, "GET", upstream.url("/loop")):
            pass
    with pytest.raises(UpstreamError) as caught:
        async with send(session, upstream, "GET", upstream.url("/downgrade"), headers={"Authorization": "x"}):
            pass
    assert caught.value.outcome is Outcome.TLS_ERROR and "plain HTTP" in str(caught.value)


# --- the client against real registries ------------------------------------------------------------------


async def _get(
    client: RegistryClient, method: str, repository: str, path: str
) -> tuple[int, CIMultiDict[str], bytes]:
    headers = {"Accept": ", ".join(MANIFEST_TYPES)}
    async with client.request(
        method,
        f"/v2/{repository}/{path}",
        scope=pull_scope(repository),
        headers=headers,
        repository=repository,
    ) as resp:
        return resp.status, CIMultiDict(resp.headers), await resp.read()


@pytest.mark.parametrize("kind", ["anon", "htpasswd", "token"])
async def test_manifest_blobs_and_tags(
    kind: str, request: pytest.FixtureRequest, session: aiohttp.ClientSession
) -> None:
    fx: RegistryFixture = request.getfixturevalue(f"registry_{kind}")
    client = client_for(session, fx)
    status, headers, _ = await _get(client, "HEAD", fx.repository, f"manifests/{fx.tag}")
    assert status == 200 and headers["Docker-Content-Digest"] == fx.digest
    assert int(headers["Content-Length"]) == len(fx.image.manifest)
    status, headers, body = await _get(client, "GET", fx.repository, f"manifests/{fx.digest}")
    assert (status, body) == (200, fx.image.manifest)
    for digest in fx.image.blob_digests:
        status, _, data = await _get(client, "GET", fx.repository, f"blobs/{digest}")
        assert status == 200 and "sha256:" + hashlib.sha256(data).hexdigest() == digest
    assert await client.tags_list(fx.repository) == [fx.tag]


async def test_client_errors(session: aiohttp.ClientSession, registry_token: RegistryFixture) -> None:
    fx = registry_token
    client = client_for(session, fx)
    status, _, body = await _get(client, "GET", fx.repository, "manifests/no-such-tag")
    error = response_error(client.upstream, status, body, fx.repository)
    assert error.outcome is Outcome.REPOSITORY_NOT_FOUND and "manifest not found" in str(error)
    with pytest.raises(UpstreamError) as caught:
        await client.tags_list("test/none")
    assert caught.value.outcome is Outcome.REPOSITORY_NOT_FOUND
    assert fx.token_server is not None
    # A fresh client: the first one holds a token for test/app from before the refusal.
    with fx.token_server.refusing(fx.repository), pytest.raises(UpstreamError) as caught:
        await client_for(session, fx).tags_list(fx.repository)
    assert caught.value.outcome is Outcome.NO_PULL_PERMISSION


async def test_client_reuses_the_cached_token(
    session: aiohttp.ClientSession, registry_token: RegistryFixture
) -> None:
    fx = registry_token
    client = client_for(session, fx)
    await client.tags_list(fx.repository)
    await _get(client, "HEAD", fx.repository, f"manifests/{fx.tag}")
    await _get(client, "GET", fx.repository, f"manifests/{fx.tag}")
    assert client.auth.mints == 1


@pytest.mark.parametrize(
    "body", [b'{"tags": 5}', b'{"tags": true}', b'{"tags": "1.0"}', b'{"tags": {"a": 1}}']
)
async def test_a_tag_list_that_is_no_list_is_malformed_not_a_traceback(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession, body: bytes
) -> None:
    async def tags(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v2/{name:.*}/tags/list", tags)
    server = await aiohttp_server(app)
    upstream = RegistryTarget(f"127.0.0.1:{server.port}", f"http://127.0.0.1:{server.port}")
    with pytest.raises(UpstreamError, match="sent a malformed tag list"):
        await RegistryClient(session, upstream, None).tags_list("a")
