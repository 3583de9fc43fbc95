"""Where regauth keeps its files (XDG base directories, as plain strings) and what they must be.

The credential helper's ``get`` reads these paths before anything else, so this module imports only
``os`` (and the provider names from ``providers.table``, which imports nothing): ``config.Settings``
wraps the same paths for the rest of regauth. What the fast ``get`` and the general path must read
alike lives here too, so that each is written once: the settings in the environment that decide
whether the fast ``get`` may answer (names, defaults, spelling; ``config.load_settings`` reads every
setting by these names), which files and directories are safe to trust (``unsafe_because``) and what
a well-formed entry of the registries file is (``record_problem``).
"""

from __future__ import annotations

import os
import stat

# The names a record's provider may hold: the one table's.
from regauth.providers.table import NAMES as PROVIDERS

# Not typing.TYPE_CHECKING: importing typing costs the fast get 4 ms; mypy honours the name alone.
# collections.abc imports the collections package (about 1 ms): for the annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

APP = "regauth"
# (variable, default under HOME) for the config, data, cache and state directories.
XDG_DIRS = (
    ("XDG_CONFIG_HOME", ".config"),
    ("XDG_DATA_HOME", ".local/share"),
    ("XDG_CACHE_HOME", ".cache"),
    ("XDG_STATE_HOME", ".local/state"),
)
# regauth's own settings in the environment.
ENV_STORE = "REGAUTH_STORE"
ENV_PASSPHRASE = "REGAUTH_PASSPHRASE"
ENV_LOG_LEVEL = "REGAUTH_LOG_LEVEL"
ENV_NO_CACHE = "REGAUTH_NO_CACHE"
ENV_NO_CREDENTIALS_TTL = "REGAUTH_NO_CREDENTIALS_TTL"
ENV_CERTS_DIRS = "REGAUTH_CERTS_DIRS"
STORE_AUTO, STORE_KEYRING, STORE_FILE = "auto", "keyring", "file"
# The service name of every entry regauth keeps in the OS keyring (its key is the entry's username).
KEYRING_SERVICE = "regauth"
STORE_KINDS = (STORE_AUTO, STORE_KEYRING, STORE_FILE)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LOG_LEVEL = "WARNING"
# The levels at which a helper ``get`` sets up no logging (below them it writes a log file).
QUIET_LOG_LEVELS = ("WARNING", "ERROR", "CRITICAL")
REGISTRIES_FILE = "registries.json"  # in the config dir
SECRETS_FILE = "secrets.enc"  # in the data dir
# The most of it the file store reads: a few KiB of secrets and tokens, far larger is not one.
SECRETS_MAX_BYTES = 64 * 1024 * 1024
# In the config dir, apart from the encrypted data in the data dir, so that a copy of one directory
# alone (a backup, a synced folder) does not carry both.
KEY_FILE = "secrets.key"
STORE_CHOICE_FILE = "store-backend"  # in the data dir
# The remembered choice is one word; a larger file is not one.
STORE_CHOICE_MAX_BYTES = 64
LOG_FILE = "regauth.log"  # in the state dir
# The registries file is {VERSION_KEY: REGISTRIES_VERSION, RECORDS_KEY: [record, ...]}; a file of
# another version is not ours to read.
VERSION_KEY = "version"
RECORDS_KEY = "registries"
REGISTRIES_VERSION = 1
# A registries file is a few KiB; anything far larger is not one.
REGISTRIES_MAX_BYTES = 16 * 1024 * 1024

# Each field of a registry record and the JSON types it may hold (registries.Registry has the same
# fields; a test holds them equal). ``options`` is an object of strings, checked apart.
_STR, _OPT_STR = (str,), (str, type(None))
RECORD_TYPES: Mapping[str, tuple[type, ...]] = {
    "id": _STR,
    "name": _STR,
    "registry": _STR,
    "username": _OPT_STR,
    "provider": _STR,
    "options": (dict,),
    "ca_file": _OPT_STR,
    "insecure": (bool,),
    "repository": _OPT_STR,
    "created_at": _STR,
    "updated_at": _STR,
    "origin": _OPT_STR,
    "active": (bool,),
    "created_by": _OPT_STR,
    "updated_by": _OPT_STR,
    # {"outcome", "message", "at"}: strings, checked apart as the options are.
    "last_validation": (dict, type(None)),
    # A per-repository-prefix record (registries.Registry.prefix); the helper's get never uses one.
    "prefix": _OPT_STR,
}
_REQUIRED = ("id", "name", "registry")
# The provider of a record that names none: a username and a secret of the store's.
DEFAULT_PROVIDER = "static"


def secret_key(record_id: str) -> str:
    """Where the secret store keeps the secret of the record with this id."""
    return f"registry/{record_id}"


