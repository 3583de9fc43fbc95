"""A content-addressed blob cache on disk with a size cap and least-recently-used eviction.

Layout: ``DIR/blobs/<algorithm>/<first two hex>/<hex>``. A blob being fetched is written to a temp
file beside its final name while it is hashed; it is renamed into place only when the digest and the
length match, so a failed, cut or corrupt download never lands in the cache. Access order is kept in
memory and mirrored in the files' mtimes (touched on each hit), so it survives a restart. Which
upstream repositories may be answered from a cached blob is kept beside it (``confirmations.py``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

from regauth.errors import UsageError
from regauth.proxy.confirmations import Confirmations
from regauth.reference import DIGEST_HEX_LENGTHS

log = logging.getLogger("regauth.proxy")


class Verifier:
    """Checks that the bytes of a blob relayed whole have the digest it was asked by; ``finish`` says
    whether the content matched, after the last bytes."""

    # Hashing alone never blocks: the relay runs it on the loop (see relay._stream_hashed).
    threaded = False

    def __init__(self, digest: str) -> None:
        algorithm, _, self._hex = digest.partition(":")
        self.digest = digest
        self._hash = hashlib.new(algorithm)
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    def write_all(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.update(chunk)

    def finish(self) -> bool:
        return self._hash.hexdigest() == self._hex

    def abort(self) -> None:
        """Nothing to drop: a verifier holds no file."""

    def shared(self) -> bool:
        return False


class CacheWriter(Verifier):
    """One blob on its way into the cache, verified as it is written; ``finish`` publishes it if it
    matched, ``abort`` drops it. Its writes may block on the disk: the relay calls ``write_all`` in a
    worker thread (hashing and writing release the GIL)."""

    threaded = True

    def __init__(self, cache: BlobCache, digest: str, final: Path) -> None:
        super().__init__(digest)
        self._cache = cache
        self._final = final
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._temp = final.with_name(f"{final.name}.tmp-{os.urandom(6).hex()}")
        fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb")
        self.failed = False
        self._done = False

    def update(self, chunk: bytes) -> None:
        # Hashed even once writing failed: the pull it rides on is still verified.
        super().update(chunk)
        if self.failed:
            return
        try:
            self._file.write(chunk)
        except OSError as exc:
            # A full disk must not break the pull it rides on: stop caching, keep streaming.
            log.warning("blob cache: cannot write %s: %s; not cached", self.digest, exc.strerror)
            self.failed = True

    def write_all(self, chunks: list[bytes]) -> None:
        super().write_all(chunks)
        if self.failed:
            return
        # Visible to the pulls that read this file as it grows (``flights.py``).
        try:
            self._file.flush()
        except OSError as exc:
            log.warning("blob cache: cannot write %s: %s; not cached", self.digest, exc.strerror)
            self.failed = True

    def reader(self) -> BinaryIO:
        """The file, open for reading, also once published or dropped (the caller closes it)."""
        return os.fdopen(os.open(self._temp, os.O_RDONLY | os.O_NOFOLLOW), "rb")

    def finish(self) -> bool:
        """True if the content has the digest it was fetched as; then it is published, unless writing
        it failed (``failed``: the pull it rides on goes on uncached)."""
        matched = super().finish()
        if self._done:
            return matched
        self._done = True
        self._close()
        if not matched:
            log.warning("blob %s: content does not match its digest; not cached", self.digest)
        elif not self.failed and self._publish():
            return True
        self._unlink()
        self._cache._release(self.digest)
        return matched

    def _publish(self) -> bool:
        try:
            os.replace(self._temp, self._final)
        except OSError as exc:
            log.warning("blob cache: cannot publish %s: %s; not cached", self.digest, exc.strerror)
            self.failed = True
            return False
        self._cache._published(self.digest, self._final, self.size)
        return True

    def commit(self) -> bool:
        """``finish``, and True only if the blob is now in the cache."""
        return self.finish() and not self.failed

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._close()
        self._unlink()
        self._cache._release(self.digest)

    def _close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:
            # The last buffered bytes did not reach the disk (full): not cached, the pull goes on.
            log.warning("blob cache: cannot write %s: %s; not cached", self.digest, exc.strerror)
            self.failed = True

    def _unlink(self) -> None:
        try:
            self._temp.unlink()
        except FileNotFoundError:
            pass


class BlobCache:
    def __init__(self, root: Path, max_size: int | None = None) -> None:
        self.root = root
        self.max_size = max_size
        self._entries: OrderedDict[str, int] = OrderedDict()
        self._writing: set[str] = set()
        self.size = 0
        self.evictions = 0
        self.seen = Confirmations(root / "repos")
        # Blobs of private images must not become readable by other users: everything lives under a
        # directory only the proxy's user can enter, whatever the cache dir's own mode.
        try:
            for sub in (root / "blobs", root / "repos"):
                sub.mkdir(mode=0o700, parents=True, exist_ok=True)
                sub.chmod(0o700)
            self._load()
            self.seen.prune(self._entries)
        except OSError as exc:
            raise UsageError(f"--cache-dir {root}: cannot use it: {exc.strerror or exc}") from exc

    def path_for(self, digest: str) -> Path:
        algorithm, _, hex_part = digest.partition(":")
        return self.root / "blobs" / algorithm / hex_part[:2] / hex_part

    def __contains__(self, digest: str) -> bool:
        return digest in self._entries

    def remember(self, host: str, repository: str, digest: str, *, delivered: bool) -> None:
        """Note that ``host`` serves ``digest`` for ``repository`` (``delivered``: it sent the whole blob,
        verified). Only for a blob that is cached, or on its way in when delivered: for others there is
        nothing to answer from."""
        if digest in self._entries or (delivered and digest in self._writing):
            self.seen.remember(host, repository, digest, delivered=delivered)

    def lookup(self, digest: str) -> Path | None:
        """The cached file for ``digest``, marked as just used; None on a miss."""
        if digest not in self._entries:
            return None
        path = self.path_for(digest)
        try:
            os.utime(path)
        except FileNotFoundError:
            # Removed behind our back (a cache clean-up): forget it.
            self.size -= self._entries.pop(digest)
            self.seen.forget(digest)
            return None
        self._entries.move_to_end(digest)
        return path

    def begin(self, digest: str, size: int | None) -> CacheWriter | None:
        """A writer for ``digest``, or None if it is cached, being written, or larger than the cap."""
        if digest in self._entries or digest in self._writing:
            return None
        if size is not None and self.max_size is not None and size > self.max_size:
            return None
        self._writing.add(digest)
        try:
            return CacheWriter(self, digest, self.path_for(digest))
        except OSError as exc:
            self._writing.discard(digest)
            log.warning("blob cache: cannot write %s: %s", digest, exc.strerror)
            return None

    def _release(self, digest: str) -> None:
        self._writing.discard(digest)

    def _published(self, digest: str, path: Path, size: int) -> None:
        self._writing.discard(digest)
        self._entries[digest] = size
        self.size += size
        self._evict(keep=digest)

    def _evict(self, keep: str) -> None:
        if self.max_size is None:
            return
        while self.size > self.max_size and len(self._entries) > 1:
            digest, size = next(iter(self._entries.items()))
            if digest == keep:
                break
            del self._entries[digest]
            self.size -= size
            self.evictions += 1
            self.seen.forget(digest)
            # Unlinking a file being served is safe: the open descriptor keeps its data alive.
            try:
                self.path_for(digest).unlink()
            except FileNotFoundError:
                pass

    def _load(self) -> None:
        found: list[tuple[int, str, int]] = []
        for algorithm in DIGEST_HEX_LENGTHS:
            base = self.root / "blobs" / algorithm
            if not base.is_dir():
                continue
            for path in base.glob("*/*"):
                if ".tmp-" in path.name:
                    # Left by a crash mid-download: never valid.
                    path.unlink(missing_ok=True)
                    continue
                stat = path.stat()
                found.append((stat.st_mtime_ns, f"{algorithm}:{path.name}", stat.st_size))
        for _, digest, size in sorted(found):
            self._entries[digest] = size
            self.size += size
        if found:
            self._evict(keep="")
