"""An in-process fake registry (aiohttp) for the proxy tests, and a helper to put the proxy before it.

The fake speaks just enough of the V2 pull API: anonymous, Basic or Bearer auth (with its own token
endpoint that counts mints), manifests by tag and digest, blobs with Range, tag lists, and faults a test
switches on: a 5xx, a reset mid-blob, a slow answer, a down token endpoint, a redirect to another host.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from regauth.config import Settings
from regauth.proxy.accesslog import ACCESS_LOG, AccessLogger
from regauth.proxy.app import make_proxy_app
from regauth.proxy.options import ProxyOptions
from regauth.registries import RegistryBook
from regauth.store.lazy import LazyStore

from .records import add_record
from .registry import RegistryFixture

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
USER, PASSWORD = "proxyuser", "s3cret-Passw0rd-value"
TOKEN_PREFIX = "tok-SECRETTOKEN-"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Fake:
    """State and switches of one fake registry."""

    auth: str = "bearer"  # "none", "basic", "bearer"
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # ref -> (type, body)
    mints: int = 0
    token_delay: float = 0.0
    token_down: bool = False
    fail_status: int | None = None
    cut_blob: bool = False
    stall_blob: float = 0.0  # seconds to stop sending halfway through a blob
    corrupt_blob: bool = False
    slow: float = 0.0
    redirect_to: str | None = None  # base URL of a "blob storage" server
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path_qs, auth
    url: str = ""

    def add_image(self, repository: str = "org/app", tag: str = "1.0", size: int = 4096) -> dict[str, Any]:
        layer = os.urandom(size)
        config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        self.blobs[digest_of(layer)] = layer
        self.blobs[digest_of(config)] = config
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_V2,
                "config": {"mediaType": "x", "size": len(config), "digest": digest_of(config)},
                "layers": [{"mediaType": "y", "size": len(layer), "digest": digest_of(layer)}],
            }
        ).encode()
        self.manifests[tag] = (MANIFEST_V2, manifest)
        self.manifests[digest_of(manifest)] = (MANIFEST_V2, manifest)
        return {"manifest": manifest, "digest": digest_of(manifest), "layer": layer}

    def authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization")
        if self.auth == "none":
            return True
        if self.auth == "basic":
            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            return header == expected
        return bool(header and header.startswith(f"Bearer {TOKEN_PREFIX}"))

    def challenge(self, request: web.Request) -> str:
        if self.auth == "basic":
            return 'Basic realm="fake"'
        name = request.match_info.get("name", "")
        scope = f',scope="repository:{name}:pull"' if name else ""
        return f'Bearer realm="{self.url}/token",service="fake"{scope}'


def fake_app(fake: Fake) -> web.Application:
    async def guard(request: web.Request) -> web.Response | None:
        fake.seen.append((request.method, request.path_qs, request.headers.get("Authorization")))
        if fake.slow:
            await asyncio.sleep(fake.slow)
        if fake.fail_status:
            return web.json_response({"errors": [{"code": "UNKNOWN"}]}, status=fake.fail_status)
        if not fake.authorized(request):
            body = {"errors": [{"code": "UNAUTHORIZED", "message": "auth"}]}
            return web.json_response(body, status=401, headers={"WWW-Authenticate": fake.challenge(request)})
        return None

    async def token(request: web.Request) -> web.Response:
        if fake.token_down:
            return web.Response(status=503, text="down")
        if fake.token_delay:
            await asyncio.sleep(fake.token_delay)
        fake.mints += 1
        return web.json_response({"token": f"{TOKEN_PREFIX}{fake.mints}", "expires_in": 300})

    async def base(request: web.Request) -> web.Response:
        return await guard(request) or web.json_response({})

    async def manifest(request: web.Request) -> web.Response:
        if (refused := await guard(request)) is not None:
            return refused
        found = fake.manifests.get(request.match_info["ref"])
        if found is None:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "no"}]}, status=404)
        media_type, body = found
        headers = {"Docker-Content-Digest": digest_of(body), "Content-Type": media_type}
        return web.Response(body=body, headers=headers)

    async def blob(request: web.Request) -> web.StreamResponse:
        if (refused := await guard(request)) is not None:
            return refused
        digest = request.match_info["digest"]
        if digest not in fake.blobs:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN", "message": "no"}]}, status=404)
        if fake.redirect_to:
            raise web.HTTPTemporaryRedirect(f"{fake.redirect_to}/store/{digest}?X-Amz-Signature=SIGSECRET")
        return await send_blob(request, fake, fake.blobs[digest], digest)

    async def tags(request: web.Request) -> web.Response:
        if (refused := await guard(request)) is not None:
            return refused
        names = sorted(t for t in fake.manifests if ":" not in t)
        return web.json_response({"name": request.match_info["name"], "tags": names})

    app = web.Application()
    app.router.add_get("/token", token)
    app.router.add_get("/v2/", base)
    app.router.add_get(r"/v2/{name:.+}/manifests/{ref}", manifest)
    app.router.add_get(r"/v2/{name:.+}/blobs/{digest}", blob)
    app.router.add_get(r"/v2/{name:.+}/tags/list", tags)
    return app


async def send_blob(request: web.Request, fake: Fake, data: bytes, digest: str) -> web.StreamResponse:
    status, start, end = 200, 0, len(data)
    headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream"}
    if "Range" in request.headers:
        first, _, last = request.headers["Range"].removeprefix("bytes=").partition("-")
        status, start, end = 206, int(first), int(last) + 1
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
    body = data[start:end]
    if fake.corrupt_blob:
        body = bytes([body[0] ^ 1]) + body[1:]
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = len(body)
    await response.prepare(request)
    if request.method == "HEAD":
        await response.write_eof()
        return response
    if fake.stall_blob:
        await response.write(body[: len(body) // 2])
        await asyncio.sleep(fake.stall_blob)
    if fake.cut_blob:
        await response.write(body[: len(body) // 2])
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return response
    await response.write(body)
    await response.write_eof()
    return response


def storage_app(fake: Fake, seen: list[tuple[str, str | None]]) -> web.Application:
    """The "blob storage" a registry redirects to: another host, which must never see Authorization."""

    async def stored(request: web.Request) -> web.StreamResponse:
        seen.append((request.path_qs, request.headers.get("Authorization")))
        digest = request.match_info["digest"]
        return await send_blob(request, fake, fake.blobs[digest], digest)

    app = web.Application()
    app.router.add_get("/store/{digest}", stored)
    return app


def add_upstream(
    settings: Settings, host: str, *, name: str = "fake", username: str | None = USER, **extra: Any
) -> RegistryBook:
    """A record for a fake upstream on plain HTTP, with the fakes' password when it has a user; the book."""
    book = RegistryBook.for_settings(settings)
    secret = PASSWORD if username else None
    add_record(book, host, secret, name=name, username=username, insecure=True, **extra)
    return book


