"""Helpers of the API tests: the app in-process over the test's settings, tokens, and JSON calls."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from regauth.api.app import make_api_app
from regauth.api.tokens import TokenBook
from regauth.audit import AuditLog
from regauth.config import Settings
from regauth.registries import RegistryBook
from regauth.store.lazy import LazyStore
from support.registry import RegistryFixture, free_port


def app_for(settings: Settings, **kwargs: Any) -> web.Application:
    store = LazyStore.for_settings(settings)
    return make_api_app(settings, RegistryBook(settings, store), store, **kwargs)


def token(settings: Settings, name: str, scope: str) -> str:
    return TokenBook.for_settings(settings).create(name, scope)[1]


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def body_for(fx: RegistryFixture, name: str, **extra: Any) -> dict[str, Any]:
    """A create body for the fixture registry, with its CA as text and its first user's password."""
    body: dict[str, Any] = {"name": name, "url": fx.host}
    if fx.ca_file:
        with open(fx.ca_file) as pem:
            body["ca_pem"] = pem.read()
    else:
        body["insecure"] = True
    if fx.username:
        body["username"] = fx.username
        body["password"] = fx.password
    body.update(extra)
    return body


async def call(
    client: TestClient, method: str, path: str, tok: str | None, body: Any = None
) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body or None, headers) of one API call."""
    headers = bearer(tok) if tok else {}
    resp = await client.request(method, path, headers=headers, json=body)
    text = await resp.text()
    data = json.loads(text) if text and resp.content_type == "application/json" else None
    return resp.status, data, dict(resp.headers)


def events(settings: Settings) -> list[dict[str, Any]]:
    return AuditLog.for_settings(settings).read()


@dataclass
class Served:
    """A `regauth serve` process on loopback; its stderr goes to ``log`` (a file: a pipe nobody reads
    would fill and stall the server)."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> str:
        """Stops it (SIGTERM) and answers everything it wrote to stderr."""
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=20)
        return self.log.read_text(errors="replace")


def start_serve(exe: str, *extra: str, log_dir: Path, env: dict[str, str] | None = None) -> Served:
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [exe, "serve", "--listen", f"127.0.0.1:{port}", *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=out,
            env=env or dict(os.environ),
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        text = log.read_text(errors="replace")
        if "listening on" in text:
            scheme = "https" if "https://" in text else "http"
            return Served(f"{scheme}://127.0.0.1:{port}", process, log)
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=10)
    raise AssertionError(f"regauth serve did not start: {log.read_text(errors='replace')}")


def http(
    method: str, url: str, tok: str | None = None, body: Any = None, context: Any = None
) -> tuple[int, Any, dict[str, str]]:
    """One call to a running server, with the standard library (no aiohttp on this side)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **(bearer(tok) if tok else {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as resp:
            raw, status, got = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(), exc.code, dict(exc.headers)
    return status, (json.loads(raw) if raw else None), got
