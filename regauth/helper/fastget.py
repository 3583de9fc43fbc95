"""The common ``get``, answered with the fewest imports: a static record's secret, or a cloud token
fresh in the token cache, from the file store.

Every pull calls ``docker-credential-regauth get``, and nearly all of them ask for a static registry or
a cloud registry whose token is cached. The general path builds the settings, the registry book, the
provider routing and the provider, which import ``typing`` and ``pathlib`` (and ``re``). This path
reads the same files with ``os``, ``jsonlite`` (not ``json``, which imports ``re`` and ``enum``) and
libcrypto only, and files a token under the key the cache does (``providers.tokenkey``). It answers
only when everything is as the general path would find it with nothing to report; anything else
(another store, the ``env`` provider, a token to mint or a stale one, a passphrase, logging, a setting
only the general path checks, an unknown host, a file that is missing or damaged) returns None, and
the general path runs and gives its answer or its error. The tests check both paths give the same bytes.
"""

from __future__ import annotations

import os
import time

from regauth import jsonlite, layout, usage
from regauth.errors import UsageError
from regauth.helper import texts
from regauth.helper.gojson import go_json
from regauth.providers import tokenkey
from regauth.providers.table import PROVIDERS
from regauth.servers import normalize_registry
from regauth.store import aesgcm, sealed

# Not typing.TYPE_CHECKING: importing typing costs the fast get 4 ms; mypy honours the name alone.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    # A secret store's lookup: the entry under a key, None when there is none.
    Lookup = Callable[[str], str | None]


class _Declined(Exception):
    """Leave this get to the general path: a file it reports on, or an answer it gives."""


# What this path expects to meet, each a case the general path reports or handles: a file or directory
# that is missing, unreadable or not private (OSError), a request or remembered store choice that is
# not UTF-8, a server address the general path refuses, a secrets file that is not one or does not
# open with the key file, and files or entries it must read itself (``_Declined``; JSON that does not
# parse is a None from ``_json``). Anything else is a fault of this path and is raised, not hidden
# behind the general path's answer.
_DECLINED = (OSError, UnicodeDecodeError, UsageError, sealed.NotSealed, aesgcm.InvalidTag, _Declined)


def answer(raw_input: bytes, environ: Mapping[str, str]) -> str | None:
    """What ``get`` writes for ``raw_input``, or None when the general path must decide."""
    try:
        return _answer(raw_input, environ)
    except _DECLINED:
        # The general path redoes the work and reports what is wrong.
        return None


def _answer(raw_input: bytes, environ: Mapping[str, str]) -> str | None:
    if len(raw_input) > texts.MAX_INPUT_BYTES:
        return None
    # Logging asked for, or a level the general path refuses; a passphrase-sealed store.
    if layout.log_level(environ) not in layout.QUIET_LOG_LEVELS or environ.get(layout.ENV_PASSPHRASE):
        return None
    # Any value: the general path refuses a bad one on every get (a static one too), and only it
    # reads which ones are good.
    if environ.get(layout.ENV_NO_CREDENTIALS_TTL, "").strip():
        return None
    server = raw_input.decode("utf-8").strip()
    if not server:
        return None
    host = normalize_registry(server)
    config_dir, data_dir, _, state_dir = layout.app_dirs(environ)
    choice = _store_choice(environ, data_dir)
    if choice not in (layout.STORE_FILE, layout.STORE_KEYRING):
        return None
    try:
        record = _record_for(host, _read(config_dir, layout.REGISTRIES_FILE, layout.REGISTRIES_MAX_BYTES))
    except FileNotFoundError:
        # No records yet, as for the general path: a cloud host can still have an ambient token.
        record = None
    if choice == layout.STORE_FILE:
        credential = _credential(host, record, environ, _FileSecrets(config_dir, data_dir).get)
    else:
        credential = _keyring_credential(host, record, environ)
    if credential is None:
        return None
    if record is not None:
        # One utime, for `regauth doctor`; never a reason to fail or slow the pull (see usage).
        usage.mark_used(state_dir, str(record["id"]))
    username, secret = credential
    return go_json(
        {texts.FIELD_SERVER_URL: server, texts.FIELD_USERNAME: username, texts.FIELD_SECRET: secret}
    )


