"""Google Artifact Registry and Container Registry: an OAuth2 access token from google-auth.

The credential is ``google.auth.default`` (GOOGLE_APPLICATION_CREDENTIALS, gcloud's application
default credentials, the metadata server), or the key file the record option ``key_file`` names (a
service-account key or an ``authorized_user`` file). The username
is ``oauth2accesstoken``. Record option ``scope`` overrides the cloud-platform scope.

``google.auth.default`` runs under the search ``deadline``, its metadata server pings bounded by
the request it is given (``probes``).

With a pod's service-account token (the kubelet's ``tokenAttributes``), the workload's own identity
mints instead, through a workload identity pool: ``gcp_workload``, which reads the options
``workload_identity_provider``, ``service_account``, ``token_url``, ``iam_credentials_url`` and
``universe_domain``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
from regauth.providers.hosts import is_gcp, is_gcr
from regauth.providers.tokenkey import IDENTITY_VARS as TOKEN_IDENTITY_VARS
from regauth.providers.workload import Workload
from regauth.registries import Registry

USERNAME = "oauth2accesstoken"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# The record options this provider reads (`--option KEY=VALUE`); `regauth registry add` refuses others.
OPTION_KEYS = frozenset(
    {
        "key_file",
        "scope",
        # A workload's token (gcp_workload).
        "workload_identity_provider",
        "service_account",
        "token_url",
        "iam_credentials_url",
        "universe_domain",
    }
)
# Named in tokenkey, which the helper's fast get reads without importing this module.
IDENTITY_VARS = TOKEN_IDENTITY_VARS["gcp"]
NO_CREDENTIALS_ADVICE = (
    "run `gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS to a key file, "
    "or add the record option key_file=PATH"
)
LATE_ADVICE = "the metadata server did not answer; " + NO_CREDENTIALS_ADVICE
GCR_NOTICE = (
    "{host}: Container Registry (gcr.io) is deprecated; move to Artifact Registry "
    "(LOCATION-docker.pkg.dev), see https://cloud.google.com/artifact-registry/docs/transition"
)


class GcpProvider:
    name = "gcp"
    cloud = "Google Cloud"
    token_username = USERNAME
    token_lifetime = "1 hour"

    def __init__(self, environ: Mapping[str, str], notify: Notify) -> None:
        self._env = environ
        self._notify = notify

    def serves(self, host: str) -> bool:
        return is_gcp(host)

    def identity(self, host: str, record: Registry | None) -> str:
        return identity_text(record, self._env, IDENTITY_VARS)

    def workload_identity(self, host: str, record: Registry | None, workload: Workload) -> str:
        from regauth.providers import gcp_workload

        return gcp_workload.identity(self._env, record, workload)

    def workload_credential(self, host: str, record: Registry | None, workload: Workload) -> Credential:
        from regauth.providers import gcp_workload

        self._notice(host)
        creds = gcp_workload.mint(host, record, workload, option(record, "scope") or SCOPE)
        return Credential(username=USERNAME, secret=creds.token, expires_at=_expiry(creds))

    def credential_files(self, record: Registry | None) -> tuple[str, ...]:
        config = self._env.get("CLOUDSDK_CONFIG") or home_path(self._env, ".config", "gcloud")
        adc = f"{config}/application_default_credentials.json"
        return (config, adc, self._env.get("GOOGLE_APPLICATION_CREDENTIALS") or adc)

    def credential(self, host: str, record: Registry | None, secret: str | None) -> Credential:
        self._notice(host)
        try:
            import google.auth
            import google.auth.exceptions as g_errors
            import google.auth.transport.requests as g_requests
        except ImportError as exc:
            raise missing_sdk(self.name, "google-auth", "gcp") from exc
        quiet_sdk_logger("google.auth")
        key_file = option(record, "key_file")
        scopes = [option(record, "scope") or SCOPE]
        try:
            if key_file is not None:
                creds = _from_key_file(key_file, scopes)
            else:
                creds = self._default(google.auth, g_requests, g_errors, scopes, host, record)
        except (g_errors.DefaultCredentialsError, OSError, ValueError) as exc:
            if key_file is None:
                what = f"no Google credentials found: {brief(exc)}"
                raise no_credentials(self.name, host, record, what, NO_CREDENTIALS_ADVICE) from exc
            what = f"cannot use the key file {key_file}: {brief(exc)}"
            raise failure(self.name, host, record, what, NO_CREDENTIALS_ADVICE) from exc
        from regauth.providers.bounded import MINT_SECONDS, BoundedSession

        try:
            # Bounded as a workload's mint: a deadline, a capped answer, and no redirect, which would
            # send the request's signed assertion or refresh token on to wherever it pointed.
            creds.refresh(g_requests.Request(BoundedSession(MINT_SECONDS)))
        except g_errors.RefreshError as exc:
            raise failure(
                self.name,
                host,
                record,
                f"Google refused the token request: {brief(exc)}",
                "check that the credential is valid, not revoked (`gcloud auth application-default login`)",
            ) from exc
        except g_errors.TransportError as exc:
            raise failure(
                self.name,
                host,
                record,
                f"cannot reach Google's token endpoint: {brief(exc)}",
                "check the network, HTTPS_PROXY and REQUESTS_CA_BUNDLE",
            ) from exc
        except (OverflowError, TypeError, ValueError) as exc:
            # google-auth reads the answer's fields as they come: an expires_in that is text or past
            # year 9999, a body that is no JSON object.
            what = f"Google's token endpoint gave an answer google-auth cannot use: {brief(exc)}"
            raise failure(self.name, host, record, what, "check the credential's token_uri") from exc
        return Credential(username=USERNAME, secret=creds.token, expires_at=_expiry(creds))

    def _notice(self, host: str) -> None:
        if is_gcr(host):
            # Said when a token is minted, not on every cached get: once an hour is a notice, not noise.
            self._notify(GCR_NOTICE.format(host=host))

    def _default(
        self, auth: Any, g_requests: Any, g_errors: Any, scopes: list[str], host: str, record: Registry | None
    ) -> Any:
        """``google.auth.default``, its metadata server probes bounded, the whole search in time."""
        from regauth.providers.deadline import within
        from regauth.providers.probes import GoogleProbeRequest, google_metadata_hosts

        request = GoogleProbeRequest(g_requests.Request(), g_errors, google_metadata_hosts(self._env))

        def late() -> ProviderError:
            what = f"no Google credentials found within {DISCOVERY_DEADLINE:g}s"
            return no_credentials(self.name, host, record, what, LATE_ADVICE)

        creds, _ = within(DISCOVERY_DEADLINE, lambda: auth.default(scopes=scopes, request=request), late)
        return creds


def _from_key_file(path: str, scopes: list[str]) -> Any:
    """Load the key file by its declared type: google-auth warns against loading any type unchecked."""
    import json

    from google.oauth2 import credentials, service_account

    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "service_account":
        return service_account.Credentials.from_service_account_file(path, scopes=scopes)  # type: ignore[no-untyped-call]
    if kind == "authorized_user":
        return credentials.Credentials.from_authorized_user_file(path, scopes=scopes)  # type: ignore[no-untyped-call]
    raise ValueError(
        f"key type {kind!r} is not supported here (service_account or authorized_user); "
        "point GOOGLE_APPLICATION_CREDENTIALS at it instead"
    )


def _expiry(creds: Any) -> float | None:
    import calendar

    # google-auth keeps expiry as a naive datetime in UTC.
    expiry = getattr(creds, "expiry", None)
    return None if expiry is None else float(calendar.timegm(expiry.utctimetuple()))
