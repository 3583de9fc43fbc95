"""Host -> provider routing: which provider answers for a registry host, and with what credential."""

from __future__ import annotations

from regauth.config import Settings
from regauth.errors import NotFoundError, ProviderError
from regauth.providers.base import Credential
from regauth.reference import normalize_registry
from regauth.registries import Registry, RegistryBook


def credential_for(
    settings: Settings, book: RegistryBook, server: str, *, use_cache: bool = True
) -> Credential | None:
    """The credential for ``server``; None for an anonymous registry.

    Raises ``NotFoundError`` when no record or provider answers for the host, ``ProviderError`` when
    one does but cannot produce a credential.
    """
    host = normalize_registry(server)
    record = book.for_host(host)
    if record is None:
        raise NotFoundError(f"no registry is configured for {host}")
    return record_credential(book, record)


def record_credential(book: RegistryBook, record: Registry) -> Credential | None:
    if record.provider != "static":
        raise ProviderError(f"provider {record.provider!r} for registry {record.name!r} is not available")
    if record.anonymous:
        return None
    secret = book.secret(record)
    if secret is None:
        raise NotFoundError(
            f"registry {record.name!r} has no secret in the secret store; "
            f"set one with `regauth registry update {record.name} --password-stdin`"
        )
    return Credential(username=record.username or "", secret=secret)
