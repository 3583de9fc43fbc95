"""Azure Container Registry: an Entra ID (AAD) token from azure-identity, exchanged for an ACR
refresh token at the registry's ``/oauth2/exchange``, used with ACR's fixed null-GUID username.

Record options: ``credential`` (default | secret | certificate | managed | workload | cli; default is
``DefaultAzureCredential``), ``tenant_id``, ``client_id``, ``certificate_file`` (PEM with the key),
``token_file`` (workload identity), ``authority`` (an Entra host or URL; a host that is not a public
Microsoft one is used with instance discovery off, as for Azure Stack or ADFS), ``scope`` (the ARM
scope of the registry's cloud by default) and ``login_server_url`` (where ``/oauth2/exchange`` lives;
``https://<registry>`` by default). The client secret, or the certificate's password, is the record's
secret in the secret store (``--password-stdin``), never an option.

The ``default`` and ``managed`` credentials ask managed identity endpoints: through a transport that
bounds each request to them (``probes``), under the search ``deadline`` (for ``default``, the part of
the chain before the developer tools: ``azure_chain``). Entra ID is the option ``authority``, else
``AZURE_AUTHORITY_HOST``, else the registry's cloud's.

With a pod's service-account token (the kubelet's ``tokenAttributes``), the workload's own identity
mints instead: ``acr_workload``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from regauth.distribution.jwt import unverified_claims
from regauth.errors import ProviderError
from regauth.providers.base import (
    DISCOVERY_DEADLINE,
    Credential,
    Notify,
    brief,
    failure,
    home_path,
    identity_text,
    missing_sdk,
    no_credentials,
    option,
    quiet_sdk_logger,
)
from regauth.providers.hosts import ACR_CLOUDS, acr_cloud
from regauth.providers.tokenkey import IDENTITY_VARS as TOKEN_IDENTITY_VARS
from regauth.providers.workload import Workload
from regauth.registries import Registry

USERNAME = "00000000-0000-0000-0000-000000000000"
# ACR's refresh tokens live 3 hours; an expiry claimed further ahead than this is not believed.
MAX_REFRESH_LIFE = 24 * 3600.0
KINDS = ("default", "secret", "certificate", "managed", "workload", "cli")
# The record options this provider reads (`--option KEY=VALUE`); `regauth registry add` refuses others.
OPTION_KEYS = frozenset(
    {
        "credential",
        "tenant_id",
        "client_id",
        "certificate_file",
        "token_file",
        "authority",
        "scope",
        "login_server_url",
    }
)
PUBLIC_AUTHORITIES = {authority for _, authority, _ in ACR_CLOUDS} | {"login.microsoftonline.de"}
# Named in tokenkey, which the helper's fast get reads without importing this module.
IDENTITY_VARS = TOKEN_IDENTITY_VARS["acr"]
NO_CREDENTIALS_ADVICE = (
    "run `az login`, set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, or name a credential "
    "in the record options (credential=secret|certificate|managed|workload|cli)"
)
# What to do when a named credential fails; the secret, certificate and workload ones fail on the record.
KIND_ADVICE = {
    "managed": "check that this machine has a managed identity assigned (App Service, VM, Arc) and, for a "
    "user-assigned one, the option client_id",
    "cli": "run `az login` as the user that runs regauth (with --tenant for the option tenant_id), "
    "or put the Azure CLI on PATH",
}
RECORD_ADVICE = "check the tenant, client id and secret or certificate of the record"
LATE_ADVICE = (
    "a managed identity endpoint did not answer and no developer tool (az, pwsh, azd) is logged in; "
    "run `az login`, or name the credential in the record options "
    "(credential=secret|certificate|managed|workload|cli)"
)


class AcrProvider:
    name = "acr"
    cloud = "Azure"
    token_username = USERNAME
    token_lifetime = "3 hours"

    def __init__(self, environ: Mapping[str, str], notify: Notify) -> None:
        self._env = environ

    def serves(self, host: str) -> bool:
        return acr_cloud(host) is not None

    def identity(self, host: str, record: Registry | None) -> str:
        return identity_text(record, self._env, IDENTITY_VARS)

    def workload_identity(self, host: str, record: Registry | None, workload: Workload) -> str:
        from regauth.providers import acr_workload

        return acr_workload.identity(self._env, record, workload)

    def workload_credential(self, host: str, record: Registry | None, workload: Workload) -> Credential:
        from regauth.providers import acr_workload

        return acr_workload.mint(
            host,
            record,
            workload,
            authority=self._authority(host, record),
            scope=_scope(host, record),
            exchange=self._registry_credential,
        )

    def credential_files(self, record: Registry | None) -> tuple[str, ...]:
        # `az login` writes its profile and MSAL token cache into the config directory.
        config = self._env.get("AZURE_CONFIG_DIR") or home_path(self._env, ".azure")
        return (config, f"{config}/azureProfile.json", f"{config}/msal_token_cache.json")

    def credential(self, host: str, record: Registry | None, secret: str | None) -> Credential:
        # ``secret`` is the record's client secret, or its certificate's password.
        kind = option(record, "credential") or "default"
        if kind not in KINDS:
            raise failure(
                self.name, host, record, f"unknown credential {kind!r}", f"use one of {', '.join(KINDS)}"
            )
        try:
            import azure.core.exceptions as az_errors
            import azure.core.pipeline.transport as az_transport
            import azure.identity as az_identity
        except ImportError as exc:
            raise missing_sdk(self.name, "azure-identity", "azure") from exc
        from regauth.providers.bounded import EXCHANGE_SECONDS, BoundedSession

        quiet_sdk_logger("azure.identity")
        scope = _scope(host, record)
        credential = None
        try:
            credential = self._aad_credential(
                az_identity, az_errors, az_transport, kind, host, record, secret
            )
            aad = self._search(credential, kind, scope, host, record)
        except az_errors.ClientAuthenticationError as exc:
            if kind == "default":
                # The chain's own message runs to a page; the names of what it tried are the useful part.
                what = f"no Azure credentials found (DefaultAzureCredential tried {_attempted(exc)})"
                raise no_credentials(self.name, host, record, what, NO_CREDENTIALS_ADVICE) from exc
            if isinstance(exc, az_identity.CredentialUnavailableError):
                what = f"the {kind} credential is unavailable: {brief(exc)}"
                raise failure(
                    self.name, host, record, what, KIND_ADVICE.get(kind, NO_CREDENTIALS_ADVICE)
                ) from exc
            raise failure(
                self.name,
                host,
                record,
                f"Entra ID refused the {kind} credential: {brief(exc)}",
                KIND_ADVICE.get(kind, RECORD_ADVICE),
            ) from exc
        except (ValueError, OSError) as exc:
            # Raised before any request: a malformed tenant id, an unreadable certificate file.
            raise failure(
                self.name,
                host,
                record,
                f"cannot set up the {kind} credential: {brief(exc)}",
                "check the record options",
            ) from exc
        finally:
            if credential is not None:
                credential.close()
        session = BoundedSession(EXCHANGE_SECONDS)
        return self._registry_credential(session, host, record, aad, option(record, "tenant_id"))

    def _registry_credential(
        self, session: Any, host: str, record: Registry | None, aad: Any, tenant: str | None
    ) -> Credential:
        """The ACR refresh token for an Entra token, through ``session`` (a ``BoundedSession``)."""
        refresh = self._exchange(session, host, record, aad.token, tenant)
        exp = unverified_claims(refresh).get("exp")
        # ACR refresh tokens carry their own expiry (3 h); without one, or with one no ACR gives (not a
        # number, or more than a day ahead: it would be cached as long), trust it no longer than the AAD
        # token.
        expires_at = float(aad.expires_on)
        if isinstance(exp, (int, float)) and math.isfinite(exp) and exp - time.time() <= MAX_REFRESH_LIFE:
            expires_at = float(exp)
        return Credential(username=USERNAME, secret=refresh, expires_at=expires_at)

    def _authority(self, host: str, record: Registry | None) -> str | None:
        """Where Entra ID is: the record's, else azure-identity's own setting, else the registry's cloud's."""
        return (
            option(record, "authority")
            or self._env.get("AZURE_AUTHORITY_HOST", "").strip()
            or (acr_cloud(host) or (None, ""))[0]
        )

    def _search(self, credential: Any, kind: str, scope: str, host: str, record: Registry | None) -> Any:
        """The Entra token; from a named managed identity in time (the default chain keeps its own)."""
        if kind != "managed":
            # The default chain bounds its own search; any other credential the record names (a
            # secret, `az`) is what the user asked to wait for.
            return credential.get_token(scope)
        from regauth.providers.deadline import within

        return within(DISCOVERY_DEADLINE, lambda: credential.get_token(scope), self._late(kind, host, record))

    def _late(self, kind: str, host: str, record: Registry | None) -> Callable[[], ProviderError]:
        def late() -> ProviderError:
            chain = "DefaultAzureCredential" if kind == "default" else "the managed identity endpoint"
            what = f"no Azure credentials found within {DISCOVERY_DEADLINE:g}s ({chain})"
            advice = LATE_ADVICE if kind == "default" else KIND_ADVICE["managed"]
            return no_credentials(self.name, host, record, what, advice)

        return late

    def _aad_credential(
        self,
        az: Any,
        az_errors: Any,
        az_transport: Any,
        kind: str,
        host: str,
        record: Registry | None,
        secret: str | None,
    ) -> Any:
        from regauth.providers.azure_chain import DefaultChain
        from regauth.providers.probes import azure_transport

        tenant, client = option(record, "tenant_id"), option(record, "client_id")
        common: dict[str, Any] = {}
        authority = self._authority(host, record)
        if authority:
            common["authority"] = authority
            # Instance discovery asks Microsoft whether the authority is known; a private one never is.
            if authority.split("://")[-1].split("/")[0] not in PUBLIC_AUTHORITIES:
                common["disable_instance_discovery"] = True
        if kind == "default":
            return DefaultChain(
                az,
                az_errors,
                self._env,
                self._late(kind, host, record),
                **common,
                managed_identity_client_id=client,
                workload_identity_client_id=client,
                transport=azure_transport(az_transport, self._env),
            )
        if kind == "managed":
            return az.ManagedIdentityCredential(
                client_id=client, transport=azure_transport(az_transport, self._env)
            )
        if kind == "cli":
            return az.AzureCliCredential(tenant_id=tenant or "")
        if kind == "workload":
            return az.WorkloadIdentityCredential(
                tenant_id=tenant, client_id=client, token_file_path=option(record, "token_file"), **common
            )
        if tenant is None or client is None:
            raise failure(
                self.name,
                host,
                record,
                f"the {kind} credential needs tenant_id and client_id",
                "add both options",
            )
        if kind == "secret":
            if not secret:
                raise failure(
                    self.name,
                    host,
                    record,
                    "no client secret in the secret store",
                    "store it with `regauth registry update NAME --password-stdin`",
                )
            return az.ClientSecretCredential(tenant, client, secret, **common)
        cert = option(record, "certificate_file")
        if cert is None:
            raise failure(self.name, host, record, "no certificate", "add the option certificate_file=PATH")
        return az.CertificateCredential(
            tenant, client, certificate_path=cert, password=secret or None, **common
        )

    def _exchange(
        self, session: Any, host: str, record: Registry | None, aad_token: str, tenant: str | None
    ) -> str:
        import requests

        from regauth.providers.bounded import BodyTooLarge

        base = (option(record, "login_server_url") or f"https://{host}").rstrip("/")
        url = f"{base}/oauth2/exchange"
        tenant = tenant or unverified_claims(aad_token).get("tid")
        form = {"grant_type": "access_token", "service": host, "access_token": aad_token}
        if tenant:
            form["tenant"] = str(tenant)
        try:
            # The record's CA bundle is the one its registry is trusted with, here as everywhere else.
            verify = record.ca_file if record is not None and record.ca_file else True
            response = session.post(url, data=form, timeout=(5, 20), verify=verify)
        except BodyTooLarge as exc:
            what = f"{exc} (no ACR login server answers so)"
            raise failure(self.name, host, record, what, "check the option login_server_url") from exc
        except requests.RequestException as exc:
            raise failure(
                self.name,
                host,
                record,
                f"cannot reach {url}: {type(exc).__name__}",
                "check the network, HTTPS_PROXY and REQUESTS_CA_BUNDLE, or the option login_server_url",
            ) from exc
        if response.status_code in (401, 403):
            raise failure(
                self.name,
                host,
                record,
                f"the registry refused the Entra ID token (HTTP {response.status_code}{_detail(response)})",
                "give the identity the AcrPull role on the registry",
            )
        try:
            token = response.json()["refresh_token"] if response.status_code == 200 else None
        except (ValueError, KeyError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise failure(
                self.name,
                host,
                record,
                f"{url} gave no refresh token (HTTP {response.status_code}{_detail(response)})",
                "check that the host is an ACR login server, or set the option login_server_url",
            )
        return token


def _scope(host: str, record: Registry | None) -> str:
    return option(record, "scope") or (acr_cloud(host) or ("", ACR_CLOUDS[0][2]))[1]


def _attempted(exc: Exception) -> str:
    names = [line.strip().split(":")[0] for line in str(exc).splitlines() if line.startswith("\t")]
    return ", ".join(names) or "its chain"


def _detail(response: Any) -> str:
    """The registry's own error message, if it sent one: ACR's say which tenant or role is wrong."""
    try:
        message = response.json()["errors"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        return ""
    return f": {brief(message, 120)}"
