"""API tokens: named, scoped (``read`` or ``write``), kept only as their SHA-256 hash.

``regauth token create NAME --scope read|write`` prints a new random token once; the file beside
``registries.json`` (``api-tokens.json``, 0600, written atomically under a lock) holds its name, scope,
hash and creation time. A token is 256 random bits, so a plain hash is enough: there is nothing to
guess that a slow hash would protect. A presented token is hashed and compared with every stored hash
in constant time, without stopping at a match.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from regauth.config import Settings
from regauth.errors import ConfigError, ConflictError, NotFoundError, UsageError
from regauth.fsutil import atomic_write, file_lock, read_private

TOKENS_FILE = "api-tokens.json"  # in the config dir, beside registries.json
READ, WRITE = "read", "write"
SCOPES = (READ, WRITE)
_VERSION = 1
_PREFIX = "rgt_"
_NAME_MAX = 64
_FILE_MAX = 4 * 1024 * 1024
# What a record's created_by / updated_by says for changes made without a token.
_RESERVED = frozenset({"cli", "helper"})


class ApiToken(NamedTuple):
    name: str
    scope: str
    created_at: str

    def may(self, scope: str) -> bool:
        """``write`` includes ``read``."""
        return self.scope == WRITE or scope == READ


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_token_name(name: str) -> str:
    ok = 0 < len(name) <= _NAME_MAX and name[0].isalnum()
    ok = ok and all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    if not ok:
        raise UsageError(
            f"invalid token name {name[:_NAME_MAX]!r}: use 1-{_NAME_MAX} letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if name in _RESERVED:
        raise UsageError(f"the token name {name!r} is reserved: a record's created_by says it for the CLI")
    return name


class TokenBook:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")

    @classmethod
    def for_settings(cls, settings: Settings) -> TokenBook:
        return cls(settings.config_dir / TOKENS_FILE)

    def create(self, name: str, scope: str) -> tuple[ApiToken, str]:
        """A new token named ``name``: its record and the token itself, which is shown only now."""
        check_token_name(name)
        if scope not in SCOPES:
            raise UsageError(f"invalid scope {scope!r}: use {' or '.join(SCOPES)}")
        token = _PREFIX + secrets.token_urlsafe(32)
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with file_lock(self._lock_path):
            entries = self._read()
            if any(entry["name"] == name for entry in entries):
                raise ConflictError(f"a token named {name!r} already exists; revoke it first")
            entries.append({"name": name, "scope": scope, "sha256": digest(token), "created_at": created})
            self._write(entries)
        return ApiToken(name, scope, created), token

    def all(self) -> list[ApiToken]:
        return [ApiToken(e["name"], e["scope"], e["created_at"]) for e in self._read()]

    def revoke(self, name: str) -> ApiToken:
        with file_lock(self._lock_path):
            entries = self._read()
            kept = [entry for entry in entries if entry["name"] != name]
            if len(kept) == len(entries):
                raise NotFoundError(f"no token named {name!r} (see `regauth token list`)")
            self._write(kept)
        gone = next(entry for entry in entries if entry["name"] == name)
        return ApiToken(gone["name"], gone["scope"], gone["created_at"])

    def verify(self, token: str) -> ApiToken | None:
        """The token's record if ``token`` is one of ours; read afresh, so a revoke counts at once."""
        presented = digest(token).encode()
        found: ApiToken | None = None
        for entry in self._read():
            # No early exit: the time taken does not say which entry matched.
            if hmac.compare_digest(presented, entry["sha256"].encode()):
                found = ApiToken(entry["name"], entry["scope"], entry["created_at"])
        return found

    def _read(self) -> list[dict[str, Any]]:
        raw = read_private(self.path, secret=True, limit=_FILE_MAX)
        if raw is None:
            return []
        try:
            data = json.loads(raw)
        except ValueError:
            raise self._damaged("it is not JSON") from None
        entries = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(entries, list) or data.get("version") != _VERSION:
            raise self._damaged("no 'tokens' list of version 1")
        for entry in entries:
            if not isinstance(entry, dict) or not all(
                isinstance(entry.get(key), str) for key in ("name", "scope", "sha256", "created_at")
            ):
                raise self._damaged("a token entry is not an object of strings")
        return entries

    def _damaged(self, why: str) -> ConfigError:
        return ConfigError(f"{self.path} is damaged: {why}; fix or move it, it was left untouched")

    def _write(self, entries: list[dict[str, Any]]) -> None:
        data = {"version": _VERSION, "tokens": entries}
        atomic_write(self.path, (json.dumps(data, indent=2) + "\n").encode(), mode=0o600)
