"""ACR with a pod's service-account token: Azure workload identity federation, as acr-credential-provider
does it. The token is the client assertion (azure-identity's ``ClientAssertionCredential``) of the app
registration or user-assigned identity its service account names; Entra ID checks it against that
identity's federated credential for the service account, and the Entra token is exchanged at the
registry as the node's would be.

The client id comes from the service account's annotation ``kubernetes.azure.com/acr-client-id``
(acr-credential-provider's) or ``azure.workload.identity/client-id`` (azure-workload-identity's), else
from the record option ``client_id``; the tenant likewise from ``kubernetes.azure.com/acr-tenant-id``,
``azure.workload.identity/tenant-id`` or ``tenant_id``. Entra ID is where the node's credential would
go (the record's ``authority``, ``AZURE_AUTHORITY_HOST``, the registry's cloud).

Every request of the mint goes through one ``BoundedSession``, without retries: the kubelet gives a
plugin a minute, and retries the pull itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from regauth.errors import ProviderError
from regauth.providers.base import Credential, brief, failure, identity_text, missing_sdk
from regauth.providers.federation import SERVER_ADVICE, Named, named, plain, said, service_account
from regauth.providers.workload import NoWorkloadIdentity, Workload
from regauth.registries import Registry

CLIENT_ANNOTATIONS = ("kubernetes.azure.com/acr-client-id", "azure.workload.identity/client-id")
TENANT_ANNOTATIONS = ("kubernetes.azure.com/acr-tenant-id", "azure.workload.identity/tenant-id")
# What the kubelet's tokenAttributes should pass on (optionalServiceAccountAnnotationKeys).
ANNOTATIONS = CLIENT_ANNOTATIONS + TENANT_ANNOTATIONS
IDENTITY_VARS = ("AZURE_AUTHORITY_HOST",)
FEDERATION_ADVICE = (
    "check the identity's federated credential for this service account (the cluster's issuer, "
    "subject system:serviceaccount:NAMESPACE:NAME, the audience of the kubelet's tokenAttributes)"
)
NAME = "acr"

# (session, host, record, Entra token, tenant) -> the registry credential: the provider's exchange.
Exchange = Callable[[Any, str, Registry | None, Any, str], Credential]


def chosen(record: Registry | None, workload: Workload) -> tuple[Named | None, Named | None]:
    """The (client id, tenant) the workload pulls as."""
    return (
        named(record, workload, CLIENT_ANNOTATIONS, "client_id"),
        named(record, workload, TENANT_ANNOTATIONS, "tenant_id"),
    )


def identity(environ: Mapping[str, str], record: Registry | None, workload: Workload) -> str:
    ids = [found.value if found else "" for found in chosen(record, workload)]
    return identity_text(record, environ, IDENTITY_VARS, "workload", *ids, service_account(workload))


def mint(
    host: str,
    record: Registry | None,
    workload: Workload,
    *,
    authority: str | None,
    scope: str,
    exchange: Exchange,
) -> Credential:
    """The workload's Entra token for ``scope`` from ``authority``, then the registry's ``exchange``."""
    named_client, named_tenant = chosen(record, workload)
    client = _checked(host, record, named_client, CLIENT_ANNOTATIONS, "client_id", NoWorkloadIdentity)
    # A client id without its tenant names an identity, half: the node's identity must not stand in
    # for it (--node-identity-fallback is for a service account that names none).
    tenant = _checked(host, record, named_tenant, TENANT_ANNOTATIONS, "tenant_id", ProviderError)
    try:
        import azure.core.exceptions as az_errors
        import azure.core.pipeline.transport as az_transport
        import azure.identity as az_identity
    except ImportError as exc:
        raise missing_sdk(NAME, "azure-identity", "azure") from exc
    from regauth.providers.base import quiet_sdk_logger
    from regauth.providers.bounded import MINT_SECONDS, BoundedSession, server_failed

    quiet_sdk_logger("azure.identity")
    session = BoundedSession(MINT_SECONDS)
    where = {"authority": authority} if authority else {}
    credential = az_identity.ClientAssertionCredential(
        tenant,
        client,
        lambda: workload.token,
        transport=az_transport.RequestsTransport(session=session),
        retry_total=0,
        **where,
    )
    try:
        entra = credential.get_token(scope)
    except az_errors.ClientAuthenticationError as exc:
        status = server_failed(session)
        if status is not None:
            what = f"Entra ID failed (HTTP {status}): {said(exc, workload)}"
            raise failure(NAME, host, record, what, SERVER_ADVICE) from exc
        what = f"Entra ID refused the service account's token for client id {client}: {said(exc, workload)}"
        raise failure(NAME, host, record, what, FEDERATION_ADVICE) from exc
    except (az_errors.AzureError, ValueError) as exc:
        what = f"no token from Entra ID ({authority or 'its public cloud'}): {said(exc, workload)}"
        advice = "check the network, and the record option authority or AZURE_AUTHORITY_HOST"
        raise failure(NAME, host, record, what, advice) from exc
    finally:
        credential.close()
    return exchange(session, host, record, entra, tenant)


def _checked(
    host: str,
    record: Registry | None,
    found: Named | None,
    keys: tuple[str, ...],
    opt: str,
    absent: type[ProviderError],
) -> str:
    label = opt.replace("_id", " id")
    if found is None:
        todo = f"annotate it with {keys[0]} or set the record option {opt}"
        raise failure(NAME, host, record, f"the service account names no {label}", todo, absent)
    if not plain(found.value):
        what = f"the {label} {brief(found.value, 60)!r} in {found.source} is malformed"
        raise failure(NAME, host, record, what, f"set {found.source} to the identity's {label} (a GUID)")
    return found.value
