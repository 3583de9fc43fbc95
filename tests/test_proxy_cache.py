"""The blob cache (digest-verified, LRU with a size cap, hits by sendfile) and the manifest cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from proxy_support import (
    MANIFEST_V2,
    Fake,
    add_record,
    cache_files,
    cached_blobs,
    digest_of,
    host_of,
    proxy_client,
    start_fake,
)

from regauth.config import Settings
from regauth.proxy.blobcache import BlobCache
from regauth.proxy.manifestcache import ManifestCache


def _blob_requests(fake: Fake) -> int:
    """Blob requests that carried a token (the first one of a cold pull is answered 401)."""
    return sum(1 for _, path, auth in fake.seen if "/blobs/" in path and auth)


async def test_second_pull_is_a_cache_hit(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    fake = Fake(auth="bearer")
    image = fake.add_image(size=300_000)
    server = await start_fake(aiohttp_server, fake)
    book = add_record(settings, host_of(server))
    client = await proxy_client(aiohttp_client, settings, book, cache_dir=tmp_path / "c")
    digest = digest_of(image["layer"])
    path = f"/v2/fake/org/app/blobs/{digest}"
    for _ in range(2):
        resp = await client.get(path)
        assert resp.status == 200 and await resp.read() == image["layer"]
        assert resp.headers["Docker-Content-Digest"] == digest
        assert int(resp.headers["Content-Length"]) == len(image["layer"])
        assert resp.headers["Content-Type"] == "application/octet-stream"
    assert _blob_requests(fake) == 1
    resp = await client.get(path, headers={"Range": "bytes=100-199"})
    assert resp.status == 206 and await resp.read() == image["layer"][100:200]
    resp = await client.head(path)
    assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(image["layer"])
    assert _blob_requests(fake) == 1
    (cached,) = cached_blobs(tmp_path / "c")
    assert cached.name == digest.split(":")[1]
    # Blobs of private images stay private to the proxy's user.
    assert cached.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "c" / "blobs").stat().st_mode & 0o777 == 0o700


async def test_a_range_miss_is_not_cached(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    fake = Fake(auth="none")
    image = fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    client = await proxy_client(
        aiohttp_client,
        settings,
        add_record(settings, host_of(server), username=None),
        cache_dir=tmp_path / "c",
    )
    resp = await client.get(
        f"/v2/fake/org/app/blobs/{digest_of(image['layer'])}", headers={"Range": "bytes=0-9"}
    )
    assert resp.status == 206 and await resp.read() == image["layer"][:10]
    assert cache_files(tmp_path / "c") == []


def _put(cache: BlobCache, data: bytes) -> str:
    digest = digest_of(data)
    writer = cache.begin(digest, len(data))
    assert writer is not None
    writer.write(data)
    assert writer.commit()
    return digest


def test_writer_publishes_only_a_matching_digest(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    data = os.urandom(1000)
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    writer = cache.begin(wrong, len(data))
    assert writer is not None
    writer.write(data)
    assert not writer.commit()
    assert cache.lookup(wrong) is None and cache_files(tmp_path) == []
    # A second writer for a digest being written is refused: one download lands, not two.
    digest = digest_of(data)
    first = cache.begin(digest, None)
    assert first is not None and cache.begin(digest, None) is None
    first.abort()
    assert cache_files(tmp_path) == []
    assert _put(cache, data) == digest
    path = cache.lookup(digest)
    assert path is not None and path.read_bytes() == data


def test_lru_eviction_under_the_cap(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path, max_size=2500)
    a, b, c = (os.urandom(1000) for _ in range(3))
    da, db = _put(cache, a), _put(cache, b)
    assert cache.lookup(da) is not None  # a is now more recent than b
    dc = _put(cache, c)
    assert cache.lookup(db) is None
    assert cache.lookup(da) is not None and cache.lookup(dc) is not None
    assert cache.size == 2000 and cache.evictions == 1
    # Larger than the cap: never written.
    assert cache.begin(digest_of(b"x" * 3000), 3000) is None
    # The order survives a restart (file mtimes), and temp files left by a crash are removed.
    os.utime(cache.path_for(dc), ns=(1, 1))
    leftover = cache.path_for(da).with_name("junk.tmp-abc")
    leftover.write_bytes(b"half")
    again = BlobCache(tmp_path, max_size=1500)
    assert again.lookup(dc) is None and again.lookup(da) is not None
    assert not leftover.exists()


def test_manifest_tag_ttl() -> None:
    now = [100.0]
    cache = ManifestCache(tag_ttl=30, clock=lambda: now[0])
    headers: Any = {}
    cache.put(("h", "r", "1.0", ("a",)), b"tag", headers, by_digest=False)
    cache.put(("h", "r", "sha256:x", ("a",)), b"digest", headers, by_digest=True)
    now[0] += 29
    assert cache.get(("h", "r", "1.0", ("a",))) is not None
    now[0] += 2
    assert cache.get(("h", "r", "1.0", ("a",))) is None
    now[0] += 10_000
    entry = cache.get(("h", "r", "sha256:x", ("a",)))
    assert entry is not None and entry.body == b"digest"
    off = ManifestCache(tag_ttl=0)
    off.put(("h", "r", "1.0", ("a",)), b"tag", headers, by_digest=False)
    assert off.get(("h", "r", "1.0", ("a",))) is None


async def test_manifest_by_tag_is_cached_for_its_ttl(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    fake = Fake(auth="none")
    image = fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    book = add_record(settings, host_of(server), username=None)
    client = await proxy_client(aiohttp_client, settings, book, cache_dir=tmp_path / "c", manifest_tag_ttl=60)
    accept = {"Accept": MANIFEST_V2}
    for _ in range(3):
        resp = await client.get("/v2/fake/org/app/manifests/1.0", headers=accept)
        assert await resp.read() == image["manifest"]
        assert resp.headers["Docker-Content-Digest"] == image["digest"]
    resp = await client.head("/v2/fake/org/app/manifests/1.0", headers=accept)
    assert int(resp.headers["Content-Length"]) == len(image["manifest"])
    assert sum(1 for _, path, _ in fake.seen if "/manifests/" in path) == 1
    no_ttl = await proxy_client(aiohttp_client, settings, book, cache_dir=tmp_path / "d", manifest_tag_ttl=0)
    for _ in range(2):
        await (await no_ttl.get("/v2/fake/org/app/manifests/1.0", headers=accept)).read()
    assert sum(1 for _, path, _ in fake.seen if "/manifests/" in path) == 3
