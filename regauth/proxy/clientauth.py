"""Client auth, required when the proxy listens beyond loopback: a shared token or an htpasswd file.

A client proves itself with ``Authorization: Bearer TOKEN``, or Basic with any user name and the token
as password (Docker, containerd and podman mirrors speak Basic from their own config), or Basic with a
user and password from the htpasswd file (bcrypt entries, as ``htpasswd -B`` writes). The token and
the file are read from files, never argv. Checked passwords are remembered by a hash of the header,
so bcrypt's cost is paid once per client, not per blob; the check itself runs on worker threads.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import stat
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from regauth.errors import UsageError
from regauth.proxy.errors import TOOMANYREQUESTS, UNAUTHORIZED, ApiError, error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# (password, bcrypt hash) -> whether they match; bcrypt.checkpw by default, a counting one in tests.
Verify = Callable[[bytes, bytes], bool]
# A token file or an htpasswd file of this many users is far past any real one.
_MAX_FILE_BYTES = 4 * 1024 * 1024
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="regauth proxy"'}


def _read_text(path: Path, option: str) -> str:
    try:
        # O_NONBLOCK and a regular file only: a FIFO would wait for a writer, /dev/zero never end.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise UsageError(f"{option} {path}: not a regular file")
            data = handle.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise UsageError(f"{option} {path}: larger than {_MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{option} {path}: it is not UTF-8 text") from None


def read_token_file(path: Path) -> str:
    token = _read_text(path, "--client-token-file").strip()
    if len(token) < 16:
        raise UsageError(f"--client-token-file {path}: the token must be at least 16 characters")
    return token


def read_htpasswd(path: Path) -> dict[str, bytes]:
    lines = _read_text(path, "--htpasswd").splitlines()
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


# Accepted Authorization headers remembered (their SHA-256), so a known client skips bcrypt.
_ACCEPTED_MAX = 4096


class ClientAuth:
    """Checks a client's ``Authorization``. bcrypt runs on ``workers`` threads, never on the event loop,
    with at most ``queue`` checks waiting (beyond that a 429, so a flood of guesses cannot queue up
    minutes of work); a user not in the file is checked against a dummy hash of the file's usual cost,
    so an unknown name costs what a wrong password does and user names cannot be told by timing."""

    def __init__(
        self,
        token: str | None,
        users: dict[str, bytes] | None,
        *,
        workers: int = 2,
        queue: int = 64,
        verify: Verify | None = None,
    ) -> None:
        self._token = token
        self._users = users or {}
        self._accepted: set[bytes] = set()
        self._verify = (verify or _bcrypt_verify()) if self._users else _refuse
        self._dummy = _dummy_hash(self._users) if self._users else b""
        self._workers = workers
        self._queue = queue
        self._slots = asyncio.Semaphore(workers)
        self._waiting = 0
        self._executor: ThreadPoolExecutor | None = None

    async def allows(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            return self._token is not None and hmac.compare_digest(_raw(value), self._token.encode())
        if scheme.lower() != "basic":
            return False
        fingerprint = hashlib.sha256(_raw(header)).digest()
        if fingerprint in self._accepted:
            return True
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        if not sep:
            return False
        ok = self._token_ok(password) or (bool(self._users) and await self._user_ok(user, password))
        if ok:
            if len(self._accepted) >= _ACCEPTED_MAX:
                # A client that holds the token can send it under endless user names: a bounded memo,
                # started afresh when full (the next checks of real clients cost one bcrypt each).
                self._accepted.clear()
            self._accepted.add(fingerprint)
        return ok

    def _token_ok(self, password: str) -> bool:
        return self._token is not None and hmac.compare_digest(password.encode(), self._token.encode())

    async def _user_ok(self, user: str, password: str) -> bool:
        known = self._users.get(user)
        if self._waiting >= self._queue:
            raise ApiError(429, TOOMANYREQUESTS, "too many sign-ins being checked; try again shortly")
        self._waiting += 1
        try:
            async with self._slots:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="regauth-bcrypt")
                loop = asyncio.get_running_loop()
                matched = await loop.run_in_executor(
                    self._executor, self._verify, password.encode(), known or self._dummy
                )
        finally:
            self._waiting -= 1
        return known is not None and matched

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def middleware(self) -> Middleware:
        @web.middleware
        async def client_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
            try:
                allowed = await self.allows(request.headers.get("Authorization", ""))
            except ApiError as busy:
                return error_response(busy)
            if not allowed:
                refusal = ApiError(401, UNAUTHORIZED, "authentication required", headers=_CHALLENGE)
                return error_response(refusal)
            return await handler(request)

        return client_auth


def _raw(text: str) -> bytes:
    # aiohttp keeps a header's undecodable bytes as surrogates: they are a wrong credential, not a 500.
    return text.encode("utf-8", "surrogateescape")


def _bcrypt_verify() -> Verify:
    try:
        import bcrypt
    except ImportError:
        raise UsageError("--htpasswd needs the bcrypt package: pip install bcrypt") from None

    def verify(password: bytes, hashed: bytes) -> bool:
        try:
            return bool(bcrypt.checkpw(password, hashed))
        except ValueError:
            # A malformed hash in the file (or a password bcrypt refuses): no match.
            return False

    return verify


def _refuse(password: bytes, hashed: bytes) -> bool:
    return False


def _dummy_hash(users: dict[str, bytes]) -> bytes:
    """A bcrypt hash of a random password with the cost most of the file's entries use."""
    import secrets

    import bcrypt

    costs = Counter(_cost(hashed) for hashed in users.values())
    cost = costs.most_common(1)[0][0]
    return bytes(bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost)))


def _cost(hashed: bytes) -> int:
    # $2y$10$...: the cost is the third field; bcrypt accepts 4..31.
    try:
        return min(31, max(4, int(hashed.split(b"$")[2])))
    except (IndexError, ValueError):
        return 12
