"""The blob cache (digest-verified, LRU with a size cap, hits by sendfile) and the manifest cache."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from support.proxy import (
    MANIFEST_V2,
    OCI_INDEX,
    Fake,
    add_upstream,
    cache_files,
    cached_blobs,
    digest_of,
    host_of,
    proxy_client,
    start_fake,
)

from regauth.config import Settings
from regauth.distribution.client import MANIFEST_TYPES
from regauth.proxy import state
from regauth.proxy.blobcache import BlobCache
from regauth.proxy.manifestcache import ANY, DEFAULT_MAX_BYTES, ManifestCache, accept_header, accept_key


def _blob_requests(fake: Fake) -> int:
    """Blob requests that carried a token (the first one of a cold pull is answered 401)."""
    return sum(1 for _, path, auth in fake.seen if "/blobs/" in path and auth)


async def test_second_pull_is_a_cache_hit(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    fake = Fake(auth="bearer")
    image = fake.add_image(size=300_000)
    server = await start_fake(aiohttp_server, fake)
    book = add_upstream(settings, host_of(server))
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


async def test_a_hit_leaves_whole_and_the_connection_goes_on(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    # A hit is corked while it is sent (full segments only): its odd-sized tail must still leave, and
    # the next answer on the same keep-alive connection must not be held back behind a cork.
    fake = Fake(auth="none")
    image = fake.add_image(size=3 * 1024 * 1024 + 17)
    server = await start_fake(aiohttp_server, fake)
    book = add_upstream(settings, host_of(server), username=None)
    client = await proxy_client(aiohttp_client, settings, book, cache_dir=tmp_path / "c")
    path = f"/v2/fake/org/app/blobs/{digest_of(image['layer'])}"
    for _ in range(3):
        resp = await client.get(path)
        assert resp.status == 200 and await resp.read() == image["layer"]
    assert sum(1 for _, seen, _ in fake.seen if "/blobs/" in seen) == 1
    assert client.server.app[state.METRICS].cache_hits[(("kind", "blob"),)] == 2
    resp = await client.get("/v2/")
    assert resp.status == 200 and await resp.json() == {}


async def test_a_range_miss_is_not_cached(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    fake = Fake(auth="none")
    image = fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    client = await proxy_client(
        aiohttp_client,
        settings,
        add_upstream(settings, host_of(server), username=None),
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
    writer.update(data)
    assert writer.commit()
    return digest


def test_writer_publishes_only_a_matching_digest(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    data = os.urandom(1000)
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    writer = cache.begin(wrong, len(data))
    assert writer is not None
    writer.update(data)
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
    book = add_upstream(settings, host_of(server), username=None)
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


def test_accept_key_is_the_known_types_sorted() -> None:
    oci, docker = OCI_INDEX, MANIFEST_V2
    assert accept_key([f"{docker}, {oci}"]) == accept_key([oci, f" {docker.upper()} ;q=0.5"])
    assert accept_key([f"{docker}, {oci}"]) == tuple(sorted((oci, docker)))
    # Anything else is one */*, whatever it is; q=0 means "not that one".
    assert accept_key([f"{docker}, application/x-{os.urandom(4).hex()}"]) == (docker, ANY)
    assert accept_key([f"{docker}, {oci};q=0", "*/*;q=0"]) == (docker,)
    assert accept_key([]) == accept_key(["*/*"]) == accept_key(["text/html;q=0"]) == (ANY,)
    assert accept_header((docker, ANY)) == {"Accept": f"{docker}, */*"}


def test_manifest_cache_stays_within_its_byte_budget() -> None:
    cache = ManifestCache(tag_ttl=30, max_bytes=10_000)
    headers: Any = CIMultiDict({"Content-Type": MANIFEST_V2})
    for n in range(20):
        cache.put(("h", "r", f"t{n}", ()), os.urandom(3000), headers, by_digest=False)
        assert cache.held <= cache.max_bytes
    assert len(cache) == 2 and cache.get(("h", "r", "t19", ())) is not None
    assert cache.get(("h", "r", "t0", ())) is None
    # Larger than the whole budget: not kept, and nothing else pushed out for it.
    cache.put(("h", "r", "big", ()), os.urandom(20_000), headers, by_digest=True)
    assert cache.get(("h", "r", "big", ())) is None and len(cache) == 2


async def test_many_accept_headers_for_a_large_manifest_stay_within_the_budget(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    """A hostile upstream serves one manifest of almost 4 MiB whatever is asked; 300 distinct Accept
    headers must not make 300 entries (1.2 GB): they fold into the 32 keys the known types make."""
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_V2, "pad": "x" * (4 * 1024**2 - 200)})
    body = manifest.encode()
    accepts: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        accepts.append(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": MANIFEST_V2})

    app = web.Application()
    app.router.add_get("/v2/{name:.+}/manifests/{ref}", serve)
    server = await aiohttp_server(app)
    book = add_upstream(settings, host_of(server), username=None)
    client = await proxy_client(aiohttp_client, settings, book, cache_dir=tmp_path / "c")
    cache = client.app[state.MANIFESTS]
    headers = [_accept(n) for n in range(300)]
    assert len(set(headers)) == 300
    # Grouped by what they mean, so that each key is fetched once even when the budget pushes it out.
    for accept in sorted(headers, key=lambda h: accept_key([h])):
        async with client.get("/v2/fake/org/app/manifests/1.0", headers={"Accept": accept}) as resp:
            assert resp.status == 200 and await resp.read() == body
        assert cache.held <= cache.max_bytes
    assert cache.held <= DEFAULT_MAX_BYTES and len(cache) <= DEFAULT_MAX_BYTES // len(body)
    assert len(accepts) == len(set(accepts)) == 31
    # What went upstream is the normalised list, never a client's own spelling.
    assert all(accept_key([a]) == tuple(a.split(", ")) for a in accepts)


def _accept(n: int) -> str:
    """The n-th of many spellings: a subset of the known types (by n's low bits), in varying case and
    order, with a unique q value, and other types every other sixteen."""
    chosen = [t for bit, t in enumerate(MANIFEST_TYPES) if n >> bit & 1]
    parts = [f"{t.upper() if n % 3 else t};q=0.{n:03d}1" for t in reversed(chosen)]
    if n >> 4 & 1:
        parts.append(f"application/x-other-{n}")
    return ", ".join(parts) or f"text/plain;q=0, application/x-none;q=0.0{n}0"
