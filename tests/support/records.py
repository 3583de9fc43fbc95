"""Registry records for the tests, added through the real ``RegistryBook`` and secret store.

One helper for every test that needs a configured registry: the record is checked and written as
``regauth registry add --no-validate`` would, and its secret goes into the store of the test's HOME.
"""

from __future__ import annotations

from typing import Any

from regauth.config import Settings
from regauth.registries import Registry, RegistryBook, name_for_host


def add_record(
    where: Settings | RegistryBook, host: str, secret: str | None = None, *, name: str = "", **fields: Any
) -> Registry:
    """Add a record for ``host`` (named as a login would name it unless ``name`` says) with the other
    ``fields`` of ``Registry`` and ``secret``; return it as stored, with its id."""
    book = RegistryBook.for_settings(where) if isinstance(where, Settings) else where
    record = Registry(id="", name=name or name_for_host(host), registry=host, **fields)
    return book.add(record, secret)
