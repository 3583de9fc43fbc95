"""Where a registry may send regauth by redirect: no SSRF into the network regauth runs in.

A redirect is the one place where an upstream, not the user, chooses a host for regauth to fetch from. A
hostile registry (or a hijacked storage URL) could aim it at a cloud metadata service (169.254.169.254),
at a service on the proxy's own loopback, or into the private network behind it. So a redirect target's
addresses must be public, or of the same kind as the record's own host: a registry the user configured
on 127.0.0.1 may redirect to loopback, one on a private address to private addresses, and none may
redirect to link-local unless it is itself link-local. Names are resolved and every address checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from regauth.distribution.errors import Outcome, UpstreamError

PUBLIC = "public"


def kind_of_address(text: str) -> str:
    """``public``, ``loopback``, ``link-local``, ``private`` or ``reserved`` for an IP address literal."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "reserved"
    # Not global is private too: 100.64.0.0/10 (carrier-grade NAT, and Alibaba Cloud's metadata service
    # at 100.100.100.200) is neither ``is_private`` nor public; fec0::/10 is IPv6's old site-local.
    if address.is_private or not address.is_global or getattr(address, "is_site_local", False):
        return "private"
    return PUBLIC


async def kinds_of_host(host: str) -> frozenset[str]:
    """The kinds of every address ``host`` (a name or a literal) stands for."""
    try:
        return frozenset({kind_of_address(host)})
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UpstreamError(f"cannot resolve {host}", Outcome.UNREACHABLE) from exc
    return frozenset(kind_of_address(str(info[4][0])) for info in infos)


async def check_redirect_host(registry: str, own_host: str, target_host: str) -> None:
    """Raise ``UpstreamError`` unless ``registry`` (reached at ``own_host``) may redirect to
    ``target_host``."""
    refused = await _refused_kind(own_host, target_host)
    if refused:
        raise UpstreamError(
            f"{registry} redirected to {target_host}, a {refused} address; refused "
            "(a registry may redirect only to public addresses or to addresses like its own)",
            Outcome.NOT_V2,
        )


async def check_realm_host(registry: str, own_host: str, realm_host: str, option: str) -> None:
    """Raise ``UpstreamError`` unless ``registry`` may send regauth to a token realm on ``realm_host``:
    a realm is a host the registry chooses, as a redirect target is, so the same rule holds (the
    record's ``option`` names realm hosts the user allows whatever their addresses)."""
    refused = await _refused_kind(own_host, realm_host)
    if refused:
        raise UpstreamError(
            f"{registry} names a token realm on {realm_host}, a {refused} address; refused, nothing was "
            "sent (a registry's realm must be public or like its own address; if it is its token "
            f"server, allow it with `--option {option}={realm_host}`)",
            Outcome.REALM_REFUSED,
        )


async def _refused_kind(own_host: str, target_host: str) -> str | None:
    if target_host == own_host:
        return None
    allowed = {PUBLIC} | await kinds_of_host(own_host)
    refused = sorted(await kinds_of_host(target_host) - allowed)
    return refused[0] if refused else None
