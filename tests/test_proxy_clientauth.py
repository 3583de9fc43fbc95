"""Client auth with ``--htpasswd``: bcrypt off the event loop, bounded, and the same work for a user
name that is not in the file as for one that is (no user enumeration by timing). The real bcrypt runs;
a wrapper only counts its calls and where they ran. No timing is asserted."""

from __future__ import annotations

import asyncio
import base64
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from support.proxy import MANIFEST_V2, Fake, add_upstream, host_of, start_fake

from regauth.config import Settings
from regauth.proxy.clientauth import ClientAuth, read_htpasswd
from regauth.proxy.errors import ApiError

USERS = {"ci": b"ci-password", "dev": b"dev-password"}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class CountingBcrypt:
    """bcrypt.checkpw, recording each call's hash, thread and how many ran at once."""

    calls: list[bytes] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)
    running: int = 0
    most: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        with self.lock:
            self.calls.append(hashed)
            self.threads.add(threading.get_ident())
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return bool(bcrypt.checkpw(password, hashed))
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    lines = [f"{u}:{bcrypt.hashpw(p, bcrypt.gensalt(rounds=5)).decode()}" for u, p in USERS.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_an_unknown_user_costs_a_bcrypt_check_like_a_known_one(htpasswd: Path) -> None:
    users = read_htpasswd(htpasswd)
    counting = CountingBcrypt()
    auth = ClientAuth(None, users, verify=counting)
    try:
        assert not await auth.allows(basic("ci", "wrong"))
        assert counting.calls == [users["ci"]]
        assert not await auth.allows(basic("nobody", "wrong"))
        assert len(counting.calls) == 2
        dummy = counting.calls[1]
        # A real hash of the file's cost, not one of its users': the same work, and never a match.
        assert dummy not in users.values() and dummy.startswith(b"$2b$05$")
        assert not await auth.allows(basic("nobody", "ci-password"))
        assert counting.calls[2] == dummy
        # Never on the event loop's thread.
        assert threading.get_ident() not in counting.threads
        assert await auth.allows(basic("ci", "ci-password"))
        assert len(counting.calls) == 4
        # Remembered: the next request of that client costs no bcrypt.
        assert await auth.allows(basic("ci", "ci-password"))
        assert len(counting.calls) == 4
    finally:
        auth.close()


async def test_bcrypt_checks_are_bounded(htpasswd: Path) -> None:
    counting = CountingBcrypt()
    auth = ClientAuth(None, read_htpasswd(htpasswd), workers=2, queue=6, verify=counting)
    try:
        results = await asyncio.gather(
            *(auth.allows(basic(f"guess{i}", "x")) for i in range(20)), return_exceptions=True
        )
    finally:
        auth.close()
    refused = [r for r in results if isinstance(r, ApiError)]
    # Six were checked (two at a time at most); the rest were told to come back, without a bcrypt.
    assert results.count(False) == 6 and len(counting.calls) == 6
    assert len(refused) == 14 and {r.status for r in refused} == {429}
    assert counting.most <= 2


async def test_the_proxy_answers_while_bcrypt_works(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, htpasswd: Path
) -> None:
    """End to end through the proxy: wrong, unknown and right users, all answered correctly."""
    from support.proxy import proxy_client

    fake = Fake(auth="none")
    fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    book = add_upstream(settings, host_of(server), username=None)
    client = await proxy_client(aiohttp_client, settings, book, htpasswd=htpasswd)
    path = "/v2/fake/org/app/manifests/1.0"
    answers = await asyncio.gather(
        *(
            client.get(path, headers={"Authorization": basic(user, password), "Accept": MANIFEST_V2})
            for user, password in [("ci", "no"), ("ghost", "no"), ("dev", "dev-password")] * 3
        )
    )
    assert [a.status for a in answers] == [401, 401, 200] * 3
    for answer in answers:
        answer.release()


async def test_an_authorization_that_is_no_utf8_is_refused_not_a_500(
    aiohttp_server: Any, aiohttp_client: Any, settings: Settings, htpasswd: Path
) -> None:
    """Raw bytes on the wire: aiohttp keeps the undecodable ones as surrogates in the header value."""
    from support.proxy import proxy_client

    fake = Fake(auth="none")
    fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    book = add_upstream(settings, host_of(server), username=None)
    client = await proxy_client(
        aiohttp_client, settings, book, htpasswd=htpasswd, client_token="a-client-token-of-16+"
    )
    for value in (b"Basic \xff\xfe", b"Bearer \xff", b"Basic " + base64.b64encode(b"ci:\xff")):
        reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
        writer.write(
            b"GET /v2/ HTTP/1.1\r\nHost: p\r\nAuthorization: " + value + b"\r\nConnection: close\r\n\r\n"
        )
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 401 "), (value, answer[:60])


async def test_the_memo_of_accepted_headers_stays_bounded() -> None:
    # A client holding the token may send it under any user name: each spelling is a new header.
    auth = ClientAuth("the-token", None)
    for n in range(10_000):
        header = "Basic " + base64.b64encode(f"user{n}:the-token".encode()).decode()
        assert await auth.allows(header)
    assert len(auth._accepted) <= 4096
    assert not await auth.allows("Basic " + base64.b64encode(b"user:wrong").decode())
