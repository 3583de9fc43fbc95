"""The ecr provider's botocore clients with a mint's limits: each answer read within a deadline and a
size cap, as ``bounded.BoundedSession`` does for the requests-based providers.

botocore reads a whole answer into memory, however long it is and however slowly it comes: its read
timeout bounds each read from the socket, not the answer. An endpoint that floods a body that never
ends (the STS a pod's token goes to, an ``AWS_ENDPOINT_URL``) fills the node's memory, and one that
trickles it holds the pull past the kubelet's minute. So each client's requests are sent here, from
its ``before-send`` event: through the client's own HTTP session (its proxies, CA bundle, client
certificate and timeouts), with the body left unread, which is then read at most ``MAX_BODY`` bytes
and until the client's deadline. botocore follows no redirect (it sends with ``redirect=False``) and
asks for no compression, so what is read is what it parses.

Imported only by the ecr provider when it calls AWS, which imports botocore anyway.
"""

from __future__ import annotations

import io
import time
from typing import Any

import urllib3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import BotoCoreError, ConnectionClosedError, ReadTimeoutError

# As bounded.MAX_BODY (which imports requests, not a dependency of boto3): an STS or ECR answer is a
# few KiB.
MAX_BODY = 1 << 20
# One client's calls (botocore's retries included), as bounded.MINT_SECONDS: STS then ECR for a pod's
# token stay within the kubelet's minute.
CLIENT_SECONDS = 20.0
_CHUNK = 1 << 16


# "Endpoint" in the names: the provider's advice for them is to check the network and the endpoint.
class EndpointAnswerTooLarge(BotoCoreError):  # type: ignore[misc]  # botocore has no types
    fmt = "the answer from {endpoint_url} passed {limit} bytes"


class EndpointAnswerTimeout(BotoCoreError):  # type: ignore[misc]
    fmt = "no complete answer from {endpoint_url} within {seconds:g}s"


def bounded(client: Any, seconds: float = CLIENT_SECONDS, max_body: int = MAX_BODY) -> Any:
    """``client``, its answers from now on read within ``seconds`` in all and ``max_body`` each."""
    http = getattr(getattr(client, "_endpoint", None), "http_session", None)
    if http is None:  # not botocore's own client: nothing to bound through
        return client
    deadline = time.monotonic() + seconds

    def send(request: Any, **_: Any) -> AWSResponse:
        if time.monotonic() >= deadline:
            # botocore retries a failed call: a retry after the deadline is not even sent.
            raise EndpointAnswerTimeout(endpoint_url=request.url, seconds=seconds)
        wanted = request.stream_output
        request.stream_output = True  # the session then leaves the body for us to read
        try:
            response = http.send(request)
        finally:
            request.stream_output = wanted
        try:
            body = _read(response.raw, request.url, deadline, seconds, max_body)
        finally:
            response.raw.release_conn()
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(body),
            headers=response.headers,
            status=response.status_code,
            preload_content=False,
            decode_content=False,
        )
        return AWSResponse(response.url, response.status_code, response.headers, raw)

    client.meta.events.register_last("before-send", send)
    return client


def _read(raw: Any, url: str, deadline: float, seconds: float, max_body: int) -> bytes:
    body = bytearray()
    # read1 returns what one read from the socket gave, so the deadline is checked between reads
    # however slowly the body comes (urllib3 1.x has no read1: a small read instead).
    read = getattr(raw, "read1", None) or raw.read
    while True:
        if time.monotonic() >= deadline:
            raw.close()
            raise EndpointAnswerTimeout(endpoint_url=url, seconds=seconds)
        try:
            chunk = read(_CHUNK if read is not raw.read else 1024, decode_content=False)
        except urllib3.exceptions.ReadTimeoutError as exc:
            # As botocore's own send maps them, so its retries and the provider's messages apply.
            raise ReadTimeoutError(endpoint_url=url, error=exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ConnectionClosedError(endpoint_url=url, error=exc) from exc
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > max_body:
            raw.close()
            raise EndpointAnswerTooLarge(endpoint_url=url, limit=max_body)
