"""The environment variables regauth reads, their defaults, and how a value is spelled.

``config.load_settings`` reads them at each edge. The helper's fast ``get`` reads the few it must
check itself, and cannot import ``config`` (it loads ``typing`` and ``pathlib``), so this module
imports nothing: each name and each spelling rule (blanks, case) is written here once, for both.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: this module is on the fast get, which imports no typing; mypy honours it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

STORE = "REGAUTH_STORE"
PASSPHRASE = "REGAUTH_PASSPHRASE"
LOG_LEVEL = "REGAUTH_LOG_LEVEL"
NO_CACHE = "REGAUTH_NO_CACHE"
NO_CREDENTIALS_TTL = "REGAUTH_NO_CREDENTIALS_TTL"
CERTS_DIRS = "REGAUTH_CERTS_DIRS"

STORE_AUTO, STORE_KEYRING, STORE_FILE = "auto", "keyring", "file"
STORE_KINDS = (STORE_AUTO, STORE_KEYRING, STORE_FILE)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LOG_LEVEL = "WARNING"
# The levels at which a helper ``get`` sets up no logging: below them it writes a log file.
QUIET_LOG_LEVELS = ("WARNING", "ERROR", "CRITICAL")


def store_kind(environ: Mapping[str, str]) -> str:
    """``REGAUTH_STORE`` as meant: blanks and case dropped, unset or empty is ``auto``. Whether it is
    one of ``STORE_KINDS`` is for the caller to decide."""
    return environ.get(STORE, "").strip().lower() or STORE_AUTO


def log_level(environ: Mapping[str, str]) -> str:
    """``REGAUTH_LOG_LEVEL`` as meant: blanks dropped, upper case, unset or empty is ``WARNING``."""
    return environ.get(LOG_LEVEL, "").strip().upper() or DEFAULT_LOG_LEVEL
