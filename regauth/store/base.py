"""The secret store contract every backend fulfils."""

from __future__ import annotations

from typing import Protocol


class SecretStore(Protocol):
    """A map of key to secret string; keys are not secret, values are."""

    @property
    def name(self) -> str:
        """How messages name the backend: "file", "keyring"."""
        ...

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        ...

    def keys(self) -> list[str]: ...
