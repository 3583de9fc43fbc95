"""An HTTP forwarder in front of moto that records each AWS call and can play a hostile STS.

boto3 is pointed at it through its own ``AWS_ENDPOINT_URL``; it forwards every request to moto and
records the call's action (the query protocol's ``Action``, the JSON protocol's ``X-Amz-Target``), the
access key that signed it (None for an unsigned call) and its form. ``sts_answer``, when set, answers
``AssumeRoleWithWebIdentity`` itself (an STS that rejects the token, echoing it); ``sts_rewrite``
rewrites moto's answer (a session that ends sooner).
"""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from support.serving import serving

WEB_IDENTITY = "AssumeRoleWithWebIdentity"
ECR_TOKEN = "GetAuthorizationToken"
_KEY_ID = re.compile(r"Credential=([^/]+)/")


class Call(NamedTuple):
    action: str
    key_id: str | None
    form: dict[str, str]


class Recorder:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.sts_answer: tuple[int, bytes] | None = None
        self.sts_rewrite: Callable[[bytes], bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def of(self, action: str) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.action == action]


@contextmanager
def recorder(upstream: str) -> Iterator[Recorder]:
    holder: list[Recorder] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            site = holder[0]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            form = dict(urllib.parse.parse_qsl(body.decode(errors="replace")))
            target = self.headers.get("X-Amz-Target", "")
            action = target.rpartition(".")[2] if target else form.get("Action", "")
            signed = _KEY_ID.search(self.headers.get("Authorization", ""))
            with site.lock:
                site.calls.append(Call(action, signed.group(1) if signed else None, form))
            if action == WEB_IDENTITY and site.sts_answer is not None:
                status, data = site.sts_answer
                self._reply(status, "text/xml", data)
                return
            status, content_type, data = _forward(upstream + self.path, body, self.headers.items())
            if action == WEB_IDENTITY and site.sts_rewrite is not None:
                data = site.sts_rewrite(data)
            self._reply(status, content_type, data)

        def _reply(self, status: int, content_type: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Recorder(server))
    with serving(server):
        yield holder[0]


def _forward(url: str, body: bytes, headers: Any) -> tuple[int, str, bytes]:
    kept = {k: v for k, v in headers if k.lower() not in ("host", "content-length", "accept-encoding")}
    request = urllib.request.Request(url, data=body, headers=kept, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()
