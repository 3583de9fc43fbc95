"""The gcp provider: real google-auth, a service-account key whose token URI is a local HTTPS stand-in.

google-auth's requests transport trusts the test CA through ``REQUESTS_CA_BUNDLE``. The stand-in
counts token requests, so cache hits, re-mints and the single mint under concurrency are observable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from support.providers import StandIn, book_and_store, stand_in, write_ca

from regauth.config import load_settings
from regauth.errors import ProviderError
from regauth.providers.base import Credential
from regauth.providers.cache import CachedToken
from regauth.providers.routing import credential_for, record_credential
from regauth.registries import Registry
from regauth.store.base import SecretStore

HOST = "europe-docker.pkg.dev"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class TokenEndpoint:
    """Answers the JWT-bearer grant with numbered tokens; ``fail`` turns it into invalid_grant."""

    def __init__(self) -> None:
        self.issued = 0
        self.fail = False
        self.lock = threading.Lock()

    def __call__(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.fail or form.get("grant_type") != JWT_BEARER or not form.get("assertion"):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        time.sleep(0.05)  # widen the race the concurrency tests exercise
        with self.lock:
            self.issued += 1
            return 200, {
                "access_token": f"ya29.token-{self.issued}",
                "expires_in": 3600,
                "token_type": "Bearer",
            }


@pytest.fixture
def endpoint() -> TokenEndpoint:
    return TokenEndpoint()


@pytest.fixture
def google(ca: trustme.CA, endpoint: TokenEndpoint) -> Iterator[StandIn]:
    with stand_in(ca, {"/token": endpoint}) as site:
        yield site


@pytest.fixture(scope="module")
def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode()


@pytest.fixture
def key_file(
    google: StandIn, ca: trustme.CA, private_key_pem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    path = tmp_path / "sa.json"
    data = {
        "type": "service_account",
        "project_id": "regauth-test",
        "private_key_id": "k1",
        "private_key": private_key_pem,
        "client_email": "puller@regauth-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"{google.url}/token",
    }
    path.write_text(json.dumps(data))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(write_ca(ca, tmp_path)))
    return path


@pytest.fixture
def ambient(key_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    return key_file


def age_cached_token(store: SecretStore, minted_ago: float, expires_in: float) -> None:
    (key,) = [k for k in store.keys() if k.startswith(f"token/gcp/{HOST}/")]
    old = CachedToken.from_text(store.get(key) or "")
    assert old is not None
    now = time.time()
    store.set(key, CachedToken(old.username, old.secret, now + expires_in, now - minted_ago).to_text())


def test_ambient_token_then_cache_hit(ambient: Path, google: StandIn) -> None:
    settings = load_settings()
    book, store = book_and_store(settings)
    first = credential_for(settings, book, store, HOST)
    second = credential_for(settings, book, store, f"https://{HOST}/v2/")
    assert (
        first == second == Credential("oauth2accesstoken", "ya29.token-1", first.expires_at if first else 0)
    )
    assert first is not None and first.expires_at is not None
    assert abs(first.expires_at - (time.time() + 3600)) < 120
    assert google.hits["/token"] == 1


def test_record_key_file_on_any_host(key_file: Path, google: StandIn) -> None:
    settings = load_settings()
    book, store = book_and_store(settings)
    options = {"key_file": str(key_file)}
    book.add(Registry(id="", name="ar", registry="127.0.0.1:5998", provider="gcp", options=options), None)
    cred = credential_for(settings, book, store, "127.0.0.1:5998")
    assert cred is not None and cred.secret == "ya29.token-1"


def test_unsaved_record_validates_without_caching(key_file: Path, google: StandIn) -> None:
    settings = load_settings()
    book, store = book_and_store(settings)
    record = Registry(id="", name="ar", registry=HOST, provider="gcp", options={"key_file": str(key_file)})
    for expected in ("ya29.token-1", "ya29.token-2"):
        assert (record_credential(settings, store, record) or Credential("", "")).secret == expected
    assert not [k for k in store.keys() if k.startswith("token/")]


def test_expired_token_is_minted_again(ambient: Path, google: StandIn) -> None:
    settings = load_settings()
    book, store = book_and_store(settings)
    credential_for(settings, book, store, HOST)
    age_cached_token(store, minted_ago=3700, expires_in=-100)
    cred = credential_for(settings, book, store, HOST)
    assert cred is not None and cred.secret == "ya29.token-2"
    assert google.hits["/token"] == 2


def test_token_near_expiry_is_refreshed(ambient: Path, google: StandIn) -> None:
    settings = load_settings()
    book, store = book_and_store(settings)
    credential_for(settings, book, store, HOST)
    # Within five minutes of expiry: stale, so minted again, and the new one is then a hit.
    age_cached_token(store, minted_ago=3500, expires_in=100)
    assert (credential_for(settings, book, store, HOST) or Credential("", "")).secret == "ya29.token-2"
    assert (credential_for(settings, book, store, HOST) or Credential("", "")).secret == "ya29.token-2"
    assert google.hits["/token"] == 2


def test_failed_refresh_serves_the_stale_token_with_a_warning(
    ambient: Path, google: StandIn, endpoint: TokenEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings()
    book, store = book_and_store(settings)
    credential_for(settings, book, store, HOST)
    age_cached_token(store, minted_ago=3500, expires_in=100)
    endpoint.fail = True
    with caplog.at_level(logging.WARNING, logger="regauth.providers"):
        cred = credential_for(settings, book, store, HOST)
    assert cred is not None and cred.secret == "ya29.token-1"
    (record,) = [r for r in caplog.records if r.name == "regauth.providers"]
    assert "Google refused the token request" in record.getMessage()
    assert "serving the cached token" in record.getMessage()
    assert "ya29" not in record.getMessage()
    log = settings.log_file.read_text()
    assert "serving the cached token" in log and "ya29" not in log


def test_failed_refresh_of_an_expired_token_is_an_error(
    ambient: Path, google: StandIn, endpoint: TokenEndpoint
) -> None:
    settings = load_settings()
    book, store = book_and_store(settings)
    credential_for(settings, book, store, HOST)
    age_cached_token(store, minted_ago=3700, expires_in=-1)
    endpoint.fail = True
    with pytest.raises(ProviderError) as info:
        credential_for(settings, book, store, HOST)
    assert str(info.value).startswith(f"gcp provider for {HOST}: Google refused the token request: ")
    assert "ya29" not in str(info.value)


def test_no_google_credentials() -> None:
    # The metadata server is the autouse fixture's loopback stand-in, which says "not Google Cloud".
    settings = load_settings()
    with pytest.raises(ProviderError) as info:
        credential_for(settings, *book_and_store(settings), HOST)
    assert str(info.value).startswith(f"gcp provider for {HOST}: no Google credentials found")
    assert "gcloud auth application-default login" in str(info.value)


def test_gcr_host_gets_a_deprecation_notice(ambient: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings()
    with caplog.at_level(logging.WARNING, logger="regauth.providers"):
        credential_for(settings, *book_and_store(settings), "eu.gcr.io")
    (notice,) = [r.getMessage() for r in caplog.records if r.name == "regauth.providers"]
    assert "eu.gcr.io" in notice and "Artifact Registry" in notice and "\n" not in notice
    assert notice in settings.log_file.read_text()


def test_twenty_threads_share_one_mint(ambient: Path, google: StandIn) -> None:
    settings = load_settings()
    book, store = book_and_store(settings)
    results: list[str] = []

    def get() -> None:
        cred = credential_for(settings, book, store, HOST)
        results.append(cred.secret if cred else "")

    threads = [threading.Thread(target=get) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["ya29.token-1"] * 20
    assert google.hits["/token"] == 1


async def test_concurrent_async_callers_share_one_mint(ambient: Path, google: StandIn) -> None:
    settings = load_settings()
    book, store = book_and_store(settings)
    # As the proxy asks: from worker threads, concurrently.
    calls = (asyncio.to_thread(credential_for, settings, book, store, HOST) for _ in range(12))
    results = await asyncio.gather(*calls)
    assert {c.secret for c in results if c} == {"ya29.token-1"} and len(results) == 12
    assert google.hits["/token"] == 1


def test_concurrent_processes_mint_once(ambient: Path, google: StandIn) -> None:
    code = (
        "from regauth.config import load_settings\n"
        "from regauth.registries import RegistryBook\n"
        "from regauth.providers.routing import credential_for\n"
        "from regauth.store.lazy import LazyStore\n"
        "s = load_settings(); store = LazyStore.for_settings(s)\n"
        f"print(credential_for(s, RegistryBook(s, store), store, {HOST!r}).secret)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)
    ]
    outputs = [proc.communicate()[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4
    assert outputs == ["ya29.token-1"] * 4
    assert google.hits["/token"] == 1


@pytest.mark.parametrize("expires_in", [1e300, float("inf"), "soon"])
def test_a_token_endpoint_answering_an_absurd_lifetime_is_one_line(
    ambient: Path, google: StandIn, endpoint: TokenEndpoint, expires_in: object
) -> None:
    google.routes["/token"] = lambda path, form: (
        200,
        {"access_token": "ya29.t", "token_type": "Bearer", "expires_in": expires_in},
    )
    settings = load_settings()
    book, store = book_and_store(settings)
    with pytest.raises(ProviderError) as info:
        credential_for(settings, book, store, HOST)
    assert "\n" not in str(info.value) and "google-auth cannot use" in str(info.value)


def test_a_token_endpoint_that_floods_is_cut_at_the_cap(ambient: Path, google: StandIn) -> None:
    from support.providers import Endless

    flood = Endless()
    google.routes["/token"] = lambda path, form: (200, flood)
    settings = load_settings()
    book, store = book_and_store(settings)
    with pytest.raises(ProviderError, match="passed 1048576 bytes") as info:
        credential_for(settings, book, store, HOST)
    assert "\n" not in str(info.value)
    assert flood.gone.wait(30) and flood.sent < Endless.LIMIT


def test_a_redirect_of_the_token_request_is_not_followed(
    ambient: Path, google: StandIn, ca: trustme.CA
) -> None:
    # The request's body is a signed assertion of the key: it goes nowhere but the key's token_uri.
    with stand_in(
        ca, {"/token": lambda path, form: (200, {"access_token": "x", "expires_in": 3600})}
    ) as other:
        google.routes["/token"] = lambda path, form: (307, {})
        google.response_headers = {"Location": f"{other.url}/token"}
        settings = load_settings()
        book, store = book_and_store(settings)
        with pytest.raises(ProviderError):
            credential_for(settings, book, store, HOST)
        assert other.hits == {} and other.bodies == []