def _credential(
    host: str, record: dict[str, object] | None, environ: Mapping[str, str], lookup: Lookup
) -> tuple[str, str] | None:
    """(username, secret) as the general path's routing gives it with nothing to report, or None.

    A static record's secret; or a minting provider's token fresh in the token cache, for its record
    or for a cloud host with no record. Minting, a stale token, the ``env`` provider and an anonymous
    registry are the general path's.
    """
    if record is None:
        return _ambient_token(host, environ, lookup)
    record_id = record["id"]
    assert isinstance(record_id, str)  # record_problem checked the types
    provider = record.get("provider", layout.DEFAULT_PROVIDER)
    if provider == layout.DEFAULT_PROVIDER:
        username = record.get("username")
        if not isinstance(username, str):
            # An anonymous registry: the general path answers not-found and says so.
            return None
        secret = lookup(layout.secret_key(record_id))
        return None if secret is None else (username, secret)
    kind = PROVIDERS.get(str(provider))
    variables = tokenkey.IDENTITY_VARS.get(str(provider))
    # A record not saved yet (no id) bypasses the cache in the general path too.
    if kind is None or not kind.mints or variables is None or not record_id or _no_cache(environ):
        return None
    options = record.get("options", {})
    updated_at = record.get("updated_at", "")
    assert isinstance(options, dict) and isinstance(updated_at, str)
    identity = tokenkey.identity_text((record_id, updated_at, options), environ, variables)
    return _fresh_token(lookup(tokenkey.cache_key(kind.name, host, identity)))


def _ambient_token(host: str, environ: Mapping[str, str], lookup: Lookup) -> tuple[str, str] | None:
    """A cloud host with no record: the token the first minting provider serving it has cached.

    Which provider serves a host (its ``serves``, behind a regex module) is not asked here: an ambient
    entry exists only under the provider that routing picked for the host, and ECR, ACR and GCP hosts
    never overlap (tests/test_helper_fastget_tokens.py holds both). So an entry under exactly one
    provider answers; none, or more than one, is the general path's.
    """
    # Routing asks the env provider first, which serves ghcr.io and $CI_REGISTRY from these: decline.
    if _no_cache(environ) or environ.get("GITHUB_TOKEN") or environ.get("CI_JOB_TOKEN"):
        return None
    found = []
    for kind in PROVIDERS.values():
        if not kind.mints:
            continue
        variables = tokenkey.IDENTITY_VARS.get(kind.name)
        if variables is None:
            # A minting provider whose identity this path cannot write: it may serve the host.
            return None
        identity = tokenkey.identity_text(None, environ, variables)
        text = lookup(tokenkey.cache_key(kind.name, host, identity))
        if text is not None:
            found.append(text)
    return _fresh_token(found[0]) if len(found) == 1 else None


def _fresh_token(text: str | None) -> tuple[str, str] | None:
    """The entry's (username, secret) while it is fresh, as ``cache.TokenCache.fresh`` serves it."""
    if text is None:
        return None
    try:
        fields = tokenkey.token_fields(jsonlite.loads(text))
    except jsonlite.Declined:
        return None
    if fields is None:
        return None
    username, secret, expires_at, minted_at = fields
    return (username, secret) if time.time() < tokenkey.fresh_until(expires_at, minted_at) else None


def _no_cache(environ: Mapping[str, str]) -> bool:
    # Any value: only the general path reads which ones mean "mint afresh".
    return bool(environ.get(layout.ENV_NO_CACHE, "").strip())


class _FileSecrets:
    """The file store's entries, decrypted on the first lookup (a static get of an anonymous record,
    or a declined one, never opens the store)."""

    def __init__(self, config_dir: str, data_dir: str) -> None:
        self._config_dir = config_dir
        self._data_dir = data_dir
        self._entries: dict[str, str] | None = None

    def get(self, key: str) -> str | None:
        if self._entries is None:
            self._entries = _entries(
                _read(self._data_dir, layout.SECRETS_FILE, layout.SECRETS_MAX_BYTES),
                _read(self._config_dir, layout.KEY_FILE, aesgcm.KEY_LEN, secret=True),
            )
        return self._entries.get(key)


