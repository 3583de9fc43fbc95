"""Upstream credentials from the providers, kept in memory a short while with one lookup at a time.

Static secrets are re-read every ``ttl`` seconds (so ``regauth registry update`` takes effect without a
restart); minted tokens are kept for at most half their remaining life. The provider routing already
mints once per key; the in-flight map here also spares the secret store 200 reads for 200 pulls.

Kept per record version, never per host: the per-prefix records of one host (``ghcr.io/org-a``,
``ghcr.io/org-b``) each have their own entry, so one prefix's credential never answers for another's
(nor do the bearer tokens minted with it: the authenticator keys them by credential).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from regauth.config import Settings
from regauth.distribution.singleflight import SingleFlight
from regauth.providers.base import Credential
from regauth.providers.routing import record_credential_async
from regauth.proxy.routing import Upstream
from regauth.registries import Registry
from regauth.store.base import SecretStore
from regauth.usage import Marks

Lookup = Callable[[Registry], Awaitable[Credential | None]]
_Key = tuple[str, str]


class Credentials:
    def __init__(self, lookup: Lookup, *, ttl: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._clock = clock
        self._kept: dict[_Key, tuple[Credential | None, float]] = {}
        self._inflight: SingleFlight[_Key, Credential | None] = SingleFlight()

    @classmethod
    def from_store(cls, settings: Settings, store: SecretStore) -> Credentials:
        """Credentials from the providers, with the records' secrets and the token cache in ``store``."""

        marks = Marks(str(settings.state_dir))  # for `regauth doctor`: at most once a minute a record

        async def lookup(record: Registry) -> Credential | None:
            credential = await record_credential_async(settings, store, record)
            marks.mark(record.id)
            return credential

        return cls(lookup)

    async def get(self, upstream: Upstream) -> Credential | None:
        record = upstream.record
        if record is None:
            return None
        key = (record.id, record.updated_at)
        kept = self._kept.get(key)
        if kept is not None and kept[1] > self._clock():
            return kept[0]
        return await self._inflight.run(key, lambda: self._fetch(key, record))

    async def _fetch(self, key: _Key, record: Registry) -> Credential | None:
        credential = await self._lookup(record)
        now = self._clock()
        keep = self._ttl
        if credential is not None and credential.expires_at is not None:
            keep = min(keep, max(0.0, (credential.expires_at - now) / 2))
        self._kept[key] = (credential, now + keep)
        return credential
