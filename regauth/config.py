"""Settings, read once at the edge from the environment; nothing else reads ``os.environ``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from regauth import layout
from regauth.errors import ConfigError


# A NamedTuple, not a dataclass: `dataclasses` imports `inspect`, ~14 ms on every helper `get`.
class Settings(NamedTuple):
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    state_dir: Path
    store: str = layout.STORE_AUTO
    passphrase: str | None = None
    log_level: str = layout.DEFAULT_LOG_LEVEL
    # REGAUTH_NO_CACHE=1: mint provider tokens afresh instead of reading the token cache.
    no_cache: bool = False
    # REGAUTH_NO_CREDENTIALS_TTL: seconds a provider's "no ambient credentials" is remembered; 0: never.
    no_credentials_ttl: float = 60.0
    # REGAUTH_CERTS_DIRS (paths joined by ':'): where the container clients keep the CAs they trust per
    # registry (``HOST[:PORT]/ca.crt``), searched in this order when a login creates a record.
    certs_dirs: tuple[Path, ...] = ()
    # The whole environment, for the parts that must read variables by design (the env provider, SDK
    # credential chains); kept here so the read happens once and tests can pass their own.
    environ: Mapping[str, str] = {}  # never mutated: the shared default is safe

    def __repr__(self) -> str:
        # The passphrase and the environment (which holds cloud secrets) never show in a repr.
        shown = ("config_dir", "data_dir", "cache_dir", "state_dir", "store", "log_level", "no_cache")
        return "Settings(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in shown) + ")"

    @property
    def registries_file(self) -> Path:
        return self.config_dir / layout.REGISTRIES_FILE

    @property
    def secrets_file(self) -> Path:
        return self.data_dir / layout.SECRETS_FILE

    @property
    def key_file(self) -> Path:
        return self.config_dir / layout.KEY_FILE

    @property
    def store_choice_file(self) -> Path:
        return self.data_dir / layout.STORE_CHOICE_FILE

    @property
    def log_file(self) -> Path:
        return self.state_dir / layout.LOG_FILE


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from ``environ``, or from the process environment, read once.

    From the process environment, ``REGAUTH_PASSPHRASE`` is also taken out of it: the SDKs run child
    processes (``credential_process``, ``az``, ``gcloud``) that inherit the environment, and the
    passphrase is for regauth alone. It lives on in ``Settings.passphrase`` only, never in ``environ``.
    """
    env = dict(os.environ if environ is None else environ)
    passphrase = env.pop(layout.ENV_PASSPHRASE, None) or None
    if environ is None:
        os.environ.pop(layout.ENV_PASSPHRASE, None)
    config_dir, data_dir, cache_dir, state_dir = layout.app_dirs(env)
    store = layout.store_kind(env)
    if store not in layout.STORE_KINDS:
        raise ConfigError(f"{layout.ENV_STORE}={store!r} is not one of {', '.join(layout.STORE_KINDS)}")
    level = layout.log_level(env)
    if level not in layout.LOG_LEVELS:
        raise ConfigError(f"{layout.ENV_LOG_LEVEL}={level!r} is not a logging level")
    ttl_text = env.get(layout.ENV_NO_CREDENTIALS_TTL, "").strip() or "60"
    try:
        no_credentials_ttl = float(ttl_text)
    except ValueError:
        no_credentials_ttl = -1.0
    if not 0 <= no_credentials_ttl < float("inf"):
        raise ConfigError(
            f"{layout.ENV_NO_CREDENTIALS_TTL}={ttl_text!r} is not a number of seconds (0 or more)"
        )
    return Settings(
        certs_dirs=_certs_dirs(env),
        config_dir=Path(config_dir),
        data_dir=Path(data_dir),
        cache_dir=Path(cache_dir),
        state_dir=Path(state_dir),
        store=store,
        passphrase=passphrase,
        log_level=level,
        no_cache=env.get(layout.ENV_NO_CACHE, "").strip().lower() in ("1", "true", "yes", "on"),
        no_credentials_ttl=no_credentials_ttl,
        environ=env,
    )


def _certs_dirs(env: Mapping[str, str]) -> tuple[Path, ...]:
    """The clients' per-registry CA directories, in containers-certs.d(5)'s order: the user's own first."""
    text = env.get(layout.ENV_CERTS_DIRS)
    if text is not None:
        return tuple(Path(part) for part in text.split(os.pathsep) if os.path.isabs(part))
    home = env.get("HOME") or os.path.expanduser("~")
    return (
        Path(home, ".config/containers/certs.d"),
        Path("/etc/containers/certs.d"),
        Path("/etc/docker/certs.d"),
    )