Factory = Callable[..., Awaitable[Any]]


async def start_fake(aiohttp_server: Factory, fake: Fake) -> TestServer:
    server: TestServer = await aiohttp_server(fake_app(fake))
    fake.url = str(server.make_url("")).rstrip("/")
    return server


async def proxy_client(
    aiohttp_client: Factory, settings: Settings, book: RegistryBook, **options: Any
) -> TestClient[web.Request, web.Application]:
    app = make_proxy_app(settings, book, LazyStore.for_settings(settings), options=ProxyOptions(**options))
    server = TestServer(app)
    # Started here: TestServer passes runner options only through start_server. The proxy's own
    # access logger also counts the request metrics.
    await server.start_server(access_log_class=AccessLogger, access_log=ACCESS_LOG)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(server)
    return client


async def pulled_digest(session: aiohttp.ClientSession, url: str) -> str:
    """The digest of what a client got whole from ``url`` (a 200); a cut body raises."""
    hashed = hashlib.sha256()
    async with session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        async for chunk in resp.content.iter_any():
            hashed.update(chunk)
    return "sha256:" + hashed.hexdigest()


def host_of(server: TestServer) -> str:
    return f"127.0.0.1:{server.port}"


def cache_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def cached_blobs(root: Path) -> list[Path]:
    """The blob files of a proxy cache dir (beside them, ``repos/`` holds who confirmed each)."""
    return cache_files(root / "blobs")


class ProxyProcess:
    """``regauth proxy`` run as the real console script, on a free loopback port."""

    def __init__(self, exe: str, workdir: Path, *args: str) -> None:
        import subprocess

        from support.registry import free_port

        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.log_path = workdir / f"proxy-{self.port}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child holds it
        # Its spool directory goes under the test's own directory: a proxy a test kills cannot remove
        # it, and nothing of a test may stay in the machine's /tmp.
        spool = workdir / f"tmp-{self.port}"
        spool.mkdir(mode=0o700)
        self.process = subprocess.Popen(
            [exe, "proxy", "--listen", self.host, *args],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": str(spool)},
        )
        log.close()

    def wait_ready(self, timeout: float = 20.0) -> None:
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"regauth proxy exited {self.process.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"regauth proxy did not answer in {timeout}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def peak_rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")

    def stop(self) -> int:
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except Exception:
            self.process.kill()
            self.process.wait(timeout=10)
            raise


@contextlib.contextmanager
def caching_proxy_before(
    exe: str, settings: Settings, workdir: Path, upstreams: dict[str, RegistryFixture]
) -> Iterator[ProxyProcess]:
    """``regauth proxy --cache-dir`` with a record per real registry (name -> ``RegistryFixture``, its
    user's credential), started and, at the end, stopped cleanly."""
    book = RegistryBook.for_settings(settings)
    for name, fx in upstreams.items():
        add_record(book, fx.host, fx.password, name=name, username=fx.username, ca_file=fx.ca_file)
    proc = ProxyProcess(exe, workdir, "--cache-dir", str(workdir / "cache"))
    try:
        proc.wait_ready()
        yield proc
    finally:
        assert proc.stop() == 0, proc.log()
