"""The common ``get``, answered with the fewest imports: a static record's secret from the file store.

Every pull calls ``docker-credential-regauth get``, and nearly all of them ask for a static registry in
the file store. The general path builds the settings, the registry book and the provider routing,
which import ``typing`` and ``pathlib``. This path reads the same files with ``os``, ``jsonlite`` (not
``json``, which imports ``re`` and ``enum``) and libcrypto only. It answers only when everything is as
the general path would find it with nothing to report; anything else (another store or provider, a
passphrase, logging, an unknown host, a file that is missing or damaged) returns None, and the general
path runs and gives its answer or its error. The tests check both paths give the same bytes.
"""

from __future__ import annotations

import os

from regauth import jsonlite, layout
from regauth.errors import UsageError
from regauth.helper import texts
from regauth.helper.gojson import go_json
from regauth.servers import normalize_registry
from regauth.store import aesgcm, sealed

# Not typing.TYPE_CHECKING: importing typing costs the fast get 4 ms; mypy honours the name alone.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

# What this path expects to meet, each a case the general path reports or handles: a file or directory
# that is missing, unreadable or not private (OSError), a request or remembered store choice that is
# not UTF-8, a server address the general path refuses, and a secrets file that is not one or does not
# open with the key file (JSON that does not parse is a None from ``_json``). Anything else is a fault
# of this path and is raised, not hidden behind the general path's answer.
_DECLINED = (OSError, UnicodeDecodeError, UsageError, sealed.NotSealed, aesgcm.InvalidTag)


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
    server = raw_input.decode("utf-8").strip()
    if not server:
        return None
    host = normalize_registry(server)
    config_dir, data_dir, _, _ = layout.app_dirs(environ)
    if not _file_store_chosen(environ, data_dir):
        return None
    record = _record_for(host, _read(config_dir, layout.REGISTRIES_FILE))
    if record is None:
        return None
    secret = _secret(
        layout.secret_key(record["id"]),
        _read(data_dir, layout.SECRETS_FILE),
        _read(config_dir, layout.KEY_FILE, secret=True),
    )
    if secret is None:
        return None
    return go_json(
        {
            texts.FIELD_SERVER_URL: server,
            texts.FIELD_USERNAME: record["username"],
            texts.FIELD_SECRET: secret,
        }
    )


def _file_store_chosen(environ: Mapping[str, str], data_dir: str) -> bool:
    choice = layout.store_kind(environ)
    if choice == layout.STORE_AUTO:
        # Only a remembered choice: the first probe, and writing it down, are the general path's.
        choice = _read(data_dir, layout.STORE_CHOICE_FILE).decode("utf-8").strip()
    return choice == layout.STORE_FILE


def _record_for(host: str, registries_json: bytes) -> dict[str, str] | None:
    """The host's record if it is static with a username, and the whole file is well formed."""
    if len(registries_json) > layout.REGISTRIES_MAX_BYTES:
        return None
    data = _json(registries_json)
    if not isinstance(data, dict) or not isinstance(data.get(layout.RECORDS_KEY), list):
        return None
    version = data.get(layout.VERSION_KEY, layout.REGISTRIES_VERSION)
    if type(version) is not int or version != layout.REGISTRIES_VERSION:
        return None
    found = None
    for item in data[layout.RECORDS_KEY]:
        # As registries.Registry.from_json: one damaged entry fails every lookup.
        if layout.record_problem(item) is not None:
            return None
        # A per-prefix record is for images, which the helper protocol never names.
        if item["registry"] == host and item.get("prefix") is None and found is None:
            found = item
    if found is None or found.get("provider", layout.DEFAULT_PROVIDER) != layout.DEFAULT_PROVIDER:
        return None
    # A disabled record: the general path says it is not found, and why.
    if found.get("active", True) is not True:
        return None
    # record_problem checked the types: "id" is a string, and so is a "username" that is not None.
    return found if isinstance(found.get("username"), str) else None


def _secret(key: str, blob: bytes, key_file: bytes) -> str | None:
    kdf, _, header, nonce, body = sealed.split(blob)
    if kdf != sealed.KDF_KEYFILE:
        return None
    entries = _json(aesgcm.open_sealed(key_file, nonce, body, header))
    # As the file store: a map of strings, or a damaged store.
    if not isinstance(entries, dict) or not all(isinstance(v, str) for v in entries.values()):
        return None
    secret = entries.get(key)
    return secret if isinstance(secret, str) else None


def _json(raw: bytes) -> object:
    """The JSON value of ``raw``, or None where it is none (the callers want an object, never null).

    ``jsonlite`` reads the plain JSON regauth writes exactly as ``json.loads`` does, and declines the
    rest (NaN, a lone surrogate escape, deep nesting, a huge number), which the general path then reads.
    """
    try:
        return jsonlite.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, jsonlite.Declined):
        return None


def _read(directory: str, name: str, *, secret: bool = False) -> bytes:
    """The file's bytes; raises PermissionError (so the get declines) where the general path would
    refuse the file or its directory as not private, and the general path then says why."""
    if layout.unsafe_because(os.stat(directory), directory=True) is not None:
        raise PermissionError(directory)
    # O_NONBLOCK: a FIFO in a file's place must not hang the get (it is then refused as no file).
    with os.fdopen(os.open(os.path.join(directory, name), os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
        if layout.unsafe_because(os.fstat(handle.fileno()), secret=secret) is not None:
            raise PermissionError(name)
        return handle.read()
