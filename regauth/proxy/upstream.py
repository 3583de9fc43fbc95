"""Fetching from an upstream with its credential, through distribution's one authorized path.

``distribution.authorized`` attaches the header the authenticator holds (so a warm pull costs no 401
round-trip), answers the registry's own 401 once, refuses a 401/403 from the storage a registry
redirected to, and follows redirects under ``transport.send``'s rules. Here its refusals become the
registry error the client gets, and every exchange is counted in the metrics.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping

import aiohttp

from regauth.distribution.auth import Authenticator
from regauth.distribution.authorized import Unauthorized, authorized
from regauth.distribution.errors import UpstreamError
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
        # Identity: the body is relayed byte for byte, and the session does not decompress.
        sent = {**headers, "Accept-Encoding": "identity"}
        started = time.monotonic()
        try:
            async with authorized(
                self.session,
                self.authenticator,
                upstream.transport,
                credential,
                method,
                path,
                scope=scope,
                headers=sent,
            ) as resp:
                # Time to the answer's headers, a token fetch included when one was needed.
                self.metrics.upstream_latency(upstream.host, time.monotonic() - started)
                yield resp
        except Unauthorized as exc:
            raise self._denied(upstream, scope, exc) from None
        except UpstreamError as exc:
            self.metrics.upstream_error(upstream.host, exc.outcome.value)
            raise

    @staticmethod
    def _denied(upstream: Upstream, scope: str, exc: Unauthorized) -> ApiError:
        if not exc.offered:
            return ApiError(
                403,
                DENIED,
                f"{upstream.host} wants credentials and none are configured for it "
                "(add a username with `regauth registry update`)",
            )
        who = f"registry {upstream.record.name!r}" if upstream.record else upstream.host
        return ApiError(403, DENIED, f"{upstream.host} refused the credential of {who} for {scope}")
