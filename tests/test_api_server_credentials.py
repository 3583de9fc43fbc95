"""An API caller cannot make the server spend its own credentials: its variables, files, AWS profiles
or cloud identity, sent to a host the caller picks (unless ``serve --allow-server-credentials``)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from support.api import app_for, call, token

from regauth import cli
from regauth.config import Settings
from regauth.registries import Registry, RegistryBook

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
ServerFactory = Callable[..., Awaitable[TestServer]]
_V2 = {"Docker-Distribution-API-Version": "registry/2.0"}
_FLAG = "--allow-server-credentials"


class Capture:
    """A hostile registry on loopback (and an ECR API, for the server's AWS identity): what it saw."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        self.aws_calls: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/v2/", self.registry)
        app.router.add_post("/", self.ecr_api)
        return app

    async def registry(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization", ""))
        return web.Response(status=401, headers={**_V2, "WWW-Authenticate": 'Basic realm="r"'})

    async def ecr_api(self, request: web.Request) -> web.Response:
        self.aws_calls.append(request.headers.get("X-Amz-Target", ""))
        token = base64.b64encode(b"AWS:minted-with-the-servers-identity").decode()
        data = {"authorizationData": [{"authorizationToken": token, "expiresAt": time.time() + 3600}]}
        return web.Response(text=json.dumps(data), content_type="application/x-amz-json-1.1")


def _basic(username: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()


async def test_an_option_naming_a_server_variable_is_refused_unless_allowed(
    aiohttp_client: ClientFactory, aiohttp_server: ServerFactory, settings: Settings
) -> None:
    capture = Capture()
    server = await aiohttp_server(capture.app())
    served = settings._replace(environ={**settings.environ, "SERVER_ONLY": "server-secret-7"})
    writer = token(settings, "writer", "write")
    body: dict[str, Any] = {
        "name": "lab",
        "url": f"127.0.0.1:{server.port}",
        "insecure": True,
        "provider": "env",
        "options": {"secret_env": "SERVER_ONLY", "username": "x"},
    }
    client = await aiohttp_client(app_for(served))
    for path in ("/api/v1/validate", "/api/v1/registries"):
        status, data, _ = await call(client, "POST", path, writer, body)
        assert status == 422, data
        error = data["errors"][0]
        assert error["field"] == "options" and "secret_env" in error["message"], error
        assert _FLAG in error["message"] and "server-secret-7" not in json.dumps(data)
    assert capture.authorizations == [] and RegistryBook.for_settings(settings).all() == []
    # started with the opt-in, the server does what it was told
    allowed = await aiohttp_client(app_for(served, server_credentials=True))
    status, data, _ = await call(allowed, "POST", "/api/v1/validate", writer, body)
    assert status == 200 and _basic("x", "server-secret-7") in capture.authorizations, data


@pytest.mark.parametrize(
    ("provider", "options", "named"),
    [
        ("env", {"username_env": "USER", "secret_env": "HOME"}, "secret_env"),
        ("gcp", {"key_file": "KEY"}, "key_file"),
        ("acr", {"credential": "certificate", "certificate_file": "KEY"}, "certificate_file"),
        ("acr", {"credential": "workload", "token_file": "KEY"}, "token_file"),
        ("ecr", {"profile": "default", "region": "us-east-1"}, "profile"),
        ("ecr", {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:1"}, "endpoint_url"),
        ("acr", {"login_server_url": "http://127.0.0.1:1"}, "login_server_url"),
    ],
)
async def test_options_naming_server_files_and_destinations_are_refused(
    aiohttp_client: ClientFactory,
    settings: Settings,
    tmp_path: Path,
    provider: str,
    options: dict[str, str],
    named: str,
) -> None:
    key = tmp_path / "server-key.pem"
    key.write_text("server-only\n")
    options = {k: str(key) if v == "KEY" else v for k, v in options.items()}
    client = await aiohttp_client(app_for(settings))
    writer = token(settings, "writer", "write")
    body = {"url": "127.0.0.1:1", "insecure": True, "provider": provider, "options": options}
    status, data, _ = await call(client, "POST", "/api/v1/validate", writer, body)
    assert status == 422 and data["errors"][0]["field"] == "options", data
    assert f"option {named} " in data["errors"][0]["message"] and str(key) not in json.dumps(data)


async def test_the_servers_aws_identity_mints_only_for_an_ecr_host(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server's AWS identity (here static keys, and an ECR API on loopback where boto3 looks for
    # it) would mint a token and send it to whatever host the record names.
    capture = Capture()
    server = await aiohttp_server(capture.app())
    aws = {
        "AWS_ACCESS_KEY_ID": "AKIASERVERONLY",
        "AWS_SECRET_ACCESS_KEY": "server-only",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.port}",
    }
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    client = await aiohttp_client(app_for(settings._replace(environ={**settings.environ, **aws})))
    writer = token(settings, "writer", "write")
    body = {
        "url": f"127.0.0.1:{server.port}",
        "insecure": True,
        "provider": "ecr",
        "options": {"region": "us-east-1"},
    }
    status, data, _ = await call(client, "POST", "/api/v1/validate", writer, body)
    assert status == 422 and data["errors"][0]["field"] == "url", data
    assert "no ecr registry host" in data["errors"][0]["message"] and _FLAG in data["errors"][0]["message"]
    assert capture.aws_calls == [] and capture.authorizations == []


async def test_a_patch_cannot_move_a_record_using_server_credentials(
    aiohttp_client: ClientFactory, aiohttp_server: ServerFactory, settings: Settings
) -> None:
    # The CLI's user acts as themselves: their record may name the server's variable.
    capture = Capture()
    server = await aiohttp_server(capture.app())
    argv = ["registry", "add", "ci", "--url", "127.0.0.1:1", "--insecure", "--provider", "env"]
    assert (
        cli.main([*argv, "--option", "secret_env=CI_TOKEN", "--option", "username=x", "--no-validate"]) == 0
    )
    client = await aiohttp_client(app_for(settings))
    writer = token(settings, "writer", "write")
    moved = {"url": f"127.0.0.1:{server.port}"}
    status, data, _ = await call(client, "PATCH", "/api/v1/registries/ci", writer, moved)
    assert status == 422 and "secret_env" in data["errors"][0]["message"], data
    assert capture.authorizations == []
    assert RegistryBook.for_settings(settings).get("ci").registry == "127.0.0.1:1"
    # a change that sends nothing anywhere new stays allowed
    status, data, _ = await call(client, "PATCH", "/api/v1/registries/ci", writer, {"active": False})
    assert status == 200 and data["active"] is False, data


def test_a_record_of_the_servers_own_registry_stays_allowed(settings: Settings) -> None:
    from regauth.registry_ops import server_resource_problem

    for provider, host in (
        ("ecr", "123456789012.dkr.ecr.us-east-1.amazonaws.com"),
        ("acr", "lab.azurecr.io"),
        ("gcp", "europe-docker.pkg.dev"),
        ("env", "ghcr.io"),
        ("static", "127.0.0.1:1"),
    ):
        assert server_resource_problem(Registry(id="", name="r", registry=host, provider=provider)) is None
