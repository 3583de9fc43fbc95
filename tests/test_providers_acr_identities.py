"""The acr provider's managed identity and Azure CLI credentials, with the real azure-identity (and MSAL)
pointed at local stand-ins through azure-identity's own configuration, never patched:

- managed: ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` select App Service managed identity, which GETs
  the endpoint (plain HTTP on 127.0.0.1, as on App Service) with ``api-version=2019-08-01``, ``resource``
  and, for a user-assigned identity, ``client_id``; with neither, IMDS, which
  ``AZURE_POD_IDENTITY_AUTHORITY_HOST`` moves from 169.254.169.254 to a local stand-in;
- cli: ``AzureCliCredential`` runs the first ``az`` on PATH; a fake ``az`` written by the test prints
  what ``az account get-access-token --output json`` prints, and records its arguments.

The AAD token is then exchanged at the registry stand-in's ``/oauth2/exchange`` (HTTPS, test CA trusted
through ``REQUESTS_CA_BUNDLE``, as in test_providers_acr.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trustme
from support import records as support_records
from support.metadata_stand_in import black_hole
from support.providers import StandIn, book_and_store, fake_jwt, stand_in, write_ca
from test_providers_acr import TENANT, Exchange

from regauth.config import load_settings
from regauth.errors import ProviderError
from regauth.helper.texts import NOT_FOUND
from regauth.providers.acr import USERNAME
from regauth.providers.routing import credential_for
from regauth.registries import Registry, RegistryBook

IDENTITY_HEADER = "identity-header-secret"
USER_ASSIGNED = "99999999-8888-7777-6666-555555555555"
ARM = "https://management.azure.com"
NOT_LOGGED_IN = "ERROR: Please run 'az login' to setup account.\n"


class AppServiceIdentity:
    """App Service's local token endpoint: a token for ``resource``, expiry as epoch seconds in a string."""

    def __init__(self) -> None:
        self.status = 200

    def __call__(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.status != 200:
            # App Service's error shape; MSAL reports statusCode and message.
            return self.status, {"statusCode": self.status, "message": "No managed identity for this app"}
        expires_on = int(time.time()) + 3600
        return 200, {
            "access_token": fake_jwt({"tid": TENANT, "exp": expires_on, "mi": form.get("client_id", "")}),
            "expires_on": str(expires_on),
            "resource": form["resource"],
            "token_type": "Bearer",
            "client_id": form.get("client_id", "system"),
        }


@pytest.fixture
def registry(
    ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Exchange, StandIn]]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(write_ca(ca, tmp_path)))
    exchange = Exchange()
    with stand_in(ca, {"/oauth2/exchange": exchange}) as site:
        exchange.netloc = site.netloc
        yield exchange, site


@pytest.fixture
def identity(ca: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AppServiceIdentity, StandIn]]:
    app = AppServiceIdentity()
    with stand_in(ca, {"/msi/token": app}, tls=False) as site:
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"{site.url}/msi/token")
        monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
        yield app, site


