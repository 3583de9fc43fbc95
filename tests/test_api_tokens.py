"""API tokens: `regauth token create|list|revoke`, only hashes kept, Bearer auth with scopes (401, 403)."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from support.api import app_for, bearer, call, token

from regauth.api.tokens import TOKENS_FILE, TokenBook, digest
from regauth.config import Settings

ClientFactory = Callable[..., Awaitable[TestClient]]


def run(exe: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, *argv], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_create_prints_the_token_once_and_keeps_only_its_hash(regauth_exe: str, settings: Settings) -> None:
    done = run(regauth_exe, "token", "create", "ci", "--scope", "write")
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip()
    assert secret.startswith("rgt_") and len(secret) > 40 and "\n" not in secret
    assert "shown only now" in done.stderr and secret not in done.stderr
    path = settings.config_dir / TOKENS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert secret not in text and digest(secret) in text
    listed = run(regauth_exe, "token", "list")
    assert listed.returncode == 0 and "ci" in listed.stdout and "write" in listed.stdout
    assert secret not in listed.stdout
    as_json = json.loads(run(regauth_exe, "token", "list", "--json").stdout)
    assert [(t["name"], t["scope"]) for t in as_json] == [("ci", "write")]
    assert TokenBook.for_settings(settings).verify(secret) is not None


def test_create_refuses_bad_input_in_one_line(regauth_exe: str) -> None:
    assert run(regauth_exe, "token", "create", "ci", "--scope", "read").returncode == 0
    for argv, said in (
        (("ci", "--scope", "read"), "already exists"),
        (("bad name", "--scope", "read"), "invalid token name"),
        (("cli", "--scope", "read"), "reserved"),
    ):
        done = run(regauth_exe, "token", "create", *argv)
        assert done.returncode == 1 and said in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and not done.stdout
    wrong_scope = run(regauth_exe, "token", "create", "x", "--scope", "admin")
    assert wrong_scope.returncode == 2


def test_revoke(regauth_exe: str, settings: Settings) -> None:
    secret = run(regauth_exe, "token", "create", "ci", "--scope", "read").stdout.strip()
    done = run(regauth_exe, "token", "revoke", "ci")
    assert done.returncode == 0 and "revoked" in done.stdout
    assert TokenBook.for_settings(settings).verify(secret) is None
    again = run(regauth_exe, "token", "revoke", "ci")
    assert again.returncode == 1 and "no token named 'ci'" in again.stderr


async def test_bearer_auth_401_and_403(aiohttp_client: ClientFactory, settings: Settings) -> None:
    client = await aiohttp_client(app_for(settings))
    reader = token(settings, "reader", "read")
    writer = token(settings, "writer", "write")
    body: dict[str, Any] = {"name": "x", "url": "127.0.0.1:1", "insecure": True, "validate": False}
    status, data, headers = await call(client, "GET", "/api/v1/registries", None)
    assert status == 401 and data["errors"][0]["code"] == "UNAUTHORIZED"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    for header in ("Bearer rgt_unknown", "Basic dTpw", "Bearer", "Bearer " + "x" * 5000):
        resp = await client.get("/api/v1/registries", headers={"Authorization": header})
        assert resp.status == 401, header
        assert (await resp.json())["errors"][0]["code"] == "UNAUTHORIZED"
    assert (await call(client, "GET", "/api/v1/registries", reader))[0] == 200
    status, data, _ = await call(client, "POST", "/api/v1/registries", reader, body)
    assert (
        status == 403
        and data["errors"][0]["code"] == "FORBIDDEN"
        and "'read'" in data["errors"][0]["message"]
    )
    assert (await call(client, "DELETE", "/api/v1/registries/x", reader))[0] == 403
    assert (await call(client, "POST", "/api/v1/registries", writer, body))[0] == 201
    # read may validate: it changes nothing but the record's last validation
    assert (await call(client, "POST", "/api/v1/registries/x/validate", reader))[0] == 200
    TokenBook.for_settings(settings).revoke("writer")
    assert (await call(client, "GET", "/api/v1/registries", writer))[0] == 401


async def test_public_paths_need_no_token(aiohttp_client: ClientFactory, settings: Settings) -> None:
    client = await aiohttp_client(app_for(settings))
    assert (await client.get("/healthz")).status == 200
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200 and (await resp.json())["openapi"] == "3.1.0"


async def test_a_damaged_token_file_is_one_clear_error(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    token(settings, "reader", "read")
    path: Path = settings.config_dir / TOKENS_FILE
    path.write_text("{not json")
    client = await aiohttp_client(app_for(settings))
    resp = await client.get("/api/v1/registries", headers=bearer("rgt_x"))
    assert resp.status == 503
    assert "is damaged" in (await resp.json())["errors"][0]["message"]
