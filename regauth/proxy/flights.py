"""One upstream fetch per cold blob in one proxy: the requests that arrive while it runs share it.

The first GET of a blob that is not cached (per upstream host and digest) is the *leader*: it fetches
from the upstream and relays to its own client as any pull does, and also writes the bytes to a file,
the cache's temporary file or, without a cache, a spool file in a private temporary directory (unlinked
as soon as it is open, so nothing is left behind). The file is the only copy: a flight never holds a
blob in memory. Requests for the same blob that arrive meanwhile are *followers*: they stream from that
file as it grows (``sendfile`` on plain connections), never sending its last byte before the leader has
checked the whole blob against its digest. The bytes they send are the ones the leader hashed (one
file, written once by this process, read by offset), so one hash verifies every client. When the fetch
fails (a cut, a timeout, a digest mismatch, a full disk), every follower is cut like the leader's
client, and nothing is cached.

Confirmations (``confirmations.py``) hold here too: a follower for another repository than the
leader's is served only once the upstream confirmed the blob for that repository (``blobs.py`` sends
the ``HEAD`` first). A flight that ends before its first byte (a refusal, a fault) tells its followers
so, and each asks the upstream itself: a 404 for one repository says nothing about another.

If the leader's client goes away while followers read, the fetch goes on for them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

from aiohttp import web
from multidict import CIMultiDict

from regauth.proxy import state
from regauth.proxy.blobcache import Verifier
from regauth.proxy.errors import UpstreamFault
from regauth.proxy.relay import Sink, cut

log = logging.getLogger("regauth.proxy")

# What a follower sends per sendfile call at most: the leader's file grows by batches of 1-2 MiB.
_SEND_MAX = 8 * 1024 * 1024
_READ_CHUNK = 1024 * 1024

Key = tuple[str, str]  # upstream host, digest


class FlightFailed(UpstreamFault):
    """The shared fetch failed: the follower's client is cut."""

    def __init__(self, message: str) -> None:
        super().__init__(502, message)


class Writer(Sink, Protocol):
    """What a flight writes through: the blob cache's ``CacheWriter`` or a ``SpoolWriter``."""

    @property
    def failed(self) -> bool: ...

    def reader(self) -> BinaryIO: ...


class Flight:
    """One shared fetch. ``visible``: bytes in the file that followers may read; ``outcome``: None while
    it runs, True once every byte is there and matched, False if it failed."""

    def __init__(self, flights: Flights, key: Key, repository: str) -> None:
        self._flights = flights
        self.key = key
        self.repository = repository
        self.headers: CIMultiDict[str] | None = None
        self.size: int | None = None
        self.visible = 0
        self.started = False
        self.outcome: bool | None = None
        self.followers = 0
        self._file: BinaryIO | None = None
        self._users = 1  # the leader
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    @property
    def digest(self) -> str:
        return self.key[1]

    def start(self, headers: CIMultiDict[str], size: int | None, file: BinaryIO) -> None:
        self.headers, self.size, self._file = headers, size, file
        self.started = True
        self._notify()

    def advance_threadsafe(self, visible: int) -> None:
        self._loop.call_soon_threadsafe(self._advance, visible)

    def _advance(self, visible: int) -> None:
        if self.outcome is None and visible > self.visible:
            self.visible = visible
            self._notify()

    def end(self, ok: bool, visible: int | None = None) -> None:
        """The fetch is over (idempotent): followers send the rest, or are cut."""
        if self.outcome is not None:
            return
        self.outcome = ok and self.started
        if self.outcome and visible is not None:
            self.visible = visible
        self._flights._landed(self)
        self._notify()
        self._release()

    async def wait_started(self) -> bool:
        """True once bytes are coming; False if the flight ended before (the follower fetches itself)."""
        while not self.started and self.outcome is None:
            await self._changed.wait()
        return self.started

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def join(self) -> None:
        self._users += 1
        self.followers += 1

    def leave(self) -> None:
        self.followers -= 1
        self._release()

    def _release(self) -> None:
        self._users -= 1
        if self._users == 0 and self._file is not None:
            self._file.close()
            self._file = None

    async def serve(self, request: web.Request) -> tuple[web.StreamResponse, bool]:
        """Stream the blob to a follower; True with the response if all of it went out."""
        assert self.headers is not None
        out = web.StreamResponse(status=200, headers=self.headers)
        if self.size is not None:
            out.content_length = self.size
        request[state.SOURCE] = "shared"
        sent = 0
        try:
            await out.prepare(request)
            while True:
                changed = self._changed
                if self.outcome is False:
                    raise FlightFailed(f"the shared fetch of {self.digest} from {self.key[0]} failed")
                # The last byte waits for the digest check, so a client never holds a whole blob of
                # bytes that did not match.
                ready = self.visible if self.outcome else self.visible - 1
                if ready > sent:
                    sent += await self._send(request, out, sent, min(ready - sent, _SEND_MAX))
                    continue
                if self.outcome:
                    break
                await changed.wait()
            await out.write_eof()
        except Exception as exc:
            cut(request, exc)
            return out, False
        finally:
            request[state.SENT] = sent
        return out, True

    async def _send(self, request: web.Request, out: web.StreamResponse, offset: int, count: int) -> int:
        file = self._file
        assert file is not None
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("the client went away")
        # sendfile bypasses aiohttp's framing: only for a body of known length on plain TCP.
        if self.size is not None and transport.get_extra_info("sslcontext") is None:
            try:
                # Straight from the page cache to the socket; the offset is explicit, so followers
                # sharing the file object do not disturb each other.
                await self._loop.sendfile(transport, file, offset, count, fallback=False)
                return count
            except (NotImplementedError, RuntimeError):
                pass
        chunk = os.pread(file.fileno(), min(count, _READ_CHUNK), offset)
        if not chunk:
            raise FlightFailed(f"the spool of {self.digest} is shorter than announced")
        await out.write(chunk)
        return len(chunk)


