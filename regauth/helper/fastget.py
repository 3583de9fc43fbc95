"""The common ``get``, answered with the fewest imports: a static record's secret from the file store.

Every pull calls ``docker-credential-regauth get``, and nearly all of them ask for a static registry in
the file store. The general path builds the settings, the registry book and the provider routing,
which import ``typing`` and ``pathlib``. This path reads the same files with ``os``, ``json`` and
libcrypto only. It answers only when everything is as the general path would find it with nothing to
report; anything else (another store or provider, a passphrase, logging, an unknown host, a file that
is missing or damaged) returns None, and the general path runs and gives its answer or its error. The
tests check both paths give the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from regauth import layout
from regauth.helper import texts
from regauth.helper.gojson import go_json
from regauth.servers import normalize_registry
from regauth.store import aesgcm, sealed

_QUIET_LEVELS = ("WARNING", "ERROR", "CRITICAL")


def answer(raw_input: bytes, environ: Mapping[str, str]) -> str | None:
    """What ``get`` writes for ``raw_input``, or None when the general path must decide."""
    try:
        return _answer(raw_input, environ)
    except Exception:
        # Declining is always safe: the general path redoes the work and reports what is wrong.
        return None


def _answer(raw_input: bytes, environ: Mapping[str, str]) -> str | None:
    if len(raw_input) > texts.MAX_INPUT_BYTES:
        return None
    if (environ.get("REGAUTH_LOG_LEVEL", "").strip().upper() or "WARNING") not in _QUIET_LEVELS:
        return None
    if environ.get("REGAUTH_PASSPHRASE"):
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
        f"registry/{record['id']}",
        _read(data_dir, layout.SECRETS_FILE),
        _read(config_dir, layout.KEY_FILE, secret=True),
    )
    if secret is None:
        return None
    return go_json(
        {
            texts.FIELD_SERVER_URL: server,
            texts.FIELD_USERNAME: str(record["username"]),
            texts.FIELD_SECRET: secret,
        }
    )


def _file_store_chosen(environ: Mapping[str, str], data_dir: str) -> bool:
    choice = environ.get("REGAUTH_STORE", "").strip().lower() or "auto"
    if choice == "auto":
        # Only a remembered choice: the first probe, and writing it down, are the general path's.
        choice = _read(data_dir, layout.STORE_CHOICE_FILE).decode("utf-8").strip()
    return choice == "file"


def _record_for(host: str, registries_json: bytes) -> dict[str, object] | None:
    """The host's record if it is static with a username, and the whole file is well formed."""
    if len(registries_json) > layout.REGISTRIES_MAX_BYTES:
        return None
    data = json.loads(registries_json.decode("utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("registries"), list):
        return None
    version = data.get("version", layout.REGISTRIES_VERSION)
    if type(version) is not int or version != layout.REGISTRIES_VERSION:
        return None
    found = None
    for item in data["registries"]:
        # As registries.Registry.from_json: one damaged entry fails every lookup.
        if layout.record_problem(item) is not None:
            return None
        if item["registry"] == host and found is None:
            found = item
    if found is None or found.get("provider", "static") != "static":
        return None
    return found if isinstance(found.get("username"), str) else None


def _secret(key: str, blob: bytes, key_file: bytes) -> str | None:
    kdf, _, header, nonce, body = sealed.split(blob)
    if kdf != sealed.KDF_KEYFILE:
        return None
    entries = json.loads(aesgcm.open_sealed(key_file, nonce, body, header).decode("utf-8"))
    # As the file store: a map of strings, or a damaged store.
    if not isinstance(entries, dict) or not all(isinstance(v, str) for v in entries.values()):
        return None
    secret = entries.get(key)
    return secret if isinstance(secret, str) else None


def _read(directory: str, name: str, *, secret: bool = False) -> bytes:
    """The file's bytes; raises (so the get declines) where the general path would refuse the file or
    its directory as not private, and the general path then says why."""
    if layout.unsafe_because(os.stat(directory), directory=True) is not None:
        raise PermissionError(directory)
    # O_NONBLOCK: a FIFO in a file's place must not hang the get (it is then refused as no file).
    with os.fdopen(os.open(os.path.join(directory, name), os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
        if layout.unsafe_because(os.fstat(handle.fileno()), secret=secret) is not None:
            raise PermissionError(name)
        return handle.read()
