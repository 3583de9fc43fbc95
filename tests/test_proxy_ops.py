"""Operating the proxy: metrics, an access log without secrets, client auth, option parsing."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from support.proxy import (
    MANIFEST_V2,
    PASSWORD,
    TOKEN_PREFIX,
    Fake,
    add_upstream,
    digest_of,
    host_of,
    proxy_client,
    start_fake,
    storage_app,
)

from regauth.cli import main
from regauth.config import Settings
from regauth.errors import UsageError
from regauth.proxy.options import check_exposure, is_loopback, parse_listen, parse_size


async def test_metrics(aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path) -> None:
    fake = Fake(auth="bearer")
    image = fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    client = await proxy_client(
        aiohttp_client, settings, add_upstream(settings, host_of(server)), cache_dir=tmp_path / "c"
    )
    path = f"/v2/fake/org/app/blobs/{digest_of(image['layer'])}"
    for _ in range(2):
        await (await client.get(path)).read()
    await (await client.get("/v2/nowhere.example/x/manifests/1")).read()
    text = await (await client.get("/metrics")).text()
    lines = set(text.splitlines())
    assert 'regauth_proxy_requests_total{method="GET",kind="blob",status="200"} 2' in lines
    assert 'regauth_proxy_requests_total{method="GET",kind="manifest",status="403"} 1' in lines
    assert 'regauth_proxy_cache_hits_total{kind="blob"} 1' in lines
    assert 'regauth_proxy_cache_misses_total{kind="blob"} 1' in lines
    assert "regauth_proxy_token_mints_total 1" in lines
    size = len(image["layer"])
    assert f'regauth_proxy_bytes_sent_total{{kind="blob",source="cache"}} {size}' in lines
    assert f'regauth_proxy_bytes_sent_total{{kind="blob",source="upstream"}} {size}' in lines
    assert f"regauth_proxy_cache_bytes {size}" in lines
    upstream = host_of(server)
    # One upstream fetch (its 401 and token round trip included); the second pull was a cache hit.
    assert f'regauth_proxy_upstream_seconds_count{{upstream="{upstream}"}} 1' in lines
    assert "# TYPE regauth_proxy_upstream_seconds histogram" in lines


async def test_access_log_has_one_line_per_request_and_no_secret(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = Fake(auth="bearer")
    image = fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    storage = await aiohttp_server(storage_app(fake, []))
    client = await proxy_client(aiohttp_client, settings, add_upstream(settings, host_of(server)))
    await (await client.get("/v2/fake/org/app/manifests/1.0", headers={"Accept": MANIFEST_V2})).read()
    fake.redirect_to = str(storage.make_url("")).rstrip("/")
    resp = await client.get(f"/v2/fake/org/app/blobs/{digest_of(image['layer'])}?token=CLIENTSECRET")
    assert resp.status == 200
    await resp.read()
    fake.token_down, fake.fail_status = True, 500
    await (await client.get("/v2/fake/org/app/manifests/2.0")).read()
    access = [r.getMessage() for r in caplog.records if r.name == "regauth.proxy.access"]
    assert len(access) == 3
    assert "GET /v2/fake/org/app/manifests/1.0 200" in access[0]
    # The fakes' own aiohttp access logs show what they were sent; only regauth's records count here.
    everything = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("regauth"))
    for secret in (PASSWORD, TOKEN_PREFIX, "SIGSECRET", "CLIENTSECRET"):
        assert secret not in everything


async def test_client_auth_token_and_htpasswd(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    fake = Fake(auth="none")
    fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"ci:{bcrypt.hashpw(b'ci-password', bcrypt.gensalt(rounds=4)).decode()}\n")
    token = "a-client-token-of-some-length"
    book = add_upstream(settings, host_of(server), username=None)
    client = await proxy_client(aiohttp_client, settings, book, client_token=token, htpasswd=htpasswd)

    def basic(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    for headers in ({}, basic("ci", "wrong"), {"Authorization": "Bearer nope"}, basic("x", "y")):
        resp = await client.get("/v2/fake/org/app/manifests/1.0", headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic ")
        assert (await resp.json())["errors"][0]["code"] == "UNAUTHORIZED"
    ok = (basic("anyone", token), {"Authorization": f"Bearer {token}"}, basic("ci", "ci-password"))
    for headers in ok:
        resp = await client.get("/v2/fake/org/app/manifests/1.0", headers={**headers, "Accept": MANIFEST_V2})
        assert resp.status == 200
    assert (await client.get("/metrics")).status == 401


def test_non_loopback_bind_needs_client_auth(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proxy", "--listen", "0.0.0.0:0"]) == 1
    err = capsys.readouterr().err
    assert "not a loopback address" in err and "--client-token-file" in err


def test_non_loopback_client_auth_needs_tls_or_an_explicit_cleartext_flag(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token"
    token.write_text("a-client-token-of-some-length\n")
    assert main(["proxy", "--listen", "0.0.0.0:0", "--client-token-file", str(token)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in clear" in err[0]
    assert "--tls-cert" in err[0] and "--accept-cleartext-credentials" in err[0]


@pytest.mark.parametrize(
    ("host", "client_auth", "tls", "cleartext", "refused"),
    [
        ("127.0.0.1", False, False, False, None),
        ("::1", True, False, False, None),
        ("0.0.0.0", False, True, True, "--client-token-file"),
        ("192.0.2.7", True, False, False, "--accept-cleartext-credentials"),
        ("192.0.2.7", True, True, False, None),
        ("192.0.2.7", True, False, True, None),
    ],
)
def test_exposure_rule(host: str, client_auth: bool, tls: bool, cleartext: bool, refused: str | None) -> None:
    """Loopback: anything. Elsewhere: client auth always, and TLS unless cleartext is accepted."""
    if refused is None:
        check_exposure(f"{host}:5000", host, client_auth=client_auth, tls=tls, cleartext=cleartext)
        return
    with pytest.raises(UsageError, match=refused):
        check_exposure(f"{host}:5000", host, client_auth=client_auth, tls=tls, cleartext=cleartext)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10GiB", 10 * 1024**3),
        ("500M", 500_000_000),
        ("1048576", 1048576),
        ("1.5k", 1500),
        ("2 MiB", 2 * 1024**2),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "10XB", "-5M", "0"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_size(text)


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert parse_listen("[::1]:5000") == ("::1", 5000)
    assert parse_listen(":5000") == ("127.0.0.1", 5000)
    with pytest.raises(UsageError):
        parse_listen("127.0.0.1")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.1") and not is_loopback("example.com")
