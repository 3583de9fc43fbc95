"""The acr provider with a pod's service-account token (KEP-4412): Azure workload identity federation with
the real azure-identity (``ClientAssertionCredential``) against a local HTTPS stand-in for Entra ID, reached
through azure-identity's own setting (``AZURE_AUTHORITY_HOST``, as the provider's environment), then the
ACR ``/oauth2/exchange`` on a local stand-in of the registry. Both trust the test CA through
``REQUESTS_CA_BUNDLE``. The stand-ins record what they were sent; hostile ones answer 500s, bodies that
never end, or a redirect elsewhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from support.providers import Endless, StandIn, fake_jwt, stand_in, write_ca
from test_providers_acr import TENANT, Exchange

from regauth.errors import ProviderError
from regauth.providers.acr import USERNAME, AcrProvider
from regauth.providers.workload import NoWorkloadIdentity, Workload
from regauth.registries import Registry

CLIENT = "0f5a6b7c-1111-4222-8333-944445555666"
OTHER_CLIENT = "5e4d3c2b-9999-4888-8777-766665555444"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACR_ANNOTATIONS = {
    "kubernetes.azure.com/acr-client-id": CLIENT,
    "kubernetes.azure.com/acr-tenant-id": TENANT,
}


def pod_token(name: str = "puller", namespace: str = "ci") -> str:
    """A projected service-account token as the kubelet passes it (unsigned: the stand-in checks claims)."""
    return fake_jwt(
        {
            "iss": "https://oidc.cluster.example",
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "aud": ["api://AzureADTokenExchange"],
            "exp": int(time.time()) + 600,
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name}},
        }
    )


class Entra:
    """The token endpoint of TENANT: client credentials with a JWT assertion, as workload identity sends."""

    def __init__(self) -> None:
        self.answer: tuple[int, dict[str, Any] | Endless] | None = None
        self.issued: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any] | Endless]:
        if self.answer is not None:
            return self.answer
        ok = (
            form.get("grant_type") == "client_credentials" and form.get("client_assertion_type") == JWT_BEARER
        )
        if not ok or form.get("client_id") != CLIENT or not form.get("client_assertion"):
            return 400, {"error": "invalid_request", "error_description": "AADSTS900144: bad request"}
        with self.lock:
            token = fake_jwt({"tid": TENANT, "exp": int(time.time()) + 3600, "n": len(self.issued)})
            self.issued.append(token)
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}


@pytest.fixture
def entra(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Entra, StandIn]]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(write_ca(ca, tmp_path)))
    app = Entra()
    with stand_in(ca, {f"/{TENANT}/oauth2/v2.0/token": app}) as site:
        yield app, site


@pytest.fixture
def registry(ca: trustme.CA) -> Iterator[tuple[Exchange, StandIn]]:
    exchange = Exchange()
    with stand_in(ca, {"/oauth2/exchange": exchange}) as site:
        exchange.netloc = site.netloc
        yield exchange, site


def provider(login: StandIn) -> AcrProvider:
    return AcrProvider({"AZURE_AUTHORITY_HOST": login.url}, lambda message: None)


def record(host: str, **options: str) -> Registry:
    return Registry(id="r1", name="acr", registry=host, provider="acr", options=options, updated_at="t1")


def failure(acr: AcrProvider, host: str, rec: Registry | None, workload: Workload) -> str:
    with pytest.raises(ProviderError) as info:
        acr.workload_credential(host, rec, workload)
    message = str(info.value)
    assert "\n" not in message and workload.token not in message, message
    for part in workload.token.split("."):
        assert part not in message, message
    return message


# ---- the federation ------------------------------------------------------------------------------------


def test_the_pod_token_is_the_client_assertion_of_the_annotated_identity(
    entra: tuple[Entra, StandIn], registry: tuple[Exchange, StandIn]
) -> None:
    app, login = entra
    _, reg = registry
    workload = Workload(pod_token(), ACR_ANNOTATIONS)
    cred = provider(login).workload_credential(reg.netloc, record(reg.netloc), workload)
    assert cred.username == USERNAME
    assert cred.expires_at is not None and cred.expires_at > time.time() + 10000  # the ACR token's 3 h
    # Entra ID was asked for the annotated client id in the annotated tenant, with the pod's token.
    assert login.hits == {f"/{TENANT}/oauth2/v2.0/token": 1}
    (form,) = login.forms
    assert form["client_id"] == CLIENT and form["client_assertion"] == workload.token
    assert form["client_assertion_type"] == JWT_BEARER
    assert form["scope"] == "https://management.azure.com/.default"
    # ...and the registry got Entra's token for that tenant, never the pod's.
    (exchanged,) = reg.forms
    assert exchanged["access_token"] == app.issued[0] and exchanged["tenant"] == TENANT
    assert exchanged["service"] == reg.netloc and workload.token not in json.dumps(reg.forms)


def test_azure_workload_identity_annotations_are_accepted_too(
    entra: tuple[Entra, StandIn], registry: tuple[Exchange, StandIn]
) -> None:
    _, login = entra
    _, reg = registry
    annotations = {"azure.workload.identity/client-id": CLIENT, "azure.workload.identity/tenant-id": TENANT}
    provider(login).workload_credential(reg.netloc, record(reg.netloc), Workload(pod_token(), annotations))
    assert login.forms[0]["client_id"] == CLIENT


def test_the_record_options_stand_in_for_missing_annotations(
    entra: tuple[Entra, StandIn], registry: tuple[Exchange, StandIn]
) -> None:
    _, login = entra
    _, reg = registry
    rec = record(reg.netloc, client_id=CLIENT, tenant_id=TENANT)
    provider(login).workload_credential(reg.netloc, rec, Workload(pod_token(), {}))
    assert login.forms[0]["client_id"] == CLIENT and reg.forms[0]["tenant"] == TENANT


def test_the_annotation_wins_over_the_record_option(
    entra: tuple[Entra, StandIn], registry: tuple[Exchange, StandIn]
) -> None:
    _, login = entra
    _, reg = registry
    rec = record(reg.netloc, client_id=OTHER_CLIENT, tenant_id=TENANT)
    annotations = {"kubernetes.azure.com/acr-client-id": CLIENT}
    provider(login).workload_credential(reg.netloc, rec, Workload(pod_token(), annotations))
    assert login.forms[0]["client_id"] == CLIENT


def test_the_authority_option_beats_azure_authority_host(
    entra: tuple[Entra, StandIn], registry: tuple[Exchange, StandIn]
) -> None:
    _, login = entra
    _, reg = registry
    acr = AcrProvider({"AZURE_AUTHORITY_HOST": "https://127.0.0.1:9"}, lambda message: None)
    rec = record(reg.netloc, authority=login.url)
    acr.workload_credential(reg.netloc, rec, Workload(pod_token(), ACR_ANNOTATIONS))
    assert login.hits[f"/{TENANT}/oauth2/v2.0/token"] == 1


# ---- what selects the identity -------------------------------------------------------------------------


def test_two_service_accounts_are_two_identities() -> None:
    acr = AcrProvider({}, lambda message: None)
    rec = record("myreg.azurecr.io")
    texts = {
        acr.workload_identity("myreg.azurecr.io", rec, Workload(pod_token(name), ACR_ANNOTATIONS))
        for name in ("puller", "builder")
    }
    assert len(texts) == 2
    # A new token for the same service account (the kubelet's rotate) is the same identity...
    again = Workload(pod_token("puller"), ACR_ANNOTATIONS)
    assert acr.workload_identity("myreg.azurecr.io", rec, again) in texts
    # ...and another client id, or a token that names no service account, another one.
    other = {**ACR_ANNOTATIONS, "kubernetes.azure.com/acr-client-id": OTHER_CLIENT}
    assert acr.workload_identity("myreg.azurecr.io", rec, Workload(pod_token(), other)) not in texts
    opaque = [acr.workload_identity("myreg.azurecr.io", rec, Workload(t, ACR_ANNOTATIONS)) for t in "ab"]
    assert opaque[0] != opaque[1] and not texts & set(opaque)
    for text in texts | set(opaque):
        assert "eyJ" not in text  # the token itself is never part of the key text


def test_the_identity_costs_no_sdk() -> None:
    code = (
        "import json, sys\n"
        "from regauth.providers.acr import AcrProvider\n"
        "from regauth.providers.workload import Workload\n"
        "w = Workload('a.b.c', {'kubernetes.azure.com/acr-client-id': 'x'})\n"
        "AcrProvider({}, print).workload_identity('myreg.azurecr.io', None, w)\n"
        "print(json.dumps(sorted(m for m in ('azure', 'msal', 'requests', 'urllib3') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


# ---- what it cannot do, in one line --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "named", "names_none"),
    [
        (
            "kubernetes.azure.com/acr-client-id",
            "names no client id; annotate it with kubernetes.azure.com/acr-client-id",
            True,
        ),
        (
            "kubernetes.azure.com/acr-tenant-id",
            "names no tenant id; annotate it with kubernetes.azure.com/acr-tenant-id",
            False,
        ),
    ],
)
def test_a_missing_annotation_is_one_line_naming_it(
    entra: tuple[Entra, StandIn], missing: str, named: str, names_none: bool
) -> None:
    _, login = entra
    annotations = {k: v for k, v in ACR_ANNOTATIONS.items() if k != missing}
    message = failure(provider(login), "myreg.azurecr.io", None, Workload(pod_token(), annotations))
    assert message.startswith("acr provider for myreg.azurecr.io: the service account "), message
    assert named in message and "or set the record option" in message
    # A service account that names no client id is the one failure the plugin's
    # --node-identity-fallback answers with the node's identity; one that names a client id without
    # its tenant asked for an identity of its own, and gets the error, never the node's.
    with pytest.raises(ProviderError) as caught:
        provider(login).workload_credential("myreg.azurecr.io", None, Workload(pod_token(), annotations))
    assert isinstance(caught.value, NoWorkloadIdentity) is names_none
    assert not login.hits


def test_a_malformed_tenant_never_reaches_entra(entra: tuple[Entra, StandIn]) -> None:
    _, login = entra
    annotations = {**ACR_ANNOTATIONS, "kubernetes.azure.com/acr-tenant-id": "../../evil?x="}
    message = failure(provider(login), "myreg.azurecr.io", None, Workload(pod_token(), annotations))
    assert (
        "the tenant id '../../evil?x=' in the annotation kubernetes.azure.com/acr-tenant-id is malformed"
        in message
    )
    assert not login.hits


def test_entra_refusing_the_token_is_one_line_without_it(
    entra: tuple[Entra, StandIn], registry: tuple[Exchange, StandIn]
) -> None:
    app, login = entra
    _, reg = registry
    workload = Workload(pod_token(), ACR_ANNOTATIONS)
    # A hostile or chatty endpoint quotes what it was sent.
    description = (
        "AADSTS700213: No matching federated identity record found for presented assertion subject "
        f"'system:serviceaccount:ci:puller'. Assertion: {workload.token}"
    )
    app.answer = (400, {"error": "invalid_client", "error_description": description})
    message = failure(provider(login), reg.netloc, record(reg.netloc), workload)
    assert message.startswith(f"acr provider for registry 'acr' ({reg.netloc}): Entra ID refused the ")
    assert (
        "AADSTS700213" in message and f"client id {CLIENT}" in message and "federated credential" in message
    )
    assert not reg.hits


def test_entra_answering_500_is_asked_once(entra: tuple[Entra, StandIn]) -> None:
    app, login = entra
    app.answer = (500, {"error": "server_error", "error_description": "AADSTS50000: try again"})
    message = failure(provider(login), "myreg.azurecr.io", None, Workload(pod_token(), ACR_ANNOTATIONS))
    assert message.startswith("acr provider for myreg.azurecr.io: Entra ID failed (HTTP 500): ")
    assert "AADSTS50000" in message and "not a refusal" in message
    # No retries of its own: the kubelet retries the pull, within its minute.
    assert login.hits[f"/{TENANT}/oauth2/v2.0/token"] == 1


def test_entra_sending_a_body_that_never_ends_is_cut_short(entra: tuple[Entra, StandIn]) -> None:
    app, login = entra
    endless = Endless()
    app.answer = (200, endless)
    message = failure(provider(login), "myreg.azurecr.io", None, Workload(pod_token(), ACR_ANNOTATIONS))
    assert message.startswith("acr provider for myreg.azurecr.io: no token from Entra ID (")
    assert "passed 1048576 bytes" in message
    assert endless.gone.wait(30) and endless.sent < Endless.LIMIT


def test_the_registry_sending_a_body_that_never_ends_is_cut_short(
    ca: trustme.CA, entra: tuple[Entra, StandIn]
) -> None:
    _, login = entra
    endless = Endless()
    with stand_in(ca, {"/oauth2/exchange": lambda path, form: (200, endless)}) as reg:
        rec = record(reg.netloc)
        message = failure(provider(login), reg.netloc, rec, Workload(pod_token(), ACR_ANNOTATIONS))
        # The client hung up: the stand-in's next write failed.
        assert endless.gone.wait(30) and endless.sent < Endless.LIMIT
    assert message.startswith(f"acr provider for registry 'acr' ({reg.netloc}): the answer from https://")
    assert "/oauth2/exchange passed 1048576 bytes" in message


def test_a_redirect_of_the_exchange_is_not_followed(ca: trustme.CA, entra: tuple[Entra, StandIn]) -> None:
    # A 307 would carry the Entra token in the form on to wherever it points.
    _, login = entra
    with stand_in(ca, {"/oauth2/exchange": Exchange()}) as elsewhere:
        with stand_in(ca, {"/oauth2/exchange": lambda path, form: (307, {})}) as reg:
            reg.response_headers = {"Location": f"{elsewhere.url}/oauth2/exchange"}
            rec = record(reg.netloc)
            message = failure(provider(login), reg.netloc, rec, Workload(pod_token(), ACR_ANNOTATIONS))
        assert not elsewhere.hits
    assert "gave no refresh token (HTTP 307)" in message