def _store_choice(environ: Mapping[str, str], data_dir: str) -> str:
    choice = layout.store_kind(environ)
    if choice == layout.STORE_AUTO:
        # Only a remembered choice: the first probe, and writing it down, are the general path's.
        choice = (
            _read(data_dir, layout.STORE_CHOICE_FILE, layout.STORE_CHOICE_MAX_BYTES).decode("utf-8").strip()
        )
    return choice


def _keyring_credential(
    host: str, record: dict[str, object] | None, environ: Mapping[str, str]
) -> tuple[str, str] | None:
    """``_credential`` over the keyring store, where ``keyring`` would use the Secret Service: its
    entries read by ``store.secretservice`` (which raises ``Unavailable`` where it cannot answer)."""
    from regauth.store import secretservice

    if not secretservice.general_path_uses_secret_service(environ):
        return None
    client = secretservice.SecretServiceGet(environ, layout.KEYRING_SERVICE)
    try:
        return _credential(host, record, environ, client.get)
    except secretservice.Unavailable:
        # Locked, no bus, a prompt needed, no answer in time: keyring's, which may prompt or report.
        return None
    finally:
        client.close()


def _record_for(host: str, registries_json: bytes) -> dict[str, object] | None:
    """The host's active host-wide record, None when it has none; ``_Declined`` for a file the general
    path must report on, or a disabled record (the general path says it is not found, and why)."""
    data = _json(registries_json)
    if not isinstance(data, dict) or not isinstance(data.get(layout.RECORDS_KEY), list):
        raise _Declined
    version = data.get(layout.VERSION_KEY, layout.REGISTRIES_VERSION)
    if type(version) is not int or version != layout.REGISTRIES_VERSION:
        raise _Declined
    found = None
    for item in data[layout.RECORDS_KEY]:
        # As registries.Registry.from_json: one damaged entry fails every lookup.
        if layout.record_problem(item) is not None:
            raise _Declined
        # A per-prefix record is for images, which the helper protocol never names.
        if item["registry"] == host and item.get("prefix") is None and found is None:
            found = item
    if found is not None and found.get("active", True) is not True:
        raise _Declined
    return found


def _entries(blob: bytes, key_file: bytes) -> dict[str, str]:
    """The decrypted map of the file store; ``_Declined`` for a store the general path must open."""
    kdf, _, header, nonce, body = sealed.split(blob)
    if kdf != sealed.KDF_KEYFILE:
        raise _Declined
    entries = _json(aesgcm.open_sealed(key_file, nonce, body, header))
    # As the file store: a map of strings, or a damaged store.
    if not isinstance(entries, dict) or not all(isinstance(v, str) for v in entries.values()):
        raise _Declined
    return entries


def _json(raw: bytes) -> object:
    """The JSON value of ``raw``, or None where it is none (the callers want an object, never null).

    ``jsonlite`` reads the plain JSON regauth writes exactly as ``json.loads`` does, and declines the
    rest (NaN, a lone surrogate escape, deep nesting, a huge number), which the general path then reads.
    """
    try:
        return jsonlite.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, jsonlite.Declined):
        return None


def _read(directory: str, name: str, limit: int, *, secret: bool = False) -> bytes:
    """The file's bytes; raises PermissionError (so the get declines) where the general path would
    refuse the file or its directory as not private, and ``_Declined`` for a file larger than
    ``limit``, the most the general path reads of it: the general path then says why."""
    if layout.unsafe_because(os.stat(directory), directory=True) is not None:
        raise PermissionError(directory)
    # O_NONBLOCK: a FIFO in a file's place must not hang the get (it is then refused as no file).
    with os.fdopen(os.open(os.path.join(directory, name), os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
        if layout.unsafe_because(os.fstat(handle.fileno()), secret=secret) is not None:
            raise PermissionError(name)
        # One byte past the limit, as the general path reads: never a whole huge file into memory.
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise _Declined
    return data
