"""Defects found in a review of the API: each test names the rule it holds."""

from __future__ import annotations

import asyncio
import io
import resource
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from support.api import app_for, call, token

from regauth import cli
from regauth.api.openapi import document
from regauth.config import Settings
from regauth.registries import Registry, RegistryBook, stored_secret
from regauth.store.lazy import LazyStore

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
ServerFactory = Callable[..., Awaitable[TestServer]]
_V2 = {"Docker-Distribution-API-Version": "registry/2.0"}


def _app(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/v2/", handler)
    return app


# Bytes a file may grow to in a process under a file-size limit: the secrets file fits, the records not.
_LIMIT = 4096


async def test_a_read_token_cannot_change_a_registry_named_validate(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    # The scope of a request is the route's, not its path's ending: /registries/validate is a record.
    client = await aiohttp_client(app_for(settings))
    reader = token(settings, "reader", "read")
    writer = token(settings, "writer", "write")
    body: dict[str, Any] = {"name": "validate", "url": "127.0.0.1:1", "insecure": True, "validate": False}
    assert (await call(client, "POST", "/api/v1/registries", writer, body))[0] == 201
    status, data, _ = await call(client, "PATCH", "/api/v1/registries/validate", reader, {"active": False})
    assert status == 403 and data["errors"][0]["code"] == "FORBIDDEN"
    status, data, _ = await call(client, "DELETE", "/api/v1/registries/validate", reader)
    assert status == 403 and data["errors"][0]["code"] == "FORBIDDEN"
    assert [(r.name, r.active) for r in RegistryBook.for_settings(settings).all()] == [("validate", True)]
    # what read may do stays allowed
    assert (await call(client, "GET", "/api/v1/registries/validate", reader))[0] == 200


def test_a_records_write_that_fails_leaves_the_secret_as_it_was(regauth_exe: str, settings: Settings) -> None:
    # The secret goes into the store before the records file is written; when that write fails (here a
    # file-size limit the small secrets file stays under), the record keeps its old host, so a secret
    # given for the new host must not stay behind for the old one to be sent.
    book = RegistryBook.for_settings(settings)
    book.add(Registry(id="", name="lab", registry="127.0.0.1:1", username="ci", insecure=True), "old")
    for n in range(60):
        book.add(Registry(id="", name=f"pad{n}", registry=f"127.0.0.1:{n + 100}", insecure=True), None)
    assert settings.registries_file.stat().st_size > 4 * _LIMIT

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (_LIMIT, _LIMIT))

    done = subprocess.run(
        [regauth_exe, "registry", "update", "lab", "--url", "127.0.0.2:1", "--password-stdin"]
        + ["--no-validate"],
        input="for-the-new-host\n",
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limited,
    )
    assert done.returncode == 1 and "cannot write" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "for-the-new-host" not in done.stderr
    record = RegistryBook.for_settings(settings).get("lab")
    assert record.registry == "127.0.0.1:1"
    assert stored_secret(LazyStore.for_settings(settings), record) == "old"


async def test_a_refused_secret_field_is_said_in_clear_words(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    # The message names the field ("password: ..."); redaction is for what follows, not for our words.
    client = await aiohttp_client(app_for(settings))
    writer = token(settings, "writer", "write")
    base: dict[str, Any] = {"name": "lab", "url": "127.0.0.1:1", "insecure": True, "validate": False}
    for extra, said in (
        ({"username": "ci", "password": ""}, "password: is empty"),
        ({"username": "ci"}, "password: a static registry with a username needs its password or token"),
        ({"password": "p", "token": "t"}, "token: give a password or a token, not both"),
    ):
        status, data, _ = await call(client, "POST", "/api/v1/registries", writer, {**base, **extra})
        assert status == 422 and data["errors"][0]["message"] == said, data
    # what a client sent after the field's name is still redacted
    status, data, _ = await call(
        client, "POST", "/api/v1/registries", writer, {**base, "url": "a b password=x"}
    )
    assert status == 422 and "password=x" not in data["errors"][0]["message"]


async def test_a_secret_checked_for_one_host_is_not_saved_for_the_host_it_moved_to_meanwhile(
    aiohttp_client: ClientFactory, aiohttp_server: ServerFactory, settings: Settings
) -> None:
    # A PATCH with a new password is checked against the record's host; a move that lands during the
    # check must not leave that password with the record at the new host (which would then be sent it).
    client = await aiohttp_client(app_for(settings))
    writer = token(settings, "writer", "write")
    asked, release = asyncio.Event(), asyncio.Event()
    evil_saw: list[str] = []

    async def good(request: web.Request) -> web.Response:
        if "Authorization" in request.headers:
            return web.json_response({}, headers=_V2)
        asked.set()
        await release.wait()
        return web.Response(status=401, headers={**_V2, "WWW-Authenticate": 'Basic realm="r"'})

    async def evil(request: web.Request) -> web.Response:
        evil_saw.append(request.headers.get("Authorization", ""))
        return web.Response(status=401, headers={**_V2, "WWW-Authenticate": 'Basic realm="r"'})

    good_server = await aiohttp_server(_app(good))
    evil_server = await aiohttp_server(_app(evil))
    body = {"name": "lab", "url": f"127.0.0.1:{good_server.port}", "insecure": True, "validate": False}
    status, _, _ = await call(
        client, "POST", "/api/v1/registries", writer, {**body, "username": "ci", "password": "old"}
    )
    assert status == 201
    change = asyncio.ensure_future(
        call(client, "PATCH", "/api/v1/registries/lab", writer, {"password": "new-pw-77"})
    )
    await asyncio.wait_for(asked.wait(), 30)
    move = {"url": f"127.0.0.1:{evil_server.port}", "validate": False}
    status, moved, _ = await call(client, "PATCH", "/api/v1/registries/lab", writer, move)
    assert status == 200 and moved["has_secret"] is False
    release.set()
    status, data, _ = await asyncio.wait_for(change, 30)
    assert status == 409 and "changed meanwhile" in data["errors"][0]["message"], data
    record = RegistryBook.for_settings(settings).get("lab")
    assert record.registry == f"127.0.0.1:{evil_server.port}"
    assert stored_secret(LazyStore.for_settings(settings), record) is None
    assert evil_saw == []


def test_a_move_whose_secret_cannot_be_dropped_does_not_happen(regauth_exe: str, settings: Settings) -> None:
    # A record that moves keeps no secret; when the store cannot drop it (here a file-size limit the
    # large secrets file is over), the record must not move with its old secret still stored.
    book = RegistryBook.for_settings(settings)
    book.add(Registry(id="", name="lab", registry="127.0.0.1:1", username="ci", insecure=True), "old")
    book.add(
        Registry(id="", name="big", registry="127.0.0.1:3", username="ci", insecure=True), "x" * 8 * _LIMIT
    )
    assert settings.registries_file.stat().st_size < _LIMIT < settings.secrets_file.stat().st_size

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (_LIMIT, _LIMIT))

    done = subprocess.run(
        [regauth_exe, "registry", "update", "lab", "--url", "127.0.0.2:1", "--no-validate"],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limited,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1 and "cannot write" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    record = RegistryBook.for_settings(settings).get("lab")
    assert (record.registry, stored_secret(LazyStore.for_settings(settings), record)) == (
        "127.0.0.1:1",
        "old",
    )


async def test_an_empty_repository_is_refused_naming_the_field(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    client = await aiohttp_client(app_for(settings))
    writer = token(settings, "writer", "write")
    body: dict[str, Any] = {"name": "lab", "url": "127.0.0.1:1", "insecure": True, "validate": False}
    status, data, _ = await call(client, "POST", "/api/v1/registries", writer, {**body, "repository": ""})
    assert status == 422 and data["errors"][0]["field"] == "repository", data
    assert (await call(client, "POST", "/api/v1/registries", writer, body))[0] == 201
    status, data, _ = await call(client, "PATCH", "/api/v1/registries/lab", writer, {"repository": ""})
    assert status == 422 and data["errors"][0]["field"] == "repository", data
    # null is how a body clears it
    status, data, _ = await call(
        client, "PATCH", "/api/v1/registries/lab", writer, {"repository": None, "validate": False}
    )
    assert status == 200 and data["repository"] is None


async def test_a_body_too_large_is_a_413_the_document_names(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    client = await aiohttp_client(app_for(settings))
    writer = token(settings, "writer", "write")
    huge = b'{"name": "' + b"a" * (3 * 1024 * 1024) + b'"}'
    paths = document()["paths"]
    for method, path, spec in (
        ("POST", "/api/v1/registries", paths["/registries"]["post"]),
        ("PATCH", "/api/v1/registries/lab", paths["/registries/{key}"]["patch"]),
        ("POST", "/api/v1/validate", paths["/validate"]["post"]),
    ):
        resp = await client.request(
            method, path, data=io.BytesIO(huge), headers={"Authorization": f"Bearer {writer}"}
        )
        assert resp.status == 413 and (await resp.json())["errors"][0]["code"], path
        assert "413" in spec["responses"], path


async def test_a_damaged_file_of_the_server_is_a_503_every_operation_names(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    client = await aiohttp_client(app_for(settings))
    writer = token(settings, "writer", "write")
    settings.registries_file.write_text("{not json")
    status, data, _ = await call(client, "GET", "/api/v1/registries", writer)
    assert status == 503 and "is damaged" in data["errors"][0]["message"]
    for path, operations in document()["paths"].items():
        for method, spec in operations.items():
            if method != "parameters":
                assert "503" in spec["responses"], (method, path)


async def test_an_unsaved_check_leaves_no_file_behind(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    # A check of a body saves nothing: its CA certificate must not be kept either (else every check
    # with another CA would add a file to the config dir).
    import trustme

    client = await aiohttp_client(app_for(settings))
    writer = token(settings, "writer", "write")
    for n in range(3):
        pem = trustme.CA().cert_pem.bytes().decode()
        body = {"url": f"127.0.0.1:{n + 1}", "ca_pem": pem}
        status, data, _ = await call(client, "POST", "/api/v1/validate", writer, body)
        assert status == 200 and data["outcome"] == "unreachable", data
    ca_dir = settings.config_dir / "api-ca"
    assert not ca_dir.exists() or list(ca_dir.iterdir()) == []
    assert not settings.cache_dir.exists() or list(settings.cache_dir.glob("check-*")) == []


async def test_a_change_saved_unchecked_drops_the_last_check(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    # The last check was of the record as it was: after an unchecked move (or new credentials) it
    # would say "valid" (and `doctor` "read-only") of a host or secret that was never checked.
    client = await aiohttp_client(app_for(settings))
    writer = token(settings, "writer", "write")
    note = {"outcome": "valid", "message": "ok", "at": "2026-01-01T00:00:00+00:00", "access": "read-only"}
    book = RegistryBook.for_settings(settings)
    book.add(Registry(id="", name="lab", registry="127.0.0.1:1", username="ci", insecure=True), "pw")
    kept: list[dict[str, Any]] = [{"name": "lab2"}, {"active": False}]
    for change in kept:
        book.note_validation(book.get("lab" if "name" in change else "lab2").id, note)
        key = "lab" if "name" in change else "lab2"
        status, data, _ = await call(client, "PATCH", f"/api/v1/registries/{key}", writer, change)
        assert status == 200 and data["last_validation"] == note, (change, data)
    dropped: list[dict[str, Any]] = [
        {"url": "127.0.0.2:1"},
        {"username": "other", "password": "pw2"},
        {"password": "pw3"},
        {"options": {"realm_hosts": "a.example"}},
        {"repository": "team/app"},
    ]
    for change in dropped:
        book.note_validation(book.get("lab2").id, note)
        body = {**change, "validate": False}
        status, data, _ = await call(client, "PATCH", "/api/v1/registries/lab2", writer, body)
        assert status == 200 and data["last_validation"] is None, (change, data)
    # the CLI's `registry update --no-validate` too: one rule, the book's
    book.note_validation(book.get("lab2").id, note)
    assert cli.main(["registry", "update", "lab2", "--url", "127.0.0.3:1", "--no-validate"]) == 0
    assert book.get("lab2").last_validation is None


async def test_a_read_token_cannot_have_the_server_send_its_own_credentials_anywhere(
    aiohttp_client: ClientFactory, aiohttp_server: ServerFactory, settings: Settings
) -> None:
    # An unsaved check runs a configuration the caller chose, with the server's environment and
    # ambient credentials (the env provider reads the variable the body names): that is a write.
    saw: list[str] = []

    async def capture(request: web.Request) -> web.Response:
        saw.append(request.headers.get("Authorization", ""))
        return web.Response(status=401, headers={**_V2, "WWW-Authenticate": 'Basic realm="r"'})

    server = await aiohttp_server(_app(capture))
    app = app_for(settings._replace(environ={**settings.environ, "SERVER_ONLY": "server-secret-5"}))
    client = await aiohttp_client(app)
    reader = token(settings, "reader", "read")
    body = {
        "url": f"127.0.0.1:{server.port}",
        "insecure": True,
        "provider": "env",
        "options": {"secret_env": "SERVER_ONLY", "username": "x"},
    }
    status, data, _ = await call(client, "POST", "/api/v1/validate", reader, body)
    assert status == 403 and data["errors"][0]["code"] == "FORBIDDEN", data
    assert saw == []
    # a saved record's check stays the reader's: its configuration is a writer's
    writer = token(settings, "writer", "write")
    saved = {"name": "lab", "url": f"127.0.0.1:{server.port}", "insecure": True, "validate": False}
    assert (await call(client, "POST", "/api/v1/registries", writer, saved))[0] == 201
    assert (await call(client, "POST", "/api/v1/registries/lab/validate", reader))[0] == 200


async def test_a_401_says_how_to_authenticate_in_clear_words(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    # Our own message is not a secret to redact: "token: send Authorization: Bearer TOKEN" came out
    # as "token: [REDACTED] Authorization: Bearer [REDACTED]".
    client = await aiohttp_client(app_for(settings))
    for headers, said in (
        ({}, "no API token given: send Authorization: Bearer TOKEN (`regauth token create`)"),
        (
            {"Authorization": "Bearer rgt_unknown-token-7"},
            "unknown or revoked API token: send Authorization: Bearer TOKEN (`regauth token create`)",
        ),
    ):
        resp = await client.get("/api/v1/registries", headers=headers)
        text = await resp.text()
        assert resp.status == 401 and (await resp.json())["errors"][0]["message"] == said, text
        assert "rgt_unknown-token-7" not in text
