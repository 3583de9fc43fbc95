"""What adding, changing and checking a registry record mean, for every edge that does them: the CLI's
``registry add|update|validate`` and the API's POST, PATCH and validate. One place per rule.

- A plain-HTTP URL needs ``insecure``, said before anything is sent.
- Option keys are the provider's own and every record's (``realm_hosts``).
- A secret given for an anonymous static record would be lost: refused.
- **A record that moves to another host, or to plain HTTP, keeps no secret** (``moves_origin``). Its
  check never reads the stored secret (``secret_for_check``), and ``RegistryBook.update`` drops it
  unless a new one comes with the change, so whoever may edit a record cannot send its stored password
  to a host of their choosing, or over the network in clear.
- A check always mints afresh (``use_cache=False``): a cached token proves nothing about a changed secret.
- **A caller who is not the server's user cannot spend the server's own credentials** (the API, unless
  ``regauth serve --allow-server-credentials``): no option naming the server's variables, files or
  AWS profiles or redirecting where its credentials go, and no minting provider for a host that is not
  its cloud's registry (``server_resource_problem``). The CLI's user acts as themselves.
"""

from __future__ import annotations

import difflib
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from regauth.config import Settings
from regauth.errors import UsageError
from regauth.registries import Registry, moves_origin, stored_secret
from regauth.store.base import SecretStore

if TYPE_CHECKING:
    # Only for annotations: importing them loads aiohttp, which no command but a validation needs.
    from regauth.distribution.credential import Credential
    from regauth.distribution.validate import ValidationResult

# What stands for "no secret" in a check of a moved record: not None, which means "the stored one".
_NO_SECRET = ""


def check_scheme(url: str, insecure: bool, *, fix: str = "add `--insecure` to allow it") -> None:
    # Said before anything is sent: over HTTPS, a plain-HTTP registry fails with a puzzling TLS error.
    if url.strip().lower().startswith("http://") and not insecure:
        raise UsageError(f"{url.strip()} is plain HTTP: {fix} (for this registry only)")


def url_prefix(url: str) -> str | None:
    """The repository prefix of a URL ``HOST/PREFIX`` (``ghcr.io/org-a``), as containers' auth.json
    namespaced keys have it; None for a bare host or an API path (``/v2/``, ``/v1/``), which Docker
    clients take for the host itself."""
    rest = url.strip().split("://", 1)[-1].split("?", 1)[0].split("#", 1)[0]
    path = rest.partition("/")[2].strip("/")
    return None if path in ("", "v1", "v2") else path


def known_option_keys(provider: str) -> frozenset[str]:
    """The record options ``provider`` reads: its own (declared in its module) and every record's."""
    from regauth.distribution.realms import REALM_HOSTS_OPTION
    from regauth.providers.table import PROVIDERS

    return PROVIDERS[provider].option_keys() | {REALM_HOSTS_OPTION}


def check_option_keys(record: Registry) -> None:
    known = known_option_keys(record.provider)
    unknown = sorted(set(record.options) - known)
    if not unknown:
        return
    key = unknown[0]
    close = difflib.get_close_matches(key, known, n=1)
    guess = f" (did you mean {close[0]}?)" if close else ""
    raise UsageError(
        f"unknown option {key!r} for the {record.provider} provider{guess}; it knows: "
        f"{', '.join(sorted(known))}"
    )


# Options whose value names something of the machine regauth runs on, or where its credentials go: what
# a remote caller could make the server read and send to a host of theirs.
SERVER_RESOURCE_OPTIONS: dict[str, str] = {
    "secret_env": "a variable of the server's environment",
    "username_env": "a variable of the server's environment",
    "key_file": "a file on the server",
    "certificate_file": "a file on the server",
    "token_file": "a file on the server",
    "profile": "a profile of the server's AWS configuration",
    "endpoint_url": "where the server's signed AWS requests go",
    "login_server_url": "where the server's Entra ID token goes",
    "authority": "where the server's Azure credentials go",
}
SERVER_CREDENTIALS_FLAG = "--allow-server-credentials"
# What a change must alter for the rule to be asked again: where and with what the server authenticates.
_SERVER_RESOURCE_FIELDS = ("registry", "provider", "options", "insecure")


