"""The contract every provider in the table keeps, one suite for all of them (as keyring's
``BackendBasicTests`` and ``tests/test_store.py``'s store contract are).

``ProviderContract`` holds the tests; each provider has a subclass whose ``world`` fixture sets up what
its credential comes from (real SDKs against loopback stand-ins: moto for ECR, an Entra ID and an ACR
exchange for ACR, a Google token endpoint for GCP) and says what to expect. The provider is built as
routing builds it, from its table line, and called directly: the secret is an argument, never read
from a store. A new provider adds a line to the table and a subclass here; ``test_every_provider_
has_a_contract_subclass`` fails until it does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, cast

import pytest
import trustme
from support.providers import StandIn, stand_in, start_moto, write_ca
from test_providers_acr import CLIENT, SECRET, TENANT, Entra, Exchange
from test_providers_gcp import TokenEndpoint

from regauth.config import load_settings
from regauth.errors import NotFoundError, ProviderError, RegauthError
from regauth.providers.base import Credential, MintingProvider, Provider
from regauth.providers.table import PROVIDERS
from regauth.registries import Registry

# Served by no provider with no record, whatever the environment of these tests.
NOT_SERVED = ("registry.example", "docker.io", "127.0.0.1:5000", "[::1]:5000", "example.azurecr.io.evil")
SDKS = ("boto3", "botocore", "azure", "google", "msal", "requests", "aiohttp")


@dataclass
class World:
    """What a provider's credential comes from in one test, and what it should give."""

    # A saved record of this provider (it has an id) and the secret routing would hand it.
    record: Registry
    secret: str | None
    # The username the record's credential comes with.
    username: str
    # A host the provider serves with no record, and whether a credential or an error comes for it.
    ambient: str | None = None
    ambient_username: str | None = None
    # A record the provider must refuse, with the secret routing would hand it.
    broken: Registry | None = None
    broken_secret: str | None = None
    # Words the refusal's one line must hold.
    broken_says: tuple[str, ...] = ()
    served: tuple[str, ...] = field(default_factory=tuple)


def record(host: str, provider: str, username: str | None = None, **options: str) -> Registry:
    return Registry(
        id="0123456789abcdef",
        name="reg",
        registry=host,
        username=username,
        provider=provider,
        options=options,
        updated_at="2026-12-01T00:00:00+00:00",
    )


def build(name: str) -> Provider:
    """The provider as routing builds it: its table line's class, the environment, a notify."""
    notes: list[str] = []
    return PROVIDERS[name].load()(load_settings().environ, notes.append)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


