"""One bearer-token request to a registry's token server (the ``realm`` of its Bearer challenge).

Three ways to ask, as Docker does:

* GET ``realm?service=S&scope=A&scope=B`` with basic auth, or anonymously with no credential;
* OAuth2 POST ``grant_type=refresh_token`` for an identity token (username ``<token>``);
* OAuth2 POST ``grant_type=password`` when asked for (falls back to GET if the realm has no POST).

Both ``token`` and ``access_token`` are accepted; ``expires_in`` defaults to 60 s (Docker's minimum) and
``issued_at`` is honoured. No cache here: see ``auth.Authenticator``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import aiohttp
from yarl import URL

from regauth.distribution.addresses import check_realm_host
from regauth.distribution.challenge import Challenge
from regauth.distribution.credential import Credential
from regauth.distribution.errors import Outcome, UpstreamError, describe, parse_error_body
from regauth.distribution.realms import REALM_HOSTS_OPTION, check_realm
from regauth.distribution.target import RegistryTarget
from regauth.distribution.transport import TOKEN_BODY_MAX, read_capped, send, usable_host

log = logging.getLogger(__name__)

CLIENT_ID = "regauth"
DEFAULT_EXPIRES_IN = 60
# A lifetime beyond a year is no token's: the bound keeps the expiry arithmetic in floats (an
# ``expires_in`` of 400 digits overflowed), and a token is fetched again at least yearly.
MAX_EXPIRES_IN = 365 * 24 * 3600
_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$", re.IGNORECASE)
_OAUTH_DENIED = frozenset({"invalid_grant", "invalid_client", "unauthorized_client", "access_denied"})


@dataclass(frozen=True)
class TokenResponse:
    token: str = field(repr=False)
    expires_in: int
    # Unix time the server says it issued the token at; None when it did not say.
    issued_at: float | None = None

    def expires_at(self, now: float) -> float:
        """Unix time of expiry, counted from ``issued_at`` when it is plausible; an ``issued_at`` in
        the future or older than the lifetime says the clocks disagree, so count from ``now``."""
        issued = self.issued_at
        plausible = issued is not None and now - self.expires_in < issued <= now
        return (issued if plausible and issued is not None else now) + self.expires_in


def basic_authorization(username: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode("ascii")


async def fetch_token(
    session: aiohttp.ClientSession,
    upstream: RegistryTarget,
    challenge: Challenge,
    credential: Credential | None,
    scope: str | None,
    *,
    password_grant: bool = False,
    client_id: str = CLIENT_ID,
) -> TokenResponse:
    """Ask ``challenge.realm`` for a token for ``scope`` (space-separated scopes, or None for none).

    Raises ``UpstreamError``: ``wrong_credentials`` when the token server refuses the credential,
    ``rate_limited`` on 429, ``not_v2`` for a realm that does not speak the protocol, and the transport
    outcomes.
    """
    realm = realm_url(upstream, challenge, credential)
    realm_host = (realm.host or "").lower()
    if realm_host not in upstream.realm_hosts:
        await check_realm_host(upstream.host, upstream.hostname.lower(), realm_host, REALM_HOSTS_OPTION)
    ask = _Ask(
        session,
        upstream,
        realm,
        challenge.service,
        scope.split() if scope else [],
        client_id,
        credential,
    )
    if credential is not None and credential.is_identity_token:
        return await _post(ask, {"grant_type": "refresh_token", "refresh_token": credential.secret})
    if credential is not None and password_grant:
        form = {"grant_type": "password", "username": credential.username, "password": credential.secret}
        try:
            return await _post(ask, form)
        except UpstreamError as exc:
            # Realms without the OAuth2 form (404/405) still take the GET; as Docker does.
            if exc.status not in (404, 405):
                raise
    return await _get(ask)


@dataclass(frozen=True)
class _Ask:
    session: aiohttp.ClientSession
    upstream: RegistryTarget
    realm: URL
    service: str | None
    scopes: list[str]
    client_id: str
    credential: Credential | None


def realm_url(upstream: RegistryTarget, challenge: Challenge, credential: Credential | None) -> URL:
    """The challenge's realm, once ``realms.check_realm`` allows it to be asked (with ``credential``)."""
    if not challenge.realm:
        raise UpstreamError(f"{upstream.host} sent a Bearer challenge with no realm", Outcome.NOT_V2)
    try:
        realm = URL(challenge.realm)
    except ValueError:
        realm = URL()
    if realm.scheme not in ("http", "https") or not usable_host(realm):
        raise UpstreamError(f"{upstream.host} sent an unusable token realm", Outcome.NOT_V2)
    check_realm(upstream, realm, credentialed=credential is not None)
    return realm