def store_kind(environ: Mapping[str, str]) -> str:
    """``REGAUTH_STORE`` as meant: blanks and case dropped, unset or empty is ``auto``. Whether it is
    one of ``STORE_KINDS`` is for the caller to decide."""
    return environ.get(ENV_STORE, "").strip().lower() or STORE_AUTO


def log_level(environ: Mapping[str, str]) -> str:
    """``REGAUTH_LOG_LEVEL`` as meant: blanks dropped, upper case, unset or empty is ``WARNING``."""
    return environ.get(ENV_LOG_LEVEL, "").strip().upper() or DEFAULT_LOG_LEVEL


def app_dirs(environ: Mapping[str, str]) -> tuple[str, str, str, str]:
    """regauth's config, data, cache and state directories for this environment."""
    home = environ.get("HOME") or os.path.expanduser("~")
    found = []
    for var, default in XDG_DIRS:
        value = environ.get(var, "")
        # The XDG spec says relative paths are invalid and must be ignored.
        base = value if value and os.path.isabs(value) else os.path.join(home, default)
        found.append(os.path.join(base, APP))
    config, data, cache, state = found
    return config, data, cache, state


def unsafe_because(
    st: os.stat_result, *, secret: bool = False, directory: bool = False, read_only: bool = False
) -> str | None:
    """Why a file (or a ``directory``) of regauth's with this stat must not be trusted, or None.

    Another user who owns it, or who can write it, could plant records that send a credential to
    their host, or swap the store; a ``secret`` (the key file) must not even be readable by others.
    A FIFO or a device where a file belongs would hang or feed a read.

    ``read_only``: it is on a read-only mount (a Kubernetes Secret or ConfigMap volume, a ``:ro``
    config volume), which nobody can change through this path. There root may own it too (root can
    change any file anyway; ssh trusts root's files alike), and a directory's group and others write
    bits do not count: such volumes are root's 1777 (Secret) or 0777 (ConfigMap) directories, and
    each name in one is a file that is itself checked when opened. A file's own bits still count.
    """
    kind_ok = stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)
    if not kind_ok:
        return f"it is not a {'directory' if directory else 'regular file'}"
    uid = os.geteuid()
    if st.st_uid != uid and not (read_only and st.st_uid == 0):
        return f"it is owned by uid {st.st_uid}, not by you (uid {uid}); it may hold another user's data"
    if read_only and directory:
        return None
    loose = st.st_mode & (0o077 if secret else 0o022)
    if loose:
        can = "read or write" if secret else "write"
        fix = "chmod 600" if secret else "chmod go-w"
        return f"group or others can {can} it (mode {st.st_mode & 0o7777:04o}); {fix} it if that is not meant"
    return None


def record_problem(item: object) -> str | None:
    """What is wrong with one entry of the registries file, or None when it is a well-formed record."""
    if not isinstance(item, dict):
        return "a registry entry is not an object"
    for field in _REQUIRED:
        if field not in item:
            return f"a registry entry lacks {field!r}"
    for field, value in item.items():
        types = RECORD_TYPES.get(field)
        if types is None:
            return f"a registry entry has an unknown field {_shown(field)}"
        # bool is an int in Python, but JSON's true is no string and 1 is no bool: exact types only.
        if type(value) not in types:
            return f"field {field!r} of a registry entry is a {_json_type(value)}, not {_wanted(types)}"
        if isinstance(value, str) and not encodable(value):
            return f"field {field!r} of a registry entry is not valid text"
    options = item.get("options", {})
    for key, value in options.items():
        if not isinstance(value, str) or not encodable(key) or not encodable(value):
            return f"option {_shown(key)} of a registry entry is not a string"
    note = item.get("last_validation") or {}
    for key, value in note.items():
        if not isinstance(value, str) or not encodable(key) or not encodable(value):
            return f"field {_shown(key)} of a registry entry's last_validation is not a string"
    if item.get("provider", DEFAULT_PROVIDER) not in PROVIDERS:
        return f"a registry entry has an unknown provider {_shown(item['provider'])}"
    return None


def encodable(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8: ``json.loads`` accepts a lone surrogate (``\\ud800``),
    which no file, store or output stream can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(value: str) -> str:
    """``value`` quoted for a message: a hand-edited file's text is escaped and shortened."""
    text = value.encode("unicode_escape").decode("ascii")
    return '"' + (text if len(text) <= 40 else text[:40] + "...") + '"'


_JSON_TYPES = {
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    list: "list",
    dict: "object",
    type(None): "null",
}


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _wanted(types: tuple[type, ...]) -> str:
    return " or ".join(_JSON_TYPES[t] for t in types)
