"""Where regauth keeps its files (XDG base directories), as plain strings.

The credential helper's ``get`` reads these paths before anything else, so this module imports only
``os``: ``config.Settings`` wraps the same paths for the rest of regauth.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

APP = "regauth"
# (variable, default under HOME) for the config, data, cache and state directories.
XDG_DIRS = (
    ("XDG_CONFIG_HOME", ".config"),
    ("XDG_DATA_HOME", ".local/share"),
    ("XDG_CACHE_HOME", ".cache"),
    ("XDG_STATE_HOME", ".local/state"),
)
REGISTRIES_FILE = "registries.json"  # in the config dir
SECRETS_FILE = "secrets.enc"  # in the data dir
# In the config dir, apart from the encrypted data in the data dir, so that a copy of one directory
# alone (a backup, a synced folder) does not carry both.
KEY_FILE = "secrets.key"
STORE_CHOICE_FILE = "store-backend"  # in the data dir
LOG_FILE = "regauth.log"  # in the state dir


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
