"""The shared bucket's leases (``sharedcache.py``, ``sharedblobs.turn``/``holding``) under the
interleavings that two instances produce: moto in server mode plays the bucket, and a client that
passes every call through to it plays the other instance at one chosen moment (or is slow at one
chosen call), so each race happens on every run."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.bucket import moto_bucket
from support.proxy import add_upstream, digest_of, host_of, proxy_client
from test_proxy_flights import Hostile, _until, hostile_app

from regauth.config import Settings
from regauth.proxy import sharedblobs, state
from regauth.proxy.sharedcache import SharedCache

BUCKET = "regauth-leases"
BLOB = b"a blob two instances want at once"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with moto_bucket(monkeypatch, BUCKET) as client:
        yield client


class Interleaved:
    """An S3 client that is ``s3``, except that ``before(name, kwargs)`` runs before each call."""

    def __init__(self, s3: Any, before: Callable[[str, dict[str, Any]], None]) -> None:
        self._s3 = s3
        self._before = before

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._s3, name)
        if not callable(real):
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            self._before(name, kwargs)
            return real(*args, **kwargs)

        return call


def _leases(s3: Any, digest: str) -> list[str]:
    answer = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"fleet/leases/{digest.replace(':', '/')}/")
    return [item["Key"] for item in answer.get("Contents", [])]


@pytest.mark.parametrize("moment", ["list_objects_v2", "get_object"])
async def test_a_blob_published_while_a_waiter_looks_at_the_lease_is_not_fetched_again(
    s3: Any, moment: str
) -> None:
    digest = digest_of(BLOB + moment.encode())  # moto keeps one store per process
    other = SharedCache(f"s3://{BUCKET}/fleet", client=s3)
    assert other.try_lease(digest) == 1
    done = threading.Event()

    def publish_and_release(name: str, kwargs: dict[str, Any]) -> None:
        # The other instance finishes after this one found no blob: before it lists the leases, or
        # before it reads the one it found.
        key = kwargs.get("Prefix", kwargs.get("Key", ""))
        if name == moment and "/leases/" in key and not done.is_set():
            done.set()
            s3.put_object(Bucket=BUCKET, Key=other.blob_key(digest), Body=BLOB)
            other.release(digest, 1)

    this = SharedCache(f"s3://{BUCKET}/fleet", client=Interleaved(s3, publish_and_release))
    assert await sharedblobs.turn(this, digest) is None  # published: read it, do not fetch it
    assert done.is_set()
    assert _leases(s3, digest) == []


async def test_a_renewal_in_flight_at_release_leaves_no_lease_behind(s3: Any) -> None:
    renewing = threading.Event()

    def slow_renewal(name: str, kwargs: dict[str, Any]) -> None:
        # A renewal (an unconditional lease write) that the bucket takes its time to answer.
        if name == "put_object" and "/leases/" in kwargs["Key"] and "IfNoneMatch" not in kwargs:
            renewing.set()
            time.sleep(0.5)

    this = SharedCache(f"s3://{BUCKET}/fleet", lease_seconds=0.3, client=Interleaved(s3, slow_renewal))
    digest = digest_of(BLOB + b"renewal")
    generation = await sharedblobs.turn(this, digest)
    assert generation == 1
    async with sharedblobs.holding(this, digest, generation):
        # The fetch fails while the renewal is on its way.
        while not renewing.is_set():
            await asyncio.sleep(0.01)
    time.sleep(0.6)  # the renewal's thread is done by now, whatever happened
    assert _leases(s3, digest) == []


def test_a_slow_holder_releasing_after_a_takeover_leaves_the_new_lease(s3: Any) -> None:
    # The first holder stalled past its lease (not dead), a second instance took over; the first
    # one's release must not drop the second's lease, or a third instance fetches too.
    digest = digest_of(BLOB + b"takeover")
    slow = SharedCache(f"s3://{BUCKET}/fleet", lease_seconds=0.2, client=s3)
    taker = SharedCache(f"s3://{BUCKET}/fleet", client=s3)
    third = SharedCache(f"s3://{BUCKET}/fleet", client=s3)
    assert slow.try_lease(digest) == 1
    time.sleep(0.3)
    assert taker.try_lease(digest) == 2
    slow.release(digest, 1)
    assert third.try_lease(digest) is None  # the taker's lease still holds
    assert [key.rsplit("/", 1)[1] for key in _leases(s3, digest)] == ["2"]
    taker.release(digest, 2)
    assert _leases(s3, digest) == []


async def test_a_pull_cancelled_while_another_instance_fetches_leaves_no_dead_fetch(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, s3: Any
) -> None:
    # A client that goes away while its pull waits for another instance's fetch cancels that wait
    # (with aiohttp's handler cancellation, which its test server turns on). The pulls after it
    # must not wait on a fetch that will never start.
    blob = b"a blob another instance is fetching"
    digest = digest_of(blob)
    upstream = Hostile(blob)
    upstream.release.set()
    server = await aiohttp_server(hostile_app(upstream))
    book = add_upstream(settings, host_of(server), name="up", username=None)
    other = SharedCache(f"s3://{BUCKET}/fleet", client=s3)
    assert other.try_lease(digest) == 1
    # In-process, as aiohttp's test server runs it: with handler cancellation.
    client: Any = await proxy_client(aiohttp_client, settings, book, cache_url=f"s3://{BUCKET}/fleet")
    app = client.server.app
    path = f"/v2/up/org/app/blobs/{digest}"
    flights = app[state.FLIGHTS]
    first = asyncio.ensure_future(client.get(path))
    await _until(lambda: flights.find(host_of(server), digest) is not None, "the first pull's wait")
    first.cancel()  # the client goes away
    with contextlib.suppress(asyncio.CancelledError):
        await first
    await _until(lambda: flights.find(host_of(server), digest) is None, "the wait to be given up")
    other.release(digest, 1)  # the other instance gave up its fetch
    async with client.get(path) as resp:
        assert resp.status == 200 and await resp.read() == blob