class ProviderContract:
    name: ClassVar[str]

    @pytest.fixture
    def world(self) -> Iterator[World]:
        raise NotImplementedError

    def test_its_table_line_builds_it(self) -> None:
        kind = PROVIDERS[self.name]
        provider = build(self.name)
        assert provider.name == kind.name == self.name
        keys = kind.option_keys()
        assert isinstance(keys, frozenset) and all(isinstance(k, str) for k in keys)
        wanted = ["serves", "credential"]
        if kind.mints:
            wanted += ["identity", "credential_files"]
            for attribute in ("cloud", "token_username", "token_lifetime"):
                value = getattr(provider, attribute)
                assert isinstance(value, str) and value, attribute
        assert all(callable(getattr(provider, method, None)) for method in wanted), wanted

    def test_serves_its_hosts_and_no_other(self, world: World) -> None:
        provider = build(self.name)
        for host in world.served:
            assert provider.serves(host) is True, host
        for host in NOT_SERVED:
            assert provider.serves(host) is False, host

    def test_credential_with_a_record(self, world: World) -> None:
        credential = build(self.name).credential(world.record.registry, world.record, world.secret)
        assert isinstance(credential, Credential)
        assert credential.username == world.username and credential.secret
        self._check_expiry(credential)

    def test_credential_without_a_record(self, world: World) -> None:
        provider = build(self.name)
        host = world.ambient or NOT_SERVED[0]
        if world.ambient_username is None:
            with pytest.raises(RegauthError) as info:
                provider.credential(host, None, None)
            assert isinstance(info.value, (ProviderError, NotFoundError))
            assert host in one_line(info.value)
            return
        credential = provider.credential(host, None, None)
        assert credential is not None and credential.username == world.ambient_username
        self._check_expiry(credential)

    def test_a_failure_is_one_line_saying_what_to_do(self, world: World) -> None:
        assert world.broken is not None
        with pytest.raises(RegauthError) as info:
            build(self.name).credential(world.broken.registry, world.broken, world.broken_secret)
        assert isinstance(info.value, (ProviderError, NotFoundError))
        text = one_line(info.value)
        assert repr(world.broken.name) in text and all(word in text for word in world.broken_says), text
        if world.broken_secret:
            assert world.broken_secret not in text

    def test_routing_imports_no_sdk(self, world: World) -> None:
        """Building it and asking ``serves`` and ``identity`` (routing's part of a cached get) import no
        SDK, in a fresh interpreter as the helper's ``get`` runs."""
        host = (world.served or NOT_SERVED)[0]
        code = (
            "import json, sys\n"
            "from regauth.providers.table import PROVIDERS\n"
            f"kind = PROVIDERS[{self.name!r}]\n"
            "provider = kind.load()({}, print)\n"
            f"provider.serves({host!r})\n"
            f"kind.mints and provider.identity({host!r}, None)\n"
            f"print(json.dumps([m for m in {SDKS!r} if m in sys.modules]))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert json.loads(out) == []

    def _check_expiry(self, credential: Credential) -> None:
        import time

        if PROVIDERS[self.name].mints:
            assert credential.expires_at is not None and credential.expires_at > time.time()
        else:
            assert credential.expires_at is None


class MintingContract(ProviderContract):
    """What a provider that mints tokens keeps besides: an identity for the token cache."""

    def test_identity_follows_the_record(self, world: World) -> None:
        """The token cache's key: the same for the same record, another for an edited one or none."""
        provider = cast(MintingProvider, build(self.name))
        host = world.record.registry
        first = provider.identity(host, world.record)
        assert first == provider.identity(host, world.record)
        changed = world.record._replace(updated_at="2026-12-02T00:00:00+00:00")
        assert provider.identity(host, changed) != first
        assert provider.identity(host, None) != first
        files = provider.credential_files(world.record)
        assert isinstance(files, tuple) and files and all(isinstance(f, str) for f in files)


def test_every_provider_has_a_contract_subclass() -> None:
    def leaves(cls: type[ProviderContract]) -> set[type[ProviderContract]]:
        found = set(cls.__subclasses__())
        return found.union(*(leaves(sub) for sub in found)) - {MintingContract}

    covered = {cls.name: cls for cls in leaves(ProviderContract)}
    assert set(covered) == set(PROVIDERS)
    for name, cls in covered.items():
        assert issubclass(cls, MintingContract) == PROVIDERS[name].mints, name


# --- one subclass per provider --------------------------------------------------------------------


class TestStatic(ProviderContract):
    name = "static"

    @pytest.fixture
    def world(self) -> Iterator[World]:
        yield World(
            record=record("r.example.com", "static", username="robot"),
            secret="s3cret",
            username="robot",
            broken=record("r.example.com", "static", username="robot"),
            broken_secret=None,
            broken_says=("no secret", "--password-stdin"),
        )

    def test_an_anonymous_record_gives_no_credential(self) -> None:
        anonymous = record("r.example.com", "static")
        assert build(self.name).credential(anonymous.registry, anonymous, None) is None


class TestEnv(ProviderContract):
    name = "env"

    @pytest.fixture
    def world(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
        monkeypatch.setenv("GITHUB_TOKEN", "ghs_token")
        monkeypatch.setenv("GITHUB_ACTOR", "octocat")
        monkeypatch.setenv("MY_PASS", "from-env")
        yield World(
            record=record("r.example.com", "env", secret_env="MY_PASS", username="robot"),
            secret=None,
            username="robot",
            ambient="ghcr.io",
            ambient_username="octocat",
            broken=record("r.example.com", "env", secret_env="UNSET_VAR", username="robot"),
            broken_says=("$UNSET_VAR", "export UNSET_VAR"),
            served=("ghcr.io",),
        )


ECR_HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


class TestEcr(MintingContract):
    name = "ecr"

    @pytest.fixture
    def world(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
        server = start_moto(monkeypatch)
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        try:
            yield World(
                record=record(ECR_HOST, "ecr"),
                secret=None,
                username="AWS",
                ambient=ECR_HOST,
                ambient_username="AWS",
                # Said before any request: the host names no region and the record no region option.
                broken=record("registry.example", "ecr"),
                broken_says=("region", "option region="),
                served=(ECR_HOST, "public.ecr.aws", "123456789012.dkr-ecr.eu-west-1.on.aws"),
            )
        finally:
            server.stop()


class TestAcr(MintingContract):
    name = "acr"

    @pytest.fixture
    def world(self, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(write_ca(ca, tmp_path)))
        entra = Entra()
        exchange = Exchange()
        with stand_in(ca, entra.routes()) as login, stand_in(ca, {"/oauth2/exchange": exchange}) as reg:
            entra.url, exchange.netloc = login.url, reg.netloc
            options = {
                "credential": "secret",
                "tenant_id": TENANT,
                "client_id": CLIENT,
                "authority": login.url,
            }
            # The client secret is the argument: no store is involved.
            yield World(
                record=record(reg.netloc, "acr", **options),
                secret=SECRET,
                username="00000000-0000-0000-0000-000000000000",
                # With no Azure credentials around, an ACR host gets the one-line "none found".
                ambient="myreg.azurecr.io",
                broken=record(reg.netloc, "acr", **options),
                broken_secret="wrong-secret-value",
                broken_says=("Entra ID refused", "check the tenant"),
                served=("myreg.azurecr.io", "myreg.azurecr.cn", "myreg.azurecr.us"),
            )

    def test_a_secret_credential_without_a_secret_says_how_to_store_it(self, world: World) -> None:
        with pytest.raises(ProviderError, match="no client secret in the secret store; store it with"):
            build(self.name).credential(world.record.registry, world.record, None)


GCP_HOST = "europe-docker.pkg.dev"


class TestGcp(MintingContract):
    name = "gcp"

    @pytest.fixture
    def world(self, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(write_ca(ca, tmp_path)))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        with stand_in(ca, {"/token": TokenEndpoint()}) as google:
            key_file = _service_account(tmp_path / "sa.json", pem, google)
            # The ambient credential is the same key, found as google.auth.default finds it.
            monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
            yield World(
                record=record("127.0.0.1:5998", "gcp", key_file=str(key_file)),
                secret=None,
                username="oauth2accesstoken",
                ambient=GCP_HOST,
                ambient_username="oauth2accesstoken",
                broken=record("127.0.0.1:5998", "gcp", key_file=str(tmp_path / "missing.json")),
                broken_says=("cannot use the key file", "missing.json"),
                served=(GCP_HOST, "gcr.io", "eu.gcr.io"),
            )


def _service_account(path: Path, private_key_pem: str, google: StandIn) -> Path:
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
    return path
