"""Smoke test of the real-registry fixtures: each set-up answers /v2/ the way its auth kind should."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest
from support.image import MANIFEST_V2
from support.registry import RegistryFixture


def _get(url: str, fx: RegistryFixture, authorization: str | None = None) -> tuple[int, dict[str, str]]:
    # Without Accept the registry tries to down-convert to schema 1 and answers 400.
    req = urllib.request.Request(url, headers={"Accept": MANIFEST_V2})
    if authorization:
        req.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(req, timeout=10, context=fx.ssl_context()) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers)


def _basic(fx: RegistryFixture) -> str:
    return "Basic " + base64.b64encode(f"{fx.username}:{fx.password}".encode()).decode()


def test_anonymous_registry_answers_200(registry_anon: RegistryFixture) -> None:
    assert registry_anon.url.startswith("http://") and registry_anon.ca_file is None
    status, headers = _get(f"{registry_anon.url}/v2/", registry_anon)
    assert status == 200
    assert headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    status, _ = _get(f"{registry_anon.url}/v2/test/app/manifests/1.0", registry_anon)
    assert status == 200


def test_htpasswd_registry_wants_basic_then_accepts(registry_htpasswd: RegistryFixture) -> None:
    fx = registry_htpasswd
    status, headers = _get(f"{fx.url}/v2/", fx)
    assert status == 401
    assert headers["Www-Authenticate"].lower().startswith("basic ")
    assert _get(f"{fx.url}/v2/", fx, _basic(fx))[0] == 200
    assert _get(f"{fx.url}/v2/{fx.repository}/manifests/{fx.digest}", fx, _basic(fx))[0] == 200


@pytest.mark.parametrize("path", ["/v2/", "/v2/test/app/manifests/1.0"])
def test_token_registry_wants_bearer_then_accepts(registry_token: RegistryFixture, path: str) -> None:
    fx = registry_token
    assert fx.token_server is not None
    status, headers = _get(f"{fx.url}{path}", fx)
    assert status == 401
    challenge = headers["Www-Authenticate"]
    assert challenge.startswith("Bearer ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    assert params["realm"] == fx.token_server.realm
    query = {"service": params["service"], **({"scope": params["scope"]} if "scope" in params else {})}
    before = fx.token_server.issued_count
    req = urllib.request.Request(f"{params['realm']}?{urllib.parse.urlencode(query)}")
    req.add_header("Authorization", _basic(fx))
    with urllib.request.urlopen(req, timeout=10, context=fx.ssl_context()) as resp:
        token = json.loads(resp.read())["token"]
    assert fx.token_server.issued_count == before + 1
    assert _get(f"{fx.url}{path}", fx, f"Bearer {token}")[0] == 200


def test_token_server_can_refuse_a_repository(registry_token: RegistryFixture) -> None:
    fx = registry_token
    assert fx.token_server is not None
    query = urllib.parse.urlencode({"service": fx.token_server.service, "scope": "repository:test/app:pull"})
    req = urllib.request.Request(f"{fx.token_server.realm}?{query}")
    req.add_header("Authorization", _basic(fx))
    with fx.token_server.refusing("test/app"):
        with urllib.request.urlopen(req, timeout=10, context=fx.ssl_context()) as resp:
            token = json.loads(resp.read())["token"]
    status, _ = _get(f"{fx.url}/v2/test/app/manifests/1.0", fx, f"Bearer {token}")
    assert status == 401
