"""Blobs through the shared cache (``sharedcache.py``): served from the bucket where the upstream would
serve them, fetched by one instance at a time, uploaded while they stream.

The rule of ``confirmations.py`` holds across instances: the bucket's blob is answered for (upstream,
repository) only once that upstream delivered it (to any instance) and delivered or confirmed it for
that repository (a ``HEAD`` first otherwise). A blob read from the bucket is hashed as it passes and
cut before its last chunk on a mismatch, as any blob relayed whole.

Consistency: a blob is visible only once complete and verified (the multipart upload is completed
after the digest matched, conditionally). One instance fetches a cold blob while its lease lives; it
can be fetched twice when a lease expires under a live fetch (an instance stalled longer than the
lease), when instances' clocks disagree by more than the lease, or when the bucket's listing is
behind its writes (S3 is strongly consistent; some S3-compatible stores are not).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

from aiohttp import web

from regauth.proxy import state
from regauth.proxy.blobcache import Verifier
from regauth.proxy.errors import API_VERSION_HEADER, UpstreamFault
from regauth.proxy.flights import Writer
from regauth.proxy.relay import cut, widen_send_buffer
from regauth.proxy.routing import Target
from regauth.proxy.sharedcache import Facts, SharedCache, Upload, reason

log = logging.getLogger("regauth.proxy")

_READ = 1024 * 1024
# How often a waiting instance looks for the blob, or for its fetcher's lease to have expired.
POLL_SECONDS = 0.2


class SharedWriter:
    """A flight's writer (the local cache's or the spool) that also uploads to the bucket; ``verified``
    once the whole blob matched, for the caller to publish it (off the loop)."""

    threaded = True

    def __init__(self, base: Writer, upload: Upload) -> None:
        self.base = base
        self.upload = upload
        self.digest = base.digest
        self.verified = False

    @property
    def failed(self) -> bool:
        return self.base.failed

    def update(self, chunk: bytes) -> None:
        self.write_all([chunk])

    def write_all(self, chunks: list[bytes]) -> None:
        self.base.write_all(chunks)
        self.upload.add(chunks)

    def finish(self) -> bool:
        matched = self.base.finish()
        self.verified = matched
        return matched

    def abort(self) -> None:
        """Called after ``finish`` too; the upload is given up only if the blob did not match (or never
        finished), off the loop: it is a request to the bucket."""
        self.base.abort()
        if not self.verified:
            asyncio.get_running_loop().run_in_executor(None, self.upload.abort)

    def shared(self) -> bool:
        return False

    def reader(self) -> BinaryIO:
        return self.base.reader()


async def from_bucket(
    request: web.Request, target: Target, shared: SharedCache, confirm: Any
) -> web.StreamResponse | None:
    """The bucket's blob if this upstream serves it for this repository; its refusal if it does not;
    None to fetch it. ``confirm``: the ``HEAD`` to the upstream (blobs._confirm)."""
    assert target.upstream is not None
    host, repository, digest = target.upstream.host, target.repository, target.reference
    facts = await call("reading confirmations", None, shared.facts, digest)
    if facts is None or host not in facts.delivered_by:
        return None
    if shared.redirect_seconds:
        return await _redirect(request, target, shared, facts, confirm)
    opened = await call("reading a blob", None, shared.open, digest)
    if opened is None:
        return None
    body, size = opened
    try:
        refusal = await _confirmed(shared, facts, host, repository, digest, confirm)
        if refusal is not None:
            return refusal
        request.app[state.METRICS].hit("blob")
        return await _stream(request, target, body, size)
    finally:
        body.close()


async def delivered_by(shared: SharedCache, host: str, digest: str) -> bool:
    """Whether ``host`` delivered the bucket's ``digest`` (to any instance); False if the bucket cannot
    say."""
    facts = await call("reading confirmations", None, shared.facts, digest)
    return facts is not None and host in facts.delivered_by


async def _confirmed(
    shared: SharedCache, facts: Facts, host: str, repository: str, digest: str, confirm: Any
) -> web.StreamResponse | None:
    """None when (host, repository) may have the bucket's blob: it delivered it, or ``confirm`` (the
    upstream's HEAD) says so now, which is then remembered; else the refusal to send the client."""
    if (host, repository) in facts.pairs:
        return None
    refusal = await confirm()
    if refusal is not None:
        return refusal  # type: ignore[no-any-return]
    await call("recording a confirmation", None, shared.remember, host, repository, digest, delivered=False)
    return None


async def _redirect(
    request: web.Request, target: Target, shared: SharedCache, facts: Facts, confirm: Any
) -> web.StreamResponse | None:
    """A 307 to a short-lived presigned URL of the bucket's blob: the bytes go from the bucket to the
    client, which checks the digest itself (the proxy sees none of them)."""
    assert target.upstream is not None
    host, repository, digest = target.upstream.host, target.repository, target.reference
    if await call("looking for a blob", None, shared.size_of, digest) is None:
        return None
    refusal = await _confirmed(shared, facts, host, repository, digest, confirm)
    if refusal is not None:
        return refusal
    url = await call("presigning a URL", None, shared.presigned, digest)
    if url is None:
        return None
    request.app[state.METRICS].hit("blob")
    request[state.SOURCE] = "shared-cache-redirect"
    headers = {**API_VERSION_HEADER, "Location": url, "Docker-Content-Digest": digest}
    return web.Response(status=307, headers=headers)


