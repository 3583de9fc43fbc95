"""``--serve-stale``: while an upstream is unreachable (refusing connections, 5xx, a read that times
out, a token endpoint that is down, a 429), a tag's last known manifest is served, marked with a
Warning and its Age and counted in the metrics, up to the configured age; never in place of a refusal
(a 404 says the tag is gone), and not at all unless asked for."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.proxy import MANIFEST_V2, Fake, add_upstream, host_of, proxy_client, start_fake

from regauth.config import Settings

TAG_PATH = "/v2/fake/org/app/manifests/1.0"
ACCEPT = {"Accept": MANIFEST_V2}


async def _setup(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path, **options: Any
) -> tuple[Fake, Any, Any, Any]:
    fake = Fake(auth="bearer")
    image = fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    book = add_upstream(settings, host_of(server))
    # No TTL: every pull of the tag asks the upstream, so only staleness answers from memory.
    options = {"cache_dir": tmp_path / "cache", "manifest_tag_ttl": 0, "serve_stale": 60.0, **options}
    client = await proxy_client(aiohttp_client, settings, book, **options)
    resp = await client.get(TAG_PATH, headers=ACCEPT)
    assert resp.status == 200 and await resp.read() == image["manifest"]
    assert "Warning" not in resp.headers
    return fake, image, server, client


async def _assert_stale(client: Any, image: dict[str, Any], count: int) -> None:
    resp = await client.get(TAG_PATH, headers=ACCEPT)
    assert resp.status == 200, await resp.text()
    assert await resp.read() == image["manifest"]
    assert resp.headers["Warning"].startswith('110 regauth "Response is Stale')
    assert int(resp.headers["Age"]) >= 0
    assert resp.headers["Docker-Content-Digest"] == image["digest"]
    metrics = await (await client.get("/metrics")).text()
    assert "regauth_proxy_stale_manifests_total{upstream=" in metrics
    assert f"}} {count}" in metrics.split("regauth_proxy_stale_manifests_total{", 1)[1].splitlines()[0]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_a_failing_upstream_gets_the_last_known_manifest(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path, status: int
) -> None:
    fake, image, _, client = await _setup(aiohttp_server, aiohttp_client, settings, tmp_path)
    fake.fail_status = status
    await _assert_stale(client, image, 1)
    head = await client.head(TAG_PATH, headers=ACCEPT)
    assert head.status == 200 and "Warning" in head.headers
    # Back up: fresh again, no warning.
    fake.fail_status = None
    resp = await client.get(TAG_PATH, headers=ACCEPT)
    assert resp.status == 200 and "Warning" not in resp.headers


async def test_an_unreachable_upstream_gets_the_last_known_manifest(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    _, image, server, client = await _setup(aiohttp_server, aiohttp_client, settings, tmp_path)
    await server.close()  # connections refused from now on
    await _assert_stale(client, image, 1)


async def test_a_stalled_upstream_gets_it_too(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    fake, image, _, client = await _setup(
        aiohttp_server, aiohttp_client, settings, tmp_path, read_timeout=1.0
    )
    fake.slow = 30  # answers nothing within the read timeout
    await asyncio.wait_for(_assert_stale(client, image, 1), timeout=20)


async def test_a_tag_never_fetched_is_not_invented(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    fake, _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, tmp_path)
    fake.fail_status = 503
    for path in ("/v2/fake/org/other/manifests/1.0", "/v2/fake/org/app/manifests/2.0"):
        resp = await client.get(path, headers=ACCEPT)
        assert resp.status == 503 and "Warning" not in resp.headers
    # Another Accept is another manifest (an index or one image): not the one that was fetched.
    resp = await client.get(TAG_PATH, headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    assert resp.status == 503


async def test_a_refusal_is_relayed_not_covered_up(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    fake, _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, tmp_path)
    del fake.manifests["1.0"]  # the tag was deleted: the upstream says so, it is not down
    resp = await client.get(TAG_PATH, headers=ACCEPT)
    assert resp.status == 404
    assert "Warning" not in resp.headers


async def test_too_old_is_not_served(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    fake, _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, tmp_path, serve_stale=0.5)
    await asyncio.sleep(1.0)
    fake.fail_status = 503
    resp = await client.get(TAG_PATH, headers=ACCEPT)
    assert resp.status == 503


async def test_off_by_default(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    fake, _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, tmp_path, serve_stale=0.0)
    fake.fail_status = 503
    resp = await client.get(TAG_PATH, headers=ACCEPT)
    assert resp.status == 503


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--serve-stale", "3600"], "regauth: error: --serve-stale needs --cache-dir"),
        (["--serve-stale", "-1", "--cache-dir", "CACHE"], "regauth: error: argument --serve-stale:"),
    ],
)
def test_bad_serve_stale_is_one_line(
    regauth_exe: str, tmp_path: Path, argv: list[str], expected: str
) -> None:
    argv = [str(tmp_path / "c") if a == "CACHE" else a for a in argv]
    done = subprocess.run(
        [regauth_exe, "proxy", "--listen", "127.0.0.1:0", *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), done.stderr
