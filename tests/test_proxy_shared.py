"""``--cache-url s3://BUCKET/PREFIX``: three real ``regauth proxy`` processes over one bucket (moto in
server mode, on loopback) share one upstream fetch per blob. A hostile upstream counts its GETs and
can hold a body halfway; an instance killed mid-fetch is taken over once its lease expires."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from support.bucket import moto_bucket
from support.proxy import (
    MANIFEST_V2,
    Fake,
    ProxyProcess,
    add_upstream,
    digest_of,
    host_of,
    pulled_digest,
    start_fake,
)

from regauth.config import Settings

BUCKET = "regauth-shared"
SMALL = 3 * 1024 * 1024 + 5
LARGE = 20 * 1024 * 1024 + 7  # three parts of the multipart upload


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with moto_bucket(monkeypatch, BUCKET) as s3:
        yield s3


@dataclass
class Counting:
    """An upstream for ``blobs`` (by digest) in org/app; counts GETs by digest. With ``hold`` set, a
    GET sends half its body and waits for ``release``."""

    blobs: dict[str, bytes]
    hold: bool = False
    mode: str = "good"  # "tamper": a flipped byte near the end; "cut": the connection aborted halfway
    release: asyncio.Event = field(default_factory=asyncio.Event)
    gets: dict[str, int] = field(default_factory=dict)
    other: list[tuple[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        async def base(request: web.Request) -> web.Response:
            return web.json_response({})

        async def blob(request: web.Request) -> web.StreamResponse:
            digest = request.match_info["digest"]
            if request.method != "GET":
                self.other.append((request.method, request.path))
            if digest not in self.blobs or request.match_info["name"] != "org/app":
                return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
            body = self.blobs[digest]
            response = web.StreamResponse(headers={"Docker-Content-Digest": digest})
            response.content_length = len(body)
            await response.prepare(request)
            if request.method == "HEAD":
                await response.write_eof()
                return response
            self.gets[digest] = self.gets.get(digest, 0) + 1
            if self.mode == "tamper":
                body = body[:-2] + bytes([body[-2] ^ 0xFF]) + body[-1:]
            half = len(body) // 2
            await response.write(body[:half])
            if self.hold:
                await asyncio.wait_for(self.release.wait(), timeout=60)
            if self.mode == "cut":
                assert request.transport is not None
                request.transport.abort()
                return response
            for at in range(half, len(body), 1024 * 1024):
                await response.write(body[at : at + 1024 * 1024])
            await response.write_eof()
            return response

        app = web.Application()
        app.router.add_get("/v2/", base)
        app.router.add_get(r"/v2/{name:.+}/blobs/{digest}", blob)
        return app


def stop_all(procs: Iterable[ProxyProcess]) -> None:
    """Stop every instance, then say which did not end cleanly: one failure must not leak the rest."""
    codes = [(proc, proc.stop()) for proc in procs]
    for proc, code in codes:
        assert code == 0, proc.log()


def _proxies(regauth_exe: str, tmp_path: Path, count: int, *extra: str) -> list[ProxyProcess]:
    procs = [
        ProxyProcess(regauth_exe, tmp_path, "--quiet", "--cache-url", f"s3://{BUCKET}/fleet", *extra)
        for _ in range(count)
    ]
    for proc in procs:
        proc.wait_ready()
    return procs


async def _cut(session: aiohttp.ClientSession, url: str) -> bool:
    """True if the proxy cut the body short (a client never holds all of it)."""
    try:
        async with session.get(url) as resp:
            assert resp.status == 200, await resp.text()
            await resp.read()
    except aiohttp.ClientPayloadError:
        return True
    return False


async def test_three_instances_fetch_each_blob_once(
    aiohttp_server: Any, settings: Settings, tmp_path: Path, regauth_exe: str, bucket: Any
) -> None:
    small, large = os.urandom(SMALL), os.urandom(LARGE)
    upstream = Counting({digest_of(small): small, digest_of(large): large})
    server = await aiohttp_server(upstream.app())
    add_upstream(settings, host_of(server), name="up", username=None)
    procs = _proxies(regauth_exe, tmp_path, 3)
    try:
        async with aiohttp.ClientSession() as session:
            urls = [
                f"{procs[i % 3].url}/v2/up/org/app/blobs/{digest}"
                for i in range(30)
                for digest in upstream.blobs
            ]
            got = await asyncio.wait_for(
                asyncio.gather(*(pulled_digest(session, url) for url in urls)), timeout=180
            )
            assert sorted(got) == sorted(list(upstream.blobs) * 30)
            assert upstream.gets == {digest: 1 for digest in upstream.blobs}
            # A fresh instance serves them from the bucket, without asking the upstream.
            (late,) = _proxies(regauth_exe, tmp_path, 1)
            procs.append(late)
            for digest in upstream.blobs:
                assert await pulled_digest(session, f"{late.url}/v2/up/org/app/blobs/{digest}") == digest
            assert upstream.gets == {digest: 1 for digest in upstream.blobs}
            # Another repository of the upstream is asked first, and refused: none of the bytes.
            async with session.get(f"{late.url}/v2/up/org/secret/blobs/{digest_of(small)}") as resp:
                assert resp.status == 404
            assert upstream.other == [("HEAD", f"/v2/org/secret/blobs/{digest_of(small)}")]
    finally:
        stop_all(procs)
    keys = [
        item["Key"] for item in bucket.list_objects_v2(Bucket=BUCKET, Prefix="fleet/").get("Contents", [])
    ]
    assert sorted(k for k in keys if "/blobs/" in k) == sorted(
        f"fleet/blobs/sha256/{digest.partition(':')[2]}" for digest in upstream.blobs
    )
    assert not [k for k in keys if "/leases/" in k]


async def test_an_instance_killed_mid_fetch_is_taken_over(
    aiohttp_server: Any, settings: Settings, tmp_path: Path, regauth_exe: str, bucket: Any
) -> None:
    large = os.urandom(LARGE)
    digest = digest_of(large)
    upstream = Counting({digest: large}, hold=True)
    server = await aiohttp_server(upstream.app())
    add_upstream(settings, host_of(server), name="up", username=None)
    first, second = _proxies(regauth_exe, tmp_path, 2, "--cache-lease", "2")
    try:
        async with aiohttp.ClientSession() as session:
            doomed = asyncio.ensure_future(
                pulled_digest(session, f"{first.url}/v2/up/org/app/blobs/{digest}")
            )
            for _ in range(2000):
                if upstream.gets.get(digest):
                    break
                await asyncio.sleep(0.01)
            assert upstream.gets == {digest: 1}
            waiting = asyncio.ensure_future(
                pulled_digest(session, f"{second.url}/v2/up/org/app/blobs/{digest}")
            )
            await asyncio.sleep(0.5)
            assert upstream.gets == {digest: 1}  # the second instance waits on the first's lease
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(timeout=20)
            with pytest.raises(aiohttp.ClientError):
                await doomed
            upstream.release.set()
            assert await asyncio.wait_for(waiting, timeout=60) == digest
            assert upstream.gets == {digest: 2}
    finally:
        assert second.stop() == 0, second.log()
    head = bucket.head_object(Bucket=BUCKET, Key=f"fleet/blobs/sha256/{digest.partition(':')[2]}")
    assert head["ContentLength"] == LARGE


def test_a_cache_url_that_is_not_s3_is_one_line(regauth_exe: str) -> None:
    import subprocess

    done = subprocess.run(
        [regauth_exe, "proxy", "--listen", "127.0.0.1:0", "--cache-url", "https://bucket/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "regauth: error: --cache-url 'https://bucket/x': use s3://BUCKET/PREFIX"
    ]


async def test_a_bucket_out_of_reach_leaves_a_cache_of_one(
    aiohttp_server: Any, settings: Settings, tmp_path: Path, regauth_exe: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from support.registry import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    small = os.urandom(SMALL)
    upstream = Counting({digest_of(small): small}, hold=True)
    server = await aiohttp_server(upstream.app())
    add_upstream(settings, host_of(server), name="up", username=None)
    (proc,) = _proxies(regauth_exe, tmp_path, 1)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"{proc.url}/v2/up/org/app/blobs/{digest_of(small)}"
            pulls = asyncio.gather(*(pulled_digest(session, url) for _ in range(4)))
            # The upstream holds the body until the other three pulls wait on the first one's fetch.
            for _ in range(3000):
                async with session.get(f"{proc.url}/metrics") as resp:
                    if "regauth_proxy_blob_fetches_joined_total 3" in await resp.text():
                        break
                await asyncio.sleep(0.01)
            upstream.release.set()
            got = await asyncio.wait_for(pulls, timeout=120)
            assert got == [digest_of(small)] * 4
            assert upstream.gets == {digest_of(small): 1}
    finally:
        assert proc.stop() == 0, proc.log()
    assert "shared cache:" in proc.log() and "Traceback" not in proc.log()


async def test_bucket_hits_can_redirect_to_a_presigned_url(
    aiohttp_server: Any, settings: Settings, tmp_path: Path, regauth_exe: str, bucket: Any
) -> None:
    small = os.urandom(SMALL)
    digest = digest_of(small)
    upstream = Counting({digest: small})
    server = await aiohttp_server(upstream.app())
    add_upstream(settings, host_of(server), name="up", username=None)
    (proc,) = _proxies(regauth_exe, tmp_path, 1, "--cache-redirect", "60")
    try:
        async with aiohttp.ClientSession() as session:
            url = f"{proc.url}/v2/up/org/app/blobs/{digest}"
            assert await pulled_digest(session, url) == digest  # cold: relayed, and written to the bucket
            async with session.get(url, allow_redirects=False) as resp:
                assert resp.status == 307
                location = resp.headers["Location"]
            endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
            assert (
                location.startswith(f"{endpoint}/{BUCKET}/fleet/blobs/sha256/") and "Signature=" in location
            )
            assert await pulled_digest(session, url) == digest  # the client follows it to the bucket
            # Another repository is still asked first, and refused: no URL.
            async with session.get(
                f"{proc.url}/v2/up/org/secret/blobs/{digest}", allow_redirects=False
            ) as resp:
                assert resp.status == 404 and "Location" not in resp.headers
            assert upstream.gets == {digest: 1}
    finally:
        assert proc.stop() == 0, proc.log()


@pytest.mark.parametrize("mode", ["tamper", "cut"])
async def test_a_failed_fetch_publishes_nothing(
    aiohttp_server: Any, settings: Settings, tmp_path: Path, regauth_exe: str, bucket: Any, mode: str
) -> None:
    large = os.urandom(LARGE)
    digest = digest_of(large)
    upstream = Counting({digest: large}, mode=mode)
    server = await aiohttp_server(upstream.app())
    add_upstream(settings, host_of(server), name="up", username=None)
    procs = _proxies(regauth_exe, tmp_path, 2)
    try:
        async with aiohttp.ClientSession() as session:
            urls = [f"{procs[i % 2].url}/v2/up/org/app/blobs/{digest}" for i in range(6)]
            assert (
                await asyncio.wait_for(asyncio.gather(*(_cut(session, u) for u in urls)), timeout=120)
                == [True] * 6
            )
    finally:
        stop_all(procs)
    # (moto keeps one store per process: earlier tests' objects are there too.)
    hex_part = digest.partition(":")[2]
    keys = [item["Key"] for item in bucket.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert not [k for k in keys if hex_part in k and ("/blobs/" in k or "/leases/" in k)]
    uploads = bucket.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert not [u for u in uploads if hex_part in u["Key"]]


async def test_tampered_bytes_in_the_bucket_are_cut(
    aiohttp_server: Any, settings: Settings, tmp_path: Path, regauth_exe: str, bucket: Any
) -> None:
    small = os.urandom(SMALL)
    digest = digest_of(small)
    upstream = Counting({digest: small})
    server = await aiohttp_server(upstream.app())
    add_upstream(settings, host_of(server), name="up", username=None)
    (proc,) = _proxies(regauth_exe, tmp_path, 1)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"{proc.url}/v2/up/org/app/blobs/{digest}"
            assert await pulled_digest(session, url) == digest
            # Someone with write access to the bucket swaps the bytes.
            key = f"fleet/blobs/sha256/{digest.partition(':')[2]}"
            bucket.put_object(Bucket=BUCKET, Key=key, Body=small[:-1] + bytes([small[-1] ^ 1]))
            assert await asyncio.wait_for(_cut(session, url), timeout=60)
    finally:
        assert proc.stop() == 0, proc.log()


async def test_manifests_by_digest_are_shared_where_confirmed(
    aiohttp_server: Any, settings: Settings, tmp_path: Path, regauth_exe: str, bucket: Any
) -> None:
    fake = Fake(auth="none")
    image = fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    add_upstream(settings, host_of(server), name="up", username=None)
    first, second = _proxies(regauth_exe, tmp_path, 2)
    digest = image["digest"]
    accept = {"Accept": MANIFEST_V2}
    try:
        async with aiohttp.ClientSession() as session:

            async def manifest(proc: ProxyProcess, repository: str) -> bytes:
                async with session.get(
                    f"{proc.url}/v2/up/{repository}/manifests/{digest}", headers=accept
                ) as resp:
                    assert resp.status == 200, await resp.text()
                    assert resp.headers["Content-Type"] == MANIFEST_V2
                    return await resp.read()

            assert await manifest(first, "org/app") == image["manifest"]
            assert await manifest(second, "org/app") == image["manifest"]  # from the bucket
            assert [(m, p) for m, p, _ in fake.seen if "/manifests/" in p] == [
                ("GET", f"/v2/org/app/manifests/{digest}")
            ]
            # Another repository: the upstream is asked (HEAD) before the bucket answers for it.
            assert await manifest(second, "org/other") == image["manifest"]
            assert [(m, p) for m, p, _ in fake.seen if "/manifests/" in p][1:] == [
                ("HEAD", f"/v2/org/other/manifests/{digest}")
            ]
            # Bytes swapped in the bucket are not served: the upstream is asked again.
            key = f"fleet/manifests/sha256/{digest.partition(':')[2]}"
            bucket.put_object(Bucket=BUCKET, Key=key, Body=b"{}", ContentType=MANIFEST_V2)
            (third,) = _proxies(regauth_exe, tmp_path, 1)
            try:
                assert await manifest(third, "org/app") == image["manifest"]
            finally:
                assert third.stop() == 0, third.log()
            assert [(m, p) for m, p, _ in fake.seen if "/manifests/" in p][-1] == (
                "GET",
                f"/v2/org/app/manifests/{digest}",
            )
    finally:
        stop_all((first, second))