async def _stream(request: web.Request, target: Target, body: Any, size: int) -> web.StreamResponse:
    headers = {
        **API_VERSION_HEADER,
        "Docker-Content-Digest": target.reference,
        "ETag": f'"{target.reference}"',
    }
    headers["Content-Type"] = "application/octet-stream"
    out = web.StreamResponse(status=200, headers=headers)
    out.content_length = size
    request[state.SOURCE] = "shared-cache"
    verifier = Verifier(target.reference)
    widen_send_buffer(request)
    sent = 0
    reading: asyncio.Future[bytes] | None = None
    try:
        await out.prepare(request)
        if request.method == "HEAD":
            await out.write_eof()
            return out
        # Read and hashed in a worker thread, one chunk ahead of the one being sent: the bucket's
        # stream, the hashing and the client's socket overlap.
        loop = asyncio.get_running_loop()
        reading = loop.run_in_executor(None, _read_hashed, body, verifier)
        pending = b""
        while chunk := await reading:
            reading = loop.run_in_executor(None, _read_hashed, body, verifier)
            if pending:
                await out.write(pending)
                sent += len(pending)
            pending = chunk
        reading = None
        if verifier.size != size or not verifier.finish():
            raise UpstreamFault(502, f"the shared cache's {target.reference} does not match its digest")
        await out.write(pending)
        sent += len(pending)
        await out.write_eof()
    except Exception as exc:
        cut(request, exc)
    finally:
        request[state.SENT] = sent
        if reading is not None and not reading.done():
            # The caller closes the body once this returns: let the read in flight end first.
            await asyncio.wait([reading])
    return out


def _read_hashed(body: Any, verifier: Verifier) -> bytes:
    chunk: bytes = body.read(_READ)
    verifier.update(chunk)
    return chunk


async def turn(shared: SharedCache, digest: str) -> int | None:
    """Wait until this instance may fetch ``digest`` (the lease generation it holds; 0 for none, when
    the bucket cannot be used) or another instance has published it (None)."""
    while True:
        size = await call("looking for a blob", _UNUSABLE, shared.size_of, digest)
        if size is _UNUSABLE:
            return 0  # the bucket is out of use: fetch, unshared
        if size is not None:
            return None
        generation = await call("taking a lease", 0, shared.try_lease, digest)
        if generation is not None:
            if generation and await call("looking for a blob", None, shared.size_of, digest) is not None:
                # Published, and its lease released, between the look above and the lease taken.
                await call("releasing a lease", None, shared.release, digest, generation)
                return None
            if generation > 1:
                log.warning("shared cache: took over the fetch of %s (generation %d)", digest, generation)
            return int(generation)
        await asyncio.sleep(POLL_SECONDS)


@contextlib.asynccontextmanager
async def holding(shared: SharedCache, digest: str, generation: int) -> AsyncIterator[None]:
    """Renew the lease while the body runs; release it after (the blob is published, or given up)."""

    stop = asyncio.Event()

    async def renew() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), shared.lease_seconds / 3)
                return
            await call("renewing a lease", None, shared.renew, digest, generation)

    if not generation:
        yield
        return
    renewing = asyncio.ensure_future(renew())
    try:
        yield
    finally:
        # Not cancelled: a renewal on its way in a worker thread would write the lease again after
        # the release below, and the other instances would wait for it to expire.
        stop.set()
        await asyncio.wait([renewing])
        await call("releasing a lease", None, shared.release, digest, generation)


async def publish(shared: SharedCache, writer: SharedWriter, host: str, repository: str) -> None:
    """Once the blob is verified: its facts first (a waiter that sees the blob must see who sent it),
    then the blob itself."""
    if not writer.verified:
        await asyncio.to_thread(writer.upload.abort)
        return
    if (
        await call(
            "recording a delivery",
            _UNUSABLE,
            shared.remember,
            host,
            repository,
            writer.digest,
            delivered=True,
        )
        is _UNUSABLE
    ):
        await asyncio.to_thread(writer.upload.abort)
        return
    if not await asyncio.to_thread(writer.upload.complete):
        log.warning("shared cache: %s was not published", writer.digest)


_UNUSABLE: Any = object()


async def call(what: str, failed: Any, function: Any, *args: Any, **kwargs: Any) -> Any:
    """``function`` in a worker thread; ``failed`` when the bucket cannot be reached or refuses (one
    line in the log): the proxy goes on as a cache of one."""
    try:
        return await asyncio.to_thread(function, *args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - boto3's errors are many; any of them means "not now"
        log.warning("shared cache: %s failed: %s; going on without it", what, reason(exc))
        return failed
