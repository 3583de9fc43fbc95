"""Is the proxy running, and do its upstreams answer through it?

The proxy's ``/v2/`` says it is up; a tag list through it for each record (``/v2/NAME/REPO/tags/list``,
the record's repository, else a made-up one) makes it ask the upstream with the record's credential,
so its answer tells an upstream that answers (anything the registry said, relayed) from one that does
not (the proxy's own 502, 503 or 504). The requests go to the URL given and nowhere else: no proxy
from the environment, no redirect followed.

Asking is a use of the record on the proxy's side; where the proxy shares this machine's state dir,
the marks it made are put back (``usage.put_back``), so ``doctor --proxy`` never makes an unused record
look used.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from regauth import usage
from regauth.configure.findings import ACTION, INFO, OK, Finding
from regauth.registries import Registry

PROBE_REPOSITORY = "regauth-doctor/probe"  # for a record that names no repository: any answer will do
_TIMEOUT = 15.0
_DETAIL_MAX = 200


class _Answer(NamedTuple):
    status: int
    message: str  # the registry error's message, if the body had one


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an answer to report, not a place to go


def opener() -> urllib.request.OpenerDirector:
    """urllib without the environment's proxies (``ProxyHandler({})``) and without redirects."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def proxy_findings(url: str, records: Sequence[Registry], state_dir: str) -> Iterator[Finding]:
    base = url.rstrip("/")
    ask = opener()
    try:
        answer = _get(ask, f"{base}/v2/")
    except (OSError, ValueError) as exc:
        yield Finding("proxy", ACTION, f"{base} does not answer: {getattr(exc, 'reason', exc)}")
        return
    if answer.status == 401:
        yield Finding(
            "proxy",
            OK,
            f"{base} answers the Registry V2 API; it asks clients to log in, "
            "so its upstreams were not checked",
        )
        return
    if answer.status != 200:
        yield Finding("proxy", ACTION, f"{base}/v2/ answered {answer.status}: is it regauth's proxy?")
        return
    yield Finding("proxy", OK, f"{base} answers the Registry V2 API")
    kept = {record.id: usage.last_used(state_dir, record.id) for record in records}
    try:
        for record in records:
            yield _upstream(ask, base, record)
    finally:
        for record_id, when in kept.items():
            usage.put_back(state_dir, record_id, when)


def _upstream(ask: urllib.request.OpenerDirector, base: str, record: Registry) -> Finding:
    check = f"proxy {record.name}"
    repository = record.repository or PROBE_REPOSITORY
    path = urllib.parse.quote(f"{record.name}/{repository}")
    try:
        answer = _get(ask, f"{base}/v2/{path}/tags/list?n=1")
    except (OSError, ValueError) as exc:
        return Finding(
            check, ACTION, f"{base} did not answer for {record.location}: {getattr(exc, 'reason', exc)}"
        )
    said = f" ({answer.message})" if answer.message else ""
    if answer.status in (502, 503, 504):
        return Finding(
            check, ACTION, f"{record.location} does not answer through the proxy: {answer.status}{said}"
        )
    if answer.status == 200:
        return Finding(check, OK, f"{record.location} answers through the proxy (the tags of {repository})")
    if answer.status == 429:
        return Finding(check, INFO, f"{record.location} answers through the proxy, rate limited{said}")
    if record.repository is None and answer.status in (401, 403, 404):
        return Finding(
            check,
            OK,
            f"{record.location} answers through the proxy ({answer.status} for a made-up repository, as "
            f"expected; `regauth registry update {record.name} --repository REPO` checks a pull)",
        )
    return Finding(
        check, ACTION, f"{record.location} answered {answer.status} for {repository} through the proxy{said}"
    )


def _get(ask: urllib.request.OpenerDirector, url: str) -> _Answer:
    try:
        with ask.open(url, timeout=_TIMEOUT) as response:
            return _Answer(response.status, "")
    except urllib.error.HTTPError as exc:
        with exc:
            return _Answer(exc.code, _message(exc.read(64 * 1024)))


def _message(body: bytes) -> str:
    try:
        errors = json.loads(body).get("errors")
        text = str(errors[0].get("message") or errors[0].get("code") or "")
    except (ValueError, AttributeError, TypeError, IndexError, KeyError):
        return ""
    return text[:_DETAIL_MAX]
