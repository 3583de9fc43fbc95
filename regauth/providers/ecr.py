"""Amazon ECR: ``GetAuthorizationToken`` through boto3 and its standard credential chain.

Account and region come from the host (``<account>.dkr.ecr.<region>.amazonaws.com``); ``public.ecr.aws``
uses the ``ecr-public`` API in us-east-1. Record options: ``profile``, ``role_arn`` (assumed with STS,
with ``role_session_name`` and ``external_id``), ``region`` and ``registry_id`` (for hosts that do not
spell them, such as a pull-through proxy), ``endpoint_url`` (an ECR API endpoint; boto3 also honours
``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_ECR`` by itself).

The credential chain is searched under ``deadline`` (a container or instance metadata endpoint
that never answers must not hold a pull), except a profile's ``credential_process``, which is the
user's own program and may wait for them.

A workload (the kubelet plugin with a pod's service-account token, KEP-4412) pulls with its own role,
as ecr-credential-provider does: the role from the service account's annotation
``eks.amazonaws.com/ecr-role-arn``, else the record option ``workload_role_arn``, else
``AWS_ECR_ROLE_ARN`` (the variable ecr-credential-provider reads; set in the kubelet config's ``env``),
assumed with STS ``AssumeRoleWithWebIdentity`` and the pod's token (an unsigned call: no node
credentials are searched or used), then ``GetAuthorizationToken`` with those temporary credentials.
The token is good until the earlier of the two expiries. With no role at all, ``NoWorkloadIdentity``
names the annotation to set.

An ``expiresAt`` that is already past when the token arrives (a skewed clock; moto's fixed 2015 date)
is taken as a token valid for ``PAST_EXPIRY_TTL`` from now, so it is cached briefly, never forever.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from regauth.errors import ProviderError
from regauth.printable import quoted
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
    where,
)
from regauth.providers.hosts import EcrHost, ecr_host
from regauth.providers.tokenkey import IDENTITY_VARS as TOKEN_IDENTITY_VARS
from regauth.registries import Registry

if TYPE_CHECKING:
    # Only the kubelet plugin's workload path needs it; a cached `get` does not pay for its imports.
    from regauth.providers.workload import Workload

PAST_EXPIRY_TTL = 600.0
# The record options this provider reads (`--option KEY=VALUE`); `regauth registry add` refuses others.
OPTION_KEYS = frozenset(
    {
        "profile",
        "role_arn",
        "role_session_name",
        "external_id",
        "region",
        "registry_id",
        "endpoint_url",
        "workload_role_arn",
    }
)
# Where a workload's role comes from, first to last (see the module's docstring).
ROLE_ANNOTATION = "eks.amazonaws.com/ecr-role-arn"
ROLE_ENV = "AWS_ECR_ROLE_ARN"
# The session name in CloudTrail, unless the record names one; the service account is there too, as
# the web identity's subject.
WORKLOAD_SESSION_NAME = "regauth-credential-provider"
# An IAM role ARN, as STS takes it (matched in the workload path only: `re` costs a cached get).
_ROLE_ARN = r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$"
# The variables that select an AWS identity or endpoint; hashed into the cache key. Named in tokenkey,
# which the helper's fast get reads without importing this module.
IDENTITY_VARS = TOKEN_IDENTITY_VARS["ecr"]
DEFAULT_CHAIN = (
    "tried environment variables, ~/.aws config and credentials files, SSO, container and EC2 roles"
)
NO_CREDENTIALS_ADVICE = (
    "set AWS_PROFILE (then `aws sso login` if it is an SSO profile), or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or the record option profile=NAME"
)


class EcrProvider:
    name = "ecr"
    cloud = "AWS"
    token_username = "AWS"
    token_lifetime = "12 hours"

    def __init__(self, environ: Mapping[str, str], notify: Notify) -> None:
        self._env = environ

    def serves(self, host: str) -> bool:
        return ecr_host(host) is not None

    def identity(self, host: str, record: Registry | None) -> str:
        return identity_text(record, self._env, IDENTITY_VARS)

    def workload_identity(self, host: str, record: Registry | None, workload: Workload) -> str:
        role = self._workload_role(host, record, workload)
        # The role and the service account (issuer and subject) select the token; the token itself
        # is renewed by the kubelet every hour and must not split the cache.
        return identity_text(
            record,
            self._env,
            (*IDENTITY_VARS, ROLE_ENV),
            "workload",
            role or "",
            workload.issuer(),
            workload.subject(),
        )

    def workload_credential(self, host: str, record: Registry | None, workload: Workload) -> Credential:
        from regauth.providers.workload import NoWorkloadIdentity

        role = self._workload_role(host, record, workload)
        if role is None:
            raise NoWorkloadIdentity(
                f"{self.name} provider for {where(host, record)}: the service account "
                f"{quoted(workload.service_account())} names no IAM role to pull with; annotate it "
                f"with {ROLE_ANNOTATION}=arn:aws:iam::ACCOUNT:role/NAME (a key listed in the kubelet's "
                "tokenAttributes), or set the record option workload_role_arn"
            )
        target = self._target(host, record)
        try:
            import boto3
            import botocore.exceptions as boto_errors
        except ImportError as exc:
            raise missing_sdk(self.name, "boto3", "aws") from exc
        try:
            creds = self._assume_with_token(boto3, record, target.region, role, workload)
        except boto_errors.ClientError as exc:
            raise self._web_identity_error(host, record, role, workload, exc) from exc
        except (boto_errors.BotoCoreError, ValueError, KeyError) as exc:
            what = workload.scrub(f"STS AssumeRoleWithWebIdentity failed: {type(exc).__name__}: {brief(exc)}")
            raise failure(self.name, host, record, what, _todo_for(exc)) from exc
        session = boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=target.region,
        )
        try:
            data = self._authorization(session, record, target)
        except boto_errors.ClientError as exc:
            raise self._client_error(host, record, exc, role=role) from exc
        except (boto_errors.BotoCoreError, ValueError) as exc:
            raise failure(
                self.name, host, record, f"{type(exc).__name__}: {brief(exc)}", _todo_for(exc)
            ) from exc
        credential = self._decode(host, record, data)
        session_ends = creds["Expiration"].timestamp() if "Expiration" in creds else None
        if session_ends is not None and credential.expires_at is not None:
            # ECR's token is not used past the session that got it: cached until the earlier end.
            return credential._replace(expires_at=min(credential.expires_at, session_ends))
        return credential

    def _workload_role(self, host: str, record: Registry | None, workload: Workload) -> str | None:
        import re

        for where_from, value in (
            (
                f"the service account's annotation {ROLE_ANNOTATION}",
                workload.annotations.get(ROLE_ANNOTATION),
            ),
            ("the record option workload_role_arn", option(record, "workload_role_arn")),
            (ROLE_ENV, self._env.get(ROLE_ENV)),
        ):
            role = (value or "").strip()
            if not role:
                continue
            if not re.match(_ROLE_ARN, role):
                raise failure(
                    self.name,
                    host,
                    record,
                    f"{where_from} is {quoted(role)}, not an IAM role ARN",
                    "use arn:aws:iam::ACCOUNT:role/NAME",
                )
            return role
        return None

    def _assume_with_token(
        self, boto3: Any, record: Registry | None, region: str, role: str, workload: Workload
    ) -> dict[str, Any]:
        from botocore import UNSIGNED

        # Unsigned: the pod's token is the whole proof, so no node credentials are looked for (no
        # metadata probe) and none could be used by mistake. Endpoint and proxy: boto3's own settings.
        config = _config(self._env).merge(_unsigned_config(UNSIGNED))
        client = _bounded(boto3.session.Session(region_name=region).client("sts", config=config))
        answer = client.assume_role_with_web_identity(
            RoleArn=role,
            RoleSessionName=option(record, "role_session_name") or WORKLOAD_SESSION_NAME,
            WebIdentityToken=workload.token,
        )
        return _session_keys(answer, "AssumeRoleWithWebIdentity")

    def _web_identity_error(
        self, host: str, record: Registry | None, role: str, workload: Workload, exc: Any
    ) -> Exception:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Unknown"), workload.scrub(brief(error.get("Message", "")))
        # The claims are the token's (the kubelet's), shown quoted: escaped and bounded.
        account, issuer = quoted(workload.service_account()), quoted(workload.issuer())
        if code in ("InvalidIdentityToken", "IDPRejectedClaim", "AccessDenied", "ExpiredTokenException"):
            todo = (
                f"let the trust policy of {role} accept the service account {account} from the "
                f"cluster's OIDC issuer {issuer} with the audience the kubelet's "
                "tokenAttributes.serviceAccountTokenAudience names (sts.amazonaws.com)"
            )
        else:
            todo = "check the role ARN and the STS endpoint"
        return failure(
            self.name, host, record, f"STS AssumeRoleWithWebIdentity answered {code}: {message}", todo
        )

    def credential_files(self, record: Registry | None) -> tuple[str, ...]:
        env = self._env
        return (
            env.get("AWS_SHARED_CREDENTIALS_FILE") or home_path(env, ".aws", "credentials"),
            env.get("AWS_CONFIG_FILE") or home_path(env, ".aws", "config"),
            # `aws sso login` writes a new file here.
            home_path(env, ".aws", "sso", "cache"),
        )

    def credential(self, host: str, record: Registry | None, secret: str | None) -> Credential:
        target = self._target(host, record)
        try:
            import boto3
            import botocore.exceptions as boto_errors
        except ImportError as exc:
            raise missing_sdk(self.name, "boto3", "aws") from exc
        try:
            session = self._session(boto3, host, record, target.region)
            data = self._authorization(session, record, target)
        except boto_errors.NoCredentialsError as exc:
            raise self._no_credentials(host, record) from exc
        except boto_errors.ProfileNotFound as exc:
            raise failure(
                self.name, host, record, brief(exc), "fix AWS_PROFILE or the record option profile"
            ) from exc
        except boto_errors.ClientError as exc:
            raise self._client_error(host, record, exc) from exc
        except (boto_errors.BotoCoreError, ValueError) as exc:
            # BotoCoreError covers unreachable endpoints, expired SSO sessions and bad config files.
            raise failure(
                self.name, host, record, f"{type(exc).__name__}: {brief(exc)}", _todo_for(exc)
            ) from exc
        return self._decode(host, record, data)

    def _target(self, host: str, record: Registry | None) -> EcrHost:
        parsed = ecr_host(host)
        region = option(record, "region") or (parsed.region if parsed else None)
        if region is None:
            raise failure(
                self.name,
                host,
                record,
                "the host does not name an AWS region",
                "add the record option region=NAME",
            )
        account = option(record, "registry_id") or (parsed.account if parsed else "")
        return EcrHost(
            account=account,
            region=region,
            public=bool(parsed and parsed.public),
            fips=bool(parsed and parsed.fips),
        )

    def _session(self, boto3: Any, host: str, record: Registry | None, region: str) -> Any:
        import botocore.session

        from regauth.providers.deadline import within

        core = botocore.session.Session(profile=option(record, "profile"))
        session = boto3.session.Session(botocore_session=core, region_name=region)

        # The chain is searched here, under the deadline; botocore keeps what it finds for the clients.
        # A profile's credential_process is the user's own program (aws-vault, a hardware key that
        # waits for a touch): what they asked to wait for, so it gets no deadline.
        def late() -> ProviderError:
            return self._no_credentials(host, record, late=True)

        if "credential_process" in core.get_scoped_config():
            found = session.get_credentials()
        else:
            found = within(DISCOVERY_DEADLINE, session.get_credentials, late)
        if found is None:
            from botocore.exceptions import NoCredentialsError

            # What a client would raise on its first call; the caller turns it into the one line.
            raise NoCredentialsError()
        role_arn = option(record, "role_arn")
        if role_arn is None:
            return session
        params = {"RoleArn": role_arn, "RoleSessionName": option(record, "role_session_name") or "regauth"}
        if external_id := option(record, "external_id"):
            params["ExternalId"] = external_id
        sts = _bounded(session.client("sts", config=_config(self._env)))
        creds = _session_keys(sts.assume_role(**params), "AssumeRole")
        return boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=region,
        )

    def _no_credentials(self, host: str, record: Registry | None, *, late: bool = False) -> ProviderError:
        profile = option(record, "profile")
        tried = f"profile {profile!r}" if profile else DEFAULT_CHAIN
        what = (
            f"no AWS credentials found within {DISCOVERY_DEADLINE:g}s ({tried}; an endpoint did not answer)"
            if late
            else f"no AWS credentials found ({tried})"
        )
        return no_credentials(self.name, host, record, what, NO_CREDENTIALS_ADVICE)

    def _authorization(self, session: Any, record: Registry | None, target: EcrHost) -> dict[str, Any]:
        endpoint = option(record, "endpoint_url")
        if target.public:
            client = _bounded(session.client("ecr-public", config=_config(self._env), endpoint_url=endpoint))
            found = client.get_authorization_token().get("authorizationData")
            if not found:
                raise ValueError("GetAuthorizationToken returned no authorization data")
            return dict(found)
        # A FIPS registry host is served by the FIPS API endpoint, as ecr-login does.
        config = _config(self._env).merge(_fips_config()) if target.fips else _config(self._env)
        client = _bounded(session.client("ecr", config=config, endpoint_url=endpoint))
        params = {"registryIds": [target.account]} if target.account else {}
        items = client.get_authorization_token(**params).get("authorizationData")
        if not items:
            raise ValueError("GetAuthorizationToken returned no authorization data")
        return dict(items[0])

    def _decode(self, host: str, record: Registry | None, data: dict[str, Any]) -> Credential:
        import base64
        import binascii

        try:
            decoded = base64.b64decode(data["authorizationToken"], validate=True).decode()
        except (KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
            # TypeError: botocore hands on a JSON number where the model says string.
            raise failure(self.name, host, record, "AWS returned a malformed token", "retry later") from exc
        username, sep, secret = decoded.partition(":")
        if not sep or not secret:
            raise failure(self.name, host, record, "AWS returned a token without 'user:'", "retry later")
        now = time.time()
        expires_at = data["expiresAt"].timestamp() if "expiresAt" in data else now + PAST_EXPIRY_TTL
        if expires_at <= now:
            expires_at = now + PAST_EXPIRY_TTL
        return Credential(username=username, secret=secret, expires_at=expires_at)

    def _client_error(
        self, host: str, record: Registry | None, exc: Any, *, role: str | None = None
    ) -> Exception:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Unknown"), brief(error.get("Message", ""))
        if code in (
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "ExpiredToken",
            "ExpiredTokenException",
        ):
            todo = "the AWS credentials are invalid or expired: refresh them (e.g. `aws sso login`)"
        elif "AccessDenied" in code and role is not None:
            todo = f"allow ecr:GetAuthorizationToken to {role}"
        elif "AccessDenied" in code:
            todo = "allow ecr:GetAuthorizationToken (and sts:AssumeRole for role_arn) to this identity"
        else:
            todo = "check the AWS account, region and permissions"
        return failure(self.name, host, record, f"AWS answered {code}: {message}", todo)


def _config(environ: Mapping[str, str]) -> Any:
    from botocore.config import Config

    if "AWS_MAX_ATTEMPTS" in environ or "AWS_RETRY_MODE" in environ:
        return Config(connect_timeout=5, read_timeout=20)
    # Few, quick retries unless the user chose otherwise: a docker pull waits on this call.
    return Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=20)


def _session_keys(answer: Mapping[str, Any], action: str) -> dict[str, Any]:
    """An STS answer's ``Credentials``; ``ValueError`` (which the callers turn into their one line) when
    a key of the session is missing: botocore parses whatever XML it is given."""
    creds = dict(answer.get("Credentials") or {})
    missing = [key for key in ("AccessKeyId", "SecretAccessKey", "SessionToken") if not creds.get(key)]
    if missing:
        raise ValueError(f"STS {action} answered no {', '.join(missing)}")
    return creds


def _bounded(client: Any) -> Any:
    # Imported here: it imports botocore, which a cached get never loads.
    from regauth.providers.awshttp import bounded

    return bounded(client)


def _unsigned_config(unsigned: Any) -> Any:
    from botocore.config import Config

    return Config(signature_version=unsigned)


def _fips_config() -> Any:
    from botocore.config import Config

    return Config(use_fips_endpoint=True)


def _todo_for(exc: Exception) -> str:
    name = type(exc).__name__
    if "SSO" in name or "Token" in name:
        return "renew the session with `aws sso login`"
    if "Endpoint" in name or "Connect" in name or "Timeout" in name:
        return (
            "check the network, HTTPS_PROXY and the endpoint (AWS_ENDPOINT_URL, record option endpoint_url)"
        )
    return "check ~/.aws/config and the record options"
