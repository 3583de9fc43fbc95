"""The acr provider: real azure-identity (MSAL) against a local HTTPS stand-in for Entra ID, with
instance discovery off, and the ACR ``/oauth2/exchange`` on a local stand-in of the registry.

azure-core's requests transport trusts the test CA through ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from support import records as support_records
from support.providers import StandIn, book_and_store, fake_jwt, stand_in, write_ca

from regauth.config import load_settings
from regauth.errors import ProviderError
from regauth.providers.acr import USERNAME
from regauth.providers.routing import credential_for
from regauth.registries import Registry, RegistryBook

TENANT = "72f988bf-0000-4000-8000-000000000001"
CLIENT = "11111111-2222-3333-4444-555555555555"
SECRET = "sp-secret-value"


class Entra:
    """The OpenID configuration and token endpoints; counts and checks client-credential grants."""

    def __init__(self) -> None:
        self.url = ""
        self.issued = 0
        self.lock = threading.Lock()

    def routes(self) -> dict[str, Any]:
        return {
            f"/{TENANT}/v2.0/.well-known/openid-configuration": self.openid,
            f"/{TENANT}/oauth2/v2.0/token": self.token,
        }

    def openid(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        base = f"{self.url}/{TENANT}"
        return 200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "issuer": f"{base}/v2.0",
        }

    def token(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        good = form.get("client_secret") == SECRET or "client_assertion" in form
        if form.get("grant_type") != "client_credentials" or form.get("client_id") != CLIENT or not good:
            return 401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret.",
            }
        with self.lock:
            self.issued += 1
        claims = {"tid": TENANT, "exp": int(time.time()) + 3600, "n": self.issued}
        return 200, {"access_token": fake_jwt(claims), "expires_in": 3600, "token_type": "Bearer"}


class Exchange:
    def __init__(self) -> None:
        self.netloc = ""
        self.refused = False

    def __call__(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.refused:
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "identity lacks AcrPull"}]}
        ok = form.get("grant_type") == "access_token" and form.get("service") == self.netloc
        if not ok or form.get("tenant") != TENANT or not form.get("access_token"):
            return 400, {"errors": [{"code": "BAD_REQUEST", "message": "bad exchange form"}]}
        return 200, {"refresh_token": fake_jwt({"exp": int(time.time()) + 10800, "aud": self.netloc})}


@pytest.fixture
def entra(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Entra, StandIn]]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(write_ca(ca, tmp_path)))
    app = Entra()
    with stand_in(ca, app.routes()) as site:
        app.url = site.url
        yield app, site


@pytest.fixture
def registry(ca: trustme.CA) -> Iterator[tuple[Exchange, StandIn]]:
    exchange = Exchange()
    with stand_in(ca, {"/oauth2/exchange": exchange}) as site:
        exchange.netloc = site.netloc
        yield exchange, site


def add_record(
    book: RegistryBook, host: str, authority: str, secret: str | None = SECRET, **more: str
) -> Registry:
    options = {
        "credential": "secret",
        "tenant_id": TENANT,
        "client_id": CLIENT,
        "authority": authority,
        **more,
    }
    return support_records.add_record(book, host, secret, name="acr", provider="acr", options=options)


def test_service_principal_secret_exchanged_for_a_refresh_token(
    entra: tuple[Entra, StandIn], registry: tuple[Exchange, StandIn]
) -> None:
    app, login = entra
    _, reg = registry
    settings = load_settings()
    book, store = book_and_store(settings)
    add_record(book, reg.netloc, login.url)
    cred = credential_for(settings, book, store, reg.netloc)
    assert cred is not None and cred.username == USERNAME
    assert cred.expires_at is not None and cred.expires_at > time.time() + 10000
    # The second get is a cache hit: no request to Entra ID nor to the registry.
    assert credential_for(settings, book, store, f"https://{reg.netloc}") == cred
    assert app.issued == 1 and reg.hits["/oauth2/exchange"] == 1


def test_certificate_credential(
    entra: tuple[Entra, StandIn], registry: tuple[Exchange, StandIn], ca: trustme.CA, tmp_path: Path
) -> None:
    _, login = entra
    _, reg = registry
    leaf = ca.issue_cert("regauth-sp", key_type=trustme.KeyType.RSA)
    pem = tmp_path / "sp.pem"
    pem.write_bytes(leaf.private_key_pem.bytes() + leaf.cert_chain_pems[0].bytes())
    settings = load_settings()
    book, store = book_and_store(settings)
    add_record(book, reg.netloc, login.url, secret=None, credential="certificate", certificate_file=str(pem))
    cred = credential_for(settings, book, store, reg.netloc)
    assert cred is not None and cred.username == USERNAME
    (form,) = [f for f in login.forms if f.get("grant_type") == "client_credentials"]
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def test_wrong_secret_is_one_line(entra: tuple[Entra, StandIn], registry: tuple[Exchange, StandIn]) -> None:
    _, login = entra
    _, reg = registry
    settings = load_settings()
    book, store = book_and_store(settings)
    add_record(book, reg.netloc, login.url, secret="wrong-secret")
    with pytest.raises(ProviderError) as info:
        credential_for(settings, book, store, reg.netloc)
    message = str(info.value)
    assert message.startswith(f"acr provider for registry 'acr' ({reg.netloc}): Entra ID refused the secret")
    assert "AADSTS7000215" in message and "wrong-secret" not in message and "\n" not in message


def test_registry_refusing_the_token(
    entra: tuple[Entra, StandIn], registry: tuple[Exchange, StandIn]
) -> None:
    _, login = entra
    exchange, reg = registry
    exchange.refused = True
    settings = load_settings()
    book, store = book_and_store(settings)
    add_record(book, reg.netloc, login.url)
    with pytest.raises(
        ProviderError, match=r"refused the Entra ID token \(HTTP 401: identity lacks AcrPull\)"
    ):
        credential_for(settings, book, store, reg.netloc)


def test_missing_secret_says_how_to_store_it(entra: tuple[Entra, StandIn]) -> None:
    _, login = entra
    settings = load_settings()
    book, store = book_and_store(settings)
    add_record(book, "myreg.azurecr.io", login.url, secret=None)
    with pytest.raises(ProviderError, match="no client secret in the secret store; store it with"):
        credential_for(settings, book, store, "myreg.azurecr.io")


def test_ambient_acr_host_without_azure_credentials() -> None:
    settings = load_settings()
    with pytest.raises(ProviderError) as info:
        credential_for(settings, *book_and_store(settings), "myreg.azurecr.io")
    message = str(info.value)
    assert message.startswith("acr provider for myreg.azurecr.io: no Azure credentials found (DefaultAzure")
    assert "EnvironmentCredential" in message and "az login" in message and "\n" not in message


def test_workload_identity_federated_token(
    entra: tuple[Entra, StandIn], registry: tuple[Exchange, StandIn], tmp_path: Path
) -> None:
    _, login = entra
    _, reg = registry
    token_file = tmp_path / "federated-token"
    token_file.write_text(fake_jwt({"sub": "system:serviceaccount:ci:puller"}))
    settings = load_settings()
    book, store = book_and_store(settings)
    add_record(book, reg.netloc, login.url, secret=None, credential="workload", token_file=str(token_file))
    cred = credential_for(settings, book, store, reg.netloc)
    assert cred is not None and cred.username == USERNAME
    (form,) = [f for f in login.forms if f.get("grant_type") == "client_credentials"]
    assert form["client_assertion"] == token_file.read_text()