class FakeAz:
    """An ``az`` on PATH: prints ``reply`` (or fails as told), and appends its argv to ``calls.jsonl``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.calls_file = directory / "calls.jsonl"
        self.reply_file = directory / "reply.json"
        directory.mkdir()
        script = directory / "az"
        # azure-identity runs az with cwd=/bin, so every path in the script is absolute.
        script.write_text(
            f"#!{sys.executable}\n"
            "import json, sys\n"
            f"with open({str(self.calls_file)!r}, 'a') as log:\n"
            "    log.write(json.dumps(sys.argv[1:]) + '\\n')\n"
            f"with open({str(self.reply_file)!r}) as file:\n"
            "    reply = json.load(file)\n"
            "sys.stdout.write(reply['stdout'])\n"
            "sys.stderr.write(reply['stderr'])\n"
            "sys.exit(reply['code'])\n"
        )
        script.chmod(0o755)
        self.succeed()

    def succeed(self) -> None:
        expires = int(time.time()) + 3600
        token = {
            "accessToken": fake_jwt({"tid": TENANT, "exp": expires, "src": "az"}),
            "expiresOn": datetime.fromtimestamp(expires).strftime("%Y-%m-%d %H:%M:%S.%f"),
            "expires_on": expires,
            "subscription": "00000000-1111-2222-3333-444444444444",
            "tenant": TENANT,
            "tokenType": "Bearer",
        }
        self._reply(json.dumps(token, indent=2) + "\n", "", 0)

    def fail(self, stderr: str = NOT_LOGGED_IN) -> None:
        self._reply("", stderr, 1)

    def _reply(self, stdout: str, stderr: str, code: int) -> None:
        self.reply_file.write_text(json.dumps({"stdout": stdout, "stderr": stderr, "code": code}))

    @property
    def calls(self) -> list[list[str]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]


@pytest.fixture
def az(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeAz:
    fake = FakeAz(tmp_path / "az-bin")
    monkeypatch.setenv("PATH", f"{fake.dir}{os.pathsep}{os.environ['PATH']}")
    return fake


def add_record(book: RegistryBook, host: str, **options: str) -> Registry:
    return support_records.add_record(book, host, name="acr", provider="acr", options=options)


def failure_of(host: str, **options: str) -> str:
    """The message of the ProviderError a get for ``host`` raises, its record made with ``options``."""
    settings = load_settings()
    book, store = book_and_store(settings)
    add_record(book, host, **options)
    with pytest.raises(ProviderError) as info:
        credential_for(settings, book, store, host)
    return str(info.value)


def assert_one_line(message: str, host: str, *parts: str) -> None:
    assert message.startswith(f"acr provider for registry 'acr' ({host}): "), message
    assert "\n" not in message and IDENTITY_HEADER not in message, message
    for part in parts:
        assert part in message, message


# ---- managed identity (App Service endpoint) -----------------------------------------------------------


def test_managed_system_assigned_identity(
    identity: tuple[AppServiceIdentity, StandIn], registry: tuple[Exchange, StandIn]
) -> None:
    _, msi = identity
    _, reg = registry
    settings = load_settings()
    book, store = book_and_store(settings)
    add_record(book, reg.netloc, credential="managed")
    cred = credential_for(settings, book, store, reg.netloc)
    assert cred is not None and cred.username == USERNAME
    assert cred.expires_at is not None and cred.expires_at > time.time() + 10000
    (query,) = msi.forms
    assert query == {"api-version": "2019-08-01", "resource": ARM}
    assert msi.headers[0]["X-IDENTITY-HEADER"] == IDENTITY_HEADER
    (form,) = reg.forms
    assert form["tenant"] == TENANT and form["service"] == reg.netloc
    # A second get is a cache hit: neither the identity endpoint nor the registry is asked again.
    assert credential_for(settings, book, store, reg.netloc) == cred
    assert msi.hits["/msi/token"] == 1 and reg.hits["/oauth2/exchange"] == 1


def test_managed_user_assigned_identity_sends_its_client_id(
    identity: tuple[AppServiceIdentity, StandIn], registry: tuple[Exchange, StandIn]
) -> None:
    _, msi = identity
    _, reg = registry
    settings = load_settings()
    book, store = book_and_store(settings)
    add_record(book, reg.netloc, credential="managed", client_id=USER_ASSIGNED)
    cred = credential_for(settings, book, store, reg.netloc)
    assert cred is not None and cred.username == USERNAME
    (query,) = msi.forms
    assert query == {"api-version": "2019-08-01", "resource": ARM, "client_id": USER_ASSIGNED}


@pytest.mark.parametrize("status", [400, 500])
def test_managed_identity_endpoint_failure_is_one_line(
    identity: tuple[AppServiceIdentity, StandIn], registry: tuple[Exchange, StandIn], status: int
) -> None:
    app, msi = identity
    _, reg = registry
    app.status = status
    # azure-core retries a 5xx three times with backoff (0, 1.6, 3.2 s) unless the server says when.
    msi.response_headers["Retry-After"] = "0.01"
    assert_one_line(
        failure_of(reg.netloc, credential="managed"),
        reg.netloc,
        "the managed credential is unavailable",
        f"{status}, No managed identity for this app",
        "check that this machine has a managed identity",
    )
    assert reg.hits["/oauth2/exchange"] == 0


def imds(path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """A VM's instance metadata service: expiry as ``expires_in`` seconds (in a string, as IMDS sends)."""
    expires_on = int(time.time()) + 3600
    return 200, {
        "access_token": fake_jwt({"tid": TENANT, "exp": expires_on}),
        "expires_in": "3600",
        "expires_on": str(expires_on),
        "resource": form["resource"],
        "token_type": "Bearer",
    }


