"""Fetching from an upstream with its credential: the distribution ``Authenticator`` answers 401s.

Before a request, the header the authenticator already holds for (upstream, scope) is attached, so a
warm pull costs no 401 round-trip. On a 401 the challenge goes to ``Authenticator.authorize`` (which
fetches one bearer token per key however many pulls wait on it) and the request is sent once more.
Redirects (to blob storage) are followed by ``distribution.transport.send``, which drops
``Authorization`` when the origin changes; transport failures arrive as ``UpstreamError``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping

import aiohttp

from regauth.distribution.auth import Authenticator
from regauth.distribution.challenge import parse_headers
from regauth.distribution.errors import UpstreamError
from regauth.distribution.transport import send
from regauth.proxy.credentials import Credentials
from regauth.proxy.errors import DENIED, ApiError
from regauth.proxy.metrics import Metrics
from regauth.proxy.routing import Upstream


class UpstreamClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        authenticator: Authenticator,
        credentials: Credentials,
        metrics: Metrics,
    ) -> None:
        self.session = session
        self.authenticator = authenticator
        self.credentials = credentials
        self.metrics = metrics

    @contextlib.asynccontextmanager
    async def open(
        self, upstream: Upstream, method: str, path: str, headers: Mapping[str, str], scope: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The upstream's response to ``method path`` (never a 401: that becomes ``ApiError``)."""
        credential = await self.credentials.get(upstream)
        transport = upstream.transport
        # Identity: the body is relayed byte for byte, and the session does not decompress.
        base = {**headers, "Accept-Encoding": "identity"}
        authorization = self.authenticator.cached(transport, credential, scope)
        for attempt in range(2):
            sent = {**base, "Authorization": authorization} if authorization else base
            started = time.monotonic()
            try:
                async with send(self.session, transport, method, transport.url(path), headers=sent) as resp:
                    self.metrics.upstream_latency(upstream.host, time.monotonic() - started)
                    if resp.status != 401:
                        yield resp
                        return
                    challenges = parse_headers(resp.headers.getall("WWW-Authenticate", []))
            except UpstreamError as exc:
                self.metrics.upstream_error(upstream.host, exc.outcome.value)
                raise
            if attempt:
                break
            if authorization is not None:
                # The registry refused what was cached (revoked, or expired early): fetch afresh.
                self.authenticator.invalidate(transport, credential, scope)
            try:
                authorization = await self.authenticator.authorize(transport, credential, challenges, scope)
            except UpstreamError as exc:
                self.metrics.upstream_error(upstream.host, f"token_{exc.outcome.value}")
                raise
            if authorization is None:
                raise ApiError(
                    403,
                    DENIED,
                    f"{upstream.host} wants credentials and none are configured for it "
                    "(add a username with `regauth registry update`)",
                )
        who = f"registry {upstream.record.name!r}" if upstream.record else upstream.host
        raise ApiError(403, DENIED, f"{upstream.host} refused the credential of {who} for {scope}")
