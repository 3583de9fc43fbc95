"""The token cache: minted provider tokens, kept in the secret store until a margin before expiry.

Entries live under ``token/<provider>/<host>/<identity fingerprint>`` as JSON (username, secret,
expires_at, minted_at), encrypted like every other secret. A hit reads the store only.

Freshness: a token that lives 6 hours or more (ECR's 12 h) is fresh for the first half of its life, as
amazon-ecr-credential-helper does; a shorter one (AAD, Google: 1 h) until ``min(5 min, 10 % of its
life)`` before it expires. A fresh token is served; a stale one is re-minted, and served (with a
warning) only if that mint fails and the token has not expired yet.

Single mint: in one process, a ``threading.Lock`` per key; across processes, a file lock per key
under ``<cache_dir>/locks``. Both are taken in order, then the cache is read again before minting, so
N cold callers make one mint and N-1 hits.

A store that cannot be written (a file store mounted read-only, shared by several proxies): minted
tokens are kept in this process's memory instead, with one warning per store, and each process
mints its own. A token in memory is read before the store, so it is never minted again while fresh.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from regauth.config import Settings
from regauth.errors import ProviderError, StoreError
from regauth.fsutil import file_lock
from regauth.providers.base import Credential

# The key and entry rules, shared with the helper's fast get (tokenkey); re-exported under their names.
from regauth.providers.tokenkey import LONG_LIVED as LONG_LIVED
from regauth.providers.tokenkey import PREFIX as PREFIX
from regauth.providers.tokenkey import SHORT_MARGIN as SHORT_MARGIN
from regauth.providers.tokenkey import cache_key as cache_key
from regauth.providers.tokenkey import fresh_until, token_fields
from regauth.providers.tokenkey import sha256 as sha256
from regauth.store.base import SecretStore

# A stale token with less than this left is not worth serving: the pull would fail mid-way.
STALE_FLOOR = 30.0

_locks_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}
# (store, key) -> token, for the stores that refused a write (their names in _unwritable).
_memory: dict[tuple[str, str], CachedToken] = {}
_unwritable: set[str] = set()


class CachedToken(NamedTuple):
    username: str
    secret: str
    expires_at: float
    minted_at: float

    def __repr__(self) -> str:
        return f"CachedToken(username={self.username!r}, secret='***', expires_at={self.expires_at!r})"

    @property
    def fresh_until(self) -> float:
        return fresh_until(self.expires_at, self.minted_at)

    def is_fresh(self, now: float) -> bool:
        return now < self.fresh_until

    def is_usable(self, now: float) -> bool:
        return now < self.expires_at - STALE_FLOOR

    def credential(self) -> Credential:
        return Credential(username=self.username, secret=self.secret, expires_at=self.expires_at)

    def to_text(self) -> str:
        data: dict[str, str | float] = {"username": self.username, "secret": self.secret}
        data.update(expires_at=self.expires_at, minted_at=self.minted_at)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str) -> CachedToken | None:
        """None for an entry this version cannot read: it is then simply re-minted and overwritten."""
        try:
            fields = token_fields(json.loads(text))
        except (ValueError, RecursionError):
            # RecursionError: nested past json's stack (any program of the user's writes the keyring).
            return None
        return None if fields is None else cls(*fields)


def _thread_lock(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


class TokenCache:
    def __init__(
        self,
        settings: Settings,
        store: SecretStore,
        *,
        clock: Callable[[], float] = time.time,
        on_stale: Callable[[str], None] | None = None,
    ) -> None:
        self._locks_dir = settings.cache_dir / "locks"
        self._store = store
        self._where = str(settings.secrets_file)
        self._clock = clock
        # Warnings a person must see: a stale token served, tokens kept in memory only.
        self._on_stale = on_stale

    def get(self, key: str) -> CachedToken | None:
        kept = _memory.get((self._where, key))
        if kept is not None:
            return kept
        text = self._store.get(key)
        return None if text is None else CachedToken.from_text(text)

    def put(self, key: str, credential: Credential, minted_at: float) -> bool:
        """Keep ``credential`` if it has a future expiry; a token with none is never cached."""
        if credential.expires_at is None or credential.expires_at <= minted_at:
            return False
        token = CachedToken(credential.username, credential.secret, credential.expires_at, minted_at)
        if self._where not in _unwritable:
            try:
                self._store.set(key, token.to_text())
                return True
            except StoreError as exc:
                self._keep_in_memory(exc)
        _memory[(self._where, key)] = token
        return True

    def _keep_in_memory(self, exc: StoreError) -> None:
        with _locks_guard:
            first = self._where not in _unwritable
            _unwritable.add(self._where)
        if first:
            self._warn(
                f"cannot keep minted tokens in the secret store ({exc}); keeping them in this "
                "process's memory instead"
            )

    def _warn(self, message: str) -> None:
        if self._on_stale is None:
            import logging  # only here: a cached get must not pay for importing it

            logging.getLogger("regauth.providers").warning("%s", message)
            return
        try:
            self._on_stale(message)
        except StoreError:
            # Its log file is beside a read-only store too: the line went to stderr before that.
            pass

    def fresh(self, key: str) -> Credential | None:
        token = self.get(key)
        return token.credential() if token is not None and token.is_fresh(self._clock()) else None

    def get_or_mint(
        self, key: str, mint: Callable[[], Credential | None], *, use_cache: bool = True
    ) -> Credential | None:
        if use_cache and (hit := self.fresh(key)) is not None:
            return hit
        lock_file = self._locks_dir / (sha256(key.encode()).hexdigest()[:32] + ".lock")
        with _thread_lock(key), file_lock(lock_file):
            cached = self.get(key) if use_cache else None
            now = self._clock()
            if cached is not None and cached.is_fresh(now):
                # Another thread or process minted it while we waited for the lock.
                return cached.credential()
            try:
                credential = mint()
            except ProviderError as exc:
                if cached is None or not cached.is_usable(now):
                    raise
                left = int(cached.expires_at - now)
                self._warn(f"{exc}; serving the cached token, which expires in {left}s")
                return cached.credential()
            if credential is not None:
                self.put(key, credential, now)
            return credential


def clear(settings: Settings, store: SecretStore, *, host: str | None = None) -> int:
    """Drop cached tokens (``regauth cache clear``), all or only ``host``'s; return how many.

    Remembered "no credentials" answers go too: one is per identity, not per host, and costs only a
    search to learn again.
    """
    from regauth.providers.absent import forget_all

    forget_all(settings.cache_dir)
    count = 0
    for key in store.keys():
        if key.startswith(PREFIX) and (host is None or key.split("/")[2] == host) and store.delete(key):
            count += 1
    return count
