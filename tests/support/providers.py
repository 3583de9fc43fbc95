"""Local HTTPS stand-ins for the cloud token endpoints the provider tests point the real SDKs at, and moto.

``StandIn`` is a threaded ``http.server`` behind TLS from a ``trustme`` CA (or plain HTTP, as a local
managed identity endpoint is); each route is a function of (path, form) -> (status, JSON body), where the
form is the query string's parameters and the urlencoded body's. Every request is counted per path, and
its form, headers and raw body are recorded. A route that answers an ``Endless`` instead of a JSON body
sends a body that never ends, as a hostile endpoint does.
"""

from __future__ import annotations

import base64
import collections
import json
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from moto.server import ThreadedMotoServer

from regauth.config import Settings
from regauth.registries import RegistryBook
from regauth.store.base import SecretStore
from regauth.store.lazy import LazyStore
from support.serving import serving


class Endless:
    """A body that never ends: ``chunk`` after ``chunk`` (``pause`` seconds apart) until the client
    goes away; ``sent`` counts the bytes, ``gone`` is set once the client closed the connection."""

    # A hang guard only: far more than any client under test reads.
    LIMIT = 256 << 20

    def __init__(self, chunk: bytes = b"x" * 16384, pause: float = 0.0) -> None:
        self.chunk = chunk
        self.pause = pause
        self.sent = 0
        self.gone = threading.Event()


Route = Callable[[str, dict[str, str]], tuple[int, "dict[str, Any] | Endless"]]


class StandIn:
    def __init__(self, server: ThreadingHTTPServer, routes: dict[str, Route], tls: bool = True) -> None:
        self.server = server
        self.routes = routes
        self.tls = tls
        self.hits: collections.Counter[str] = collections.Counter()
        self.forms: list[dict[str, str]] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[str] = []
        self.stopping = threading.Event()
        # Sent with every response, e.g. a short Retry-After so that an SDK's retries of a 5xx are quick.
        self.response_headers: dict[str, str] = {}
        self.lock = threading.Lock()

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.netloc}"


@contextmanager
def stand_in(ca: trustme.CA, routes: dict[str, Route], *, tls: bool = True) -> Iterator[StandIn]:
    holder: list[StandIn] = []

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            path = url.path
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            form = dict(urllib.parse.parse_qsl(url.query))
            form.update(urllib.parse.parse_qsl(body))
            site = holder[0]
            with site.lock:
                site.hits[path] += 1
                site.forms.append(form)
                site.headers.append(dict(self.headers.items()))
                site.bodies.append(body)
            route = site.routes.get(path)
            status, payload = route(path, form) if route else (404, {"error": "not_found"})
            if isinstance(payload, Endless):
                self._endless(site, status, payload)
                return
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in site.response_headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _endless(self, site: StandIn, status: int, body: Endless) -> None:
            # HTTP/1.0 and no Content-Length: the body ends when the connection does, which is never.
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            try:
                while body.sent < Endless.LIMIT and not site.stopping.is_set():
                    self.wfile.write(body.chunk)
                    self.wfile.flush()
                    body.sent += len(body.chunk)
                    if body.pause:
                        time.sleep(body.pause)
            except OSError:
                body.gone.set()
            self.close_connection = True

        do_GET = _serve
        do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    site = StandIn(server, routes, tls)
    holder.append(site)
    with serving(server, before_stop=site.stopping.set):
        yield site


def fake_jwt(claims: dict[str, Any]) -> str:
    """An unsigned JWT: the providers read claims (tid, exp) but never verify a token."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.c2ln"


def write_ca(ca: trustme.CA, directory: Path) -> Path:
    path = directory / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def now() -> float:
    return time.time()


def start_moto(monkeypatch: pytest.MonkeyPatch) -> ThreadedMotoServer:
    """A moto server on 127.0.0.1, with boto3 pointed at it through its own settings and fake keys.

    The caller stops it: the tests that use this one stop it mid-test, to prove a cache answers alone.
    """
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    return server


def credential_in_fresh_process(host: str, watched: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``credential_for(host)`` in a new interpreter, as the helper's ``get`` runs it: the credential's
    (username, secret) and which of the ``watched`` modules it imported."""
    code = (
        "import json, sys\n"
        "from regauth.config import load_settings\n"
        "from regauth.registries import RegistryBook\n"
        "from regauth.providers.routing import credential_for\n"
        "from regauth.store.lazy import LazyStore\n"
        "s = load_settings()\n"
        "store = LazyStore.for_settings(s)\n"
        f"c = credential_for(s, RegistryBook(s, store), store, {host!r})\n"
        f"loaded = [m for m in {watched!r} if m in sys.modules]\n"
        "print(json.dumps([[c.username, c.secret], loaded]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    credential, loaded = json.loads(out)
    return credential, loaded


def book_and_store(settings: Settings) -> tuple[RegistryBook, SecretStore]:
    """The registry book and the secret store of ``settings``, as an edge opens them: the store once,
    lazily, handed to the book and to the routing."""
    store = LazyStore.for_settings(settings)
    return RegistryBook(settings, store), store