def test_managed_identity_on_a_vm_through_imds(
    ca: trustme.CA, registry: tuple[Exchange, StandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, reg = registry
    with stand_in(ca, {"/metadata/identity/oauth2/token": imds}, tls=False) as metadata:
        # No App Service variables: azure-identity asks IMDS, at this host instead of 169.254.169.254.
        monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", metadata.url)
        settings = load_settings()
        book, store = book_and_store(settings)
        add_record(book, reg.netloc, credential="managed", client_id=USER_ASSIGNED)
        cred = credential_for(settings, book, store, reg.netloc)
    assert cred is not None and cred.username == USERNAME
    (query,) = metadata.forms
    assert query == {"api-version": "2018-02-01", "resource": ARM, "client_id": USER_ASSIGNED}
    assert metadata.headers[0]["Metadata"] == "true"


# ---- Azure CLI ----------------------------------------------------------------------------------------


def resource_asked(argv: list[str]) -> str:
    """The resource az was asked for: ``--resource R`` (azure-identity 1.27) or ``--scope R/.default``."""
    if "--resource" in argv:
        return argv[argv.index("--resource") + 1]
    return argv[argv.index("--scope") + 1].removesuffix("/.default")


def test_cli_token_exchanged_and_cached(az: FakeAz, registry: tuple[Exchange, StandIn]) -> None:
    _, reg = registry
    settings = load_settings()
    book, store = book_and_store(settings)
    add_record(book, reg.netloc, credential="cli")
    cred = credential_for(settings, book, store, reg.netloc)
    assert cred is not None and cred.username == USERNAME and cred.secret.count(".") == 2
    (argv,) = az.calls
    assert argv[:4] == ["account", "get-access-token", "--output", "json"]
    assert resource_asked(argv) == ARM and "--tenant" not in argv
    # The tenant comes from the az token's tid claim.
    (form,) = reg.forms
    assert form["tenant"] == TENANT
    # The second get is served from the cache: az is not run again.
    assert credential_for(settings, book, store, f"https://{reg.netloc}/v2/") == cred
    assert len(az.calls) == 1 and reg.hits["/oauth2/exchange"] == 1


def test_cli_tenant_option_is_passed_to_az(az: FakeAz, registry: tuple[Exchange, StandIn]) -> None:
    _, reg = registry
    settings = load_settings()
    book, store = book_and_store(settings)
    add_record(book, reg.netloc, credential="cli", tenant_id=TENANT)
    assert credential_for(settings, book, store, reg.netloc) is not None
    (argv,) = az.calls
    assert argv[argv.index("--tenant") + 1] == TENANT


def test_cli_not_logged_in_is_one_line(az: FakeAz, registry: tuple[Exchange, StandIn]) -> None:
    _, reg = registry
    az.fail()
    assert_one_line(
        failure_of(reg.netloc, credential="cli"),
        reg.netloc,
        "the cli credential is unavailable: Please run 'az login' to set up an account; run `az login` as",
    )
    assert len(az.calls) == 1 and reg.hits["/oauth2/exchange"] == 0


def test_cli_other_failure_carries_az_message(az: FakeAz, registry: tuple[Exchange, StandIn]) -> None:
    _, reg = registry
    az.fail("ERROR: AADSTS50173: The provided grant has expired due to it being revoked.\n")
    assert_one_line(
        failure_of(reg.netloc, credential="cli"),
        reg.netloc,
        "refused the cli credential: ERROR: AADSTS50173",
        "run `az login`",
    )


def test_cli_missing_az_is_one_line(
    registry: tuple[Exchange, StandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, reg = registry
    monkeypatch.setenv("PATH", "/nonexistent")
    assert_one_line(
        failure_of(reg.netloc, credential="cli"),
        reg.netloc,
        "Azure CLI not found on path",
        "put the Azure CLI on PATH",
    )


# ---- end to end through the installed helper ----------------------------------------------------------


def add_cli_record(regauth_exe: str, reg: StandIn) -> None:
    args = ["registry", "add", "acr", "--url", reg.netloc, "--provider", "acr", "--no-validate"]
    options = ["credential=cli", f"login_server_url={reg.url}"]
    for option in options:
        args += ["--option", option]
    proc = subprocess.run([regauth_exe, *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def helper_get(helper_exe: str, server: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helper_exe, "get"], input=server, capture_output=True, text=True, check=False)


def test_helper_get_with_az(
    az: FakeAz, registry: tuple[Exchange, StandIn], helper_exe: str, regauth_exe: str
) -> None:
    _, reg = registry
    add_cli_record(regauth_exe, reg)
    proc = helper_get(helper_exe, reg.netloc)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["Username"] == USERNAME and answer["ServerURL"] == reg.netloc
    assert answer["Secret"].count(".") == 2 and proc.stderr == ""
    # The second process reads the token cache: az is not run again.
    again = helper_get(helper_exe, f"https://{reg.netloc}")
    assert json.loads(again.stdout)["Secret"] == answer["Secret"]
    assert len(az.calls) == 1 and reg.hits["/oauth2/exchange"] == 1


def test_helper_get_falls_back_to_not_found_when_az_fails(
    az: FakeAz, registry: tuple[Exchange, StandIn], helper_exe: str, regauth_exe: str
) -> None:
    _, reg = registry
    az.fail()
    add_cli_record(regauth_exe, reg)
    proc = helper_get(helper_exe, reg.netloc)
    assert (proc.returncode, proc.stdout) == (1, NOT_FOUND + "\n")
    cause = f"acr provider for registry 'acr' ({reg.netloc}): the cli credential"
    (line,) = proc.stderr.splitlines()
    assert cause in line and "az login" in line and "Traceback" not in proc.stderr
    assert cause in load_settings().log_file.read_text()


def test_exchange_trusts_the_records_ca_file(
    az: FakeAz, registry: tuple[Exchange, StandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, reg = registry
    # Only the record vouches for the registry's CA now, as with `registry add --ca-file`.
    ca_file = os.environ["REQUESTS_CA_BUNDLE"]
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    settings = load_settings()
    book, store = book_and_store(settings)
    without = add_record(book, reg.netloc, credential="cli")
    with pytest.raises(ProviderError, match="cannot reach"):
        credential_for(settings, book, store, reg.netloc, use_cache=False)
    book.update(without.name, {"ca_file": ca_file})
    cred = credential_for(settings, book, store, reg.netloc, use_cache=False)
    assert cred is not None and cred.username == USERNAME


def test_a_silent_managed_identity_endpoint_does_not_hide_az_login(
    az: FakeAz, registry: tuple[Exchange, StandIn], helper_exe: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default chain's managed identity endpoint accepts and never answers: that part of the chain
    is cut short, and the developer tools after it (here ``az``, logged in) still answer."""
    _, reg = registry
    add_record(RegistryBook.for_settings(load_settings()), reg.netloc)
    with black_hole() as hole:
        monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", hole.url)
        proc = helper_get(helper_exe, reg.netloc)
        asked = hole.settle()
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["Username"] == USERNAME and proc.stderr == ""
    assert asked >= 1 and len(az.calls) == 1


def test_the_default_chain_names_every_credential_it_tried(helper_exe: str) -> None:
    proc = helper_get(helper_exe, "myreg.azurecr.io")
    (line,) = proc.stderr.splitlines()
    for name in ("EnvironmentCredential", "ManagedIdentityCredential", "AzureCliCredential"):
        assert name in line, line
