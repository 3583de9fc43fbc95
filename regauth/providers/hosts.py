"""Which cloud a registry host belongs to, from its name alone (the per-cloud helpers' patterns).

Pure string work, no SDK: this runs on every credential helper ``get``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# amazon-ecr-credential-helper's pattern: the commercial, FIPS, China, ISO and EU sovereign partitions,
# plus the dual-stack ``dkr-ecr.<region>.on.aws`` form.
_ECR = re.compile(
    r"^(?P<account>\d{12})\.dkr[.-]ecr(?P<fips>-fips)?\.(?P<region>[a-z0-9][a-z0-9-_]*)\."
    r"(?P<domain>amazonaws\.com(?:\.cn)?|on\.aws|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk"
    r"|csp\.hci\.ic\.gov|amazonaws\.eu)$"
)
ECR_PUBLIC = "public.ecr.aws"

# ACR login servers per Azure cloud: (suffix, AAD authority host, ARM scope).
ACR_CLOUDS: tuple[tuple[str, str, str], ...] = (
    (".azurecr.io", "login.microsoftonline.com", "https://management.azure.com/.default"),
    (".azurecr.cn", "login.chinacloudapi.cn", "https://management.chinacloudapi.cn/.default"),
    (".azurecr.us", "login.microsoftonline.us", "https://management.usgovcloudapi.net/.default"),
)


class EcrHost(NamedTuple):
    account: str
    region: str
    public: bool = False
    fips: bool = False


def ecr_host(host: str) -> EcrHost | None:
    if host == ECR_PUBLIC:
        # ECR Public's authorization API exists only in us-east-1.
        return EcrHost(account="", region="us-east-1", public=True)
    match = _ECR.match(host)
    if match is None:
        return None
    return EcrHost(account=match["account"], region=match["region"], fips=bool(match["fips"]))


def acr_cloud(host: str) -> tuple[str, str] | None:
    """(authority host, scope) for an ACR login server, or None if ``host`` is not one."""
    for suffix, authority, scope in ACR_CLOUDS:
        if host.endswith(suffix) and len(host) > len(suffix):
            return authority, scope
    return None


def is_gcr(host: str) -> bool:
    return host == "gcr.io" or host.endswith(".gcr.io")


def is_gcp(host: str) -> bool:
    return is_gcr(host) or (host.endswith("-docker.pkg.dev") and len(host) > len("-docker.pkg.dev"))
