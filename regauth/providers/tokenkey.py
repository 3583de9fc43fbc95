"""The token cache's rules, written once for the cache and for the helper's fast ``get``: an identity's
text, the cache key it is filed under, what an entry holds and how long it is fresh.

The fast ``get`` answers a cached token without the provider, its SDK or the general path, so this
module imports no ``json`` (``jsonlite`` writes the same text), no ``typing`` and no ``hashlib`` (the
interpreter's builtin SHA-256: hashlib loads OpenSSL, about 3 ms).
"""

from __future__ import annotations

from regauth.jsonlite import dumps_sorted

# Not typing.TYPE_CHECKING: importing typing costs the fast get 4 ms; mypy honours the name alone.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

# Imported "as sha256" to export it (cache and absent use it too); which ignore is unused depends on the
# Python version mypy checks for.
try:
    from _sha2 import sha256 as sha256  # Python 3.12+
except ImportError:
    try:
        from _sha256 import sha256 as sha256  # type: ignore[no-redef, unused-ignore]  # Python 3.10, 3.11
    except ImportError:
        from hashlib import sha256 as sha256  # type: ignore[assignment, unused-ignore]

PREFIX = "token/"
LONG_LIVED = 6 * 3600.0
SHORT_MARGIN = 300.0

# The environment variables that select each minting provider's cloud identity. Here, not in the
# provider modules, which take theirs from this table: the fast get cannot import those modules.
# tests/test_helper_fastget_tokens.py checks each provider's identity() against the fast get's.
IDENTITY_VARS: dict[str, tuple[str, ...]] = {
    "ecr": (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_ECR",
        "AWS_ENDPOINT_URL_ECR_PUBLIC",
        "AWS_ENDPOINT_URL_STS",
    ),
    "acr": (
        "AZURE_TOKEN_CREDENTIALS",
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_AUTHORITY_HOST",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_USERNAME",
        "AZURE_CONFIG_DIR",
        "IDENTITY_ENDPOINT",
        "MSI_ENDPOINT",
    ),
    "gcp": ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG", "CLOUDSDK_CORE_ACCOUNT"),
}


def identity_text(
    record: tuple[str, str, Mapping[str, str]] | None,
    environ: Mapping[str, str],
    variables: Iterable[str],
    *extra: str,
) -> str:
    """A canonical text of a record's identity-bearing fields (its id, ``updated_at`` and options) and
    the named environment variables; ``providers.base.identity_text`` takes the record itself."""
    data = {
        # updated_at changes with the record's options and secret, so an edit never serves an old token.
        "record": [record[0], record[1], sorted(record[2].items())] if record else None,
        "env": {name: environ[name] for name in sorted(variables) if name in environ},
        "extra": list(extra),
    }
    return dumps_sorted(data)


def cache_key(provider: str, host: str, identity: str) -> str:
    return f"{PREFIX}{provider}/{host}/{sha256(identity.encode()).hexdigest()[:16]}"


def token_fields(data: object) -> tuple[str, str, float, float] | None:
    """(username, secret, expires_at, minted_at) of a decoded cache entry; None for one this version
    cannot read (it is then re-minted and overwritten)."""
    if not isinstance(data, dict):
        return None
    try:
        return (
            str(data["username"]),
            str(data["secret"]),
            float(data["expires_at"]),
            float(data["minted_at"]),
        )
    except (ValueError, TypeError, KeyError, OverflowError):
        # OverflowError: an integer beyond any float (float(10**400)), which json.loads gives.
        return None


def fresh_until(expires_at: float, minted_at: float) -> float:
    """A token of 6 hours or more is fresh for the first half of its life, as ecr-login does; a shorter
    one until ``min(5 min, 10 % of its life)`` before it expires."""
    life = expires_at - minted_at
    if life >= LONG_LIVED:
        return minted_at + life / 2
    return expires_at - min(SHORT_MARGIN, max(life, 0.0) / 10)
