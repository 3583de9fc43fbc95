"""Artifact Registry with a pod's service-account token: Google's STS token exchange for a workload
identity pool, done by google-auth's own ``identity_pool.Credentials`` with the token handed over as
the subject token (a ``SubjectTokenSupplier``: nothing on disk).

The pool's provider (the STS audience) is the service account's annotation
``regauth/gcp-workload-identity-provider``, else the record option ``workload_identity_provider``: its
full name ``//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/
PROVIDER``, or the same from ``projects/`` on, as google-github-actions/auth and
``gcloud iam workload-identity-pools create-cred-config`` take it. The federated token pulls as the
workload itself (direct resource access); with the GKE annotation ``iam.gke.io/gcp-service-account``
(or the record option ``service_account``), it is exchanged once more, for that Google service
account's token (impersonation: the workload needs roles/iam.workloadIdentityUser on it).

The endpoints are google-auth's settings: the record options ``token_url`` (STS), ``iam_credentials_url``
(the IAM Service Account Credentials API, whose ``generateAccessToken`` impersonates) and
``universe_domain``. Every request of the mint goes through one ``BoundedSession``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regauth.providers.base import brief, failure, identity_text, missing_sdk, option
from regauth.providers.federation import SERVER_ADVICE, Named, named, plain, said, service_account
from regauth.providers.workload import NoWorkloadIdentity, Workload
from regauth.registries import Registry

PROVIDER_ANNOTATIONS = ("regauth/gcp-workload-identity-provider",)
SERVICE_ACCOUNT_ANNOTATIONS = ("iam.gke.io/gcp-service-account",)
# What the kubelet's tokenAttributes should pass on (optionalServiceAccountAnnotationKeys).
ANNOTATIONS = PROVIDER_ANNOTATIONS + SERVICE_ACCOUNT_ANNOTATIONS
JWT = "urn:ietf:params:oauth:token-type:jwt"
UNIVERSE = "googleapis.com"
NAME = "gcp"
PROVIDER_EXAMPLE = (
    "//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/ID"
)


def chosen(record: Registry | None, workload: Workload) -> tuple[Named | None, Named | None]:
    """The (pool provider, service account to impersonate) the workload pulls as."""
    return (
        named(record, workload, PROVIDER_ANNOTATIONS, "workload_identity_provider"),
        named(record, workload, SERVICE_ACCOUNT_ANNOTATIONS, "service_account"),
    )


def identity(environ: Mapping[str, str], record: Registry | None, workload: Workload) -> str:
    ids = [found.value if found else "" for found in chosen(record, workload)]
    return identity_text(record, environ, (), "workload", *ids, service_account(workload))


def mint(host: str, record: Registry | None, workload: Workload, scope: str) -> Any:
    """google-auth's credentials for the workload, refreshed: ``token`` and ``expiry`` set."""
    pool, impersonated = chosen(record, workload)
    if pool is None:
        what = "no workload identity pool provider for the service account's token"
        todo = (
            f"annotate the service account with {PROVIDER_ANNOTATIONS[0]}={PROVIDER_EXAMPLE} "
            "or set the record option workload_identity_provider"
        )
        raise failure(NAME, host, record, what, todo, NoWorkloadIdentity)
    if impersonated is not None and not plain(impersonated.value):
        what = f"the service account {brief(impersonated.value, 80)!r} in {impersonated.source} is malformed"
        raise failure(NAME, host, record, what, f"set {impersonated.source} to its e-mail address")
    try:
        import google.auth.exceptions as g_errors
        import google.auth.transport.requests as g_requests
        from google.auth import identity_pool
    except ImportError as exc:
        raise missing_sdk(NAME, "google-auth", "gcp") from exc
    from regauth.providers.base import quiet_sdk_logger
    from regauth.providers.bounded import MINT_SECONDS, BoundedSession, server_failed

    quiet_sdk_logger("google.auth")

    class Supplier(identity_pool.SubjectTokenSupplier):
        def get_subject_token(self, context: Any, request: Any) -> str:
            return workload.token

    universe = option(record, "universe_domain") or UNIVERSE
    token_url = option(record, "token_url") or f"https://sts.{universe}/v1/token"
    session = BoundedSession(MINT_SECONDS)
    try:
        creds = identity_pool.Credentials(  # type: ignore[no-untyped-call]
            audience=_audience(pool.value, universe),
            subject_token_type=JWT,
            token_url=token_url,
            subject_token_supplier=Supplier(),
            service_account_impersonation_url=_impersonation_url(record, impersonated, universe),
            scopes=[scope],
            universe_domain=universe,
        )
        creds.refresh(g_requests.Request(session))  # type: ignore[no-untyped-call]
    except (g_errors.RefreshError, g_errors.OAuthError) as exc:
        # OAuthError: STS's own refusal (invalid_grant); RefreshError: IAM's, or an answer with no token.
        status = server_failed(session)
        if status is not None:
            what = f"Google's token endpoint failed (HTTP {status}): {said(exc, workload)}"
            raise failure(NAME, host, record, what, SERVER_ADVICE) from exc
        what = f"Google refused the service account's token for {pool.value}: {said(exc, workload)}"
        raise failure(NAME, host, record, what, _advice(impersonated)) from exc
    except g_errors.TransportError as exc:
        what = f"no complete answer from Google's token endpoints: {said(exc, workload)}"
        todo = "check the network, HTTPS_PROXY and REQUESTS_CA_BUNDLE, or the record option token_url"
        raise failure(NAME, host, record, what, todo) from exc
    except (g_errors.GoogleAuthError, ValueError) as exc:
        what = f"cannot use the workload identity pool provider {pool.value}: {said(exc, workload)}"
        raise failure(NAME, host, record, what, f"set {pool.source} to {PROVIDER_EXAMPLE}") from exc
    except (OverflowError, TypeError) as exc:
        # google-auth reads the answer's fields as they come: an expires_in that is null or past
        # year 9999.
        what = f"Google's token endpoint gave an answer google-auth cannot use: {said(exc, workload)}"
        raise failure(NAME, host, record, what, "check the record option token_url") from exc
    return creds


def _audience(provider: str, universe: str) -> str:
    # The short form is the one google-github-actions/auth and gcloud print.
    return f"//iam.{universe}/{provider}" if provider.startswith("projects/") else provider


def _impersonation_url(record: Registry | None, impersonated: Named | None, universe: str) -> str | None:
    if impersonated is None:
        return None
    base = (option(record, "iam_credentials_url") or f"https://iamcredentials.{universe}").rstrip("/")
    return f"{base}/v1/projects/-/serviceAccounts/{impersonated.value}:generateAccessToken"


def _advice(impersonated: Named | None) -> str:
    advice = (
        "check the pool provider's issuer (the cluster's) and allowed audiences (the audience of the "
        "kubelet's tokenAttributes)"
    )
    if impersonated is None:
        return advice + ", and that the workload's principal may read the repository"
    return advice + f", and that the workload has roles/iam.workloadIdentityUser on {impersonated.value}"
