"""Remembered absence: "this provider found no ambient credentials for this identity", for a while.

Without it, every ``get`` for a cloud host on a machine with no cloud credentials repeats the SDK's
whole search, metadata probes and all, and finds the same nothing: seconds per pull on a network that
drops link-local traffic. So a ``NoAmbientCredentials`` is kept ``Settings.no_credentials_ttl`` seconds
(``REGAUTH_NO_CREDENTIALS_TTL``, a minute by default, 0 never) and given again, with its cause, at once.

Entries are files ``<cache_dir>/absent/<fingerprint>.json``: ``{"until": unix time, "message": cause}``.
The fingerprint covers the provider, its identity text (record options, selector variables) and the
state of the files its SDK reads credentials from, so a login (``aws configure``, ``az login``,
``gcloud auth application-default login``) or an edited record is seen at once; ``regauth cache clear``
forgets every entry. Not secret (a cause is shown on stderr anyway), but private like all of regauth.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from regauth.errors import StoreError
from regauth.fsutil import atomic_write, read_private
from regauth.providers.base import NoAmbientCredentials
from regauth.providers.cache import sha256

DIRECTORY = "absent"
T = TypeVar("T")


def fingerprint(provider: str, identity: str, files: Iterable[str]) -> str:
    """What the entry is for: one provider and identity, as its credential files stand now."""
    states: list[object] = []
    for name in files:
        try:
            st = os.stat(name)
        except OSError:
            states.append([name, None])
        else:
            states.append([name, st.st_mtime_ns, st.st_size, st.st_ino])
    text = json.dumps([provider, identity, states], separators=(",", ":"))
    # Annotated: checked for Python 3.10, mypy cannot see the builtin _sha2 and takes it as Any.
    digest: str = sha256(text.encode()).hexdigest()
    return digest[:32]


class AbsentCache:
    def __init__(self, cache_dir: Path, ttl: float, *, clock: Callable[[], float] = time.time) -> None:
        self._dir = cache_dir / DIRECTORY
        self._ttl = ttl
        self._clock = clock

    def recall(self, key: str) -> str | None:
        """The remembered cause for ``key``, or None if there is none or it has run out."""
        try:
            data = json.loads(read_private(self._dir / f"{key}.json") or b"null")
            until, message = float(data["until"]), str(data["message"])
        except (StoreError, ValueError, TypeError, KeyError, OverflowError, RecursionError):
            # Unreadable or from another version (or damaged: a number no float holds, nesting past
            # json's stack): the search simply runs again and rewrites it.
            return None
        return message if self._clock() < until else None

    def remember(self, key: str, message: str) -> None:
        until = self._clock() + self._ttl
        data = json.dumps({"until": until, "message": message}, separators=(",", ":")).encode()
        try:
            atomic_write(self._dir / f"{key}.json", data)
        except StoreError:
            # Remembering only saves time; the caller's answer stands without it.
            return
        self._prune(keep=f"{key}.json")

    def _prune(self, keep: str) -> None:
        """Drop entries past their time: each login or record edit leaves one behind."""
        horizon = time.time() - self._ttl
        for name in _entries(self._dir):
            path = self._dir / name
            try:
                if name != keep and path.stat().st_mtime < horizon:
                    path.unlink()
            except OSError:
                continue

    def guard(self, key: str, search: Callable[[], T]) -> T:
        """``search()``, unless a "no credentials" is remembered for ``key``: then that, at once."""
        if self._ttl <= 0:
            return search()
        message = self.recall(key)
        if message is not None:
            raise NoAmbientCredentials(
                f"{message} (remembered for up to {self._ttl:g}s; `regauth cache clear` forgets it)"
            )
        try:
            return search()
        except NoAmbientCredentials as exc:
            self.remember(key, str(exc))
            raise


def forget_all(cache_dir: Path) -> None:
    """Drop every remembered absence (``regauth cache clear``)."""
    for name in _entries(cache_dir / DIRECTORY):
        try:
            os.unlink(cache_dir / DIRECTORY / name)
        except OSError:
            continue


def _entries(directory: Path) -> list[str]:
    try:
        return [name for name in os.listdir(directory) if name.endswith(".json")]
    except OSError:
        return []
