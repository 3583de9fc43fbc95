"""Several identities for one registry through the proxy: each request is answered with the record of the
longest repository prefix that covers it, else the host-wide record, else refused as an unknown upstream.

Against the real token-auth registry, where bob may pull test/app and not org-b/app and dave the other
way round: only the right identity opens each repository, so a pull that succeeds proves which
credential the proxy used, and the token server's log says who asked for what.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.image import MANIFEST_V2, PushedImage, push_test_image
from support.proxy import Fake, ProxyProcess, add_upstream, proxy_client, start_fake
from support.records import add_record
from support.registry import RegistryFixture
from support.tokenserver import TokenServer

from regauth.config import Settings
from regauth.registries import RegistryBook

OTHER = "org-b/app"
UNCOVERED = "org-c/app"


@pytest.fixture
def pushed(registry_token: RegistryFixture) -> Iterator[dict[str, PushedImage]]:
    """test/app (bob's), org-b/app (dave's) and org-c/app (anyone's), with the per-user refusals."""
    fx, server = registry_token, registry_token.token_server
    assert server is not None and fx.username == "bob" and fx.password is not None
    images = {fx.repository: fx.image}
    for repository in (OTHER, UNCOVERED):
        images[repository] = push_test_image(
            fx.url, repository, context=fx.ssl_context(), username="bob", password=fx.password
        )
    server.refused_for.update({"bob": {OTHER}, "dave": {fx.repository}})
    try:
        yield images
    finally:
        server.refused_for.clear()


def _proxy(regauth_exe: str, tmp_path: Path) -> Iterator[ProxyProcess]:
    proc = ProxyProcess(regauth_exe, tmp_path, "--cache-dir", str(tmp_path / "cache"))
    try:
        proc.wait_ready()
        yield proc
    finally:
        assert proc.stop() == 0, proc.log()


@pytest.fixture
def proxy(regauth_exe: str, tmp_path: Path) -> Iterator[ProxyProcess]:
    yield from _proxy(regauth_exe, tmp_path)


def _skopeo(source: str, dest: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("skopeo")
    assert exe is not None, "skopeo is not installed; these tests need it (never skipped)"
    auth = tmp_path / "empty-auth.json"
    auth.write_text("{}")
    shutil.rmtree(dest, ignore_errors=True)
    argv = [exe, "copy", "--src-tls-verify=false", "--authfile", str(auth), source, f"dir:{dest}"]
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(auth)}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


def _pulled(dest: Path, image: PushedImage) -> bool:
    manifest = (dest / "manifest.json").read_bytes()
    blobs_ok = all(
        hashlib.sha256((dest / d.split(":")[1]).read_bytes()).hexdigest() == d.split(":")[1]
        for d in image.blob_digests
    )
    return "sha256:" + hashlib.sha256(manifest).hexdigest() == image.digest and blobs_ok


def _get(url: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Accept": MANIFEST_V2})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {}
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def _askers(server: TokenServer, repository: str) -> set[str | None]:
    """Who asked the token server for ``repository`` (the usernames, None for anonymous)."""
    with server._lock:
        requests = list(server.requests)
    return {r.username for r in requests if any(s.split(":")[1] == repository for s in r.scopes if ":" in s)}


def test_each_repository_pulls_with_its_own_identity(
    registry_token: RegistryFixture,
    pushed: dict[str, PushedImage],
    settings: Settings,
    proxy: ProxyProcess,
    tmp_path: Path,
) -> None:
    fx, server = registry_token, registry_token.token_server
    assert server is not None and fx.password is not None
    book = RegistryBook.for_settings(settings)
    # The prefix record first: a host lookup must not take the first record it sees for the host.
    add_record(
        book, fx.host, server.users["dave"], name="org-b", username="dave", prefix="org-b", ca_file=fx.ca_file
    )
    add_record(book, fx.host, fx.password, name="tok", username="bob", ca_file=fx.ca_file)
    server.reset_counts()

    # Through the host-wide record's name, and through the prefix record's name, which stands for
    # its location (so /org-b/app is org-b/app of the registry); each twice, the second from the
    # credentials and tokens the proxy keeps, which must not cross from one record to the other.
    for _ in range(2):
        for source, image in (
            (f"tok/{fx.repository}:{fx.tag}", pushed[fx.repository]),
            (f"org-b/app:{pushed[OTHER].tag}", pushed[OTHER]),
            (f"tok/{OTHER}:{pushed[OTHER].tag}", pushed[OTHER]),
        ):
            copied = _skopeo(f"docker://{proxy.host}/{source}", tmp_path / "image", tmp_path)
            assert copied.returncode == 0, copied.stderr
            assert _pulled(tmp_path / "image", image), source
    assert _askers(server, fx.repository) == {"bob"}
    assert _askers(server, OTHER) == {"dave"}

    # containerd's ns= route and the host route choose by repository too.
    host_route = f"{proxy.url}/v2/{fx.host}/{OTHER}/manifests/{pushed[OTHER].digest}"
    ns_route = f"{proxy.url}/v2/{fx.repository}/manifests/{fx.digest}?ns={fx.host}"
    assert _get(host_route)[0] == 200
    assert _get(ns_route)[0] == 200
    assert _askers(server, fx.repository) == {"bob"} and _askers(server, OTHER) == {"dave"}


def test_a_repository_no_record_covers_is_refused_unasked(
    registry_token: RegistryFixture,
    pushed: dict[str, PushedImage],
    settings: Settings,
    proxy: ProxyProcess,
    tmp_path: Path,
) -> None:
    fx, server = registry_token, registry_token.token_server
    assert server is not None and fx.password is not None
    book = RegistryBook.for_settings(settings)
    # Records for two prefixes of the registry, none for the whole host.
    add_record(book, fx.host, fx.password, name="org-t", username="bob", prefix="test", ca_file=fx.ca_file)
    add_record(
        book, fx.host, server.users["dave"], name="org-b", username="dave", prefix="org-b", ca_file=fx.ca_file
    )
    server.reset_counts()

    for source, image in (
        (f"org-t/app:{fx.tag}", pushed[fx.repository]),
        (f"org-b/app:{fx.tag}", pushed[OTHER]),
    ):
        copied = _skopeo(f"docker://{proxy.host}/{source}", tmp_path / "image", tmp_path)
        assert copied.returncode == 0, copied.stderr
        assert _pulled(tmp_path / "image", image), source

    before = server.issued_count
    for url in (
        f"{proxy.url}/v2/{fx.host}/{UNCOVERED}/manifests/{fx.tag}",
        f"{proxy.url}/v2/{UNCOVERED}/manifests/{fx.tag}?ns={fx.host}",
    ):
        status, body = _get(url)
        assert status == 403, url
        [error] = body["errors"]
        assert error["code"] == "DENIED"
        assert f"{fx.host}/{UNCOVERED} is under no registry configured on this proxy" in error["message"]
    # The same answer as for a host with no record at all: the registry is never asked.
    status, body = _get(f"{proxy.url}/v2/{UNCOVERED}/manifests/{fx.tag}?ns=127.0.0.2:1")
    assert status == 403 and "is not a registry configured on this proxy" in json.dumps(body)
    assert server.issued_count == before and _askers(server, UNCOVERED) == set()


async def test_docker_hub_prefix_records_open_only_their_prefix(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    fake = Fake(auth="basic")
    fake.add_image("myorg/app")
    await start_fake(aiohttp_server, fake)
    book = add_upstream(settings, "docker.io", name="hub-myorg", prefix="myorg")
    accept = {"Accept": MANIFEST_V2}
    client = await proxy_client(aiohttp_client, settings, book, docker_hub_url=fake.url)
    for path in ("/v2/myorg/app/manifests/1.0", "/v2/hub-myorg/app/manifests/1.0"):
        resp = await client.get(path, headers=accept)
        assert resp.status == 200, await resp.text()
        assert fake.seen[-1][1] == "/v2/myorg/app/manifests/1.0" and fake.seen[-1][2] is not None
    seen = len(fake.seen)
    resp = await client.get("/v2/library/alpine/manifests/1.0", headers=accept)
    assert resp.status == 403
    assert "docker.io/library/alpine is under no registry" in (await resp.json())["errors"][0]["message"]
    assert len(fake.seen) == seen
    # --docker-hub: the rest of Docker Hub anonymously, never with the prefix record's credential.
    hub = await proxy_client(aiohttp_client, settings, book, docker_hub=True, docker_hub_url=fake.url)
    resp = await hub.get("/v2/library/alpine/manifests/1.0", headers=accept)
    assert resp.status == 403 and "wants credentials and none are configured" in await resp.text()
    assert fake.seen[seen:] and all(auth is None for _, _, auth in fake.seen[seen:])
