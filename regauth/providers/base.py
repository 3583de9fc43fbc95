"""The provider contract: does it serve this registry, and give me a credential for it.

Every provider is one class in one module, named in ``table.PROVIDERS`` and built there with the
environment and a way to warn a person (``ProviderFactory``). Routing hands ``credential`` the record
and, for a provider whose table line says it reads one, the record's secret from the store: a
provider never reaches for the store or the registry book itself.

Provider modules import their cloud SDK inside ``credential`` only: routing, ``serves`` and
``identity`` run on the credential helper's hot path, where a cached token must cost no SDK import.
Failures are ``ProviderError`` (one line: which provider, which registry, what went wrong, what to do),
or ``NotFoundError`` where there is simply nothing to give.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

# Re-exported: the providers' vocabulary, defined below distribution so the V2 client needs no provider.
from regauth.distribution.credential import IDENTITY_TOKEN_USERNAME as IDENTITY_TOKEN_USERNAME
from regauth.distribution.credential import Credential as Credential
from regauth.errors import ProviderError
from regauth.providers import tokenkey
from regauth.registries import Registry

# How long one metadata probe may take, where an SDK lets regauth pass its transport or settings: a
# laptop on a network that drops link-local traffic must not wait for the SDK's own 3 s to 300 s.
PROBE_TIMEOUT = 1.0
# How long a provider's whole search for ambient credentials may take (see ``deadline``), so that a
# ``get`` with no credentials answers within about 3 s, SDK import included.
DISCOVERY_DEADLINE = 2.5


class NoAmbientCredentials(ProviderError):
    """The provider found no credentials for this identity, or its search did not answer in time.

    The one failure the routing remembers for a while (``providers.absent``): retrying it on every
    ``get`` would repeat the same slow probes and find the same nothing.
    """


# How a provider tells a person something that is not an error (a deprecation): logged and written
# to the log file by routing.
Notify = Callable[[str], None]


class Provider(Protocol):
    name: str

    def serves(self, host: str) -> bool:
        """Whether this provider answers for ``host`` with no record (CI variables, ambient credentials).

        Pure string and environment work: routing asks it on every ``get`` for a host with no record.
        """
        ...

    def credential(self, host: str, record: Registry | None, secret: str | None) -> Credential | None:
        """A credential for ``host``; None means anonymous. Raises ``ProviderError`` or ``NotFoundError``.

        ``secret`` is the record's secret (the stored one, or one being validated before it is saved)
        when ``table`` says this provider reads one and the record has one; else None.
        """
        ...


class ProviderFactory(Protocol):
    """What ``table`` names: a provider class, built with the environment and a ``Notify``."""

    def __call__(self, environ: Mapping[str, str], notify: Notify) -> Provider: ...


class MintingProvider(Provider, Protocol):
    """A provider whose credentials are short-lived tokens, kept in the token cache."""

    # Whose credentials mint the tokens, for messages: "AWS", "Azure", "Google Cloud".
    cloud: str
    # The username its registry tokens come with, and how long one usually lasts (for a person): a
    # `docker login` with that username stored a token that will expire.
    token_username: str
    token_lifetime: str

    def identity(self, host: str, record: Registry | None) -> str:
        """What selects the cloud identity (record options, the SDK's selector variables), as text.

        Hashed into the cache key, so two identities never share a token. Cheap: no SDK import.
        """
        ...

    def credential_files(self, record: Registry | None) -> tuple[str, ...]:
        """The files (and directories) the SDK finds credentials in: a login changes one of them.

        Their state is part of a remembered "no credentials", so that it is forgotten at once after
        ``aws configure``, ``az login`` or ``gcloud auth application-default login``.
        """
        ...


def identity_text(
    record: Registry | None, environ: Mapping[str, str], variables: Iterable[str], *extra: str
) -> str:
    """A canonical text of a record's identity-bearing fields and the named environment variables
    (``tokenkey.identity_text``, which the helper's fast get computes too)."""
    fields = (record.id, record.updated_at, record.options) if record else None
    return tokenkey.identity_text(fields, environ, variables, *extra)


def where(host: str, record: Registry | None) -> str:
    return f"registry {record.name!r} ({host})" if record is not None else host


def failure(
    provider: str,
    host: str,
    record: Registry | None,
    what: str,
    todo: str,
    kind: type[ProviderError] = ProviderError,
) -> ProviderError:
    """The one-line provider failure: which provider, which registry, what went wrong, what to do."""
    return kind(f"{provider} provider for {where(host, record)}: {what}; {todo}")


def no_credentials(provider: str, host: str, record: Registry | None, what: str, todo: str) -> ProviderError:
    """``failure`` for "found no credentials": remembered, so the next ``get`` answers at once."""
    return failure(provider, host, record, what, todo, NoAmbientCredentials)


def home_path(environ: Mapping[str, str], *parts: str) -> str:
    """A path under the user's home directory, as the SDKs find it (HOME, else the password database)."""
    import os

    return os.path.join(environ.get("HOME") or os.path.expanduser("~"), *parts)


def missing_sdk(provider: str, module: str, extra: str) -> ProviderError:
    from regauth.install import extra_install_command

    # The command fits how regauth was installed: it is not on the package index, so never regauth[x].
    return ProviderError(
        f"the {provider} provider needs the {module} package, which is not installed: "
        f"{extra_install_command(extra)}"
    )


def option(record: Registry | None, key: str) -> str | None:
    if record is None:
        return None
    value = record.options.get(key, "").strip()
    return value or None


def brief(text: object, limit: int = 240) -> str:
    """An SDK message on one line, bounded: SDK errors can run to pages."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def quiet_sdk_logger(name: str) -> None:
    """Keep an SDK's own warnings off stderr unless the application configured that logger.

    azure-identity logs a page-long account of its chain before it raises, google-auth a warning when
    it finds no project; the ProviderError says the same in one line.
    """
    import logging

    logger = logging.getLogger(name)
    if logger.level == logging.NOTSET and not logger.handlers:
        logger.setLevel(logging.ERROR)
