"""A blob the shared bucket holds from one upstream's delivery, pulled through another upstream that
serves the same bytes (a base layer on two registries): the second upstream is asked once, for all of
this instance's concurrent pulls, and once it has delivered the blob the bucket serves it for it too.
moto in server mode plays the bucket; the proxy runs in the test's loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
from support.bucket import moto_bucket
from support.proxy import add_upstream, digest_of, host_of, proxy_client
from test_proxy_flights import SIZE, Hostile, _pull, _until, hostile_app

from regauth.config import Settings
from regauth.proxy import state

BUCKET = "regauth-sources"
PULLS = 4


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with moto_bucket(monkeypatch, BUCKET) as s3:
        yield s3


async def test_a_blob_in_the_bucket_from_another_upstream_is_fetched_once_then_shared(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, bucket: Any
) -> None:
    blob = os.urandom(SIZE)
    first, second = Hostile(blob), Hostile(blob)
    first.release.set()
    first_server = await aiohttp_server(hostile_app(first))
    second_server = await aiohttp_server(hostile_app(second))
    add_upstream(settings, host_of(first_server), name="one", username=None)
    book = add_upstream(settings, host_of(second_server), name="two", username=None)
    client = await proxy_client(aiohttp_client, settings, book, cache_url=f"s3://{BUCKET}/fleet")
    digest = digest_of(blob)
    assert await _pull(client, f"/v2/one/org/app/blobs/{digest}") == blob
    assert first.gets() == 1

    # Concurrent pulls through the other upstream: it was never seen to have the blob, so it is
    # asked, but once for all of them.
    path = f"/v2/two/org/app/blobs/{digest}"
    flights = client.server.app[state.FLIGHTS]
    tasks = [asyncio.ensure_future(_pull(client, path)) for _ in range(PULLS)]
    await _until(lambda: second.gets() >= 1, "the fetch from the second upstream")
    await _until(lambda: flights.joined >= PULLS - 1, "the followers", timeout=30)
    second.release.set()
    assert await asyncio.wait_for(asyncio.gather(*tasks), timeout=60) == [blob] * PULLS
    assert second.gets() == 1

    # It delivered the blob: from now on the bucket serves it for that upstream too.
    assert await _pull(client, path) == blob
    assert second.gets() == 1
