"""A small Docker token server (the `auth.token` realm) for tests, run in a thread with its own loop.

It knows a few users, issues ES256 JWTs signed by a certificate of the test CA (the chain goes in the
``x5c`` header, and the registry trusts the CA through ``rootcertbundle``), and speaks both the GET
realm form (basic auth or anonymous, ``offline_token=true`` for a refresh token) and the OAuth2 POST
form (``grant_type=password`` and ``grant_type=refresh_token``). A test can refuse every scope of a
repository (the token then grants an empty access list) and read how many tokens it issued.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import trustme
from aiohttp import web

SERVICE = "regauth-test-registry"
ISSUER = "regauth-test-issuer"


@dataclass
class TokenRequest:
    """What the server saw of one request (no secrets), for tests that check how a client asked."""

    method: str
    grant_type: str | None
    username: str | None
    scopes: list[str]
    client_id: str | None
    offline: bool
    status: int = 0


@dataclass
class TokenServer:
    """Handle on a running token server; the mutable fields may be changed by tests at any time."""

    url: str
    realm: str
    service: str
    issuer: str
    users: dict[str, str]
    refused: set[str] = field(default_factory=set)
    # Per user: repositories that user is granted nothing on (one identity per repository prefix).
    refused_for: dict[str, set[str]] = field(default_factory=dict)
    # Per user: the only actions that user holds on any repository (absent: every action asked for).
    actions_for: dict[str, set[str]] = field(default_factory=dict)
    expires_in: int = 300
    issued: int = 0
    requests: list[TokenRequest] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    def refuse(self, repository: str) -> None:
        """Grant no action on ``repository`` from now on (the no-permission case)."""
        with self._lock:
            self.refused.add(repository)

    def allow(self, repository: str) -> None:
        with self._lock:
            self.refused.discard(repository)

    @contextlib.contextmanager
    def refusing(self, repository: str) -> Iterator[None]:
        """Refuse ``repository`` inside the block only (the server is shared by the whole session)."""
        self.refuse(repository)
        try:
            yield
        finally:
            self.allow(repository)

    @contextlib.contextmanager
    def granting(self, username: str, actions: set[str]) -> Iterator[None]:
        """Inside the block, ``username`` holds only ``actions`` (a pull-only account: ``{"pull"}``);
        a token grants the intersection with what was asked, as distribution's spec has it."""
        with self._lock:
            self.actions_for[username] = set(actions)
        try:
            yield
        finally:
            with self._lock:
                self.actions_for.pop(username, None)

    @property
    def issued_count(self) -> int:
        with self._lock:
            return self.issued

    def reset_counts(self) -> None:
        with self._lock:
            self.issued = 0
            self.requests.clear()

    def new_refresh_token(self, username: str) -> str:
        """A refresh (identity) token for ``username``, as `docker login` would have received."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.refresh_tokens[token] = username
        return token

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


class _Issuer:
    """Turns an authenticated subject and requested scopes into a signed JWT."""

    def __init__(self, server: TokenServer, signer: trustme.LeafCert) -> None:
        self.server = server
        self.key = signer.private_key_pem.bytes()
        self.x5c = [_der_b64(pem.bytes()) for pem in signer.cert_chain_pems]

    def mint(self, subject: str | None, scopes: list[str]) -> tuple[str, int, str]:
        now = int(time.time())
        claims = {
            "iss": self.server.issuer,
            "sub": subject or "",
            "aud": self.server.service,
            "exp": now + self.server.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": self._access(subject, scopes),
        }
        token = jwt.encode(claims, self.key, algorithm="ES256", headers={"x5c": self.x5c})
        with self.server._lock:
            self.server.issued += 1
        issued_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return token, self.server.expires_in, issued_at

    def _access(self, subject: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            with self.server._lock:
                refused = name in self.server.refused or name in self.server.refused_for.get(
                    subject or "", set()
                )
                held = self.server.actions_for.get(subject or "")
            # Anonymous callers get nothing: this is a private registry.
            if kind != "repository" or not name or refused or subject is None:
                continue
            asked = actions.split(",")
            granted = asked if held is None else [a for a in asked if a in held]
            access.append({"type": kind, "name": name, "actions": granted})
        return access


def _der_b64(pem: bytes) -> str:
    body = b"".join(line for line in pem.splitlines() if line and not line.startswith(b"-----"))
    return body.decode()


def _basic(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    user, _, password = base64.b64decode(value).decode().partition(":")
    return user, password


def _make_app(server: TokenServer, issuer: _Issuer) -> web.Application:
    def check_password(user: str, password: str) -> bool:
        return server.users.get(user) == password

    def record(req: TokenRequest) -> None:
        with server._lock:
            server.requests.append(req)

    async def get_token(request: web.Request) -> web.Response:
        query = request.query
        scopes = [s for value in query.getall("scope", []) for s in value.split(" ") if s]
        offline = query.get("offline_token", "").lower() == "true"
        creds = _basic(request)
        req = TokenRequest("GET", None, creds[0] if creds else None, scopes, query.get("client_id"), offline)
        record(req)
        if creds is not None and not check_password(*creds):
            req.status = 401
            return _unauthorized()
        subject = creds[0] if creds else None
        token, expires_in, issued_at = issuer.mint(subject, scopes)
        body: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": expires_in,
            "issued_at": issued_at,
        }
        if offline and subject is not None:
            body["refresh_token"] = server.new_refresh_token(subject)
        req.status = 200
        return web.json_response(body)

    async def post_token(request: web.Request) -> web.Response:
        form = await request.post()
        grant = str(form.get("grant_type", ""))
        scopes = [s for s in str(form.get("scope", "")).split(" ") if s]
        offline = str(form.get("access_type", "")) == "offline"
        client_id = str(form["client_id"]) if "client_id" in form else None
        req = TokenRequest("POST", grant, None, scopes, client_id, offline)
        record(req)
        subject: str | None = None
        if grant == "password":
            user, password = str(form.get("username", "")), str(form.get("password", ""))
            subject = user if check_password(user, password) else None
            req.username = user
        elif grant == "refresh_token":
            with server._lock:
                subject = server.refresh_tokens.get(str(form.get("refresh_token", "")))
            req.username = subject
        if subject is None or client_id is None:
            req.status = 401 if grant in ("password", "refresh_token") else 400
            return web.json_response({"error": "invalid_grant"}, status=req.status)
        token, expires_in, issued_at = issuer.mint(subject, scopes)
        body: dict[str, Any] = {"access_token": token, "expires_in": expires_in, "issued_at": issued_at}
        if offline or grant == "refresh_token":
            body["refresh_token"] = (
                str(form["refresh_token"]) if grant == "refresh_token" else server.new_refresh_token(subject)
            )
        req.status = 200
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/token", get_token)
    app.router.add_post("/token", post_token)
    return app


def _unauthorized() -> web.Response:
    body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required", "detail": None}]}
    return web.json_response(body, status=401)


def start_token_server(
    ca: trustme.CA, server_ssl: ssl.SSLContext, users: dict[str, str], timeout: float = 10.0
) -> TokenServer:
    """Start the server on 127.0.0.1 (HTTPS, a free port) in a daemon thread; ``stop()`` ends it."""
    signer = ca.issue_cert("token-signer.regauth.test", common_name="regauth test token signer")
    loop = asyncio.new_event_loop()
    holder: dict[str, web.AppRunner] = {}
    server = TokenServer(url="", realm="", service=SERVICE, issuer=ISSUER, users=dict(users))
    app = _make_app(server, _Issuer(server, signer))

    async def serve() -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl)
        await site.start()
        holder["runner"] = runner
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        return int(sock.getsockname()[1])

    thread = threading.Thread(target=loop.run_forever, name="token-server", daemon=True)
    thread.start()
    port = asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout)
    server.url = f"https://127.0.0.1:{port}"
    server.realm = f"{server.url}/token"

    def stop() -> None:
        runner = holder.get("runner")
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        loop.close()

    server._stop = stop
    return server
