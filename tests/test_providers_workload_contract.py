"""What every ``providers.workload.WorkloadProvider`` in the table owes the routing, checked for each.

The token cache is keyed by ``workload_identity``: it must tell service accounts apart (two service
accounts never share a token), keep one service account's pods together (the kubelet renews the token
every hour; a new token must not mean a new exchange), differ from the node's ``identity``, never hold
the token itself, and cost no SDK import (it runs before every cache lookup).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from support.providers import fake_jwt

from regauth.config import Settings
from regauth.providers.routing import make_provider
from regauth.providers.table import PROVIDERS
from regauth.providers.workload import Workload
from regauth.registries import Registry

# Per provider: a host it serves, and the service-account annotations that name a cloud identity.
WORLDS = {
    "ecr": (
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        {"eks.amazonaws.com/ecr-role-arn": "arn:aws:iam::123456789012:role/pull"},
    ),
    "acr": (
        "contoso.azurecr.io",
        {
            "kubernetes.azure.com/acr-client-id": "0f5a6b7c-1111-4222-8333-944445555666",
            "kubernetes.azure.com/acr-tenant-id": "72f988bf-0000-4000-8000-000000000001",
        },
    ),
    "gcp": (
        "europe-docker.pkg.dev",
        {
            "regauth/gcp-workload-identity-provider": (
                "projects/1/locations/global/workloadIdentityPools/p/providers/k"
            )
        },
    ),
}
SDKS = ("boto3", "botocore", "azure", "google", "msal", "requests")


def workload(namespace: str, name: str, annotations: dict[str, str], pod: str = "pod-1") -> Workload:
    now = int(time.time())
    claims = {
        "iss": "https://oidc.cluster.example.test",
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "exp": now + 3600,
        "iat": now,
        "kubernetes.io": {"pod": {"name": pod}},
    }
    return Workload.checked(fake_jwt(claims), annotations)


def record(host: str, provider: str) -> Registry:
    return Registry(id="r1", name="reg", registry=host, provider=provider, updated_at="t1")


def test_every_minting_provider_is_a_workload_provider(settings: Settings) -> None:
    minting = {name for name, kind in PROVIDERS.items() if kind.mints}
    assert minting == set(WORLDS)
    for name in minting:
        provider = make_provider(name, settings)
        assert callable(getattr(provider, "workload_identity", None)), name
        assert callable(getattr(provider, "workload_credential", None)), name


@pytest.mark.parametrize("name", sorted(WORLDS))
@pytest.mark.parametrize("with_record", [True, False])
def test_the_workload_identity_keys_the_cache_per_service_account(
    settings: Settings, name: str, with_record: bool
) -> None:
    host, annotations = WORLDS[name]
    provider = make_provider(name, settings)
    rec = record(host, name) if with_record else None
    first = workload("team-a", "puller", annotations)
    same_sa = workload("team-a", "puller", annotations, pod="pod-2")
    other_sa = workload("team-b", "puller", annotations)
    ident = provider.workload_identity  # type: ignore[attr-defined]
    assert ident(host, rec, first) == ident(host, rec, same_sa)
    assert ident(host, rec, first) != ident(host, rec, other_sa)
    assert ident(host, rec, first) != ident(host, rec, workload("team-a", "puller", {}))
    assert ident(host, rec, first) != provider.identity(host, rec)  # type: ignore[attr-defined]
    for text in (ident(host, rec, first), ident(host, rec, other_sa)):
        assert first.token not in text and first.token.split(".")[1] not in text


def test_the_workload_identity_imports_no_sdk() -> None:
    code = (
        "import json, sys\n"
        "from regauth.providers.routing import make_provider\n"
        "from regauth.config import load_settings\n"
        "from regauth.providers.workload import Workload\n"
        f"worlds = json.loads({json.dumps(json.dumps(WORLDS))})\n"
        f"token = {workload('team-a', 'puller', {}).token!r}\n"
        "for name, (host, annotations) in worlds.items():\n"
        "    provider = make_provider(name, load_settings())\n"
        "    provider.workload_identity(host, None, Workload(token, annotations))\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {SDKS!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