class Feed:
    """The ``Sink`` a leader relays through: its writer hashes and writes, and what it wrote becomes
    visible to the followers. Threaded as its writer is: the cache's in batches in a worker thread,
    the spool's per chunk on the loop."""

    def __init__(self, flight: Flight, writer: Writer) -> None:
        self.flight = flight
        self.writer = writer
        self.digest = writer.digest
        self.threaded = writer.threaded
        self._written = 0

    def update(self, chunk: bytes) -> None:
        self.writer.update(chunk)
        if not self.writer.failed:
            self._written += len(chunk)
            self.flight._advance(self._written)

    def write_all(self, chunks: list[bytes]) -> None:
        self.writer.write_all(chunks)
        if self.writer.failed:
            return
        self._written += sum(len(chunk) for chunk in chunks)
        self.flight.advance_threadsafe(self._written)

    def finish(self) -> bool:
        matched = self.writer.finish()
        self.flight.end(matched and not self.writer.failed, self._written)
        return matched

    def abort(self) -> None:
        self.writer.abort()
        self.flight.end(False)

    def shared(self) -> bool:
        return self.flight.followers > 0


class SpoolWriter(Verifier):
    """A blob's bytes in a nameless file (created in the spool directory and unlinked at once), for
    followers to read when there is no cache to write. Written on the loop, chunk by chunk, with one
    unbuffered write each (measured: a worker thread's hand-offs cost the cold relay far more than
    writes into the page cache)."""

    threaded = False

    def __init__(self, directory: Path, digest: str) -> None:
        super().__init__(digest)
        path = directory / f"spool-{os.urandom(8).hex()}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            self._reader = os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")
        except OSError:
            # Out of descriptors, most likely: this one must not stay open for nothing.
            os.close(fd)
            raise
        finally:
            path.unlink()
        self._fd: int | None = fd
        self.failed = False

    def reader(self) -> BinaryIO:
        return self._reader

    def update(self, chunk: bytes) -> None:
        super().update(chunk)
        if self.failed or self._fd is None:
            return
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            log.warning("spool: cannot write %s: %s; not shared", self.digest, exc.strerror)
            self.failed = True

    def finish(self) -> bool:
        matched = super().finish()
        self.abort()
        return matched

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Flights:
    """The flights under way, by (upstream host, digest); the spool directory, made on first use."""

    def __init__(self, spool_parent: str | None = None) -> None:
        self._flights: dict[Key, Flight] = {}
        self._spool_parent = spool_parent
        self._spool: Path | None = None
        self.started = 0
        self.joined = 0

    def find(self, host: str, digest: str) -> Flight | None:
        return self._flights.get((host, digest))

    def begin(self, host: str, repository: str, digest: str) -> Flight | None:
        """A new flight for the caller to lead, or None if one is under way (find it and follow)."""
        key = (host, digest)
        if key in self._flights:
            return None
        flight = self._flights[key] = Flight(self, key, repository)
        self.started += 1
        return flight

    def follow(self, flight: Flight) -> None:
        flight.join()
        self.joined += 1

    def feed(
        self,
        flight: Flight,
        writer: Writer | None,
        headers: CIMultiDict[str],
        size: int | None,
    ) -> Sink:
        """The sink the leader relays through: ``writer`` (the cache's), else a spool; without either,
        a plain ``Verifier`` and the flight ends unshared (its followers fetch themselves)."""
        if writer is None:
            writer = self.spool(flight.digest)
        if writer is None:
            flight.end(False)
            return Verifier(flight.digest)
        try:
            file = writer.reader()
        except OSError as exc:
            log.warning("blob %s: cannot share the fetch: %s", flight.digest, exc.strerror)
            flight.end(False)
            return writer
        flight.start(headers, size, file)
        return Feed(flight, writer)

    def spool(self, digest: str) -> SpoolWriter | None:
        """A spool file for ``digest`` in the private spool directory; None if it cannot be made."""
        try:
            if self._spool is None:
                self._spool = Path(tempfile.mkdtemp(prefix="regauth-proxy-spool-", dir=self._spool_parent))
            return SpoolWriter(self._spool, digest)
        except OSError as exc:
            log.warning("blob %s: cannot spool it to share the fetch: %s", digest, exc.strerror)
            return None

    def _landed(self, flight: Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    def close(self) -> None:
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None


def install(app: web.Application, gauge: Callable[[str, str, str, Callable[[], float]], None]) -> None:
    """Give ``app`` its flights, their metrics, and the spool directory's removal at cleanup."""
    flights = Flights()
    app[state.FLIGHTS] = flights
    gauge(
        "regauth_proxy_blob_fetches_total",
        "counter",
        "Blob fetches led (one upstream GET each, shared by the pulls that arrive meanwhile).",
        lambda: flights.started,
    )
    gauge(
        "regauth_proxy_blob_fetches_joined_total",
        "counter",
        "Pulls that found another pull fetching their blob and waited on it instead of fetching it.",
        lambda: flights.joined,
    )

    async def _close(_app: web.Application) -> None:
        flights.close()

    app.on_cleanup.append(_close)
