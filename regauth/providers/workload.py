"""A workload's own identity: the pod's service-account token the kubelet passes (KEP-4412).

With ``tokenAttributes`` in the kubelet's CredentialProviderConfig, each request carries the pod's
projected service-account token (a JWT for the configured audience) and the annotations of its
service account that the config lists. A cloud provider that can exchange such a token for its own
credentials (AWS STS ``AssumeRoleWithWebIdentity``, Azure workload-identity federation, Google STS) is
a ``WorkloadProvider``: it mints the registry token with the workload's identity instead of the node's.

The token's claims are read unverified, only to name the service account in cache keys and messages:
the cloud that receives the token is the one that verifies it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import NamedTuple, Protocol

from regauth.providers.base import Credential, MintingProvider
from regauth.registries import Registry


class Workload(NamedTuple):
    """What the kubelet sent about the pod that pulls."""

    token: str
    annotations: Mapping[str, str]

    def __repr__(self) -> str:
        return f"Workload(subject={self.subject()!r}, annotations={dict(self.annotations)!r}, token='***')"

    def claims(self) -> dict[str, object]:
        """The token's claims, unverified (see the module's docstring); {} when it is no JWT."""
        try:
            payload = self.token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError, binascii.Error):
            return {}
        return claims if isinstance(claims, dict) else {}

    def subject(self) -> str:
        """``system:serviceaccount:NAMESPACE:NAME`` as the token says, or "" when it says nothing."""
        subject = self.claims().get("sub")
        return subject if isinstance(subject, str) else ""


class WorkloadProvider(MintingProvider, Protocol):
    """A minting provider that can also mint with a workload's identity."""

    def workload_identity(self, host: str, record: Registry | None, workload: Workload) -> str:
        """What selects the cloud identity for this workload (the role, client id or pool, and the
        service account), as text: hashed into the token cache key, so two service accounts never
        share a token. Cheap: no SDK import, no network."""
        ...

    def workload_credential(self, host: str, record: Registry | None, workload: Workload) -> Credential:
        """A registry credential minted with the workload's identity. Raises ``ProviderError`` (one
        line, naming the annotation or record option to set) when it cannot."""
        ...
