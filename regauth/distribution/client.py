"""A small Registry V2 client for validation: ping, tag lists, and any request through the authorized path.

Every request goes out with the header the ``Authenticator`` has cached, and on a 401 is sent once
more with a fresh one. Non-success answers become ``UpstreamError`` with an outcome.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import aiohttp

from regauth.distribution.auth import Authenticator
from regauth.distribution.authorized import Unauthorized, authorized
from regauth.distribution.challenge import Challenge, parse_headers
from regauth.distribution.credential import Credential
from regauth.distribution.errors import Outcome, UpstreamError, describe, parse_error_body
from regauth.distribution.target import RegistryTarget
from regauth.distribution.transport import SMALL_BODY_MAX, TAGS_MAX, read_capped, send
from regauth.reference import pull_scope

API_VERSION_HEADER = "Docker-Distribution-API-Version"
API_VERSION = "registry/2.0"
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_NOT_FOUND_CODES = {"NAME_UNKNOWN": "repository", "MANIFEST_UNKNOWN": "manifest", "BLOB_UNKNOWN": "blob"}


@dataclass(frozen=True)
class Ping:
    status: int
    api_version: str | None
    challenges: list[Challenge]
    body: bytes = field(repr=False)


class RegistryClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        upstream: RegistryTarget,
        credential: Credential | None,
        *,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.session = session
        self.upstream = upstream
        self.credential = credential
        self.auth = authenticator or Authenticator(session)

    async def ping(self) -> Ping:
        """GET /v2/ with no credential: the answer says whether this is a registry and how it
        authenticates."""
        async with send(self.session, self.upstream, "GET", self.upstream.url("/v2/")) as response:
            body = await response.content.read(SMALL_BODY_MAX)
            challenges = parse_headers(response.headers.getall("WWW-Authenticate", []))
            return Ping(response.status, response.headers.get(API_VERSION_HEADER), challenges, body)

    @contextlib.asynccontextmanager
    async def request(
        self,
        method: str,
        path: str,
        *,
        scope: str | None,
        headers: Mapping[str, str] | None = None,
        repository: str = "",
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The registry's answer through the one authorized path; a final 401 becomes the
        ``UpstreamError`` ``response_error`` names for ``repository``."""
        try:
            async with authorized(
                self.session,
                self.auth,
                self.upstream,
                self.credential,
                method,
                path,
                scope=scope,
                headers=headers,
            ) as resp:
                yield resp
        except Unauthorized as exc:
            raise response_error(self.upstream, 401, exc.body, repository or self.upstream.host) from None

    async def tags_list(self, repository: str, limit: int | None = None) -> list[str]:
        path = f"/v2/{repository}/tags/list" + (f"?n={limit}" if limit else "")
        async with self.request("GET", path, scope=pull_scope(repository), repository=repository) as resp:
            await self._check(resp, repository)
            try:
                tags = json.loads(await read_capped(resp, TAGS_MAX, "tag list")).get("tags") or []
            except (ValueError, AttributeError, RecursionError):
                tags = None
            # As distribution's client ([]string): {"tags": 5} is no list, not a TypeError.
            if not isinstance(tags, list):
                raise UpstreamError(f"{self.upstream.host} sent a malformed tag list", Outcome.NOT_V2)
            return [str(tag) for tag in tags]

    async def _check(self, resp: aiohttp.ClientResponse, repository: str) -> None:
        if 200 <= resp.status < 300:
            return
        body = await read_capped(resp, SMALL_BODY_MAX, "error body") if resp.method != "HEAD" else b""
        raise response_error(self.upstream, resp.status, body, repository)


def response_error(upstream: RegistryTarget, status: int, body: bytes, repository: str) -> UpstreamError:
    """The ``UpstreamError`` for a registry's non-success answer about ``repository``."""
    errors = parse_error_body(body)
    detail = describe(errors)
    suffix = f" ({detail})" if detail else f" ({status})"
    where = f"{repository} on {upstream.host}"
    if status == 429:
        return rate_limited(upstream, body)
    if status in (401, 403):
        return UpstreamError(f"no pull permission for {where}{suffix}", Outcome.NO_PULL_PERMISSION, status)
    if status == 404:
        kinds = [_NOT_FOUND_CODES[e.code] for e in errors if e.code in _NOT_FOUND_CODES]
        what = kinds[0] if kinds else "repository"
        return UpstreamError(f"{what} not found: {where}{suffix}", Outcome.REPOSITORY_NOT_FOUND, status)
    outcome = Outcome.UNREACHABLE if status >= 500 else Outcome.NOT_V2
    return UpstreamError(f"{upstream.host} answered {status} for {repository}{suffix}", outcome, status)


def rate_limited(upstream: RegistryTarget, body: bytes) -> UpstreamError:
    """``rate limited by docker.io (toomanyrequests): You have reached your pull rate limit...``"""
    errors = parse_error_body(body)
    code = errors[0].code.lower() if errors else "429"
    message = errors[0].message[:200] if errors and errors[0].message else "too many requests"
    return UpstreamError(f"rate limited by {upstream.host} ({code}): {message}", Outcome.RATE_LIMITED, 429)
