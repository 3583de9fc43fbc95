"""Manifests kept in memory: by digest until pushed out (they never change), by tag for a short TTL.

A tag moves when someone pushes, so a tag is answered from memory only for ``tag_ttl`` seconds; the key
holds the client's ``Accept`` because a registry picks the manifest (index or single) by it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from multidict import CIMultiDict


@dataclass(frozen=True)
class CachedManifest:
    body: bytes
    headers: CIMultiDict[str]
    expires_at: float | None


Key = tuple[str, str, str, str]


class ManifestCache:
    def __init__(
        self, tag_ttl: float, *, max_entries: int = 2048, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.tag_ttl = tag_ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Key, CachedManifest] = OrderedDict()

    def get(self, key: Key) -> CachedManifest | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at is not None and entry.expires_at <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: Key, body: bytes, headers: CIMultiDict[str], *, by_digest: bool) -> None:
        if not by_digest and self.tag_ttl <= 0:
            return
        expires = None if by_digest else self._clock() + self.tag_ttl
        self._entries[key] = CachedManifest(body, headers, expires)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