def server_resource_problem(record: Registry, old: Registry | None = None) -> tuple[str, str] | None:
    """(field, why) when ``record`` would make the server spend its own credentials for a caller who is
    not its user; None when it would not, or when the change of ``old`` alters none of what decides it."""
    if old is not None and all(getattr(old, f) == getattr(record, f) for f in _SERVER_RESOURCE_FIELDS):
        return None
    allow = f"refused unless `regauth serve` runs with {SERVER_CREDENTIALS_FLAG}"
    named = sorted(set(record.options) & set(SERVER_RESOURCE_OPTIONS))
    if named:
        return "options", f"the option {named[0]} names {SERVER_RESOURCE_OPTIONS[named[0]]}: {allow}"
    from regauth.providers.table import PROVIDERS

    kind = PROVIDERS[record.provider]
    # A minting provider mints with the server's cloud identity: only for its cloud's own registry
    # hosts (the host names it serves), so the token never goes to a host the caller picked.
    if kind.mints and not kind.load()({}, _quiet).serves(record.registry):
        return (
            "url",
            f"{record.registry} is no {record.provider} registry host, and the {record.provider} provider "
            f"would send it a token of the server's own identity: {allow}",
        )
    return None


def _quiet(message: str) -> None:
    pass


def check_secret_wanted(
    record: Registry, secret_given: bool, *, needs: str = "--password-stdin needs --username"
) -> None:
    # A static record without a username is anonymous and keeps no secret: one given would be lost.
    if secret_given and record.anonymous:
        raise UsageError(f"{needs}: a static registry without a username is anonymous and keeps no secret")


def needs_new_secret(old: Registry, new: Registry) -> bool:
    """Whether the change of ``old`` into ``new`` must come with a secret: a new username with the old
    password is almost never right, and a record that had no username had no secret."""
    return new.provider == "static" and not new.anonymous and (old.username != new.username or old.anonymous)


def moves_host(old: Registry, new: Registry) -> bool:
    """Whether the change moves the record to an origin its secret was not given for (the book's rule)."""
    return moves_origin(old, new)


def _origin(record: Registry) -> str:
    return f"{'http' if record.insecure else 'https'}://{record.registry}"


def secret_for_check(old: Registry, new: Registry, secret: str | None) -> str | None:
    """The secret to check ``new`` (the change of ``old``) with: the one given; else, when the record
    moves to another host, none at all (never the stored one); else None, which reads the stored one."""
    if secret is not None or not moves_host(old, new):
        return secret
    from regauth.providers.table import PROVIDERS

    if not new.anonymous and PROVIDERS[new.provider].reads_secret:
        raise UsageError(
            f"{new.label} would move from {_origin(old)} to {_origin(new)}: a record that moves to "
            "another host or to plain HTTP keeps no stored secret, so give its secret again with the change"
        )
    return _NO_SECRET


def credential_for_check(
    settings: Settings, store: SecretStore, record: Registry, secret: str | None
) -> Credential | None:
    """The credential to check ``record`` with; ``secret`` is one not saved yet (None: the stored one)."""
    from regauth.providers.routing import record_credential

    return record_credential(settings, store, record, secret=secret, use_cache=False)


def check(
    settings: Settings, store: SecretStore, record: Registry, secret: str | None, repository: str | None
) -> ValidationResult:
    """Validate ``record`` against its registry, for a synchronous caller (the CLI)."""
    from regauth.distribution.validate import validate_sync

    credential = credential_for_check(settings, store, record, secret)
    return validate_sync(record.target(), credential, repository, label=record.label)


async def check_async(
    settings: Settings, store: SecretStore, record: Registry, secret: str | None, repository: str | None
) -> ValidationResult:
    """``check`` on a running event loop (the API): the credential lookup runs on a worker thread."""
    import asyncio

    from regauth.distribution.validate import validate

    credential = await asyncio.to_thread(credential_for_check, settings, store, record, secret)
    return await validate(record.target(), credential, repository, label=record.label)


def last_validation(result: ValidationResult) -> dict[str, Any]:
    """What a record keeps of its last check (``Registry.last_validation``): never a secret."""
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {"outcome": str(result.outcome), "message": result.message, "at": at, "access": result.access}


def access_note(result: ValidationResult) -> str:
    """What ``registry add`` says of a checked credential's reach: nothing when it is unknown."""
    if result.access == "read-write":
        return "; read-write: it can also push or delete, use read-only credentials when possible"
    return "; read-only" if result.access == "read-only" else ""


def has_secret(store: SecretStore, record: Registry) -> bool:
    return stored_secret(store, record) is not None


def forget_tokens(settings: Settings, store: SecretStore, record: Registry) -> None:
    """Drop the host's cached provider tokens: they were minted for the record as it was."""
    from regauth.providers.table import PROVIDERS

    kind = PROVIDERS.get(record.provider)
    if kind is None or not kind.mints:
        return
    from regauth.providers.cache import clear

    clear(settings, store, host=record.registry)


def forget_removed(settings: Settings, store: SecretStore, record: Registry) -> None:
    """What a removed record leaves behind: its cached tokens and its last-use mark."""
    from regauth import usage

    forget_tokens(settings, store, record)
    usage.forget(str(settings.state_dir), record.id)
