"""Pulling through the proxy from in-process fake registries: auth, routing, streaming, Range, redirects."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from support.proxy import (
    MANIFEST_V2,
    OCI_INDEX,
    Fake,
    add_upstream,
    digest_of,
    host_of,
    proxy_client,
    start_fake,
    storage_app,
)

from regauth.config import Settings


async def _setup(aiohttp_server: Any, aiohttp_client: Any, settings: Settings, fake: Fake, **options: Any):  # type: ignore[no-untyped-def]
    image = fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    book = add_upstream(settings, host_of(server), username=None if fake.auth == "none" else "proxyuser")
    client = await proxy_client(aiohttp_client, settings, book, **options)
    return image, server, client


async def test_bearer_pull_by_name_tag_and_digest(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    fake = Fake(auth="bearer")
    image, _, client = await _setup(aiohttp_server, aiohttp_client, settings, fake)
    resp = await client.get("/v2/fake/org/app/manifests/1.0", headers={"Accept": MANIFEST_V2})
    assert resp.status == 200, await resp.text()
    assert await resp.read() == image["manifest"]
    assert resp.headers["Docker-Content-Digest"] == image["digest"]
    assert resp.headers["Content-Type"] == MANIFEST_V2
    resp = await client.get(f"/v2/fake/org/app/manifests/{image['digest']}")
    assert resp.status == 200 and await resp.read() == image["manifest"]
    layer_digest = digest_of(image["layer"])
    resp = await client.get(f"/v2/fake/org/app/blobs/{layer_digest}")
    assert resp.status == 200
    assert await resp.read() == image["layer"]
    assert resp.headers["Docker-Content-Digest"] == layer_digest
    assert int(resp.headers["Content-Length"]) == len(image["layer"])
    # One token for the scope; later requests carried it without a 401 round-trip.
    assert fake.mints == 1
    assert sum(1 for _, _, auth in fake.seen if auth is None) == 1


async def test_basic_auth_upstream_by_ns_like_containerd(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    fake = Fake(auth="basic")
    image, server, client = await _setup(aiohttp_server, aiohttp_client, settings, fake)
    resp = await client.get(
        f"/v2/org/app/manifests/1.0?ns={host_of(server)}", headers={"Accept": MANIFEST_V2}
    )
    assert resp.status == 200, await resp.text()
    assert await resp.read() == image["manifest"]
    assert fake.seen[-1][1] == "/v2/org/app/manifests/1.0"


async def test_head_keeps_length_and_digest_without_body(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    fake = Fake(auth="none")
    image, _, client = await _setup(aiohttp_server, aiohttp_client, settings, fake)
    resp = await client.head("/v2/fake/org/app/manifests/1.0", headers={"Accept": MANIFEST_V2})
    assert resp.status == 200
    assert resp.headers["Docker-Content-Digest"] == image["digest"]
    assert int(resp.headers["Content-Length"]) == len(image["manifest"])
    layer_digest = digest_of(image["layer"])
    resp = await client.head(f"/v2/fake/org/app/blobs/{layer_digest}")
    assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(image["layer"])
    assert await resp.read() == b""


async def test_accept_is_passed_through_for_an_index(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    fake = Fake(auth="none")
    _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, fake)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    fake.manifests["multi"] = (OCI_INDEX, index)
    resp = await client.get(
        "/v2/fake/org/app/manifests/multi", headers={"Accept": f"{OCI_INDEX}, {MANIFEST_V2}"}
    )
    assert resp.status == 200 and resp.headers["Content-Type"] == OCI_INDEX
    assert await resp.read() == index


async def test_docker_hub_default_with_library_prefix(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    fake = Fake(auth="bearer")
    fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    book = add_upstream(settings, host_of(server))
    client = await proxy_client(aiohttp_client, settings, book, docker_hub=True, docker_hub_url=fake.url)
    resp = await client.get("/v2/alpine/manifests/1.0", headers={"Accept": MANIFEST_V2})
    assert resp.status == 200, await resp.text()
    assert fake.seen[-1][1] == "/v2/library/alpine/manifests/1.0"
    resp = await client.get("/v2/org/app/manifests/1.0?ns=docker.io", headers={"Accept": MANIFEST_V2})
    assert resp.status == 200
    assert fake.seen[-1][1] == "/v2/org/app/manifests/1.0"


async def test_docker_hub_by_record_and_no_docker_hub(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    fake = Fake(auth="basic")
    fake.add_image()
    await start_fake(aiohttp_server, fake)
    book = add_upstream(settings, "docker.io", name="hub")
    accept = {"Accept": MANIFEST_V2}
    # Default: a docker.io record turns the Docker Hub route on, with the record's credential.
    client = await proxy_client(aiohttp_client, settings, book, docker_hub_url=fake.url)
    resp = await client.get("/v2/library/alpine/manifests/1.0", headers=accept)
    assert resp.status == 200 and fake.seen[-1][2] is not None
    # --no-docker-hub: no prefix is refused; naming Docker Hub still works.
    off = await proxy_client(aiohttp_client, settings, book, docker_hub=False, docker_hub_url=fake.url)
    resp = await off.get("/v2/library/alpine/manifests/1.0", headers=accept)
    assert resp.status == 404
    for path in (
        "/v2/library/alpine/manifests/1.0?ns=docker.io",
        "/v2/docker.io/library/alpine/manifests/1.0",
    ):
        resp = await off.get(path, headers=accept)
        assert resp.status == 200, path


async def test_range_request(aiohttp_server: Any, aiohttp_client: Any, settings: Settings) -> None:
    fake = Fake(auth="none")
    image, _, client = await _setup(aiohttp_server, aiohttp_client, settings, fake)
    resp = await client.get(
        f"/v2/fake/org/app/blobs/{digest_of(image['layer'])}", headers={"Range": "bytes=10-99"}
    )
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes 10-99/{len(image['layer'])}"
    assert await resp.read() == image["layer"][10:100]


async def test_redirect_to_storage_drops_authorization(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    fake = Fake(auth="basic")
    image, _, client = await _setup(aiohttp_server, aiohttp_client, settings, fake)
    storage_seen: list[tuple[str, str | None]] = []
    storage = await aiohttp_server(storage_app(fake, storage_seen))
    fake.redirect_to = str(storage.make_url("")).rstrip("/")
    digest = digest_of(image["layer"])
    resp = await client.get(f"/v2/fake/org/app/blobs/{digest}")
    assert resp.status == 200
    assert await resp.read() == image["layer"]
    assert resp.headers["Docker-Content-Digest"] == digest
    assert fake.seen[-1][2] is not None and fake.seen[-1][2].startswith("Basic ")
    assert storage_seen == [(f"/store/{digest}?X-Amz-Signature=SIGSECRET", None)]


async def test_tags_list(aiohttp_server: Any, aiohttp_client: Any, settings: Settings) -> None:
    fake = Fake(auth="bearer")
    _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, fake)
    resp = await client.get("/v2/fake/org/app/tags/list?n=10")
    assert resp.status == 200
    assert (await resp.json())["tags"] == ["1.0"]
    assert fake.seen[-1][1] == "/v2/org/app/tags/list?n=10"


async def test_200_concurrent_cold_pulls_fetch_one_token(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    fake = Fake(auth="bearer", token_delay=0.2)
    image, _, client = await _setup(aiohttp_server, aiohttp_client, settings, fake)
    path = f"/v2/fake/org/app/blobs/{digest_of(image['layer'])}"

    async def pull() -> bytes:
        async with client.get(path) as resp:
            assert resp.status == 200
            return await resp.read()

    bodies = await asyncio.wait_for(asyncio.gather(*(pull() for _ in range(200))), timeout=60)
    assert all(body == image["layer"] for body in bodies)
    assert fake.mints == 1


async def test_the_clients_authorization_is_never_forwarded(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    fake = Fake(auth="none")
    _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, fake)
    headers = {"Authorization": "Bearer CLIENT-OWN-TOKEN", "Accept": MANIFEST_V2}
    resp = await client.get("/v2/fake/org/app/manifests/1.0", headers=headers)
    assert resp.status == 200
    assert fake.seen[-1][2] is None


async def test_base_endpoint_answers_locally(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    fake = Fake(auth="bearer")
    _, _, client = await _setup(aiohttp_server, aiohttp_client, settings, fake)
    for path in ("/v2/", "/v2"):
        resp = await client.get(path)
        assert resp.status == 200
        assert resp.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
