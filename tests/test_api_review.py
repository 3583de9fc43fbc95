"""Defects found in a review of the API: each test names the rule it holds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient
from support.api import app_for, call, token

from regauth.config import Settings
from regauth.registries import RegistryBook

ClientFactory = Callable[..., Awaitable[TestClient]]


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
