"""The one authorized request: every request to a registry that may need credentials goes through here.

The registry client (validation) and the pull-through proxy both call ``authorized``, so each rule about
where a credential may go is written once:

* the header the ``Authenticator`` already holds is attached first, so a warm request costs no 401;
* a 401 is a challenge only when it comes from the registry's own origin. A 401 or 403 from the storage a
  registry redirected to (a CDN, S3) is an upstream fault: its ``WWW-Authenticate`` is never read, and
  nothing is sent anywhere because of it (otherwise the storage could name a realm of its own and receive
  the credential on the next pull);
* on the registry's 401 the challenge goes to the ``Authenticator`` (which applies the realm rule of
  ``realms``) and the request is sent once more;
* redirects, and what a redirect may carry, are ``transport.send``'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

import aiohttp
from yarl import URL

from regauth.distribution.auth import Authenticator
from regauth.distribution.challenge import parse_headers
from regauth.distribution.credential import Credential
from regauth.distribution.errors import Outcome, UpstreamError
from regauth.distribution.target import RegistryTarget
from regauth.distribution.transport import SMALL_BODY_MAX, read_capped, send


class Unauthorized(UpstreamError):
    """The registry answered 401 and the credential (or its absence) could do no better. ``offered``
    says whether an ``Authorization`` was sent; ``body`` is the registry's error body (capped)."""

    def __init__(self, upstream: RegistryTarget, scope: str | None, offered: bool, body: bytes) -> None:
        what = "the credential" if offered else "anonymous access"
        super().__init__(
            f"{upstream.host} refused {what} for {scope or 'login'} (401)", Outcome.NO_PULL_PERMISSION, 401
        )
        self.offered = offered
        self.body = body


@contextlib.asynccontextmanager
async def authorized(
    session: aiohttp.ClientSession,
    authenticator: Authenticator,
    upstream: RegistryTarget,
    credential: Credential | None,
    method: str,
    path: str,
    *,
    scope: str | None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """The registry's answer to ``method path`` (released on exit): never a 401 (``Unauthorized``), and
    never a 401 or 403 from another origin (``UpstreamError``)."""
    url = upstream.url(path)
    origin = URL(url).origin()
    header = authenticator.cached(upstream, credential, scope)
    for attempt in range(2):
        sent = {**(headers or {}), **({"Authorization": header} if header else {})}
        async with send(session, upstream, method, url, headers=sent) as resp:
            _refuse_foreign_denial(upstream, resp, origin)
            if resp.status != 401:
                yield resp
                return
            challenges = parse_headers(resp.headers.getall("WWW-Authenticate", []))
            body = await read_capped(resp, SMALL_BODY_MAX, "error body") if method != "HEAD" else b""
        if attempt:
            break
        if header is not None:
            # The registry refused what was cached (revoked, or expired early): fetch afresh.
            authenticator.invalidate(upstream, credential, scope)
        fresh = await authenticator.authorize(upstream, credential, challenges, scope)
        if fresh is None or fresh == header:
            break
        header = fresh
    raise Unauthorized(upstream, scope, header is not None, body)


def _refuse_foreign_denial(upstream: RegistryTarget, resp: aiohttp.ClientResponse, origin: URL) -> None:
    if resp.status in (401, 403) and resp.url.origin() != origin:
        raise UpstreamError(
            f"{upstream.host} redirected to {resp.url.host}, which answered {resp.status}; that is not the "
            "registry's challenge, so nothing more was sent",
            Outcome.UNREACHABLE,
            502,
        )
