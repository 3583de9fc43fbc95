"""What a registry is asked with: a username and a secret (a password, a token, an identity token).

It lives here, below the providers that mint it, so that the Registry V2 client needs nothing above it.
"""

from __future__ import annotations

from typing import NamedTuple

# The username Docker clients use for an OAuth2 identity (refresh) token.
IDENTITY_TOKEN_USERNAME = "<token>"


class Credential(NamedTuple):
    username: str
    secret: str
    # Unix time after which the secret is no longer valid; None for static secrets.
    expires_at: float | None = None

    def __repr__(self) -> str:
        return f"Credential(username={self.username!r}, secret='***', expires_at={self.expires_at!r})"

    @property
    def is_identity_token(self) -> bool:
        return self.username == IDENTITY_TOKEN_USERNAME
