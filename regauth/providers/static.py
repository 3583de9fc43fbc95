"""Static records: a username and a secret kept in the secret store, or no credential at all."""

from __future__ import annotations

from regauth.errors import NotFoundError
from regauth.providers.base import Credential
from regauth.registries import Registry, RegistryBook

# A static record has a username and a secret, and no option of its own (only the ones every record
# takes, such as the token realms' ``realm_hosts``).
OPTION_KEYS: frozenset[str] = frozenset()


class StaticProvider:
    name = "static"

    def __init__(self, book: RegistryBook) -> None:
        self._book = book

    def serves(self, host: str) -> bool:
        # A static credential exists only where a record says so.
        return False

    def credential(self, host: str, record: Registry | None) -> Credential | None:
        if record is None:
            raise NotFoundError(f"no registry is configured for {host}")
        if record.anonymous:
            return None
        secret = self._book.secret(record)
        if secret is None:
            raise NotFoundError(
                f"registry {record.name!r} has no secret in the secret store; "
                f"set one with `regauth registry update {record.name} --password-stdin`"
            )
        return Credential(username=record.username or "", secret=secret)
