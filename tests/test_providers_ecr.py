"""The ecr provider against moto in server mode: real boto3 over HTTP on 127.0.0.1.

boto3 finds moto through its own configuration, ``AWS_ENDPOINT_URL`` (and the record option
``endpoint_url`` in one test); credentials are moto's fake keys in the environment.
"""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from moto.server import ThreadedMotoServer
from support.providers import book_and_store, credential_in_fresh_process, stand_in, start_moto, write_ca

from regauth.config import load_settings
from regauth.errors import NotFoundError, ProviderError
from regauth.providers import cache
from regauth.providers.ecr import PAST_EXPIRY_TTL
from regauth.providers.routing import credential_for, record_credential
from regauth.registries import Registry

HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_url: str) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_url


def test_ambient_ecr_host_mints_a_decoded_token(aws_env: str) -> None:
    settings = load_settings()
    before = time.time()
    cred = credential_for(settings, *book_and_store(settings), f"https://{HOST}")
    assert cred is not None
    assert (cred.username, cred.secret) == ("AWS", "123456789012-auth-token")
    # moto's expiresAt is 2015: taken as a short validity from now, not as forever nor as expired.
    assert cred.expires_at is not None
    assert before < cred.expires_at <= time.time() + PAST_EXPIRY_TTL


def test_cache_hit_needs_no_endpoint_and_imports_no_sdk(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = start_moto(monkeypatch)
    settings = load_settings()
    first = credential_for(settings, *book_and_store(settings), HOST)
    server.stop()
    watched = ("boto3", "botocore", "aiohttp", "asyncio", "requests", "logging")
    credential, loaded = credential_in_fresh_process(HOST, watched)
    assert first is not None
    assert (credential, loaded) == ([first.username, first.secret], [])


def test_no_cache_setting_mints_again(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    book, store = book_and_store(settings)
    credential_for(settings, book, store, HOST)
    # Point boto3 at nothing: a fresh mint must now fail, where a cache read would not.
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("REGAUTH_NO_CACHE", "1")
    with pytest.raises(
        ProviderError, match=r"^ecr provider for 1234.*: EndpointConnectionError.*check the network"
    ):
        credential_for(load_settings(), book, store, HOST, use_cache=True)


def test_cache_bypass_argument_refreshes_the_entry(aws_env: str) -> None:
    settings = load_settings()
    book, store = book_and_store(settings)
    first = credential_for(settings, book, store, HOST)
    second = credential_for(settings, book, store, HOST, use_cache=False)
    assert first is not None and second is not None
    assert second.expires_at is not None and first.expires_at is not None
    assert second.expires_at >= first.expires_at
    assert [k for k in store.keys() if k.startswith("token/ecr/")] == [
        k for k in store.keys() if k.startswith(f"token/ecr/{HOST}/")
    ]


def test_record_options_region_registry_id_endpoint(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    settings = load_settings()
    book, store = book_and_store(settings)
    options = {"region": "eu-west-1", "registry_id": "210987654321", "endpoint_url": aws_env}
    record = book.add(
        Registry(id="", name="mirror", registry="127.0.0.1:5999", provider="ecr", options=options), None
    )
    cred = credential_for(settings, book, store, "127.0.0.1:5999")
    assert cred is not None and cred.secret == "210987654321-auth-token"
    assert record_credential(settings, store, record) == cred


def test_role_arn_is_assumed_through_sts(aws_env: str) -> None:
    settings = load_settings()
    book, store = book_and_store(settings)
    options = {"role_arn": "arn:aws:iam::123456789012:role/puller", "external_id": "ext-1"}
    book.add(Registry(id="", name="ecr", registry=HOST, provider="ecr", options=options), None)
    cred = credential_for(settings, book, store, HOST)
    assert cred is not None and cred.username == "AWS"


def test_named_profile_and_a_missing_one(
    aws_env: str, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    aws = isolated_env / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text("[dev]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    settings = load_settings()
    book, store = book_and_store(settings)
    book.add(Registry(id="", name="dev", registry=HOST, provider="ecr", options={"profile": "dev"}), None)
    assert credential_for(settings, book, store, HOST) is not None
    book.update("dev", {"options": {"profile": "nope"}})
    with pytest.raises(ProviderError) as info:
        credential_for(settings, book, store, HOST)
    assert str(info.value).startswith(f"ecr provider for registry 'dev' ({HOST}): ")
    assert "nope" in str(info.value) and "record option profile" in str(info.value)


def test_no_credentials_is_one_line_saying_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    settings = load_settings()
    with pytest.raises(ProviderError) as info:
        credential_for(settings, *book_and_store(settings), HOST)
    message = str(info.value)
    assert message.startswith(f"ecr provider for {HOST}: no AWS credentials found (tried environment")
    assert "set AWS_PROFILE" in message and "\n" not in message and "Traceback" not in message
    assert info.value.__cause__ is not None


def test_static_record_for_the_host_wins(aws_env: str) -> None:
    settings = load_settings()
    book, store = book_and_store(settings)
    book.add(Registry(id="", name="pinned", registry=HOST, username="me"), "pw")
    cred = credential_for(settings, book, store, HOST)
    assert cred is not None and (cred.username, cred.secret, cred.expires_at) == ("me", "pw", None)


def test_missing_sdk_names_the_extra(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry makes `import boto3` raise ImportError, as on a machine without the extra.
    monkeypatch.setitem(sys.modules, "boto3", None)
    settings = load_settings()
    # The checkout regauth was installed from, with the extra (tests/test_install_hint.py: each install).
    with pytest.raises(ProviderError, match=r"-m pip install (-e )?'[^']+\[aws\]'"):
        credential_for(settings, *book_and_store(settings), HOST)


def test_unknown_host_is_not_found(aws_env: str) -> None:
    settings = load_settings()
    with pytest.raises(NotFoundError):
        credential_for(settings, *book_and_store(settings), "registry.example.com")


def test_cache_clear_drops_tokens_only(aws_env: str) -> None:
    settings = load_settings()
    book, store = book_and_store(settings)
    book.add(Registry(id="", name="pinned", registry="r.example.com", username="me"), "pw")
    credential_for(settings, book, store, HOST)
    assert cache.clear(settings, store) == 1
    assert cache.clear(settings, store) == 0
    assert store.keys() == [book.get("pinned").secret_key]


def test_ecr_public_through_its_own_api(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, isolated_env: Path
) -> None:
    # moto has no ecr-public; a stand-in answers its JSON API (GetAuthorizationToken) over HTTPS.
    ca = trustme.CA()
    expires = int(time.time()) + 12 * 3600
    token = base64.b64encode(b"AWS:public-token").decode()

    def api(path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return 200, {"authorizationData": {"authorizationToken": token, "expiresAt": expires}}

    with stand_in(ca, {"/": api}) as site:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_ENDPOINT_URL", site.url)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(write_ca(ca, tmp_path)))
        settings = load_settings()
        book, store = book_and_store(settings)
        cred = credential_for(settings, book, store, "public.ecr.aws")
        assert cred == credential_for(settings, book, store, "https://public.ecr.aws/")
    assert cred is not None and (cred.username, cred.secret, cred.expires_at) == (
        "AWS",
        "public-token",
        expires,
    )
    assert site.hits["/"] == 1


def test_fips_host(aws_env: str) -> None:
    settings = load_settings()
    cred = credential_for(
        settings, *book_and_store(settings), "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com"
    )
    assert cred is not None and cred.secret == "123456789012-auth-token"
