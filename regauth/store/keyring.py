"""Secrets in the OS keyring (Secret Service, macOS Keychain, Windows Credential Locker).

The keyring API cannot enumerate entries, so the key names are kept in an index entry of their own;
index updates are serialised with a file lock because keyring backends are not transactional.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from regauth import layout
from regauth.config import Settings
from regauth.errors import StoreError
from regauth.fsutil import file_lock

T = TypeVar("T")

SERVICE = layout.KEYRING_SERVICE
INDEX_KEY = "__regauth_index__"
# Backends that exist but protect nothing, or store nothing: never chosen by `auto`.
_NOT_REAL = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt")


def real_keyring_available() -> bool:
    """Whether the keyring library has a backend that really stores secrets securely."""
    try:
        import keyring
        from keyring.backends.chainer import ChainerBackend
    except ImportError:
        return False
    try:
        backend = keyring.get_keyring()
    except Exception:  # noqa: BLE001 - a broken keyring install means "no keyring", by design
        return False
    candidates = backend.backends if isinstance(backend, ChainerBackend) else [backend]
    return any(_is_real(b) for b in candidates)


def _is_real(backend: object) -> bool:
    module = type(backend).__module__
    if module.startswith(_NOT_REAL):
        return False
    return float(getattr(backend, "priority", 0) or 0) > 0


class KeyringStore:
    name = "keyring"

    def __init__(self, settings: Settings) -> None:
        try:
            import keyring
            import keyring.errors
        except ImportError as exc:
            raise StoreError("REGAUTH_STORE=keyring needs the keyring package: pip install keyring") from exc
        self._keyring = keyring
        self._errors = keyring.errors
        self._lock_path = settings.data_dir / "keyring-index.lock"

    def get(self, key: str) -> str | None:
        return self._call(self._keyring.get_password, SERVICE, key)

    def set(self, key: str, value: str) -> None:
        with file_lock(self._lock_path):
            self._call(self._keyring.set_password, SERVICE, key, value)
            index = self._index()
            if key not in index:
                self._save_index(sorted({*index, key}))

    def delete(self, key: str) -> bool:
        with file_lock(self._lock_path):
            index = self._index()
            try:
                self._keyring.delete_password(SERVICE, key)
                found = True
            except self._errors.PasswordDeleteError:
                found = False
            except self._errors.KeyringError as exc:
                raise StoreError(f"the OS keyring refused to delete a secret: {exc}") from exc
            if key in index:
                self._save_index([k for k in index if k != key])
            return found

    def keys(self) -> list[str]:
        return self._index()

    def _index(self) -> list[str]:
        raw = self._call(self._keyring.get_password, SERVICE, INDEX_KEY)
        if raw is None:
            return []
        try:
            index = json.loads(raw)
        except (ValueError, RecursionError):
            # RecursionError: any program of the user's can write this entry, nested past json's stack.
            index = None
        if not isinstance(index, list) or not all(isinstance(k, str) for k in index):
            raise StoreError(f"the regauth index in the OS keyring ({SERVICE}/{INDEX_KEY}) is damaged")
        return index

    def _save_index(self, keys: list[str]) -> None:
        self._call(self._keyring.set_password, SERVICE, INDEX_KEY, json.dumps(keys))

    def _call(self, func: Callable[..., T], *args: object) -> T:
        try:
            return func(*args)
        except self._errors.KeyringError as exc:
            raise StoreError(f"the OS keyring failed: {type(exc).__name__}: {exc}") from exc
        except UnicodeDecodeError:
            # keyring decodes a secret as UTF-8; another program of the user's may have stored bytes.
            where = "/".join(str(arg) for arg in args[:2])
            raise StoreError(
                f"the OS keyring entry {where} is not UTF-8 text; remove or replace it"
            ) from None
