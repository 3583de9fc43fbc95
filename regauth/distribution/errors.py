"""Outcomes of talking to a registry, and the error that carries one.

``UpstreamError`` is a ``RegistryError`` with an ``outcome`` saying which way the exchange failed, so
the validator turns it into a result and the proxy into a status code without parsing messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum

from regauth.errors import RegistryError


class Outcome(str, Enum):
    VALID = "valid"
    WRONG_CREDENTIALS = "wrong_credentials"
    NO_PULL_PERMISSION = "no_pull_permission"
    REPOSITORY_NOT_FOUND = "repository_not_found"
    NOT_V2 = "not_v2"
    TLS_ERROR = "tls_error"
    UNREACHABLE = "unreachable"
    TIMED_OUT = "timed_out"
    RATE_LIMITED = "rate_limited"
    # The registry named a token realm that may not receive its credential (see ``realms``).
    REALM_REFUSED = "realm_refused"

    def __str__(self) -> str:
        return self.value


class UpstreamError(RegistryError):
    """A registry or token-server exchange failed; ``outcome`` classifies it, ``status`` is the HTTP one."""

    def __init__(self, message: str, outcome: Outcome, status: int | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.status = status


@dataclass(frozen=True)
class ErrorDetail:
    """One entry of the registry error JSON ``{"errors": [{"code", "message", "detail"}]}``."""

    code: str
    message: str


def parse_error_body(body: bytes) -> list[ErrorDetail]:
    """The registry errors in a response body; empty when it is not the registry error JSON."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return []
    return [
        ErrorDetail(str(item.get("code", "")).upper(), str(item.get("message", "")))
        for item in errors
        if isinstance(item, dict)
    ]


def describe(errors: list[ErrorDetail], limit: int = 200) -> str:
    """``code: message`` of the first error, cut to ``limit`` characters, for a one-line message."""
    if not errors:
        return ""
    first = errors[0]
    text = f"{first.code.lower()}: {first.message}" if first.message else first.code.lower()
    return text if len(text) <= limit else text[: limit - 3] + "..."
