"""A record's stored secret was given for its origin, scheme and host: a change to plain HTTP is a move."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from support.api import app_for, call, token

from regauth import cli
from regauth.config import Settings
from regauth.registries import Registry, RegistryBook, stored_secret
from regauth.store.lazy import LazyStore

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
ServerFactory = Callable[..., Awaitable[TestServer]]
_V2 = {"Docker-Distribution-API-Version": "registry/2.0"}


async def _plain_http_capture(aiohttp_server: ServerFactory, saw: list[str]) -> TestServer:
    async def capture(request: web.Request) -> web.Response:
        saw.append(request.headers.get("Authorization", ""))
        return web.Response(status=401, headers={**_V2, "WWW-Authenticate": 'Basic realm="r"'})

    app = web.Application()
    app.router.add_route("*", "/v2/", capture)
    server: TestServer = await aiohttp_server(app)
    return server


async def test_a_patch_to_plain_http_drops_the_stored_secret(
    aiohttp_client: ClientFactory, aiohttp_server: ServerFactory, settings: Settings
) -> None:
    saw: list[str] = []
    server = await _plain_http_capture(aiohttp_server, saw)
    book = RegistryBook.for_settings(settings)
    book.add(Registry(id="", name="lab", registry=f"127.0.0.1:{server.port}", username="ci"), "over-tls-only")
    client = await aiohttp_client(app_for(settings))
    writer = token(settings, "writer", "write")
    # checked: the stored secret is not sent in clear; the caller is told to give it again
    status, data, _ = await call(client, "PATCH", "/api/v1/registries/lab", writer, {"insecure": True})
    assert status == 422 and "keeps no stored secret" in data["errors"][0]["message"], data
    assert saw == [] and book.get("lab").insecure is False
    # unchecked: saved without its secret, so no later check or pull sends it in clear
    body = {"insecure": True, "validate": False}
    status, data, _ = await call(client, "PATCH", "/api/v1/registries/lab", writer, body)
    assert status == 200 and data["insecure"] is True and data["has_secret"] is False, data
    assert stored_secret(LazyStore.for_settings(settings), book.get("lab")) is None
    await call(client, "POST", "/api/v1/registries/lab/validate", writer)
    assert all("b3Zlci10bHMtb25seQ" not in seen for seen in saw), saw
    # a new secret given with the change is kept
    body = {"insecure": True, "password": "meant-for-http", "validate": False}
    status, data, _ = await call(client, "PATCH", "/api/v1/registries/lab", writer, body)
    assert status == 200 and data["has_secret"] is True, data


def test_registry_update_insecure_drops_the_stored_secret(settings: Settings) -> None:
    book = RegistryBook.for_settings(settings)
    book.add(Registry(id="", name="lab", registry="127.0.0.1:1", username="ci"), "over-tls-only")
    assert cli.main(["registry", "update", "lab", "--insecure", "--no-validate"]) == 0
    record = book.get("lab")
    assert record.insecure and stored_secret(LazyStore.for_settings(settings), record) is None
    # back to HTTPS moves nowhere new: a secret given for plain HTTP stays
    book.update("lab", {}, "given-for-http")
    assert cli.main(["registry", "update", "lab", "--no-insecure", "--no-validate"]) == 0
    assert stored_secret(LazyStore.for_settings(settings), book.get("lab")) == "given-for-http"
