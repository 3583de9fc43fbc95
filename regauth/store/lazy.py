"""The secret store an edge opens once and hands on: opened on first use, not when it is made.

The CLI, the helper and the proxy each make one at start and pass it to the registry book, the token
cache and the provider routing. Opening a store can cost (probing the keyring for ``auto``, importing
``keyring`` or ``cryptography``) or fail (a damaged store): a command that never reads a secret, and a
``list`` of records, must not pay for or fail on it, so nothing is opened until a secret is asked for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from regauth.config import Settings
from regauth.store.base import SecretStore


class LazyStore:
    """A ``SecretStore`` that opens the real one (once, whichever thread asks first) on first use."""

    def __init__(self, opener: Callable[[], SecretStore]) -> None:
        self._opener = opener
        self._store: SecretStore | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> LazyStore:
        """The store ``settings`` choose (``REGAUTH_STORE``, else the remembered or probed ``auto``)."""

        def open_configured() -> SecretStore:
            from regauth.store import open_store

            return open_store(settings)

        return cls(open_configured)

    @property
    def opened(self) -> SecretStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._opener()
        return self._store

    @property
    def name(self) -> str:
        return self.opened.name

    def get(self, key: str) -> str | None:
        return self.opened.get(key)

    def set(self, key: str, value: str) -> None:
        self.opened.set(key, value)

    def delete(self, key: str) -> bool:
        return self.opened.delete(key)

    def keys(self) -> list[str]:
        return self.opened.keys()
