"""The gcp provider with a pod's service-account token (KEP-4412): Google's STS token exchange for a workload
identity pool, with the real google-auth (``identity_pool.Credentials`` and its ``SubjectTokenSupplier``)
against local HTTPS stand-ins for STS and the IAM Service Account Credentials API, reached through
google-auth's own settings (``token_url``, the impersonation URL) as the record options set them. Both
trust the test CA through ``REQUESTS_CA_BUNDLE``. The stand-ins record what they were sent; hostile ones
answer 500s or bodies that never end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import trustme
from support.providers import Endless, StandIn, fake_jwt, stand_in, write_ca

from regauth.errors import ProviderError
from regauth.providers.gcp import USERNAME, GcpProvider
from regauth.providers.workload import NoWorkloadIdentity, Workload
from regauth.registries import Registry

HOST = "europe-docker.pkg.dev"
POOL = "projects/123456789012/locations/global/workloadIdentityPools/clusters/providers/prod"
AUDIENCE = f"//iam.googleapis.com/{POOL}"
EMAIL = "puller@regauth-test.iam.gserviceaccount.com"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT = "urn:ietf:params:oauth:token-type:jwt"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
IAM_PATH = f"/v1/projects/-/serviceAccounts/{EMAIL}:generateAccessToken"


def pod_token(name: str = "puller", namespace: str = "ci") -> str:
    return fake_jwt(
        {
            "iss": "https://oidc.cluster.example",
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "aud": [AUDIENCE],
            "exp": int(time.time()) + 600,
        }
    )


class Sts:
    """Google STS: the token-exchange grant, answered with numbered federated access tokens."""

    def __init__(self) -> None:
        self.answer: tuple[int, dict[str, Any] | Endless] | None = None
        self.issued: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any] | Endless]:
        if self.answer is not None:
            return self.answer
        if form.get("grant_type") != TOKEN_EXCHANGE or form.get("subject_token_type") != JWT:
            return 400, {"error": "invalid_request", "error_description": "bad grant"}
        with self.lock:
            token = f"ya29.federated-{len(self.issued) + 1}"
            self.issued.append(token)
        return 200, {
            "access_token": token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": 3600,
        }


class Iam:
    """generateAccessToken for EMAIL: the impersonated token, for a caller with a federated token."""

    def __init__(self) -> None:
        self.answer: tuple[int, dict[str, Any] | Endless] | None = None
        self.expire = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=50)

    def __call__(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any] | Endless]:
        if self.answer is not None:
            return self.answer
        return 200, {
            "accessToken": "ya29.impersonated",
            "expireTime": self.expire.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


@pytest.fixture
def sts(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Sts, StandIn]]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(write_ca(ca, tmp_path)))
    app = Sts()
    with stand_in(ca, {"/v1/token": app}) as site:
        yield app, site


@pytest.fixture
def iam(ca: trustme.CA) -> Iterator[tuple[Iam, StandIn]]:
    app = Iam()
    with stand_in(ca, {IAM_PATH: app}) as site:
        yield app, site


def gcp() -> GcpProvider:
    return GcpProvider({}, lambda message: None)


def record(sts: StandIn, iam: StandIn | None = None, **options: str) -> Registry:
    endpoints = {"token_url": f"{sts.url}/v1/token"}
    if iam is not None:
        endpoints["iam_credentials_url"] = iam.url
    return Registry(
        id="r1", name="gar", registry=HOST, provider="gcp", options={**endpoints, **options}, updated_at="t1"
    )


def failure(rec: Registry | None, workload: Workload) -> str:
    with pytest.raises(ProviderError) as info:
        gcp().workload_credential(HOST, rec, workload)
    message = str(info.value)
    assert "\n" not in message and workload.token not in message, message
    for part in workload.token.split("."):
        assert part not in message, message
    return message


# ---- the exchange --------------------------------------------------------------------------------------


def test_the_pod_token_is_exchanged_at_sts_for_the_annotated_pool(sts: tuple[Sts, StandIn]) -> None:
    _, site = sts
    workload = Workload(pod_token(), {"regauth/gcp-workload-identity-provider": POOL})
    cred = gcp().workload_credential(HOST, record(site), workload)
    assert cred.username == USERNAME and cred.secret == "ya29.federated-1"
    assert cred.expires_at is not None and abs(cred.expires_at - (time.time() + 3600)) < 120
    (form,) = site.forms
    assert form["subject_token"] == workload.token and form["subject_token_type"] == JWT
    # The short form of the provider's name, as gcloud prints it, is the audience in full.
    assert form["audience"] == AUDIENCE and form["grant_type"] == TOKEN_EXCHANGE
    assert form["scope"] == CLOUD_PLATFORM
    assert form["requested_token_type"] == "urn:ietf:params:oauth:token-type:access_token"


def test_the_gke_service_account_annotation_impersonates_it(
    sts: tuple[Sts, StandIn], iam: tuple[Iam, StandIn]
) -> None:
    app, site = sts
    clock, iam_site = iam
    annotations = {
        "regauth/gcp-workload-identity-provider": AUDIENCE,
        "iam.gke.io/gcp-service-account": EMAIL,
    }
    cred = gcp().workload_credential(HOST, record(site, iam_site), Workload(pod_token(), annotations))
    assert cred.secret == "ya29.impersonated"
    assert cred.expires_at == clock.expire.timestamp()
    assert site.forms[0]["audience"] == AUDIENCE
    # IAM was asked with the federated token, for the annotated account and the registry's scope.
    assert iam_site.hits == {IAM_PATH: 1}
    assert {k.lower(): v for k, v in iam_site.headers[0].items()}[
        "authorization"
    ] == f"Bearer {app.issued[0]}"
    assert json.loads(iam_site.bodies[0])["scope"] == [CLOUD_PLATFORM]


def test_the_record_options_stand_in_for_missing_annotations(
    sts: tuple[Sts, StandIn], iam: tuple[Iam, StandIn]
) -> None:
    _, site = sts
    _, iam_site = iam
    rec = record(site, iam_site, workload_identity_provider=AUDIENCE, service_account=EMAIL)
    assert gcp().workload_credential(HOST, rec, Workload(pod_token(), {})).secret == "ya29.impersonated"
    assert site.forms[0]["audience"] == AUDIENCE and iam_site.hits[IAM_PATH] == 1


def test_the_annotation_wins_over_the_record_option(sts: tuple[Sts, StandIn]) -> None:
    _, site = sts
    other = "projects/1/locations/global/workloadIdentityPools/other/providers/x"
    rec = record(site, workload_identity_provider=other)
    workload = Workload(pod_token(), {"regauth/gcp-workload-identity-provider": AUDIENCE})
    gcp().workload_credential(HOST, rec, workload)
    assert site.forms[0]["audience"] == AUDIENCE


# ---- what selects the identity -------------------------------------------------------------------------


def test_two_service_accounts_are_two_identities() -> None:
    provider = gcp()
    annotations = {"regauth/gcp-workload-identity-provider": POOL}
    texts = {provider.workload_identity(HOST, None, Workload(pod_token(n), annotations)) for n in ("a", "b")}
    assert len(texts) == 2
    assert provider.workload_identity(HOST, None, Workload(pod_token("a"), annotations)) in texts
    impersonating = {**annotations, "iam.gke.io/gcp-service-account": EMAIL}
    assert provider.workload_identity(HOST, None, Workload(pod_token("a"), impersonating)) not in texts
    for text in texts:
        assert "eyJ" not in text


def test_the_identity_costs_no_sdk() -> None:
    code = (
        "import json, sys\n"
        "from regauth.providers.gcp import GcpProvider\n"
        "from regauth.providers.workload import Workload\n"
        "w = Workload('a.b.c', {'iam.gke.io/gcp-service-account': 'x@y'})\n"
        f"GcpProvider({{}}, print).workload_identity({HOST!r}, None, w)\n"
        "print(json.dumps(sorted(m for m in ('google', 'requests', 'urllib3') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


# ---- what it cannot do, in one line --------------------------------------------------------------------


def test_no_pool_is_one_line_naming_the_annotation(sts: tuple[Sts, StandIn]) -> None:
    _, site = sts
    message = failure(record(site), Workload(pod_token(), {"iam.gke.io/gcp-service-account": EMAIL}))
    assert message.startswith(f"gcp provider for registry 'gar' ({HOST}): no workload identity pool provider")
    assert (
        "annotate the service account with regauth/gcp-workload-identity-provider=//iam.googleapis.com/"
        in message
    )
    assert "the record option workload_identity_provider" in message
    # The one failure the plugin's --node-identity-fallback answers with the node's identity.
    with pytest.raises(NoWorkloadIdentity):
        gcp().workload_credential(HOST, record(site), Workload(pod_token(), {}))
    assert not site.hits


def test_a_malformed_service_account_never_reaches_iam(
    sts: tuple[Sts, StandIn], iam: tuple[Iam, StandIn]
) -> None:
    _, site = sts
    _, iam_site = iam
    annotations = {
        "regauth/gcp-workload-identity-provider": POOL,
        "iam.gke.io/gcp-service-account": "x/../../y",
    }
    message = failure(record(site, iam_site), Workload(pod_token(), annotations))
    assert (
        "the service account 'x/../../y' in the annotation iam.gke.io/gcp-service-account is malformed"
        in message
    )
    assert not site.hits and not iam_site.hits


def test_sts_refusing_the_token_is_one_line_without_it(sts: tuple[Sts, StandIn]) -> None:
    app, site = sts
    workload = Workload(pod_token(), {"regauth/gcp-workload-identity-provider": POOL})
    description = f"The audience in ID Token [{AUDIENCE}] does not match. Token: {workload.token}"
    app.answer = (400, {"error": "invalid_grant", "error_description": description})
    message = failure(record(site), workload)
    assert message.startswith(
        f"gcp provider for registry 'gar' ({HOST}): Google refused the service account's"
    )
    assert "invalid_grant" in message and "allowed audiences" in message


def test_iam_refusing_the_impersonation_is_one_line(
    sts: tuple[Sts, StandIn], iam: tuple[Iam, StandIn]
) -> None:
    _, site = sts
    app, iam_site = iam
    app.answer = (
        403,
        {"error": {"code": 403, "message": "Permission 'iam.serviceAccounts.getAccessToken' denied"}},
    )
    annotations = {"regauth/gcp-workload-identity-provider": POOL, "iam.gke.io/gcp-service-account": EMAIL}
    message = failure(record(site, iam_site), Workload(pod_token(), annotations))
    assert "Google refused the service account's token" in message and "getAccessToken" in message
    assert f"roles/iam.workloadIdentityUser on {EMAIL}" in message


def test_sts_answering_500_is_asked_once(sts: tuple[Sts, StandIn]) -> None:
    app, site = sts
    app.answer = (500, {"error": "server_error", "error_description": "backend unavailable"})
    message = failure(record(site), Workload(pod_token(), {"regauth/gcp-workload-identity-provider": POOL}))
    assert message.startswith(
        f"gcp provider for registry 'gar' ({HOST}): Google's token endpoint failed (HTTP 500)"
    )
    assert "server_error" in message and "not a refusal" in message
    assert site.hits["/v1/token"] == 1


@pytest.mark.parametrize("where", ["sts", "iam"])
def test_a_body_that_never_ends_is_cut_short(
    sts: tuple[Sts, StandIn], iam: tuple[Iam, StandIn], where: str
) -> None:
    sts_app, site = sts
    iam_app, iam_site = iam
    endless = Endless()
    (sts_app if where == "sts" else iam_app).answer = (200, endless)
    annotations = {"regauth/gcp-workload-identity-provider": POOL, "iam.gke.io/gcp-service-account": EMAIL}
    message = failure(record(site, iam_site), Workload(pod_token(), annotations))
    assert "no complete answer from Google's token endpoints" in message and "passed 1048576 bytes" in message
    assert endless.gone.wait(30) and endless.sent < Endless.LIMIT
