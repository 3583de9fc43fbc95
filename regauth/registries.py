"""Registry records (the reusable configurations) and the book that keeps them.

Records live in ``registries.json`` under the config dir; a record's secret lives only in the secret
store, under ``registry/<id>``. Reads are lock-free (writes are atomic renames); writes take a file
lock, re-read, change and write, so concurrent processes lose nothing.

The book is handed the secret store its edge opened, to keep each record's secret in step with the
record; it is not the way to the store for anyone else (``stored_secret`` reads a record's secret).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from regauth import layout
from regauth.config import Settings
from regauth.errors import ConfigError, ConflictError, NotFoundError, RegauthError, UsageError
from regauth.fsutil import atomic_write, file_lock, read_private
from regauth.printable import printable
from regauth.providers import table
from regauth.reference import check_repository
from regauth.servers import normalize_registry
from regauth.store.base import SecretStore

if TYPE_CHECKING:
    from regauth.distribution.target import RegistryTarget

# The names a record's provider may hold: the one table's.
PROVIDERS = table.NAMES
_NAME_MAX = 64
# DNS: a name of at most 253 characters, in labels of at most 63 (RFC 1035).
_HOST_MAX = 253
_LABEL_MAX = 63
_OPTION_KEY_MAX = 64
_OPTION_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
# How a record came to be, which decides what a logout may take away: the user's own configuration
# (`regauth registry add`, or a later `registry update`) stays, a credential helper's `store` goes.
ORIGIN_CLI = "cli"
ORIGIN_HELPER = "helper"


class Registry(NamedTuple):
    id: str
    name: str
    registry: str
    username: str | None = None
    provider: str = "static"
    options: Mapping[str, str] = {}  # never mutated: the shared default is safe
    ca_file: str | None = None
    insecure: bool = False
    repository: str | None = None
    created_at: str = ""
    updated_at: str = ""
    # ORIGIN_CLI or ORIGIN_HELPER; None in files written before regauth recorded it.
    origin: str | None = None
    # False: kept but out of use; the helper answers not-found for it and the proxy refuses it.
    active: bool = True
    # Who made it and who changed it last: an API token's name, or ORIGIN_CLI / ORIGIN_HELPER.
    created_by: str | None = None
    updated_by: str | None = None
    # The last check against the registry, {"outcome", "message", "at"} (registry_ops.last_validation).
    last_validation: Mapping[str, str] | None = None
    # The repository prefix this record is for (``org-a`` of ``ghcr.io/org-a``); None: the whole host.
    # Only a client that knows the repository (the proxy, the kubelet plugin) can pick a prefix record:
    # the docker helper protocol sends a host, so it uses the host-wide record.
    prefix: str | None = None

    @property
    def secret_key(self) -> str:
        return f"registry/{self.id}"

    @property
    def anonymous(self) -> bool:
        return self.provider == "static" and self.username is None

    @property
    def user_configured(self) -> bool:
        """Whether the user configured this record, so that a logout drops only its login.

        A record from before origins were kept counts as configured when it holds more than a login.
        """
        if self.origin is not None:
            return self.origin == ORIGIN_CLI
        return bool(self.ca_file or self.insecure or self.options or self.repository)

    @property
    def label(self) -> str:
        """How messages name it: ``registry 'ghcr' (ghcr.io)``, ``registry 'org-a' (ghcr.io/org-a)``."""
        return f"registry {self.name!r} ({self.location})"

    @property
    def location(self) -> str:
        """The host, and the repository prefix of a per-prefix record: ``ghcr.io/org-a``."""
        return f"{self.registry}/{self.prefix}" if self.prefix is not None else self.registry

    def covers(self, repository: str) -> bool:
        """Whether this record is for ``repository`` of its host: a host-wide record is for all, a
        prefix record for the prefix and what lies below it, by whole path components."""
        prefix = self.prefix
        return prefix is None or repository == prefix or repository.startswith(prefix + "/")

    def target(self) -> RegistryTarget:
        """What the Registry V2 client talks to for this record (imported here only: it loads yarl and
        ssl, which a helper ``get`` does not need)."""
        from regauth.distribution.target import RegistryTarget

        return RegistryTarget.for_registry(
            self.registry, insecure=self.insecure, ca_file=self.ca_file, options=self.options
        )

    def to_json(self) -> dict[str, Any]:
        data = self._asdict()
        data["options"] = dict(self.options)
        if self.last_validation is not None:
            data["last_validation"] = dict(self.last_validation)
        return data

    @classmethod
    def from_json(cls, data: Any, where: Path) -> Registry:
        problem = layout.record_problem(data)
        if problem is not None:
            raise ConfigError(f"{where} is damaged: {problem}; fix or move it, it was left untouched")
        return cls(**data)


def check_name(name: str) -> str:
    """Names stand in proxy paths, so they follow the repository path-component grammar."""
    ok = 0 < len(name) <= _NAME_MAX and name[0].isalnum() and name[-1].isalnum()
    ok = ok and all(c.isascii() and (c.islower() or c.isdigit() or c in "._-") for c in name)
    if not ok:
        raise UsageError(
            f"invalid registry name {name!r}: use 1-{_NAME_MAX} lower-case letters, digits, "
            "'.', '_' or '-', starting and ending with a letter or digit"
        )
    return name


def check_record(record: Registry) -> Registry:
    """Refuse a record that could not be used safely: each rule once, for the CLI and the helper alike."""
    check_name(record.name)
    if record.provider not in PROVIDERS:
        raise UsageError(f"unknown provider {record.provider!r}: use one of {', '.join(PROVIDERS)}")
    check_host(record.registry)
    if record.username is not None:
        check_username(record.username)
    for key, value in record.options.items():
        check_option(key, value)
    if record.repository is not None:
        check_repository(record.repository)
    if record.prefix is not None:
        check_repository(record.prefix)
    return record


def check_username(username: str) -> str:
    # Basic auth sends user:password, so a ':' would move part of the name into the password; a
    # control character could forge a header line or a terminal line.
    if ":" in username or not username.isprintable():
        raise UsageError(
            f"invalid username {printable(username)!r}: it must not contain ':' or control characters"
        )
    return username


def check_host(host: str) -> str:
    """Length limits of DNS names on a canonical ``host[:port]`` (its grammar is ``normalize_registry``'s)."""
    name = host[: host.rindex("]") + 1] if host.startswith("[") else host.partition(":")[0]
    too_long = len(name) > _HOST_MAX or (
        not name.startswith("[") and any(len(label) > _LABEL_MAX for label in name.split("."))
    )
    if too_long:
        raise UsageError(
            f"invalid registry host {host[:60]}...: a host name has at most {_HOST_MAX} characters, "
            f"in parts of at most {_LABEL_MAX}"
        )
    return host


def check_option(key: str, value: str) -> None:
    ok = 0 < len(key) <= _OPTION_KEY_MAX and key[0].isalpha() and set(key) <= _OPTION_KEY_CHARS
    if not ok:
        raise UsageError(
            f"invalid option name {printable(key)!r}: use lower-case letters, digits and '_', "
            "starting with a letter"
        )
    if not value.isprintable():
        raise UsageError(f"the value of option {key} contains control characters")


def stored_secret(store: SecretStore, record: Registry) -> str | None:
    """The record's secret in ``store``; None for an anonymous record (which never opens the store)."""
    if record.anonymous:
        return None
    return store.get(record.secret_key)


def _host_wide(records: list[Registry], host: str) -> Registry | None:
    return next((r for r in records if r.registry == host and r.prefix is None), None)


def for_image(records: Iterable[Registry], host: str, repository: str) -> Registry | None:
    """Of ``records``, the one for ``repository`` on the canonical ``host``: the longest prefix that
    covers it, else the host-wide record, else None (the book's rule, for callers holding records)."""
    candidates = [r for r in records if r.registry == host and r.covers(repository)]
    # The host-wide record (no prefix) is the shortest of all.
    return max(candidates, key=lambda r: len(r.prefix or "") + (r.prefix is not None), default=None)


# What a check of a record depends on, beside its secret: a change of one unchecked makes the last
# check (``last_validation``) a statement about another configuration, so it is dropped.
_CHECKED_FIELDS = (
    "registry",
    "prefix",
    "username",
    "provider",
    "options",
    "ca_file",
    "insecure",
    "repository",
)


def _checks_differ(old: Registry, new: Registry, secret: str | None) -> bool:
    return secret is not None or any(getattr(old, f) != getattr(new, f) for f in _CHECKED_FIELDS)


def moves_origin(old: Registry, new: Registry) -> bool:
    """Whether the change of ``old`` into ``new`` sends the record's requests to an origin its stored
    secret was not given for: another host, or plain HTTP where it was HTTPS (an origin is scheme and
    host; back to HTTPS exposes the secret to no one new)."""
    return old.registry != new.registry or (new.insecure and not old.insecure)


def name_for_host(host: str) -> str:
    return host.strip("[]").replace(":", "-").replace("[", "").replace("]", "")


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RegistryBook:
    """CRUD over registry records, keeping each record's secret in step in the secret store."""

    def __init__(self, settings: Settings, store: SecretStore) -> None:
        """``store`` is the edge's, and should open lazily (``store.lazy.LazyStore``): listing
        records must not pay for (or fail on) the secret store."""
        self.path = settings.registries_file
        self._certs_dirs = settings.certs_dirs
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._store = store

    @classmethod
    def for_settings(cls, settings: Settings) -> RegistryBook:
        """A book over its own lazily opened store of ``settings`` (scripts, tests; edges pass theirs)."""
        from regauth.store.lazy import LazyStore

        return cls(settings, LazyStore.for_settings(settings))

    def all(self) -> list[Registry]:
        return self._read()

    def get(self, name: str) -> Registry:
        for record in self._read():
            if record.name == name:
                return record
        raise NotFoundError(f"no registry named {name!r} (see `regauth registry list`)")

    def for_host(self, server: str) -> Registry | None:
        """The host-wide record of ``server`` (never a per-prefix one), or None."""
        return _host_wide(self._read(), normalize_registry(server))

    def for_image(self, server: str, repository: str) -> Registry | None:
        """The record for ``repository`` on ``server``: the longest prefix that covers it, else the
        host-wide record, else None."""
        return for_image(self._read(), normalize_registry(server), repository)

    def add(self, record: Registry, secret: str | None, *, by: str = ORIGIN_CLI) -> Registry:
        """Save a new record; ``by`` is who (``created_by``): an API token's name, or the CLI."""
        check_record(record)
        with file_lock(self._lock_path):
            records = self._read()
            self._check_free(records, record)
            now = _now()
            record = record._replace(
                id=record.id or os.urandom(8).hex(),
                created_at=now,
                updated_at=now,
                origin=ORIGIN_CLI,
                created_by=by,
                updated_by=by,
            )
            self._commit(records + [record], record, secret)
        return record

    def update(
        self,
        name: str,
        changes: Mapping[str, Any],
        secret: str | None = None,
        *,
        by: str = ORIGIN_CLI,
        seen: Registry | None = None,
    ) -> Registry:
        """Change fields of ``name``; a ``secret`` of None keeps the stored one, unless the record moves
        to another host or to plain HTTP (``moves_origin``): then it keeps none, so whoever may change
        a record cannot send its stored secret to a host of their choosing, or in clear. ``by`` is who
        (``updated_by``).

        ``seen`` is the record as the caller read it to decide (and check) the change: if it was changed
        meanwhile (a move, during a check of a new secret against the old host), nothing is saved.

        ``changes`` may set ``origin``: `regauth registry update` makes the record the user's own.
        """
        with file_lock(self._lock_path):
            records = self._read()
            old = next((r for r in records if r.name == name), None)
            if old is None:
                raise NotFoundError(f"no registry named {name!r} (see `regauth registry list`)")
            # A check noted meanwhile changes nothing the change was decided on.
            if seen is not None and old._replace(last_validation=None) != seen._replace(last_validation=None):
                raise ConflictError(
                    f"{old.label} was changed meanwhile by someone else; nothing was saved: look at it "
                    "again and retry"
                )
            new = check_record(old._replace(**changes, updated_at=_now(), updated_by=by))
            if "last_validation" not in changes and _checks_differ(old, new, secret):
                new = new._replace(last_validation=None)
            others = [r for r in records if r.id != old.id]
            self._check_free(others, new)
            rest = [new if r.id == old.id else r for r in records]
            if secret is None and not new.anonymous and not moves_origin(old, new):
                self._write(rest)
            else:
                self._commit(rest, new, secret)
        return new

    def note_validation(self, record_id: str, note: Mapping[str, str]) -> None:
        """Keep the outcome of a check on the record: no change of it, so ``updated_at`` stays."""
        with file_lock(self._lock_path):
            records = self._read()
            if any(r.id == record_id for r in records):  # else removed meanwhile: nothing to note
                self._write(
                    [r._replace(last_validation=dict(note)) if r.id == record_id else r for r in records]
                )

    def remove(self, name: str) -> Registry:
        with file_lock(self._lock_path):
            records = self._read()
            record = next((r for r in records if r.name == name), None)
            if record is None:
                raise NotFoundError(f"no registry named {name!r} (see `regauth registry list`)")
            self._drop(records, record)
        return record

    def remove_id(self, record_id: str) -> Registry:
        """Remove the record ``record_id``: what an edge that looked a record up removes is the one it
        found, not whichever record holds that record's name by now (a rename and an add meanwhile)."""
        with file_lock(self._lock_path):
            records = self._read()
            record = next((r for r in records if r.id == record_id), None)
            if record is None:
                raise NotFoundError(f"no registry with the id {record_id[:80]!r}: it was removed meanwhile")
            self._drop(records, record)
        return record

    def _drop(self, records: list[Registry], record: Registry) -> None:
        # A damaged store must fail the remove before anything changes, not after the record is gone.
        self._store.get(record.secret_key)
        self._write([r for r in records if r.id != record.id])
        # The record goes first: a secret with no record is unreachable, a record with no secret
        # would answer with a wrong credential.
        self._store.delete(record.secret_key)

    def erase_login(self, server: str) -> tuple[Registry, bool] | None:
        """What a credential helper ``erase`` does: (the record, whether it was kept), or None.

        A record the user configured keeps everything but its username and secret; one that a
        ``store`` made is removed whole. Records of other providers are left alone (kept, unchanged).
        """
        host = normalize_registry(server)
        with file_lock(self._lock_path):
            records = self._read()
            old = _host_wide(records, host)
            if old is None:
                return None
            if old.provider != "static" or old.anonymous:
                return old, True
            if not old.user_configured:
                self._drop(records, old)
                return old, False
            new = old._replace(username=None, updated_at=_now())
            self._commit([new if r.id == old.id else r for r in records], new, None)
        return new, True

    def upsert_static(self, server: str, username: str, secret: str) -> Registry:
        """What a credential helper ``store`` does: create or update the host's static record."""
        host = check_host(normalize_registry(server))
        check_username(username)
        with file_lock(self._lock_path):
            records = self._read()
            old = _host_wide(records, host)
            if old is not None and old.provider != "static":
                raise ConflictError(
                    f"{host} is managed by the {old.provider} provider as registry {old.name!r}; "
                    f"remove it first (regauth registry remove {old.name})"
                )
            if old is None:
                from regauth.clientcerts import client_ca

                now = _now()
                new = Registry(
                    id=os.urandom(8).hex(),
                    name=self._free_name(records, host),
                    registry=host,
                    username=username,
                    # The CA the client trusts for the host: it just logged in with it.
                    ca_file=client_ca(self._certs_dirs, host),
                    created_at=now,
                    updated_at=now,
                    origin=ORIGIN_HELPER,
                    created_by=ORIGIN_HELPER,
                    updated_by=ORIGIN_HELPER,
                )
                records = records + [new]
            else:
                new = old._replace(
                    username=username, updated_at=_now(), updated_by=ORIGIN_HELPER, last_validation=None
                )
                records = [new if r.id == old.id else r for r in records]
            self._commit(records, new, secret)
        return new

    def _commit(self, records: list[Registry], record: Registry, secret: str | None) -> None:
        """Write ``records`` with ``record``'s secret set to ``secret`` (None: none kept).

        The secret changes first and is put back if the records cannot be written: a record must never
        be saved with a secret that was not meant for it (a moved record with its old one, an old host
        with a secret given for a new one).
        """
        before = self._store.get(record.secret_key)
        if record.anonymous or secret is None:
            if before is not None:
                self._store.delete(record.secret_key)
        else:
            self._store.set(record.secret_key, secret)
        try:
            self._write(records)
        except BaseException:
            with contextlib.suppress(RegauthError):
                if before is None:
                    self._store.delete(record.secret_key)
                else:
                    self._store.set(record.secret_key, before)
            raise

    def check_free(self, record: Registry) -> None:
        """``add``'s conflict rule, asked before a slow step (a validation); ``add`` asks again, locked."""
        self._check_free(self._read(), record)

    @staticmethod
    def _check_free(records: list[Registry], record: Registry) -> None:
        for other in records:
            if other.name == record.name:
                raise ConflictError(
                    f"a registry named {record.name!r} already exists; use `regauth registry update`"
                )
            if other.registry == record.registry and other.prefix == record.prefix:
                raise ConflictError(
                    f"{record.location} is already configured as registry {other.name!r}; "
                    "use `regauth registry update`"
                )

    @staticmethod
    def _free_name(records: list[Registry], host: str) -> str:
        base = name_for_host(host)[: _NAME_MAX - 4]
        taken = {r.name for r in records}
        name, n = base, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        return name

    def _read(self) -> list[Registry]:
        raw = read_private(self.path, limit=layout.REGISTRIES_MAX_BYTES)
        if raw is None:
            return []
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise self._damaged(f"it is not JSON ({exc})") from None
        except RecursionError:
            raise self._damaged("it is nested too deeply to be a registries file") from None
        if not isinstance(data, dict) or not isinstance(data.get("registries"), list):
            raise self._damaged("no 'registries' list")
        version = data.get("version", layout.REGISTRIES_VERSION)
        # type(): JSON's true is no version, though True == 1 in Python.
        if type(version) is not int or version != layout.REGISTRIES_VERSION:
            raise ConfigError(
                f"{self.path} has format version {printable(str(version))[:20]}, which this regauth "
                f"does not read (it reads {layout.REGISTRIES_VERSION}); it was left untouched"
            )
        return [Registry.from_json(item, self.path) for item in data["registries"]]

    def _damaged(self, why: str) -> ConfigError:
        return ConfigError(f"{self.path} is damaged: {why}; fix or move it, it was left untouched")

    def _write(self, records: list[Registry]) -> None:
        data = {"version": layout.REGISTRIES_VERSION, "registries": [r.to_json() for r in records]}
        atomic_write(self.path, (json.dumps(data, indent=2) + "\n").encode(), mode=0o600)
