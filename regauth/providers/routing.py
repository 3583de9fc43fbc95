"""Host -> provider routing: which provider answers for a registry host, and with what credential.

A record for the host wins, whatever its provider. With no record, CI variables answer for their
registry (``env``), and cloud hosts answer from ambient cloud credentials (``ecr``, ``acr``, ``gcp``).
Cloud tokens go through the token cache; static and env credentials are read each time. A cloud
provider's "no ambient credentials" is remembered a while (``providers.absent``), inside the token
cache's per-key lock, so concurrent callers wait for one search and then all get its answer.

Concurrency: the cache serialises minting with a ``threading.Lock`` per cache key (and a file lock
across processes), so the sync functions are single-flight per key in one process. The async wrappers
run them in a worker thread; concurrent async callers thus share one mint as well.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from regauth.config import Settings
from regauth.errors import NotFoundError, UsageError
from regauth.providers.base import Credential, MintingProvider, Provider
from regauth.registries import Registry, RegistryBook
from regauth.servers import normalize_registry

if TYPE_CHECKING:
    from regauth.providers.cache import TokenCache

CLOUD_PROVIDERS = ("ecr", "acr", "gcp")


def credential_for(
    settings: Settings, book: RegistryBook, server: str, *, use_cache: bool = True
) -> Credential | None:
    """The credential for ``server``; None for an anonymous registry.

    Raises ``NotFoundError`` when no record or provider answers for the host, ``ProviderError`` when
    one does but cannot produce a credential.
    """
    host = normalize_registry(server)
    record = book.for_host(host)
    if record is not None:
        return record_credential(settings, book, record, use_cache=use_cache)
    name = route_ambient(settings, host)
    if name is None:
        raise NotFoundError(f"no registry is configured for {host}")
    return _credential(settings, book, name, host, None, use_cache)


def record_credential(
    settings: Settings, book: RegistryBook, record: Registry, *, use_cache: bool = True
) -> Credential | None:
    """The credential a record's provider gives for the record's registry.

    A record not saved yet (``id`` empty, as when ``registry add`` validates) bypasses the token cache:
    its token would be filed under an identity that no saved record has. To validate a changed secret
    of a saved record, pass ``use_cache=False``: the record's identity changes only once it is saved.
    """
    return _credential(settings, book, record.provider, record.registry, record, use_cache)


def route_ambient(settings: Settings, host: str) -> str | None:
    """The provider answering for ``host`` with no record, or None."""
    if make_provider("env", settings, None).serves(host):
        return "env"
    from regauth.providers.hosts import ambient_cloud

    return ambient_cloud(host)


def make_provider(name: str, settings: Settings, book: RegistryBook | None) -> Provider:
    """A provider by name; each module is imported only when its provider is asked for."""
    if name == "static":
        from regauth.providers.static import StaticProvider

        if book is None:
            raise ValueError("the static provider needs the registry book")
        return StaticProvider(book)
    if name == "env":
        from regauth.providers.env import EnvProvider

        return EnvProvider(settings.environ)
    if name == "ecr":
        from regauth.providers.ecr import EcrProvider

        return EcrProvider(settings.environ)
    if name == "acr":
        from regauth.providers.acr import AcrProvider

        return AcrProvider(settings.environ, book)
    if name == "gcp":
        from regauth.providers.gcp import GcpProvider

        return GcpProvider(settings.environ, notify=lambda message: _warn(settings, message))
    raise UsageError(f"unknown provider {name!r}: use one of static, ecr, acr, gcp, env")


def token_cache(settings: Settings, book: RegistryBook) -> TokenCache:
    # Imported here, as the providers are: a static get needs neither the cache nor its locks.
    from regauth.providers.cache import TokenCache

    return TokenCache(settings, lambda: book.store, on_stale=lambda message: _warn(settings, message))


def _credential(
    settings: Settings,
    book: RegistryBook,
    name: str,
    host: str,
    record: Registry | None,
    use_cache: bool,
) -> Credential | None:
    provider = make_provider(name, settings, book)
    if name not in CLOUD_PROVIDERS:
        return provider.credential(host, record)
    minting = cast(MintingProvider, provider)
    if record is not None and not record.id:
        return minting.credential(host, record)
    from regauth.providers.cache import cache_key

    identity = minting.identity(host, record)
    key = cache_key(name, host, identity)
    use = use_cache and not settings.no_cache

    def mint() -> Credential | None:
        if not use:
            return minting.credential(host, record)
        from regauth.providers.absent import AbsentCache, fingerprint

        # Per provider and identity, not per host: no AWS credentials for one ECR host is none for all.
        absent = fingerprint(name, identity, minting.credential_files(record))
        return AbsentCache(settings.cache_dir, settings.no_credentials_ttl).guard(
            absent, lambda: minting.credential(host, record)
        )

    return token_cache(settings, book).get_or_mint(key, mint, use_cache=use)


def _warn(settings: Settings, message: str) -> None:
    """A warning a person must see: through logging (stderr unless configured) and into the log file."""
    import logging

    from regauth.logs import append_log_line, log_safe

    # Escaped here too: without a configured handler (the helper's get) logging prints it raw.
    logging.getLogger("regauth.providers").warning("%s", log_safe(message))
    append_log_line(settings, f"regauth: warning: {message}")


async def credential_for_async(
    settings: Settings, book: RegistryBook, server: str, *, use_cache: bool = True
) -> Credential | None:
    """``credential_for`` off the event loop; concurrent callers for one key share one mint."""
    import asyncio

    return await asyncio.to_thread(credential_for, settings, book, server, use_cache=use_cache)


async def record_credential_async(
    settings: Settings, book: RegistryBook, record: Registry, *, use_cache: bool = True
) -> Credential | None:
    import asyncio

    return await asyncio.to_thread(record_credential, settings, book, record, use_cache=use_cache)
