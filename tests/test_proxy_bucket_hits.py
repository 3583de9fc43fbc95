"""Hits from the shared bucket (``--cache-url``) stream through the proxy while the next chunk is read
and hashed in a worker thread: a client that leaves mid-body does not disturb the read in flight, and
the next pull gets every byte. moto in server mode plays the bucket; a real ``regauth proxy`` process."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from botocore.exceptions import ClientError
from support.bucket import moto_bucket
from support.proxy import ProxyProcess, add_upstream, digest_of, host_of, pulled_digest

from regauth.config import Settings

BUCKET = "regauth-hits"
SIZE = 9 * 1024 * 1024 + 3  # several chunks of the bucket's reads, and two parts of the upload


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with moto_bucket(monkeypatch, BUCKET) as s3:
        yield s3


def _upstream(blob: bytes, gets: list[str]) -> web.Application:
    digest = digest_of(blob)

    async def base(request: web.Request) -> web.Response:
        return web.json_response({})

    async def serve(request: web.Request) -> web.StreamResponse:
        if request.match_info["digest"] != digest or request.match_info["name"] != "org/app":
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        gets.append(request.method)
        response = web.StreamResponse(headers={"Docker-Content-Digest": digest})
        response.content_length = len(blob)
        await response.prepare(request)
        if request.method == "GET":
            await response.write(blob)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/v2/", base)
    app.router.add_get(r"/v2/{name:.+}/blobs/{digest}", serve)
    return app


def _published(s3: Any, key: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            s3.head_object(Bucket=BUCKET, Key=key)
            return
        except ClientError:
            time.sleep(0.05)
    raise AssertionError(f"{key} was not published in {timeout}s")


async def test_a_client_leaving_a_bucket_hit_midway_leaves_the_next_whole(
    aiohttp_server: Any, settings: Settings, tmp_path: Path, regauth_exe: str, bucket: Any
) -> None:
    blob = os.urandom(SIZE)
    digest = digest_of(blob)
    gets: list[str] = []
    server = await aiohttp_server(_upstream(blob, gets))
    add_upstream(settings, host_of(server), name="up", username=None)
    proc = ProxyProcess(regauth_exe, tmp_path, "--cache-url", f"s3://{BUCKET}/hits")
    proc.wait_ready()
    try:
        url = f"{proc.url}/v2/up/org/app/blobs/{digest}"
        async with aiohttp.ClientSession() as session:
            assert await pulled_digest(session, url) == digest
            await asyncio.to_thread(_published, bucket, f"hits/blobs/sha256/{digest.partition(':')[2]}")
            for _ in range(3):
                # A client that takes the first MiB and hangs up, while the proxy reads ahead.
                async with aiohttp.ClientSession() as leaving:
                    resp = await leaving.get(url)
                    assert resp.status == 200
                    await resp.content.readexactly(1024 * 1024)
                    resp.close()
            assert await pulled_digest(session, url) == digest
        # Every hit came from the bucket: the upstream sent the blob once.
        assert gets.count("GET") == 1
    finally:
        assert proc.stop() == 0, proc.log()
    assert "Traceback" not in proc.log()
