"""Static records: a username and a secret kept in the secret store, or no credential at all."""

from __future__ import annotations

from collections.abc import Mapping

from regauth.errors import NotFoundError
from regauth.providers.base import Credential, Notify
from regauth.registries import Registry

# A static record has a username and a secret, and no option of its own (only the ones every record
# takes, such as the token realms' ``realm_hosts``).
OPTION_KEYS: frozenset[str] = frozenset()


class StaticProvider:
    name = "static"

    def __init__(self, environ: Mapping[str, str], notify: Notify) -> None:
        # A static credential is the record's and its secret's alone: nothing from the environment.
        pass

    def serves(self, host: str) -> bool:
        # A static credential exists only where a record says so.
        return False

    def credential(self, host: str, record: Registry | None, secret: str | None) -> Credential | None:
        if record is None:
            raise NotFoundError(f"no registry is configured for {host}")
        if record.anonymous:
            return None
        if secret is None:
            raise NotFoundError(
                f"registry {record.name!r} has no secret in the secret store; "
                f"set one with `regauth registry update {record.name} --password-stdin`"
            )
        return Credential(username=record.username or "", secret=secret)