async def _get(ask: _Ask) -> TokenResponse:
    query = list(ask.realm.query.items())
    query += [("service", ask.service)] if ask.service else []
    query += [("scope", s) for s in ask.scopes]
    headers = {}
    if ask.credential is not None:
        query.append(("account", ask.credential.username))
        headers["Authorization"] = basic_authorization(ask.credential.username, ask.credential.secret)
    url = ask.realm.with_query(query)
    async with send(ask.session, ask.upstream, "GET", str(url), headers=headers) as response:
        return await _read(ask, response)


async def _post(ask: _Ask, form: dict[str, str]) -> TokenResponse:
    form = {**form, "client_id": ask.client_id}
    if ask.service:
        form["service"] = ask.service
    if ask.scopes:
        form["scope"] = " ".join(ask.scopes)
    async with send(ask.session, ask.upstream, "POST", str(ask.realm), data=form) as response:
        return await _read(ask, response)


async def _read(ask: _Ask, response: aiohttp.ClientResponse) -> TokenResponse:
    body = await read_capped(response, TOKEN_BODY_MAX, "token response")
    if response.status != 200:
        raise _refusal(ask, response.status, body)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
        data = None
    token = (data.get("token") or data.get("access_token")) if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(token, str) or not token:
        raise UpstreamError(
            f"the token server of {ask.upstream.host} ({ask.realm.host}) answered with no token",
            Outcome.NOT_V2,
        )
    if any(char < " " or char == "\x7f" for char in token):
        # It becomes a header value: a CR/LF would add headers of the token server's choosing (aiohttp
        # refuses it with a ValueError; Go's client too).
        raise UpstreamError(
            f"the token server of {ask.upstream.host} ({ask.realm.host}) answered with a token holding "
            "control characters",
            Outcome.NOT_V2,
        )
    expires_in = data.get("expires_in")
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = DEFAULT_EXPIRES_IN
    return TokenResponse(
        token=token,
        expires_in=min(expires_in, MAX_EXPIRES_IN),
        issued_at=parse_issued_at(data.get("issued_at")),
    )


def _refusal(ask: _Ask, status: int, body: bytes) -> UpstreamError:
    who = _who(ask.credential)
    detail = _detail(body)
    where = f"the token server of {ask.upstream.host} ({ask.realm.host})"
    suffix = f": {detail}" if detail else ""
    if status == 429:
        return UpstreamError(f"rate limited by {where} (429){suffix}", Outcome.RATE_LIMITED, status)
    if status in (401, 403) or (status == 400 and _oauth_error(body) in _OAUTH_DENIED):
        return UpstreamError(f"{where} refused {who} ({status}){suffix}", Outcome.WRONG_CREDENTIALS, status)
    outcome = Outcome.UNREACHABLE if status >= 500 else Outcome.NOT_V2
    return UpstreamError(f"{where} answered {status}{suffix}", outcome, status)


def _who(credential: Credential | None) -> str:
    if credential is None:
        return "anonymous access"
    if credential.is_identity_token:
        return "the identity token"
    return f"the credentials of user {credential.username!r}"


def _oauth_error(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return str(data.get("error")) if isinstance(data, dict) and data.get("error") else None


def _detail(body: bytes) -> str:
    errors = parse_error_body(body)
    if errors:
        return describe(errors)
    oauth = _oauth_error(body)
    return oauth[:100] if oauth else ""


def parse_issued_at(value: object) -> float | None:
    """RFC 3339 to Unix time; Docker Hub sends nanoseconds, which ``fromisoformat`` (3.10) refuses."""
    if not isinstance(value, str):
        return None
    match = _ISO.match(value.strip())
    if match is None:
        return None
    base, fraction, zone = match.groups()
    try:
        moment = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_zone(zone))
    except ValueError:
        return None
    seconds = moment.timestamp()
    return seconds + (float(f"0.{fraction}") if fraction else 0.0)


def _zone(text: str | None) -> timezone:
    if not text or text.upper() == "Z":
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
