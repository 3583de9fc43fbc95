"""Defects found in a review of the API: each test names the rule it holds."""

from __future__ import annotations

import resource
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient
from support.api import app_for, call, token

from regauth.config import Settings
from regauth.registries import Registry, RegistryBook, stored_secret
from regauth.store.lazy import LazyStore

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
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
