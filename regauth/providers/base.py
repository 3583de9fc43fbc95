"""The provider contract: does it serve this registry, and give me a credential for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from regauth.registries import Registry

# The username Docker clients use for an OAuth2 identity (refresh) token.
IDENTITY_TOKEN_USERNAME = "<token>"


@dataclass(frozen=True)
class Credential:
    username: str
    secret: str = field(repr=False)
    # Unix time after which the secret is no longer valid; None for static secrets.
    expires_at: float | None = None

    @property
    def is_identity_token(self) -> bool:
        return self.username == IDENTITY_TOKEN_USERNAME


class Provider(Protocol):
    name: str

    def serves(self, host: str) -> bool:
        """Whether this provider mints credentials for ``host`` with no record (ambient credentials)."""
        ...

    def credential(self, host: str, record: Registry | None) -> Credential | None:
        """A credential for ``host``; None means anonymous. Raises ``ProviderError``."""
        ...
