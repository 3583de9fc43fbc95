"""``BoundedSession``, the HTTP under every token mint with a pod's token and every ACR exchange, against
hostile local HTTPS stand-ins: a body that trickles forever, one that floods, a compressed answer, a
redirect elsewhere. Each is cut short with a ``requests`` error, which the SDKs map into their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme
from support.providers import Endless, StandIn, stand_in, write_ca

from regauth.providers.bounded import BodyTooLarge, BoundedSession


@pytest.fixture
def verify(ca: trustme.CA, tmp_path: Path) -> str:
    return str(write_ca(ca, tmp_path))


@pytest.fixture
def site(ca: trustme.CA) -> Iterator[StandIn]:
    with stand_in(ca, {"/token": lambda path, form: (200, {"access_token": "t"})}) as server:
        yield server


def test_an_answer_passes_whole(site: StandIn, verify: str) -> None:
    session = BoundedSession(10)
    response = session.post(f"{site.url}/token", data={"a": "b"}, verify=verify)
    assert response.json() == {"access_token": "t"} and session.statuses == [200]
    # The body can be read again as a stream too, as azure-core reads it.
    assert response.raw.read() == response.content
    assert site.headers[0]["Accept-Encoding"] == "identity"


def test_a_trickle_that_never_ends_is_cut_at_the_deadline(ca: trustme.CA, verify: str) -> None:
    trickle = Endless(chunk=b" ", pause=0.02)
    with stand_in(ca, {"/token": lambda path, form: (200, trickle)}) as server:
        session = BoundedSession(0.5)
        with pytest.raises(requests.exceptions.ReadTimeout, match="no complete answer within 0.5s"):
            session.post(f"{server.url}/token", verify=verify)
        assert trickle.gone.wait(30)
        # The deadline is the mint's, not the request's: the next request is not even sent.
        with pytest.raises(requests.exceptions.ReadTimeout):
            session.post(f"{server.url}/token", verify=verify)
        assert server.hits["/token"] == 1


def test_a_flood_is_cut_at_the_cap(ca: trustme.CA, verify: str) -> None:
    flood = Endless()
    with stand_in(ca, {"/token": lambda path, form: (200, flood)}) as server:
        with pytest.raises(BodyTooLarge, match="passed 65536 bytes"):
            BoundedSession(30, max_body=65536).post(f"{server.url}/token", verify=verify)
        assert flood.gone.wait(30) and flood.sent < Endless.LIMIT


def test_a_compressed_answer_is_refused(site: StandIn, verify: str) -> None:
    site.response_headers = {"Content-Encoding": "gzip"}
    with pytest.raises(requests.exceptions.ContentDecodingError, match="gzip-encoded"):
        BoundedSession(10).post(f"{site.url}/token", verify=verify)


def test_a_redirect_is_not_followed(ca: trustme.CA, site: StandIn, verify: str) -> None:
    with stand_in(ca, {"/token": lambda path, form: (307, {})}) as redirecting:
        redirecting.response_headers = {"Location": f"{site.url}/token"}
        response = BoundedSession(10).post(f"{redirecting.url}/token", data={"secret": "s"}, verify=verify)
    assert response.status_code == 307 and not site.hits
