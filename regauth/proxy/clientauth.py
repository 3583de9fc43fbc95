"""Client auth, required when the proxy listens beyond loopback: a shared token or an htpasswd file.

A client proves itself with ``Authorization: Bearer TOKEN``, or Basic with any user name and the token
as password (Docker, containerd and podman mirrors speak Basic from their own config), or Basic with a
user and password from the htpasswd file (bcrypt entries, as ``htpasswd -B`` writes). The token and
the file are read from files, never argv. Checked passwords are remembered by a hash of the header,
so bcrypt's cost is paid once per client, not per blob.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from regauth.errors import UsageError
from regauth.proxy.errors import UNAUTHORIZED, ApiError, error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="regauth proxy"'}


def read_token_file(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"--client-token-file {path}: {exc.strerror}") from None
    if len(token) < 16:
        raise UsageError(f"--client-token-file {path}: the token must be at least 16 characters")
    return token


def read_htpasswd(path: Path) -> dict[str, bytes]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"--htpasswd {path}: {exc.strerror}") from None
    users: dict[str, bytes] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, hashed = line.strip().partition(":")
        if not sep or not hashed.startswith(("$2y$", "$2b$", "$2a$")):
            raise UsageError(
                f"--htpasswd {path} line {number}: only bcrypt entries (htpasswd -B) are accepted"
            )
        users[user] = hashed.encode()
    if not users:
        raise UsageError(f"--htpasswd {path}: no users")
    return users


class ClientAuth:
    def __init__(self, token: str | None, users: dict[str, bytes] | None) -> None:
        self._token = token
        self._users = users or {}
        self._accepted: set[bytes] = set()

    def allows(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            return self._token is not None and hmac.compare_digest(value.encode(), self._token.encode())
        if scheme.lower() != "basic":
            return False
        fingerprint = hashlib.sha256(header.encode()).digest()
        if fingerprint in self._accepted:
            return True
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        ok = bool(sep) and (self._token_ok(password) or self._user_ok(user, password))
        if ok:
            self._accepted.add(fingerprint)
        return ok

    def _token_ok(self, password: str) -> bool:
        return self._token is not None and hmac.compare_digest(password.encode(), self._token.encode())

    def _user_ok(self, user: str, password: str) -> bool:
        hashed = self._users.get(user)
        if hashed is None:
            return False
        try:
            import bcrypt
        except ImportError:
            raise UsageError("--htpasswd needs the bcrypt package: pip install bcrypt") from None
        return bool(bcrypt.checkpw(password.encode(), hashed))

    def middleware(self) -> Middleware:  # type: ignore[type-arg]
        @web.middleware
        async def client_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not self.allows(request.headers.get("Authorization", "")):
                error = ApiError(401, UNAUTHORIZED, "authentication required", headers=_CHALLENGE)
                return error_response(error)
            return await handler(request)

        return client_auth
