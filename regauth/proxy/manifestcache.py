"""Manifests kept in memory under a byte budget: by digest until pushed out, by tag for a short TTL.

A tag moves when someone pushes, so a tag is answered from memory only for ``tag_ttl`` seconds; past
it, the entry stays (within the budget) so that ``stale`` can answer while the upstream is down. The key
holds the ``Accept`` media types because a registry picks the manifest (index or single) by them, but
only as ``accept_key`` normalises them: the manifest types the proxy knows, sorted, and ``*/*`` for
anything else. That is also exactly what the proxy sends upstream, so an entry answers every request
with the same key, and a client cannot multiply one manifest by sending many spellings of ``Accept``.
Entries are weighed by their bytes; the least recently used go first once ``max_bytes`` is passed.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from multidict import CIMultiDict

from regauth.distribution.client import MANIFEST_TYPES

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
ANY = "*/*"
_KNOWN = frozenset(MANIFEST_TYPES)
# What an entry costs besides its body and header text: the objects that hold it (measured, rounded up).
_ENTRY_OVERHEAD = 1024

AcceptKey = tuple[str, ...]
Key = tuple[str, str, str, AcceptKey]


def accept_key(values: Iterable[str]) -> AcceptKey:
    """The ``Accept`` header values a client sent, as the proxy asks for them upstream: the known manifest
    types it names (parameters dropped, ``q=0`` meaning "not this one"), sorted, plus ``*/*`` when it
    names anything else (or nothing), so that a registry may still send what the client asked for by
    another name."""
    known: set[str] = set()
    other = False
    for value in values:
        for item in value.split(","):
            media_type, *params = (part.strip().lower() for part in item.split(";"))
            if not media_type or _refused(params):
                continue
            if media_type in _KNOWN:
                known.add(media_type)
            else:
                other = True
    # No Accept at all means anything (RFC 9110), as */* does: one key for both.
    return (*sorted(known), ANY) if other or not known else tuple(sorted(known))


def accept_header(key: AcceptKey) -> dict[str, str]:
    return {"Accept": ", ".join(key)}


def _refused(params: list[str]) -> bool:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "q":
            try:
                return float(value.strip()) == 0
            except ValueError:
                return False
    return False


@dataclass(frozen=True)
class CachedManifest:
    body: bytes
    headers: CIMultiDict[str]
    expires_at: float | None
    weight: int
    stored_at: float = 0.0


class ManifestCache:
    def __init__(
        self,
        tag_ttl: float,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tag_ttl = tag_ttl
        self.max_bytes = max_bytes
        self.held = 0
        self._clock = clock
        self._entries: OrderedDict[Key, CachedManifest] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> CachedManifest | None:
        """A fresh entry. One by tag past its TTL stays (within the budget) for ``stale``."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at is not None and entry.expires_at <= self._clock():
            return None
        self._entries.move_to_end(key)
        return entry

    def stale(self, key: Key, max_age: float) -> tuple[CachedManifest, float] | None:
        """The last manifest fetched for ``key``, with its age, if it is at most ``max_age`` seconds
        old: what a tag pointed to when the upstream last answered."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = self._clock() - entry.stored_at
        if age > max_age:
            return None
        self._entries.move_to_end(key)
        return entry, age

    def put(
        self, key: Key, body: bytes, headers: CIMultiDict[str], *, by_digest: bool, keep: bool = False
    ) -> None:
        """``keep``: store a tag's manifest even with no TTL, to serve stale while the upstream is down."""
        if not by_digest and self.tag_ttl <= 0 and not keep:
            return
        self._drop(key)
        weight = _weight(key, body, headers)
        if weight > self.max_bytes:
            return
        now = self._clock()
        expires = None if by_digest else now + self.tag_ttl
        self._entries[key] = CachedManifest(body, headers, expires, weight, now)
        self.held += weight
        while self.held > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def _drop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.held -= entry.weight


def _weight(key: Key, body: bytes, headers: CIMultiDict[str]) -> int:
    text = sum(len(part) for part in key[:3]) + sum(len(t) for t in key[3])
    text += sum(len(name) + len(value) for name, value in headers.items())
    return len(body) + text + _ENTRY_OVERHEAD
