"""The regauth exception tree.

Every error regauth raises on purpose is a ``RegauthError``; its ``str()`` is one line meant for a person
and never contains a secret. The edges (CLI, credential helper, HTTP proxy) turn it into a one-line
message, a protocol error or a registry error JSON; lower layers map foreign exceptions into it with
``raise ... from exc``.

    RegauthError
    ├── UsageError        bad input on the command line or the helper's stdin
    ├── ConfigError       a configuration file is damaged or holds an invalid value
    ├── StoreError        the secret store cannot be read or written (damaged file, lock, backend)
    ├── NotFoundError     no such registry or credential
    ├── ConflictError     a name or host is already configured
    ├── RegistryError     talking to a Registry V2 server failed (transport, TLS, protocol)
    ├── ValidationError   a credential did not validate; carries the outcome
    └── ProviderError     a provider could not produce a credential
"""

from __future__ import annotations


class RegauthError(Exception):
    """Base of all regauth errors; the message is one line, safe to show."""

    def __init__(self, message: str) -> None:
        # Multi-line messages break the one-line contract of every edge.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self)


class UsageError(RegauthError):
    pass


class ConfigError(RegauthError):
    pass


class StoreError(RegauthError):
    pass


class NotFoundError(RegauthError):
    pass


class ConflictError(RegauthError):
    pass


class RegistryError(RegauthError):
    pass


class ValidationError(RegauthError):
    """A validation that did not come back valid; ``outcome`` names which way it failed."""

    def __init__(self, message: str, outcome: str = "invalid") -> None:
        super().__init__(message)
        self.outcome = outcome


class ProviderError(RegauthError):
    pass
