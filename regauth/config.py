"""Settings, read once at the edge from the environment; nothing else reads ``os.environ``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from regauth.errors import ConfigError

STORE_KINDS = ("auto", "keyring", "file")
APP = "regauth"


# A NamedTuple, not a dataclass: `dataclasses` imports `inspect`, ~14 ms on every helper `get`.
class Settings(NamedTuple):
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    state_dir: Path
    store: str = "auto"
    passphrase: str | None = None
    log_level: str = "WARNING"
    # REGAUTH_NO_CACHE=1: mint provider tokens afresh instead of reading the token cache.
    no_cache: bool = False
    # The whole environment, for the parts that must read variables by design (the env provider, SDK
    # credential chains); kept here so the read happens once and tests can pass their own.
    environ: Mapping[str, str] = {}  # never mutated: the shared default is safe

    def __repr__(self) -> str:
        # The passphrase and the environment (which holds cloud secrets) never show in a repr.
        shown = ("config_dir", "data_dir", "cache_dir", "state_dir", "store", "log_level", "no_cache")
        return "Settings(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in shown) + ")"

    @property
    def registries_file(self) -> Path:
        return self.config_dir / "registries.json"

    @property
    def secrets_file(self) -> Path:
        return self.data_dir / "secrets.enc"

    @property
    def key_file(self) -> Path:
        # Kept in the config dir, apart from the encrypted data in the data dir, so that a copy of
        # one directory alone (a backup, a synced folder) does not carry both.
        return self.config_dir / "secrets.key"

    @property
    def store_choice_file(self) -> Path:
        return self.data_dir / "store-backend"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "regauth.log"


def _xdg(environ: Mapping[str, str], var: str, home: Path, default: str) -> Path:
    value = environ.get(var, "")
    # The XDG spec says relative paths are invalid and must be ignored.
    base = Path(value) if value and os.path.isabs(value) else home / default
    return base / APP


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    store = env.get("REGAUTH_STORE", "auto").strip().lower() or "auto"
    if store not in STORE_KINDS:
        raise ConfigError(f"REGAUTH_STORE={store!r} is not one of {', '.join(STORE_KINDS)}")
    level = env.get("REGAUTH_LOG_LEVEL", "WARNING").strip().upper() or "WARNING"
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"REGAUTH_LOG_LEVEL={level!r} is not a logging level")
    return Settings(
        config_dir=_xdg(env, "XDG_CONFIG_HOME", home, ".config"),
        data_dir=_xdg(env, "XDG_DATA_HOME", home, ".local/share"),
        cache_dir=_xdg(env, "XDG_CACHE_HOME", home, ".cache"),
        state_dir=_xdg(env, "XDG_STATE_HOME", home, ".local/state"),
        store=store,
        passphrase=env.get("REGAUTH_PASSPHRASE") or None,
        log_level=level,
        no_cache=env.get("REGAUTH_NO_CACHE", "").strip().lower() in ("1", "true", "yes", "on"),
        environ=env,
    )
