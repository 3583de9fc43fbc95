"""Check a registry and its credential against the registry, as `docker login` (and a pull) would.

Without a repository: the registry is reachable, speaks Registry V2, and accepts the credential (a
token for no scope from its realm, or ``/v2/`` with basic auth). With a repository: the credential may
also pull it (``GET /v2/REPO/tags/list`` with a ``repository:REPO:pull`` token), and, where its token
server shows granted actions, whether it could also push or delete (``access``: see ``access.py``).
The result names the registry and never the secret.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from regauth.distribution import access as granted
from regauth.distribution.challenge import find
from regauth.distribution.client import API_VERSION, Ping, RegistryClient, rate_limited
from regauth.distribution.credential import Credential
from regauth.distribution.errors import Outcome, UpstreamError
from regauth.distribution.target import RegistryTarget
from regauth.distribution.transport import SMALL_BODY_MAX, Timeouts, make_session, read_capped, send

__all__ = ["Outcome", "ValidationResult", "validate", "validate_sync"]

# What Go's TLS server answers to plain HTTP.
_HTTPS_ONLY = b"Client sent an HTTP request to an HTTPS server"


@dataclass(frozen=True)
class ValidationResult:
    outcome: Outcome
    ok: bool = field(init=False)
    message: str = ""
    # Whether the credential could also push or delete the repository checked: "read-only",
    # "read-write", or "unknown" (no repository, anonymous, Basic auth, a token that does not say).
    access: granted.Access = granted.UNKNOWN

    def __post_init__(self) -> None:
        object.__setattr__(self, "ok", self.outcome is Outcome.VALID)


async def validate(
    upstream: RegistryTarget,
    credential: Credential | None,
    repository: str | None = None,
    *,
    label: str | None = None,
    timeout: float = 10.0,
) -> ValidationResult:
    """Validate ``upstream`` with ``credential`` (None: anonymous); ``label`` names it in the message
    (its host by default); ``timeout`` bounds the whole check."""
    label = label or upstream.host
    try:
        timeouts = Timeouts(connect=timeout, read=timeout, total=timeout)
        async with make_session(timeouts) as session:
            client = RegistryClient(session, upstream, credential)
            summary, access = await asyncio.wait_for(_check(client, repository), timeout)
    except UpstreamError as exc:
        return ValidationResult(exc.outcome, f"{label}: {exc}")
    except asyncio.TimeoutError:
        return ValidationResult(Outcome.TIMED_OUT, f"{label}: no answer within {timeout:g}s")
    return ValidationResult(Outcome.VALID, f"{label}: {summary}", access)


def validate_sync(
    upstream: RegistryTarget,
    credential: Credential | None,
    repository: str | None = None,
    *,
    label: str | None = None,
    timeout: float = 10.0,
) -> ValidationResult:
    """``validate`` for synchronous callers (the CLI): runs its own event loop."""
    return asyncio.run(validate(upstream, credential, repository, label=label, timeout=timeout))


async def _check(client: RegistryClient, repository: str | None) -> tuple[str, granted.Access]:
    ping = await client.ping()
    _check_v2(client.upstream, ping)
    summary = await _login(client, ping)
    if not repository:
        return summary, granted.UNKNOWN
    await _pull(client, repository)
    summary += f"; can pull {repository}"
    if client.credential is None or ping.status != 401:
        # Anonymous, or a registry that needs no login: there is no credential to grant anything.
        return summary, granted.UNKNOWN
    found = await granted.probe(client, ping.challenges, repository)
    if found.access == granted.UNKNOWN:
        return f"{summary}; whether it can push is unknown: {found.why}", found.access
    return f"{summary}; {found.access}: {found.why}", found.access


def _check_v2(upstream: RegistryTarget, ping: Ping) -> None:
    if ping.status == 200:
        if ping.api_version == API_VERSION or _is_json_object(ping.body):
            return
        raise UpstreamError(
            f"{upstream.host} is not a Registry V2 server (/v2/ answered 200 with no API version)",
            Outcome.NOT_V2,
        )
    if ping.status == 401:
        if find(ping.challenges, "bearer") or find(ping.challenges, "basic"):
            return
        raise UpstreamError(
            f"{upstream.host} is not a Registry V2 server (/v2/ answered 401 with no Basic or Bearer "
            "challenge)",
            Outcome.NOT_V2,
        )
    if ping.status == 429:
        raise rate_limited(upstream, ping.body)
    if ping.status >= 500:
        raise UpstreamError(
            f"{upstream.host} answered {ping.status} on /v2/ (server error)", Outcome.UNREACHABLE
        )
    hint = "; it speaks HTTPS, so do not mark it insecure" if ping.body.startswith(_HTTPS_ONLY) else ""
    raise UpstreamError(
        f"{upstream.host} is not a Registry V2 server (/v2/ answered {ping.status}){hint}", Outcome.NOT_V2
    )


async def _login(client: RegistryClient, ping: Ping) -> str:
    upstream, credential = client.upstream, client.credential
    if credential is None:
        return "reachable, Registry V2, anonymous access"
    who = "the identity token" if credential.is_identity_token else f"user {credential.username!r}"
    if ping.status == 200:
        return f"reachable, Registry V2; it needs no login, so {who} was not checked"
    header = await client.auth.authorize(upstream, credential, ping.challenges, None)
    async with send(
        client.session, upstream, "GET", upstream.url("/v2/"), headers={"Authorization": header or ""}
    ) as resp:
        status, body = resp.status, await read_capped(resp, SMALL_BODY_MAX, "error body")
    if status == 200:
        return f"credentials of {who} accepted"
    if status == 429:
        raise rate_limited(upstream, body)
    if status in (401, 403):
        raise UpstreamError(
            f"the registry refused the credentials of {who} ({status})", Outcome.WRONG_CREDENTIALS, status
        )
    raise UpstreamError(f"the registry answered {status} on /v2/ after login", Outcome.NOT_V2, status)


async def _pull(client: RegistryClient, repository: str) -> None:
    try:
        await client.tags_list(repository, limit=1)
    except UpstreamError as exc:
        # A token server that refuses anonymous tokens is, for an anonymous record, a refused pull.
        if client.credential is None and exc.outcome is Outcome.WRONG_CREDENTIALS:
            raise UpstreamError(
                f"no anonymous pull of {repository} on {client.upstream.host}: {exc}",
                Outcome.NO_PULL_PERMISSION,
                exc.status,
            ) from exc
        raise


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, RecursionError):  # a body nested too deeply to parse is no object either
        return False
