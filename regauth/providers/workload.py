"""A workload's own identity: the pod's service-account token the kubelet passes (KEP-4412).

With ``tokenAttributes`` in the kubelet's CredentialProviderConfig, each request carries the pod's
projected service-account token (a JWT for the configured audience) and the annotations of its
service account that the config lists. A cloud provider that can exchange such a token for its own
credentials (AWS STS ``AssumeRoleWithWebIdentity``, Azure workload-identity federation, Google STS) is
a ``WorkloadProvider``: it mints the registry token with the workload's identity instead of the node's.

The token's claims are read unverified, only to name the service account in cache keys and messages:
the cloud that receives the token is the one that verifies it. A token that does not even name its
service account (``sub``) is refused before any provider sees it (``Workload.checked``): two such
tokens could not be told apart in the token cache.

The token is a bearer credential for the workload: it never appears in a repr, a message or a log
line (``Workload.scrub`` takes it out of text that came back from a cloud).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, Protocol

from regauth.distribution.jwt import unverified_claims
from regauth.errors import ProviderError, UsageError
from regauth.providers.base import Credential, MintingProvider
from regauth.registries import Registry

# Kubernetes' service-account subjects: system:serviceaccount:<namespace>:<name>.
SUBJECT_PREFIX = "system:serviceaccount:"
# A projected token is about 1 KiB; the bound keeps a hostile request from filling the cache key.
MAX_TOKEN_CHARS = 16384


class NoWorkloadIdentity(ProviderError):
    """The workload names no cloud identity for this provider (no annotation, no record option).

    Raised by ``workload_credential``; the message names the annotation (or option) to set. Routing
    lets it through as a refusal, or, where the plugin was told to, answers with the node's identity.
    """


class Workload(NamedTuple):
    """What the kubelet sent about the pod that pulls."""

    token: str
    annotations: Mapping[str, str]

    def __repr__(self) -> str:
        return f"Workload(subject={self.subject()!r}, annotations={dict(self.annotations)!r}, token='***')"

    @classmethod
    def checked(cls, token: str, annotations: Mapping[str, str]) -> Workload:
        """A ``Workload``, or ``UsageError`` (one line, never the token) when ``token`` is no
        service-account JWT naming its service account."""
        workload = cls(token, dict(annotations))
        if len(token) > MAX_TOKEN_CHARS or not token.isascii() or token.count(".") != 2:
            raise UsageError("the request's serviceAccountToken is not a JWT (three base64url parts)")
        if not workload.claims():
            raise UsageError("the request's serviceAccountToken is not a JWT: its payload is no JSON object")
        if not workload.subject():
            raise UsageError("the request's serviceAccountToken names no service account (no sub claim)")
        return workload

    def claims(self) -> dict[str, object]:
        """The token's claims, unverified (see the module's docstring); {} when it is no JWT."""
        return unverified_claims(self.token)

    def subject(self) -> str:
        """``system:serviceaccount:NAMESPACE:NAME`` as the token says, or "" when it says nothing."""
        subject = self.claims().get("sub")
        return subject if isinstance(subject, str) else ""

    def issuer(self) -> str:
        """The cluster's service-account issuer as the token says (``iss``), or ""."""
        issuer = self.claims().get("iss")
        return issuer if isinstance(issuer, str) else ""

    def service_account(self) -> str:
        """``NAMESPACE/NAME`` for messages, or the raw subject when it is not a service account's."""
        subject = self.subject()
        if subject.startswith(SUBJECT_PREFIX):
            return subject[len(SUBJECT_PREFIX) :].replace(":", "/", 1)
        return subject

    def scrub(self, text: str) -> str:
        """``text`` (a cloud's error message) with the token taken out, should a cloud echo it."""
        return text.replace(self.token, "***") if self.token else text


class WorkloadProvider(MintingProvider, Protocol):
    """A minting provider that can also mint with a workload's identity."""

    def workload_identity(self, host: str, record: Registry | None, workload: Workload) -> str:
        """What selects the cloud identity for this workload (the role, client id or pool, and the
        service account), as text: hashed into the token cache key, so two service accounts never
        share a token. Cheap: no SDK import, no network."""
        ...

    def workload_credential(self, host: str, record: Registry | None, workload: Workload) -> Credential:
        """A registry credential minted with the workload's identity. Raises ``ProviderError`` (one
        line, naming the annotation or record option to set) when it cannot; ``NoWorkloadIdentity``
        when the workload names no identity at all for this provider."""
        ...
