"""The rest of the OCI distribution 1.1 pull API: the referrers API (with artifactType filtering) and
paginated tag lists, relayed from an upstream that plays by the spec or does not: its Link leads to
another host or repository, its body never ends, it has no referrers API at all."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from support.proxy import OCI_INDEX, add_upstream, digest_of, host_of, proxy_client

from regauth.config import Settings

SUBJECT = digest_of(b"the subject manifest")
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/spdx+json"
TAGS = [f"v{i}" for i in range(7)]


@dataclass
class Upstream:
    """``referrers``: None for a registry without the API (404). ``link``: what the tag list's Link
    says, as a template of ``{base}`` (this server), ``{last}`` and ``{n}``. ``endless``: bodies that
    never end."""

    referrers: list[dict[str, Any]] | None = field(default_factory=list)
    link: str = '</v2/org/app/tags/list?n={n}&last={last}>; rel="next"'
    endless: bool = False
    base: str = ""
    seen: list[str] = field(default_factory=list)


def upstream_app(up: Upstream) -> web.Application:
    async def base(request: web.Request) -> web.Response:
        return web.json_response({})

    async def endless(request: web.Request, content_type: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"tags": ["')
        while True:
            await response.write(b"x" * 65536)
            await asyncio.sleep(0)

    async def tags(request: web.Request) -> web.StreamResponse:
        up.seen.append(request.path_qs)
        if up.endless:
            return await endless(request, "application/json")
        n = int(request.query.get("n", "100"))
        last = request.query.get("last")
        rest = TAGS[TAGS.index(last) + 1 :] if last else TAGS
        page = rest[:n]
        headers = {}
        if len(rest) > n:
            headers["Link"] = up.link.format(base=up.base, n=n, last=page[-1])
        return web.json_response({"name": request.match_info["name"], "tags": page}, headers=headers)

    async def referrers(request: web.Request) -> web.StreamResponse:
        up.seen.append(request.path_qs)
        if up.referrers is None:
            return web.json_response({"errors": [{"code": "NOT_FOUND", "message": "no"}]}, status=404)
        if up.endless:
            return await endless(request, OCI_INDEX)
        found = [m for m in up.referrers if request.match_info["digest"] == SUBJECT]
        headers = {"Content-Type": OCI_INDEX}
        wanted = request.query.get("artifactType")
        if wanted:
            found = [m for m in found if m["artifactType"] == wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}
        return web.Response(body=json.dumps(body).encode(), headers=headers)

    app = web.Application()
    app.router.add_get("/v2/", base)
    app.router.add_get(r"/v2/{name:.+}/tags/list", tags)
    app.router.add_get(r"/v2/{name:.+}/referrers/{digest}", referrers)
    return app


async def _proxy(aiohttp_server: Any, aiohttp_client: Any, settings: Settings, up: Upstream) -> Any:
    server = await aiohttp_server(upstream_app(up))
    up.base = str(server.make_url("")).rstrip("/")
    book = add_upstream(settings, host_of(server), name="up", username=None)
    return await proxy_client(aiohttp_client, settings, book), host_of(server)


def _descriptor(artifact_type: str, n: int) -> dict[str, Any]:
    return {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest_of(f"{artifact_type}{n}".encode()),
        "size": 100 + n,
        "artifactType": artifact_type,
    }


async def test_referrers_are_relayed_with_the_artifact_type_filter(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    up = Upstream(referrers=[_descriptor(SIGNATURE, 1), _descriptor(SBOM, 2)])
    client, _ = await _proxy(aiohttp_server, aiohttp_client, settings, up)
    resp = await client.get(f"/v2/up/org/app/referrers/{SUBJECT}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == OCI_INDEX
    assert [m["artifactType"] for m in (await resp.json())["manifests"]] == [SIGNATURE, SBOM]
    resp = await client.get(f"/v2/up/org/app/referrers/{SUBJECT}", params={"artifactType": SBOM, "x": "1"})
    assert resp.status == 200
    assert resp.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["artifactType"] for m in (await resp.json())["manifests"]] == [SBOM]
    # Only the spec's parameter goes upstream.
    assert up.seen == [
        f"/v2/org/app/referrers/{SUBJECT}",
        f"/v2/org/app/referrers/{SUBJECT}?artifactType=application/spdx%2Bjson",
    ]
    head = await client.head(f"/v2/up/org/app/referrers/{SUBJECT}")
    assert head.status == 200


async def test_no_referrers_api_is_a_404_passed_on(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    up = Upstream(referrers=None)
    client, _ = await _proxy(aiohttp_server, aiohttp_client, settings, up)
    resp = await client.get(f"/v2/up/org/app/referrers/{SUBJECT}")
    # Clients fall back to the referrers tag schema (a tag named after the digest) on a 404.
    assert resp.status == 404
    assert (await resp.json())["errors"][0]["code"] == "NOT_FOUND"


async def test_referrers_of_something_that_is_not_a_digest_are_refused(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    up = Upstream()
    client, _ = await _proxy(aiohttp_server, aiohttp_client, settings, up)
    resp = await client.get("/v2/up/org/app/referrers/latest")
    assert resp.status == 400
    assert (await resp.json())["errors"][0]["code"] == "DIGEST_INVALID"
    assert up.seen == []


@pytest.mark.parametrize("kind", ["tags", "referrers"])
async def test_a_listing_that_never_ends_is_a_502(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, kind: str
) -> None:
    up = Upstream(endless=True)
    client, _ = await _proxy(aiohttp_server, aiohttp_client, settings, up)
    path = "/v2/up/org/app/tags/list" if kind == "tags" else f"/v2/up/org/app/referrers/{SUBJECT}"
    resp = await asyncio.wait_for(client.get(path), timeout=60)
    assert resp.status == 502
    assert "of more than 4194304 bytes" in (await resp.json())["errors"][0]["message"]
    # Still serving.
    up.endless = False
    assert (await client.get(path)).status == 200


async def test_tag_list_pages_pass_n_and_last_and_link_back_to_the_proxy(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    up = Upstream()
    client, _ = await _proxy(aiohttp_server, aiohttp_client, settings, up)
    got: list[str] = []
    path: str | None = "/v2/up/org/app/tags/list?n=3"
    while path is not None:
        resp = await client.get(path)
        assert resp.status == 200
        got += (await resp.json())["tags"]
        link = resp.headers.get("Link")
        path = link[1 : link.index(">")] if link else None
        if path is not None:
            assert path.startswith("/v2/up/org/app/tags/list?")
    assert got == TAGS
    assert up.seen == [
        "/v2/org/app/tags/list?n=3",
        "/v2/org/app/tags/list?n=3&last=v2",
        "/v2/org/app/tags/list?n=3&last=v5",
    ]


async def test_a_link_keeps_the_ns_the_client_routed_by(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings
) -> None:
    up = Upstream()
    client, host = await _proxy(aiohttp_server, aiohttp_client, settings, up)
    resp = await client.get("/v2/org/app/tags/list", params={"n": "2", "ns": host})
    assert resp.status == 200
    assert (
        resp.headers["Link"]
        == f'</v2/org/app/tags/list?n=2&last=v1&ns={host.replace(":", "%3A")}>; rel="next"'
    )
    assert up.seen == ["/v2/org/app/tags/list?n=2"]


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        # An absolute link to the upstream itself becomes the proxy's own path.
        (
            '<{base}/v2/org/app/tags/list?n={n}&last={last}>; rel="next"',
            '</v2/up/org/app/tags/list?n=2&last=v1>; rel="next"',
        ),
        # Elsewhere: another host, another repository, a path that climbs out. Never relayed.
        ('<https://elsewhere.example/v2/org/app/tags/list?last={last}>; rel="next"', None),
        ('</v2/org/secret/tags/list?last={last}>; rel="next"', None),
        ('</v2/org/app/../secret/tags/list?last={last}>; rel="next"', None),
        ("not a link", None),
        # A second link-value in the same header is another URL the client may follow: it is not
        # passed on unchecked beside the rewritten first one.
        (
            '</v2/org/app/tags/list?n={n}&last={last}>; rel="next", '
            '<https://elsewhere.example/v2/>; rel="prev"',
            '</v2/up/org/app/tags/list?n=2&last=v1>; rel="next"',
        ),
        ('</v2/org/app/tags/list?last={last}>; rel="next"; anchor="https://elsewhere.example/"x', None),
    ],
)
async def test_a_link_to_anywhere_but_this_repository_is_dropped(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, link: str, expected: str | None
) -> None:
    up = Upstream(link=link)
    client, _ = await _proxy(aiohttp_server, aiohttp_client, settings, up)
    resp = await client.get("/v2/up/org/app/tags/list?n=2")
    assert resp.status == 200
    assert resp.headers.get("Link") == expected
