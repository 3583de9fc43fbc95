"""Which upstream repositories have shown that they hold a cached blob, so the cache serves no other.

A registry serves a blob only under a repository that references it (and a private one only with a
credential for that repository); the blob cache is content-addressed and shared. So a cache hit for
(upstream, repository, digest) is served only when that pair is confirmed here. Two facts count:

- *delivered*: the upstream sent the whole blob for that repository and the proxy verified its digest;
- *confirmed*: the upstream answered 200 to a ``HEAD`` (or a ranged GET) for that repository.

A confirmation counts only for an upstream that has delivered the blob at least once, for any of its
repositories: an upstream cannot have a blob it never sent, and one that answers ``HEAD 200`` for
anything must not read another registry's blobs out of the cache that way.

Facts are appended to a file per blob, ``DIR/repos/<algorithm>/<xx>/<hex>``, one ``d|c HOST
REPOSITORY`` line each, so a restarted proxy still serves its cache without asking upstream first (also
while the upstream is down); memory holds those of recently used blobs, bounded, and reads a file again
on demand. The file goes when its blob leaves the cache; files of blobs no longer cached are removed
at start-up.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("regauth.proxy")

# Each pair costs about 200 bytes in memory: 100k of them stay within about 20 MiB.
DEFAULT_MAX_PAIRS = 100_000
_LINE_MAX = 1024


@dataclass
class _Seen:
    delivered_by: set[str] = field(default_factory=set)
    # (host, repository) pairs, oldest first, so one much-shared blob cannot take all the room.
    pairs: dict[tuple[str, str], None] = field(default_factory=dict)


class Confirmations:
    def __init__(self, root: Path | None, *, max_pairs: int = DEFAULT_MAX_PAIRS) -> None:
        self.root = root
        self.max_pairs = max_pairs
        self._blobs: OrderedDict[str, _Seen] = OrderedDict()
        self._pairs = 0

    def knows(self, host: str, repository: str, digest: str) -> bool:
        """True if the cache may answer ``digest`` for ``repository`` of ``host`` without asking."""
        seen = self._seen(digest)
        return host in seen.delivered_by and (host, repository) in seen.pairs

    def delivered_by(self, host: str, digest: str) -> bool:
        return host in self._seen(digest).delivered_by

    def remember(self, host: str, repository: str, digest: str, *, delivered: bool) -> None:
        seen = self._seen(digest)
        new_pair = (host, repository) not in seen.pairs
        new_source = delivered and host not in seen.delivered_by
        if not (new_pair or new_source):
            return
        self._add(seen, host, repository, delivered)
        self._append(digest, f"{'d' if delivered else 'c'} {host} {repository}\n")
        self._bound(keep=digest)

    def forget(self, digest: str) -> None:
        seen = self._blobs.pop(digest, None)
        if seen is not None:
            self._pairs -= len(seen.pairs)
        if self.root is not None:
            self._path(digest).unlink(missing_ok=True)

    def prune(self, cached: Collection[str]) -> None:
        """Remove the files of blobs that are not in ``cached`` (evicted while the proxy was down)."""
        if self.root is None or not self.root.is_dir():
            return
        for path in self.root.glob("*/*/*"):
            if f"{path.parent.parent.name}:{path.name}" not in cached:
                path.unlink(missing_ok=True)

    def _seen(self, digest: str) -> _Seen:
        """The facts about ``digest``, read from its file when memory holds none (first use since the
        start, or forgotten to stay within ``max_pairs``), and marked as just used."""
        seen = self._blobs.get(digest)
        if seen is None:
            seen = self._blobs[digest] = _Seen()
            self._read(digest, seen)
            self._bound(keep=digest)
        self._blobs.move_to_end(digest)
        return seen

    def _read(self, digest: str, seen: _Seen) -> None:
        if self.root is None:
            return
        try:
            with open(self._path(digest), encoding="utf-8", errors="replace") as file:
                lines = file.readlines()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("blob cache: cannot read the confirmations of %s: %s", digest, exc.strerror)
            return
        for line in lines:
            fields = line.split()
            # A line cut by a crash mid-append, or anything else odd, is only a fact not known.
            if len(fields) == 3 and fields[0] in ("d", "c") and line.endswith("\n"):
                self._add(seen, fields[1], fields[2], fields[0] == "d")

    def _add(self, seen: _Seen, host: str, repository: str, delivered: bool) -> None:
        if (host, repository) not in seen.pairs:
            seen.pairs[(host, repository)] = None
            self._pairs += 1
        if delivered:
            seen.delivered_by.add(host)

    def _bound(self, keep: str) -> None:
        while self._pairs > self.max_pairs and self._blobs:
            digest, seen = next(iter(self._blobs.items()))
            if digest == keep:
                # The newest blob alone holds too many pairs: forget its oldest ones instead.
                while self._pairs > self.max_pairs and len(seen.pairs) > 1:
                    seen.pairs.pop(next(iter(seen.pairs)))
                    self._pairs -= 1
                return
            # Only from memory: the file still holds the facts, read again at the next start.
            del self._blobs[digest]
            self._pairs -= len(seen.pairs)

    def _path(self, digest: str) -> Path:
        assert self.root is not None
        algorithm, _, hex_part = digest.partition(":")
        return self.root / algorithm / hex_part[:2] / hex_part

    def _append(self, digest: str, line: str) -> None:
        if self.root is None or len(line) > _LINE_MAX:
            return
        path = self._path(digest)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                # One write of one short line: appends from one process never interleave.
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            # Kept in memory all the same; after a restart the upstream is asked once more.
            log.warning("blob cache: cannot record a confirmation of %s: %s", digest, exc.strerror)
