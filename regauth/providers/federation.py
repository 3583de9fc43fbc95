"""What the token-federating providers (acr, gcp) read from a workload the same way: a setting from
the annotations they accept or else from the record, which service account a token is for (in cache
keys), and their messages with the pod's token taken out.

No SDK here: ``workload_identity`` uses it on every kubelet request, cached token or not.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import NamedTuple

from regauth.providers.base import brief, option
from regauth.providers.workload import Workload
from regauth.registries import Registry

# After a 5xx: the identity may well be right, and should not be rebuilt over a server's fault.
SERVER_ADVICE = "that is the server's failure, not a refusal: try again (the kubelet does, at its next pull)"
# A value that goes into a URL path or a form must stay one plain segment there.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@%+-]*\Z")


class Named(NamedTuple):
    """A setting's value and where it was found, for messages: "the annotation K" or "the record option O"."""

    value: str
    source: str


def named(record: Registry | None, workload: Workload, keys: Iterable[str], opt: str) -> Named | None:
    """The first of the annotations ``keys`` the service account carries, else the record option ``opt``:
    the service account's own setting is the more particular one."""
    for key in keys:
        value = workload.annotations.get(key, "").strip()
        if value:
            return Named(value, f"the annotation {key}")
    from_record = option(record, opt)
    return Named(from_record, f"the record option {opt}") if from_record is not None else None


def plain(value: str) -> bool:
    """Whether ``value`` is one plain segment (an id, a tenant domain, an e-mail address)."""
    return _SEGMENT.match(value) is not None


def service_account(workload: Workload) -> str:
    """The service account as the token names it, for cache keys; a token that names none is keyed
    by its own digest, so that it never shares a cached credential with another."""
    return workload.subject() or "sha256:" + hashlib.sha256(workload.token.encode()).hexdigest()


def said(exc: Exception, workload: Workload) -> str:
    """An SDK's error on one line, bounded, without the token or any long part of it: an endpoint
    may quote what it was sent."""
    # google-auth's errors carry the answer's body as a second argument: joined, not a tuple's repr.
    text = ": ".join(str(arg) for arg in exc.args) if len(exc.args) > 1 else str(exc)
    text = text or type(exc).__name__
    for part in sorted({workload.token, *workload.token.split(".")}, key=len, reverse=True):
        if len(part) >= 16:
            text = text.replace(part, "***")
    return brief(text)
