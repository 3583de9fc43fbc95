"""HTTP for minting one token: its requests share one deadline, each answer is read within that
deadline and a size cap, and no redirect is followed.

An SDK's timeouts bound each read from the socket, not the answer: an endpoint that trickles a body
that never ends, or floods one, holds a request as long as it likes. The kubelet kills a plugin after
a minute, and a helper ``get`` must answer in seconds. So the token requests of one mint (Entra ID,
the ACR exchange, Google's STS and IAM) go through one ``BoundedSession``: a ``requests.Session``,
which azure-core's ``RequestsTransport(session=...)`` and google-auth's ``Request(session)`` both
take, so the SDKs keep their own request logic and error mapping.

The answer is read whole, then handed on as a response whose body is those bytes (``content`` for
google-auth, ``raw`` for azure-core, which reads it as a stream). Only unencoded answers are asked
for and taken: a compressed one could grow past the cap after it was read.

A token request carries a credential in its body, and a 307 or 308 redirect would send that body
on to wherever the answer points; so no redirect is followed: the SDK sees the 3xx as the failure it
is. The whole mint ends within ``seconds`` plus one socket read timeout, which is itself at most what
was left of ``seconds`` when that request started: twice ``seconds`` at worst.

Imported only by providers that are minting, which import requests anyway.
"""

from __future__ import annotations

import io
import time
from typing import Any

import requests
import urllib3

# A token answer is a few KiB; an Entra ID error with its trace ids, a little more.
MAX_BODY = 1 << 20
# One mint with a pod's token: at most twice this (see above), within the kubelet's minute.
MINT_SECONDS = 20.0
# The ACR exchange after the node's own Entra token, as long as its read timeout was before.
EXCHANGE_SECONDS = 20.0
_CHUNK = 1 << 16


class BodyTooLarge(requests.exceptions.RequestException):
    """An answer longer than any token endpoint sends."""


class BoundedSession(requests.Session):
    def __init__(self, seconds: float, max_body: int = MAX_BODY) -> None:
        super().__init__()
        self.seconds = seconds
        self.max_body = max_body
        self._deadline = time.monotonic() + seconds
        self.headers["Accept-Encoding"] = "identity"
        # The status of every answer, in order: an SDK's error does not always say it was a 5xx.
        self.statuses: list[int] = []

    def remaining(self) -> float:
        return self._deadline - time.monotonic()

    def get_redirect_target(self, resp: requests.Response) -> None:
        # requests reads a redirect's whole body before following it, or before offering the next
        # request to a caller that asked for none: answering "no target" skips both.
        return None

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        left = self.remaining()
        if left <= 0:
            raise requests.exceptions.ReadTimeout(self._late(), request=request)
        kwargs["timeout"] = _capped(kwargs.get("timeout"), left)
        kwargs["stream"] = True
        response = super().send(request, **kwargs)
        self.statuses.append(response.status_code)
        try:
            body = self._read(response)
        finally:
            # The body is kept (or the request failed): the connection is not reused either way.
            response.close()
        response.raw = urllib3.HTTPResponse(
            body=io.BytesIO(body),
            headers=response.raw.headers,
            status=response.status_code,
            preload_content=False,
            decode_content=False,
        )
        response._content = body
        response._content_consumed = True
        return response

    def _read(self, response: requests.Response) -> bytes:
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise requests.exceptions.ContentDecodingError(
                f"the answer from {response.url} is {encoding}-encoded, though none was asked for",
                response=response,
            )
        body = bytearray()
        while True:
            if self.remaining() <= 0:
                raise requests.exceptions.ReadTimeout(self._late(), response=response)
            try:
                # read1 returns what one read from the socket gave, so the deadline is checked
                # between reads however slowly the body comes.
                chunk = response.raw.read1(_CHUNK, decode_content=False)
            except urllib3.exceptions.ReadTimeoutError as exc:
                raise requests.exceptions.ReadTimeout(exc, response=response) from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise requests.exceptions.ConnectionError(exc, response=response) from exc
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > self.max_body:
                raise BodyTooLarge(
                    f"the answer from {response.url} passed {self.max_body} bytes", response=response
                )

    def _late(self) -> str:
        return f"no complete answer within {self.seconds:g}s"


def server_failed(session: BoundedSession) -> int | None:
    """The status of the last answer if it was a server error (not a refusal), else None."""
    last = session.statuses[-1] if session.statuses else None
    return last if last is not None and last >= 500 else None


def _capped(timeout: Any, left: float) -> Any:
    """The request's (connect, read) timeouts, each no longer than what is left of the deadline."""
    if isinstance(timeout, tuple):
        return tuple(left if part is None else min(part, left) for part in timeout)
    return left if timeout is None else min(timeout, left)
