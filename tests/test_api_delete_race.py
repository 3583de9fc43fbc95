"""A DELETE removes the record it found, by id, even when another writer renames it and creates a new
record under its old name between the lookup and the removal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from support.api import app_for, call, token

from regauth.api import state
from regauth.config import Settings
from regauth.registries import Registry, RegistryBook

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


async def test_a_delete_removes_the_record_it_found_not_its_old_names_new_owner(
    aiohttp_client: ClientFactory, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = RegistryBook.for_settings(settings)
    found = book.add(Registry(id="", name="lab", registry="127.0.0.1:1", insecure=True), None)
    app = app_for(settings)
    service = app[state.SERVICE]
    lookup = service.find

    async def find_then_another_writer(key: str) -> Registry:
        record = await lookup(key)
        # another process, between the lookup and the removal
        other = RegistryBook.for_settings(settings)
        other.update("lab", {"name": "lab-old"})
        other.add(Registry(id="", name="lab", registry="127.0.0.1:2", insecure=True), None)
        return record

    monkeypatch.setattr(service, "find", find_then_another_writer)
    client = await aiohttp_client(app)
    writer = token(settings, "writer", "write")
    status, _, _ = await call(client, "DELETE", f"/api/v1/registries/{found.id}", writer)
    assert status == 204
    assert [(r.name, r.registry) for r in book.all()] == [("lab", "127.0.0.1:2")]
