"""Host -> provider routing: which provider answers for a registry host, and with what credential.

A record for the host wins, whatever its provider. With no record, each provider in ``table`` order is
asked whether it ``serves`` the host: CI variables for their registry (``env``), then cloud hosts from
ambient cloud credentials (``ecr``, ``acr``, ``gcp``). Tokens of a provider that mints them go through
the token cache; static and env credentials are read each time. A minting provider's "no ambient
credentials" is remembered a while (``providers.absent``), inside the token cache's per-key lock, so
concurrent callers wait for one search and then all get its answer.

The secret store is the caller's, opened at its edge (lazily: ``store.lazy``). Routing reads a
record's secret from it only for a provider whose table line says it reads one, and for a minting
provider only when it mints: a cached token costs one store read.

Workloads (KEP-4412, the kubelet plugin with ``tokenAttributes``): ``workload_credential_for`` picks
the record or ambient provider as ``credential_for`` does, then

- a provider that can use the pod's service-account token (``workload.WorkloadProvider``: it has
  ``workload_credential``) mints with it, through the same token cache, keyed by the provider's
  ``workload_identity`` (role or client id, and the service account), so each service account has a
  token of its own and never the node's;
- a record whose provider mints no tokens (``static``, ``env``) answers with its own secret: that
  secret is what the admin gave regauth for this registry, not the node's cloud identity, and every
  pod on the node could pull with it before ``tokenAttributes`` was set, so answering widens nothing;
- a minting provider that cannot use the token, or whose workload names no identity for it
  (``NoWorkloadIdentity``: no annotation, no record option), refuses in one line, unless the caller
  allows the node's identity as the fallback (``node_fallback``, as ecr-credential-provider does for
  a service account without its role annotation).

Concurrency: the cache serialises minting with a ``threading.Lock`` per cache key (and a file lock
across processes), so the sync functions are single-flight per key in one process. The async wrappers
run them in a worker thread; concurrent async callers thus share one mint as well.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from regauth.config import Settings
from regauth.errors import NotFoundError, UsageError
from regauth.providers.base import Credential, MintingProvider, Provider
from regauth.providers.table import PROVIDERS, ProviderKind
from regauth.registries import Registry, RegistryBook, stored_secret
from regauth.servers import normalize_registry
from regauth.store.base import SecretStore

if TYPE_CHECKING:
    from regauth.providers.cache import TokenCache
    from regauth.providers.workload import Workload, WorkloadProvider


def credential_for(
    settings: Settings,
    book: RegistryBook,
    store: SecretStore,
    server: str,
    *,
    repository: str | None = None,
    use_cache: bool = True,
) -> Credential | None:
    """The credential for ``server`` (for ``repository`` on it, when the caller knows it: a
    per-prefix record then answers before the host-wide one); None for an anonymous registry.

    Raises ``NotFoundError`` when no record or provider answers for the host, ``ProviderError`` when
    one does but cannot produce a credential.
    """
    kind, record, host = _route(settings, book, server, repository)
    return _credential(settings, store, kind, host, record, None, use_cache)


def _route(
    settings: Settings, book: RegistryBook, server: str, repository: str | None
) -> tuple[ProviderKind, Registry | None, str]:
    """Who answers for ``server`` (and ``repository``): the provider's table line, the record (None
    for an ambient provider) and the host. ``NotFoundError`` when nothing does."""
    host = normalize_registry(server)
    # The book normalises what it is given: the server as asked, not ``host``, which is not always its
    # own canonical host ("http://h:443" is "h:443", and "h:443" is "h").
    record = book.for_host(server) if repository is None else book.for_image(server, repository)
    if record is not None:
        if not record.active:
            # Kept but out of use: nothing answers for its host, not even an ambient provider.
            raise NotFoundError(f"{record.label} is disabled (`regauth registry enable {record.name}`)")
        return provider_kind(record.provider), record, record.registry
    name = route_ambient(settings, host)
    if name is None:
        raise NotFoundError(f"no registry is configured for {host}")
    return PROVIDERS[name], None, host


def workload_credential_for(
    settings: Settings,
    book: RegistryBook,
    store: SecretStore,
    server: str,
    workload: Workload,
    *,
    repository: str | None = None,
    node_fallback: bool = False,
    use_cache: bool = True,
) -> Credential | None:
    """The credential for ``server`` (and ``repository``) when ``workload`` pulls: minted with its own
    identity where the provider can, as the module's docstring says. Raises as ``credential_for``."""
    kind, record, host = _route(settings, book, server, repository)
    if not kind.mints:
        return _credential(settings, store, kind, host, record, None, use_cache)
    from regauth.providers.workload import NoWorkloadIdentity

    provider = make_provider(kind.name, settings)
    try:
        if not hasattr(provider, "workload_credential"):
            from regauth.providers.base import where

            cloud = cast(MintingProvider, provider).cloud
            raise NoWorkloadIdentity(
                f"{kind.name} provider for {where(host, record)}: regauth cannot pull with a service "
                f"account's own {cloud} identity yet; give the plugin --node-identity-fallback to pull "
                "with the node's, or remove tokenAttributes from its entry in the kubelet's config"
            )
        return _workload_credential(
            settings, store, kind, cast("WorkloadProvider", provider), host, record, workload, use_cache
        )
    except NoWorkloadIdentity:
        if not node_fallback:
            raise
        return _credential(settings, store, kind, host, record, None, use_cache)


