"""Whether a credential can only pull a repository or also push or delete it, as its token server says.

distribution's token specification has the server grant "the intersection of the set of requested
actions ... and the set of actions that the client has in fact been granted", a subset being no error;
the token's JWT ``access`` claim lists what was granted (``[{"type", "name", "actions"}]``). Harbor
lists every action the account has on the repository whatever was asked (``*`` when it has pull, push
and delete). So one more token request, for ``pull,push,delete`` on the repository just pulled, sent
through the same ``Authenticator`` path (the realm the pull already used, checked by ``realms``), tells
both kinds apart. The claim is read without verifying the signature: it is the token server's own
statement about the credential, which is all this reports, and the token is used for nothing else.

Anything else (Basic auth, a token that is no JWT, an ``access`` claim that does not have that shape or
does not name the repository, a token server that refuses the wider request) is ``unknown``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

from regauth.distribution.challenge import Challenge, find
from regauth.distribution.client import RegistryClient
from regauth.distribution.errors import UpstreamError
from regauth.distribution.jwt import unverified_claims

Access = Literal["read-only", "read-write", "unknown"]
READ_ONLY: Access = "read-only"
READ_WRITE: Access = "read-write"
UNKNOWN: Access = "unknown"
WRITE_ACTIONS = frozenset({"push", "delete", "*"})
_MAX_ACTIONS = 64  # what a token may list for one repository before it is not worth reading


class Granted(NamedTuple):
    access: Access
    why: str  # a short reason for the message: what was granted, or why it is unknown


def probe_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push,delete"


async def probe(client: RegistryClient, challenges: Sequence[Challenge], repository: str) -> Granted:
    """Ask the token server of ``challenges`` (the registry's own) for every action on ``repository``
    with the client's credential, and read what it granted."""
    if find(challenges, "bearer") is None:
        return Granted(UNKNOWN, "the registry takes Basic auth, which shows no granted actions")
    try:
        header = await client.auth.authorize(
            client.upstream, client.credential, challenges, probe_scope(repository)
        )
    except UpstreamError as exc:
        return Granted(UNKNOWN, f"the token server refused a request for push ({exc.outcome})")
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return Granted(UNKNOWN, "the token server sent no bearer token")
    return read_granted(token, repository)


def read_granted(token: str, repository: str) -> Granted:
    """What the unverified JWT ``token`` says was granted on ``repository``."""
    claims = unverified_claims(token)
    if not claims:
        return Granted(UNKNOWN, "its token is not a JWT, so it shows no granted actions")
    access = claims.get("access")
    if not isinstance(access, list):
        return Granted(UNKNOWN, "its token has no readable access claim")
    actions: set[str] = set()
    named = False
    for entry in access:
        if not isinstance(entry, dict):
            return Granted(UNKNOWN, "its token has no readable access claim")
        if entry.get("type") != "repository" or entry.get("name") != repository:
            continue
        listed = entry.get("actions")
        if not isinstance(listed, list) or len(listed) > _MAX_ACTIONS:
            return Granted(UNKNOWN, "its token has no readable access claim")
        if not all(isinstance(action, str) for action in listed):
            return Granted(UNKNOWN, "its token has no readable access claim")
        named = True
        actions.update(listed)
    if not named:
        return Granted(UNKNOWN, f"its token grants nothing it names on {repository}")
    writes = sorted(actions & WRITE_ACTIONS)
    if writes:
        shown = "all actions" if "*" in writes else " and ".join(writes)
        return Granted(READ_WRITE, f"the token server grants {shown} on {repository}")
    if "pull" in actions:
        return Granted(READ_ONLY, f"the token server grants pull only on {repository}")
    return Granted(UNKNOWN, f"its token grants no pull on {repository}")
