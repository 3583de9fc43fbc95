"""The kubelet plugin with service-account tokens for Azure and Google, end to end through the plugin.

The providers' own tests (test_providers_workload_azure.py, test_providers_workload_gcp.py) hold the
federation to each cloud's protocol; here the same local HTTPS stand-ins (Entra ID's token endpoint and
the ACR exchange; Google STS) answer ``regauth-credential-provider`` run as the kubelet runs it, reached
through each SDK's own settings: the routing picks the record, the provider mints with the pod's token,
the token cache keeps one token per service account, and the response decodes strictly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from support.kubelet import go_seconds, keyring_lookup, kubelet_decode, request, run_plugin
from support.providers import StandIn, fake_jwt, stand_in, write_ca
from support.records import add_record
from test_providers_acr import TENANT, Exchange
from test_providers_workload_azure import ACR_ANNOTATIONS
from test_providers_workload_azure import Entra as WorkloadEntra
from test_providers_workload_azure import pod_token as azure_pod_token
from test_providers_workload_gcp import HOST as GAR_HOST
from test_providers_workload_gcp import POOL, Sts
from test_providers_workload_gcp import pod_token as gcp_pod_token

from regauth.config import Settings
from regauth.kube.wire import parse_go_duration
from regauth.providers import acr, gcp


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The plugin's SDKs trust the stand-ins' CA through their own setting.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(write_ca(ca, tmp_path)))


@pytest.fixture
def azure(
    ca: trustme.CA, trusted: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[WorkloadEntra, StandIn, StandIn]]:
    entra, exchange = WorkloadEntra(), Exchange()
    with (
        stand_in(ca, {f"/{TENANT}/oauth2/v2.0/token": entra}) as login,
        stand_in(ca, {"/oauth2/exchange": exchange}) as registry,
    ):
        exchange.netloc = registry.netloc
        monkeypatch.setenv("AZURE_AUTHORITY_HOST", login.url)
        yield entra, login, registry


def test_acr_pulls_with_the_annotated_workload_identity(
    azure: tuple[WorkloadEntra, StandIn, StandIn], settings: Settings
) -> None:
    entra, login, registry = azure
    add_record(settings, registry.netloc, provider="acr")
    image = f"{registry.netloc}/team/app"
    token = azure_pod_token()
    proc = run_plugin(request(image, serviceAccountToken=token, serviceAccountAnnotations=ACR_ANNOTATIONS))
    assert (proc.returncode, proc.stderr) == (0, "")
    data = kubelet_decode(proc.stdout, service_account_token=token)
    (entry,) = keyring_lookup(data["auth"], image)
    assert entry["username"] == acr.USERNAME and entry["password"]
    # Entra ID got the pod's token as the annotated client's assertion; the registry got Entra's token.
    (form,) = login.forms
    assert (
        form["client_assertion"] == token
        and form["client_id"] == ACR_ANNOTATIONS["kubernetes.azure.com/acr-client-id"]
    )
    assert registry.forms[0]["access_token"] == entra.issued[0]

    # Another pod of the same service account: answered from the token cache, nothing exchanged.
    again = run_plugin(
        request(image, serviceAccountToken=azure_pod_token(), serviceAccountAnnotations=ACR_ANNOTATIONS)
    )
    assert (again.returncode, kubelet_decode(again.stdout)["auth"]) == (0, data["auth"])
    assert sum(login.hits.values()) == 1 and sum(registry.hits.values()) == 1
    # A second service account gets its own.
    other = run_plugin(
        request(
            image, serviceAccountToken=azure_pod_token("builder"), serviceAccountAnnotations=ACR_ANNOTATIONS
        )
    )
    assert other.returncode == 0, other.stderr
    assert sum(login.hits.values()) == 2


def test_artifact_registry_pulls_through_the_records_workload_identity_pool(
    ca: trustme.CA, trusted: None, settings: Settings
) -> None:
    app = Sts()
    with stand_in(ca, {"/v1/token": app}) as sts:
        options = {"token_url": f"{sts.url}/v1/token", "workload_identity_provider": POOL}
        add_record(settings, GAR_HOST, provider="gcp", options=options)
        image = f"{GAR_HOST}/project/repo/app"
        token = gcp_pod_token()
        proc = run_plugin(request(image, serviceAccountToken=token), "--default-cache-duration", "12h")
        assert (proc.returncode, proc.stderr) == (0, "")
        data = kubelet_decode(proc.stdout, service_account_token=token)
        assert keyring_lookup(data["auth"], image) == [{"username": gcp.USERNAME, "password": app.issued[0]}]
        (form,) = sts.forms
        assert form["subject_token"] == token and form["audience"].endswith(POOL)

        again = run_plugin(request(image, serviceAccountToken=gcp_pod_token()))
        assert (again.returncode, kubelet_decode(again.stdout)["auth"]) == (0, data["auth"])
        assert sum(sts.hits.values()) == 1


@pytest.mark.parametrize("exp", [float("inf"), float("-inf"), float("nan"), 1e300, "soon"])
def test_a_refresh_token_with_an_absurd_expiry_is_answered_within_gos_durations(
    azure: tuple[WorkloadEntra, StandIn, StandIn], settings: Settings, exp: object
) -> None:
    # The expiry is the registry's refresh token's own claim: it must bound the answer, never break it.
    entra, login, registry = azure
    exchange = registry.routes["/oauth2/exchange"]
    registry.routes["/oauth2/exchange"] = lambda path, form: (
        exchange(path, form)[0],
        {"refresh_token": fake_jwt({"exp": exp, "aud": registry.netloc})},
    )
    add_record(settings, registry.netloc, provider="acr")
    image = f"{registry.netloc}/team/app"
    token = azure_pod_token()
    proc = run_plugin(request(image, serviceAccountToken=token, serviceAccountAnnotations=ACR_ANNOTATIONS))
    assert (proc.returncode, proc.stderr) == (0, "")
    data = kubelet_decode(proc.stdout, service_account_token=token)
    assert keyring_lookup(data["auth"], image)
    # Never longer than the Entra token it came from (an hour) allows.
    assert go_seconds(data["cacheDuration"]) <= 3600


@pytest.mark.parametrize("expires_in", [1e300, float("inf"), float("nan"), "soon", -5, None])
def test_an_sts_answer_with_an_absurd_lifetime_is_one_line_or_a_bounded_answer(
    ca: trustme.CA, trusted: None, settings: Settings, expires_in: object
) -> None:
    app = Sts()
    app.answer = (200, {"access_token": "ya29.federated", "token_type": "Bearer", "expires_in": expires_in})
    with stand_in(ca, {"/v1/token": app}) as sts:
        options = {"token_url": f"{sts.url}/v1/token", "workload_identity_provider": POOL}
        add_record(settings, GAR_HOST, provider="gcp", options=options)
        token = gcp_pod_token()
        proc = run_plugin(request(f"{GAR_HOST}/project/repo/app", serviceAccountToken=token))
    assert "Traceback" not in proc.stderr and token not in proc.stderr, proc.stderr
    if proc.returncode == 0:
        data = kubelet_decode(proc.stdout, service_account_token=token)
        assert go_seconds(data.get("cacheDuration", "0s")) <= 3600
    else:
        assert (proc.returncode, proc.stdout, proc.stderr.count("\n")) == (1, "", 1)


def test_a_refresh_token_that_is_no_text_is_one_line(
    azure: tuple[WorkloadEntra, StandIn, StandIn], settings: Settings
) -> None:
    # A lone surrogate is what json.loads makes of "\ud800": no stream, file or store can hold it.
    entra, login, registry = azure
    exchange = registry.routes["/oauth2/exchange"]
    registry.routes["/oauth2/exchange"] = lambda path, form: (
        exchange(path, form)[0],
        {"refresh_token": "a\ud800b"},
    )
    add_record(settings, registry.netloc, provider="acr")
    image = f"{registry.netloc}/team/app"
    proc = run_plugin(
        request(image, serviceAccountToken=azure_pod_token(), serviceAccountAnnotations=ACR_ANNOTATIONS)
    )
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_a_token_said_to_last_centuries_is_cached_within_gos_durations(
    ca: trustme.CA, trusted: None, settings: Settings
) -> None:
    # 950 years: a time Python holds, but half of it is past the int64 nanoseconds of Go's Duration,
    # and a cacheDuration the kubelet cannot decode drops the whole answer.
    app = Sts()
    app.answer = (200, {"access_token": "ya29.federated", "token_type": "Bearer", "expires_in": 3e10})
    with stand_in(ca, {"/v1/token": app}) as sts:
        options = {"token_url": f"{sts.url}/v1/token", "workload_identity_provider": POOL}
        add_record(settings, GAR_HOST, provider="gcp", options=options)
        token = gcp_pod_token()
        proc = run_plugin(request(f"{GAR_HOST}/project/repo/app", serviceAccountToken=token))
    assert (proc.returncode, proc.stderr) == (0, "")
    data = kubelet_decode(proc.stdout, service_account_token=token)
    assert parse_go_duration(data["cacheDuration"]) > 0  # raises past Go's limit
