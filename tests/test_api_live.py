"""One book, live everywhere: the API, the CLI and the helper's `store` write the same records under the
same lock; a running `regauth proxy` picks up what the API creates (by name and by id) and drops what
it disables or deletes; and a canary secret created through the API is found nowhere it could leak."""

from __future__ import annotations

import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from support.api import Served, app_for, body_for, http, start_serve, token
from support.image import MANIFEST_V2
from support.proxy import ProxyProcess
from support.registry import RegistryFixture

from regauth.config import Settings
from regauth.registries import RegistryBook, stored_secret
from regauth.store.lazy import LazyStore

ClientFactory = Callable[..., Awaitable[TestClient]]
# A bound on a wait, not a measurement: the proxy re-reads a changed registries file within a second.
_WAIT = 15.0


@pytest.fixture
def served(regauth_exe: str, tmp_path: Path) -> Iterator[Served]:
    server = start_serve(regauth_exe, log_dir=tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _cli_token(exe: str, name: str, scope: str) -> str:
    done = subprocess.run([exe, "token", "create", name, "--scope", scope], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_concurrent_api_creates_cli_adds_and_helper_stores_lose_nothing(
    served: Served, regauth_exe: str, helper_exe: str, settings: Settings
) -> None:
    tok = _cli_token(regauth_exe, "ci", "write")

    def api_create(n: int) -> int:
        body = {
            "name": f"api-{n}",
            "url": f"127.0.0.1:{20000 + n}",
            "username": "u",
            "password": f"api-pw-{n}",
        }
        status, data, _ = http("POST", f"{served.url}/api/v1/registries", tok, {**body, "validate": False})
        assert status == 201, data
        return status

    def cli_add(n: int) -> int:
        argv = [regauth_exe, "registry", "add", f"cli-{n}", "--url", f"127.0.0.1:{21000 + n}", "--insecure"]
        argv += ["--no-validate", "--username", "u", "--password-stdin"]
        done = subprocess.run(argv, input=f"cli-pw-{n}\n", capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return 0

    def helper_store(n: int) -> int:
        request = f'{{"ServerURL":"127.0.0.1:{22000 + n}","Username":"h","Secret":"helper-pw-{n}"}}'
        done = subprocess.run(
            [helper_exe, "store"], input=request, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return 0

    jobs = [(api_create, n) for n in range(32)] + [(cli_add, n) for n in range(8)]
    jobs += [(helper_store, n) for n in range(4)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        for future in [pool.submit(func, n) for func, n in jobs]:
            future.result()
    records = {r.name: r for r in RegistryBook.for_settings(settings).all()}
    assert len(records) == 44 and len({r.id for r in records.values()}) == 44
    store = LazyStore.for_settings(settings)
    for n in range(32):
        assert stored_secret(store, records[f"api-{n}"]) == f"api-pw-{n}"
        assert records[f"api-{n}"].created_by == "ci"
    for n in range(8):
        assert stored_secret(store, records[f"cli-{n}"]) == f"cli-pw-{n}"
    status, _, headers = http("GET", f"{served.url}/api/v1/registries?page_size=1", tok)
    assert status == 200 and headers["X-Total-Count"] == "44"


def _pull_status(proxy: ProxyProcess, prefix: str, fx: RegistryFixture) -> int:
    url = f"{proxy.url}/v2/{prefix}/{fx.repository}/manifests/{fx.tag}"
    request = urllib.request.Request(url, headers={"Accept": MANIFEST_V2})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _until(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + _WAIT
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_a_running_proxy_serves_what_the_api_creates_by_name_and_id(
    served: Served, regauth_exe: str, registry_htpasswd: RegistryFixture, tmp_path: Path
) -> None:
    fx = registry_htpasswd
    tok = _cli_token(regauth_exe, "ci", "write")
    proxy = ProxyProcess(regauth_exe, tmp_path)
    try:
        proxy.wait_ready()
        assert _pull_status(proxy, "ht", fx) == 403 or _pull_status(proxy, "ht", fx) == 404
        status, created, _ = http("POST", f"{served.url}/api/v1/registries", tok, body_for(fx, "ht"))
        assert status == 201, created
        assert _until(lambda: _pull_status(proxy, "ht", fx) == 200), proxy.log()
        assert _pull_status(proxy, created["id"], fx) == 200
        status, _, _ = http("PATCH", f"{served.url}/api/v1/registries/ht", tok, {"active": False})
        assert status == 200
        assert _until(lambda: _pull_status(proxy, "ht", fx) != 200), proxy.log()
        assert _pull_status(proxy, created["id"], fx) != 200
        assert http("PATCH", f"{served.url}/api/v1/registries/ht", tok, {"active": True})[0] == 200
        assert _until(lambda: _pull_status(proxy, "ht", fx) == 200), proxy.log()
        assert http("DELETE", f"{served.url}/api/v1/registries/{created['id']}", tok)[0] == 204
        assert _until(lambda: _pull_status(proxy, created["id"], fx) != 200), proxy.log()
        assert _pull_status(proxy, "ht", fx) != 200
    finally:
        proxy.stop()
    assert fx.password and fx.password not in proxy.log()


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def test_a_canary_secret_is_found_nowhere(
    aiohttp_client: ClientFactory,
    settings: Settings,
    registry_htpasswd: RegistryFixture,
    registry_token: RegistryFixture,
    isolated_env: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    canary = "canary-" + secrets.token_hex(16)
    client = await aiohttp_client(app_for(settings))
    writer = token(settings, "writer", "write")
    reader = token(settings, "reader", "read")
    answers: list[str] = []

    async def record(method: str, path: str, tok: str | None, body: object = None) -> int:
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        resp = await client.request(method, path, headers=headers, json=body)
        answers.append(f"{resp.status} {dict(resp.headers)} {await resp.text()}")
        return resp.status

    fx = registry_token
    # Saved unchecked, then checked (wrong credentials), changed, listed, read, checked unsaved, refused.
    body = body_for(fx, "tok", password=canary, validate=False)
    assert await record("POST", "/api/v1/registries", writer, body) == 201
    assert await record("POST", "/api/v1/registries/tok/validate", reader) == 200
    assert await record("PATCH", "/api/v1/registries/tok", writer, {"password": canary}) == 400
    assert (
        await record("PATCH", "/api/v1/registries/tok", writer, {"password": canary, "validate": False})
        == 200
    )
    assert await record("POST", "/api/v1/validate", writer, body_for(fx, "x", password=canary)) == 200
    assert await record("POST", "/api/v1/registries", writer, body_for(fx, "tok", password=canary)) == 409
    assert await record("POST", "/api/v1/registries", reader, body) == 403
    assert await record("POST", "/api/v1/registries", writer, {**body, "username": "a:b"}) == 422
    assert await record("POST", "/api/v1/registries", canary, body) == 401
    for path in ("/api/v1/registries", "/api/v1/registries/tok", "/api/v1/events", "/api/v1/openapi.json"):
        assert await record("GET", path, reader) == 200
    # The console's pages, signed in.
    origin = f"http://{client.host}:{client.port}"
    await client.post("/login", data={"token": writer}, headers={"Origin": origin})
    rid = RegistryBook.for_settings(settings).get("tok").id
    for path in ("/", f"/registries/{rid}/edit", "/registries/new"):
        resp = await client.get(path)
        answers.append(await resp.text())
    form = {"name": "tok", "url": fx.host, "username": fx.username or "", "password": canary, "validate": "1"}
    resp = await client.post(f"/registries/{rid}/edit", data=form, headers={"Origin": origin})
    answers.append(await resp.text())
    # The secret is stored (encrypted), and nowhere in any answer, page, log line or file in the clear.
    assert (
        stored_secret(LazyStore.for_settings(settings), RegistryBook.for_settings(settings).get("tok"))
        == canary
    )
    for text in answers:
        assert canary not in text
    assert canary not in caplog.text
    for path, data in _all_files(isolated_env).items():
        assert canary.encode() not in data, path


def test_the_proxy_serves_the_api_too(
    regauth_exe: str, registry_htpasswd: RegistryFixture, tmp_path: Path
) -> None:
    """`regauth proxy --api-listen`: one process, the pulls and the API, over the one book."""
    from support.registry import free_port

    fx = registry_htpasswd
    tok = _cli_token(regauth_exe, "ci", "write")
    api = f"http://127.0.0.1:{free_port()}"
    proxy = ProxyProcess(regauth_exe, tmp_path, "--api-listen", api.removeprefix("http://"))
    try:
        proxy.wait_ready()
        status, created, _ = http("POST", f"{api}/api/v1/registries", tok, body_for(fx, "ht"))
        assert status == 201, created
        assert _until(lambda: _pull_status(proxy, created["id"], fx) == 200), proxy.log()
    finally:
        assert proxy.stop() == 0
    log = proxy.log()
    assert "regauth serve: listening on" in log and "POST /api/v1/registries 201" in log
    assert tok not in log and (fx.password or "") not in log
    refused = subprocess.run(
        [regauth_exe, "proxy", "--api-listen", "0.0.0.0:0"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1 and "not a loopback address and has no TLS" in refused.stderr
