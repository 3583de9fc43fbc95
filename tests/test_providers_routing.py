"""Routing by host and record, the env provider, and the async wrapper."""

from __future__ import annotations

import asyncio

import pytest
from support.providers import book_and_store, credential_in_fresh_process

from regauth.config import Settings, load_settings
from regauth.errors import NotFoundError, ProviderError, UsageError
from regauth.providers.base import Credential
from regauth.providers.hosts import ecr_host
from regauth.providers.routing import (
    cloud_for,
    credential_for,
    make_provider,
    record_credential,
    route_ambient,
)
from regauth.registries import Registry, RegistryBook


@pytest.mark.parametrize(
    ("host", "provider"),
    [
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "ecr"),
        ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "ecr"),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "ecr"),
        ("123456789012.dkr-ecr.eu-west-1.on.aws", "ecr"),
        ("public.ecr.aws", "ecr"),
        ("myreg.azurecr.io", "acr"),
        ("myreg.azurecr.cn", "acr"),
        ("myreg.azurecr.us", "acr"),
        ("gcr.io", "gcp"),
        ("eu.gcr.io", "gcp"),
        ("us-central1-docker.pkg.dev", "gcp"),
        ("12345678901.dkr.ecr.us-east-1.amazonaws.com", None),
        ("azurecr.io", None),
        ("docker.pkg.dev", None),
        ("ghcr.io", None),
        ("docker.io", None),
    ],
)
def test_ambient_cloud_hosts(host: str, provider: str | None) -> None:
    settings = load_settings()
    assert route_ambient(settings, host) == provider
    cloud = cloud_for(settings, host)
    assert (cloud.name if cloud is not None else None) == provider


def test_ecr_host_parts() -> None:
    parsed = ecr_host("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com")
    assert parsed is not None and (parsed.account, parsed.region, parsed.public, parsed.fips) == (
        "123456789012",
        "us-gov-west-1",
        False,
        True,
    )


def test_github_token_answers_for_ghcr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_abc")
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    settings = load_settings()
    assert credential_for(settings, *book_and_store(settings), "https://ghcr.io") == Credential(
        "octocat", "ghs_abc"
    )


def test_gitlab_job_token_answers_for_ci_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_REGISTRY", "registry.gitlab.example.com:5050")
    monkeypatch.setenv("CI_JOB_TOKEN", "glcbt-1")
    settings = load_settings()
    book, store = book_and_store(settings)
    cred = credential_for(settings, book, store, "registry.gitlab.example.com:5050")
    assert cred == Credential("gitlab-ci-token", "glcbt-1")
    with pytest.raises(NotFoundError):
        credential_for(settings, book, store, "registry.gitlab.example.com")


def test_without_ci_variables_ghcr_is_not_found() -> None:
    settings = load_settings()
    with pytest.raises(NotFoundError, match="no registry is configured for ghcr.io"):
        credential_for(settings, *book_and_store(settings), "ghcr.io")


def test_generic_env_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_USER", "robot")
    monkeypatch.setenv("MY_PASS", "s3cret")
    settings = load_settings()
    book, store = book_and_store(settings)
    options = {"username_env": "MY_USER", "secret_env": "MY_PASS"}
    record = book.add(
        Registry(id="", name="ci", registry="r.example.com", provider="env", options=options), None
    )
    assert record_credential(settings, store, record) == Credential("robot", "s3cret")
    # Never cached: the environment is read on every call.
    assert not [k for k in store.keys() if k.startswith("token/")]


def test_env_record_with_a_literal_username_and_an_unset_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    book, store = book_and_store(settings)
    options = {"username": "robot", "secret_env": "MY_PASS"}
    book.add(Registry(id="", name="ci", registry="r.example.com", provider="env", options=options), None)
    with pytest.raises(ProviderError) as info:
        credential_for(settings, book, store, "r.example.com")
    assert (
        str(info.value)
        == "env provider for registry 'ci' (r.example.com): $MY_PASS is not set or empty; export MY_PASS"
    )


def test_env_record_without_options_for_another_host() -> None:
    settings = load_settings()
    book, store = book_and_store(settings)
    book.add(Registry(id="", name="ci", registry="r.example.com", provider="env"), None)
    with pytest.raises(ProviderError, match="add the record option secret_env=VAR"):
        credential_for(settings, book, store, "r.example.com")


def test_unknown_provider_name() -> None:
    with pytest.raises(UsageError, match="unknown provider 'nope': use one of static, env, ecr, acr, gcp"):
        make_provider("nope", load_settings())


async def test_callers_in_threads_share_the_sync_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_abc")
    settings = load_settings()
    book, store = book_and_store(settings)
    calls = (asyncio.to_thread(credential_for, settings, book, store, "ghcr.io") for _ in range(5))
    results = await asyncio.gather(*calls)
    assert {c.secret for c in results if c} == {"ghs_abc"}


def test_static_get_path_imports_no_sdk_nor_aiohttp(settings: Settings) -> None:
    RegistryBook.for_settings(settings).add(
        Registry(id="", name="s", registry="r.example.com", username="u"), "p"
    )
    watched = ("boto3", "botocore", "google", "azure", "aiohttp", "asyncio", "requests", "logging")
    assert credential_in_fresh_process("r.example.com", watched) == (["u", "p"], [])
