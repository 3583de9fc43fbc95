"""Which token realms may receive a registry's credential.

A registry names its token server in its Bearer challenge, and whatever it names gets the username and
secret (Basic auth on the token GET, or the identity token in the POST form). A registry, or anyone who
can answer for it, could therefore name a host of their own. The rule, as careful clients keep it:

* a realm on the registry's own host (any port) gets the credential: over HTTPS, or over plain HTTP
  only when the record itself is insecure;
* a realm in the registry's registrable domain (the Public Suffix List's "private suffix":
  registry-1.docker.io -> auth.docker.io, registry.gitlab.com -> gitlab.com) gets it over HTTPS;
* any other host only when the record names it in its ``realm_hosts`` option, over HTTPS.

Anonymous token requests carry nothing to steal and go to any realm (still never from HTTPS to HTTP).
"""

from __future__ import annotations

import functools
import ipaddress
from typing import TYPE_CHECKING

from yarl import URL

from regauth.distribution.errors import Outcome, UpstreamError

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

    from regauth.distribution.target import RegistryTarget

REALM_HOSTS_OPTION = "realm_hosts"


def parse_realm_hosts(value: str | None) -> frozenset[str]:
    """The ``realm_hosts`` option: host names separated by commas or spaces, compared in lower case."""
    return frozenset(part.lower() for part in (value or "").replace(",", " ").split())


def check_realm(upstream: RegistryTarget, realm: URL, credentialed: bool) -> None:
    """Raise ``UpstreamError`` (``realm_refused``) unless ``realm`` may be asked for a token, with a
    credential when ``credentialed``."""
    registry, registry_host = upstream.host, upstream.hostname.lower()
    host = (realm.host or "").lower()
    own = host == registry_host
    if realm.scheme == "http" and (upstream.secure or (credentialed and not own)):
        raise UpstreamError(
            f"{registry} names a plain-HTTP token realm ({host}); refused: a credential must not travel in "
            "clear to another host",
            Outcome.REALM_REFUSED,
        )
    if not credentialed or own or host in upstream.realm_hosts or _same_domain(host, registry_host):
        return
    raise UpstreamError(
        f"{registry} sends its credential to a token realm on {host}, which is neither its own host nor in "
        f"its domain; refused, nothing was sent. If {host} is its token server, allow it with "
        f"`--option {REALM_HOSTS_OPTION}={host}`",
        Outcome.REALM_REFUSED,
    )


def _same_domain(a: str, b: str) -> bool:
    if _is_address(a) or _is_address(b):
        return False
    domain = _suffixes().privatesuffix(a)
    return domain is not None and domain == _suffixes().privatesuffix(b)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    # Loaded on first use (about 30 ms): only a realm on another host than the registry's needs it.
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()