def _workload_credential(
    settings: Settings,
    store: SecretStore,
    kind: ProviderKind,
    provider: WorkloadProvider,
    host: str,
    record: Registry | None,
    workload: Workload,
    use_cache: bool,
) -> Credential | None:
    from regauth.providers.cache import cache_key

    key = cache_key(kind.name, host, provider.workload_identity(host, record, workload))
    use = use_cache and not settings.no_cache

    def mint() -> Credential:
        # No "no ambient credentials" memory here: the token is the credential, nothing is searched.
        return provider.workload_credential(host, record, workload)

    return token_cache(settings, store).get_or_mint(key, mint, use_cache=use)


def record_credential(
    settings: Settings,
    store: SecretStore,
    record: Registry,
    *,
    secret: str | None = None,
    use_cache: bool = True,
) -> Credential | None:
    """The credential a record's provider gives for the record's registry.

    ``secret``, when given, stands for the record's stored secret: ``registry add`` and ``update``
    validate a secret before it is saved. A record not saved yet (``id`` empty) bypasses the token
    cache: its token would be filed under an identity that no saved record has. To validate a changed
    secret of a saved record, pass ``use_cache=False``: the record's identity changes only once it is
    saved.
    """
    kind = provider_kind(record.provider)
    return _credential(settings, store, kind, record.registry, record, secret, use_cache)


def provider_kind(name: str) -> ProviderKind:
    """The table line for ``name``; a name not in the table is the user's mistake."""
    kind = PROVIDERS.get(name)
    if kind is None:
        raise UsageError(f"unknown provider {name!r}: use one of {', '.join(PROVIDERS)}")
    return kind


def route_ambient(settings: Settings, host: str) -> str | None:
    """The provider answering for ``host`` with no record, or None."""
    for name in PROVIDERS:
        if make_provider(name, settings).serves(host):
            return name
    return None


def make_provider(name: str, settings: Settings) -> Provider:
    """A provider by name; each module is imported only when its provider is asked for."""
    return provider_kind(name).load()(settings.environ, lambda message: _warn(settings, message))


def minting_provider(name: str, settings: Settings) -> MintingProvider:
    """``make_provider`` for a name the table says mints tokens (its cloud, token username, lifetime)."""
    if not provider_kind(name).mints:
        raise ValueError(f"the {name} provider mints no tokens")
    return cast(MintingProvider, make_provider(name, settings))


def cloud_for(settings: Settings, host: str) -> MintingProvider | None:
    """The provider minting tokens for ``host`` from ambient cloud credentials, from its name alone.

    Unlike ``route_ambient`` it never asks the CI variables (``env``): what a cloud host is does not
    depend on them, and a bad ``CI_REGISTRY`` must not fail a ``docker login`` that stores a token.
    """
    for kind in PROVIDERS.values():
        if kind.mints and (provider := minting_provider(kind.name, settings)).serves(host):
            return provider
    return None


def token_cache(settings: Settings, store: SecretStore) -> TokenCache:
    # Imported here, as the providers are: a static get needs neither the cache nor its locks.
    from regauth.providers.cache import TokenCache

    return TokenCache(settings, store, on_stale=lambda message: _warn(settings, message))


def _credential(
    settings: Settings,
    store: SecretStore,
    kind: ProviderKind,
    host: str,
    record: Registry | None,
    secret: str | None,
    use_cache: bool,
) -> Credential | None:
    provider = make_provider(kind.name, settings)

    def ask() -> Credential | None:
        # The secret is read here, when the provider is asked: a cached token needs none.
        given = None
        if kind.reads_secret and record is not None:
            given = secret if secret is not None else stored_secret(store, record)
        return provider.credential(host, record, given)

    if not kind.mints or (record is not None and not record.id):
        return ask()
    minting = cast(MintingProvider, provider)
    from regauth.providers.cache import cache_key

    identity = minting.identity(host, record)
    key = cache_key(kind.name, host, identity)
    use = use_cache and not settings.no_cache

    def mint() -> Credential | None:
        if not use:
            return ask()
        from regauth.providers.absent import AbsentCache, fingerprint

        # Per provider and identity, not per host: no AWS credentials for one ECR host is none for all.
        absent = fingerprint(kind.name, identity, minting.credential_files(record))
        return AbsentCache(settings.cache_dir, settings.no_credentials_ttl).guard(absent, ask)

    return token_cache(settings, store).get_or_mint(key, mint, use_cache=use)


def _warn(settings: Settings, message: str) -> None:
    """A warning a person must see: through logging (stderr unless configured) and into the log file."""
    import logging

    from regauth.logs import append_log_line, log_safe

    # Escaped here too: without a configured handler (the helper's get) logging prints it raw.
    logging.getLogger("regauth.providers").warning("%s", log_safe(message))
    append_log_line(settings, f"regauth: warning: {message}")


async def record_credential_async(
    settings: Settings, store: SecretStore, record: Registry, *, use_cache: bool = True
) -> Credential | None:
    import asyncio

    return await asyncio.to_thread(record_credential, settings, store, record, use_cache=use_cache)
