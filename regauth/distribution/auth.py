"""The ``Authenticator``: from a registry's 401 challenges to an ``Authorization`` header, with a cache.

Shared by the registry client, the validator and the pull-through proxy (one per application, with
the application's ``ClientSession``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from regauth.distribution.challenge import Challenge, find
from regauth.distribution.credential import Credential
from regauth.distribution.errors import Outcome, UpstreamError
from regauth.distribution.singleflight import SingleFlight
from regauth.distribution.target import RegistryTarget
from regauth.distribution.token import CLIENT_ID, TokenResponse, basic_authorization, fetch_token

log = logging.getLogger(__name__)

# (realm, service, scope, credential fingerprint): tokens never cross credentials.
TokenKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class _Cached:
    header: str
    fresh_until: float


class Authenticator:
    """Answer registry challenges; cache bearer tokens; one token fetch per key at a time.

    API (all methods take the ``RegistryTarget`` the request went to, and the ``Credential`` to use, or
    None for anonymous access; ``scope`` is e.g. ``"repository:library/alpine:pull"``, several
    separated by spaces, or None for a token with no access, as ``docker login`` asks)::

        auth = Authenticator(session, margin=10.0, clock=time.time, password_grant=False)
        header = await auth.authorize(upstream, credential, challenges, scope)  # after a 401
        header = auth.cached(upstream, credential, scope)  # before a request: no round-trip
        auth.invalidate(upstream, credential, scope)  # the registry refused a cached token
        auth.mints  # how many tokens were fetched (for metrics)

    ``authorize`` returns the ``Authorization`` value (``Bearer ...`` or ``Basic ...``), or None when
    there is nothing to offer (a Basic challenge and no credential). It raises ``UpstreamError``
    (``wrong_credentials``, ``rate_limited``, ``not_v2``, transport outcomes).

    Bearer tokens are cached per (realm, service, scope, credential) until ``margin`` seconds before
    they expire (at most half their life); concurrent callers for one key share one fetch, and a
    caller cancelled while waiting does not cancel the fetch for the others. The challenge last seen
    from each upstream is remembered so that ``cached`` can attach a header before the first 401.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        margin: float = 10.0,
        clock: Callable[[], float] = time.time,
        password_grant: bool = False,
        client_id: str = CLIENT_ID,
    ) -> None:
        self.session = session
        self.margin = margin
        self.clock = clock
        self.password_grant = password_grant
        self.client_id = client_id
        self.mints = 0
        self._tokens: dict[TokenKey, _Cached] = {}
        self._inflight: SingleFlight[TokenKey, _Cached] = SingleFlight()
        self._challenges: dict[str, Challenge] = {}

    async def authorize(
        self,
        upstream: RegistryTarget,
        credential: Credential | None,
        challenges: Sequence[Challenge],
        scope: str | None = None,
    ) -> str | None:
        bearer = find(challenges, "bearer")
        if bearer is not None:
            self._challenges[upstream.host] = bearer
            return await self._bearer(upstream, credential, bearer, scope)
        basic = find(challenges, "basic")
        if basic is not None:
            self._challenges[upstream.host] = basic
            return self._basic(upstream, credential)
        schemes = ", ".join(c.scheme for c in challenges) or "none"
        raise UpstreamError(
            f"{upstream.host} answered 401 with no Basic or Bearer challenge (schemes: {schemes})",
            Outcome.NOT_V2,
            401,
        )

    def cached(
        self, upstream: RegistryTarget, credential: Credential | None, scope: str | None = None
    ) -> str | None:
        challenge = self._challenges.get(upstream.host)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            # No raising on this path: an identity token meets its error in ``authorize``.
            if credential is not None and credential.is_identity_token:
                return None
            return self._basic(upstream, credential)
        entry = self._tokens.get(self._key(challenge, credential, scope))
        return entry.header if entry is not None and entry.fresh_until > self.clock() else None

    def invalidate(
        self, upstream: RegistryTarget, credential: Credential | None, scope: str | None = None
    ) -> None:
        challenge = self._challenges.get(upstream.host)
        if challenge is not None and challenge.scheme == "bearer":
            self._tokens.pop(self._key(challenge, credential, scope), None)

    def _basic(self, upstream: RegistryTarget, credential: Credential | None) -> str | None:
        if credential is None:
            return None
        if credential.is_identity_token:
            raise UpstreamError(
                f"{upstream.host} asks for a password (Basic auth); an identity token cannot answer it",
                Outcome.WRONG_CREDENTIALS,
            )
        return basic_authorization(credential.username, credential.secret)

    async def _bearer(
        self, upstream: RegistryTarget, credential: Credential | None, challenge: Challenge, scope: str | None
    ) -> str:
        key = self._key(challenge, credential, scope)
        entry = self._tokens.get(key)
        if entry is not None and entry.fresh_until > self.clock():
            return entry.header
        # One fetch per key; a waiter's cancellation does not cancel the fetch the others wait on.
        minted = await self._inflight.run(
            key, lambda: self._mint(key, upstream, credential, challenge, scope)
        )
        return minted.header

    async def _mint(
        self,
        key: TokenKey,
        upstream: RegistryTarget,
        credential: Credential | None,
        challenge: Challenge,
        scope: str | None,
    ) -> _Cached:
        response = await fetch_token(
            self.session,
            upstream,
            challenge,
            credential,
            scope,
            password_grant=self.password_grant,
            client_id=self.client_id,
        )
        self.mints += 1
        entry = _Cached(f"Bearer {response.token}", self._fresh_until(response))
        self._prune()
        self._tokens[key] = entry
        log.debug("token for %s scope %r valid %ss", upstream.host, scope or "", response.expires_in)
        return entry

    def _fresh_until(self, response: TokenResponse) -> float:
        now = self.clock()
        lifetime = response.expires_at(now) - now
        return now + lifetime - min(self.margin, lifetime / 2)

    def _prune(self) -> None:
        # A long-running proxy sees many scopes: stale tokens must not pile up.
        now = self.clock()
        for key in [k for k, v in self._tokens.items() if v.fresh_until <= now]:
            del self._tokens[key]

    @staticmethod
    def _key(challenge: Challenge, credential: Credential | None, scope: str | None) -> TokenKey:
        scopes = " ".join(sorted(set((scope or "").split())))
        return (challenge.realm or "", challenge.service or "", scopes, fingerprint(credential))


def fingerprint(credential: Credential | None) -> str:
    """A digest that tells credentials apart in memory without keeping the secret in a key."""
    if credential is None:
        return "anonymous"
    material = f"{credential.username}\0{credential.secret}".encode()
    return hashlib.sha256(material).hexdigest()[:32]
