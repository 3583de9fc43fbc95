"""Loopback stand-ins for the clouds' instance metadata services, which the SDKs probe on their own.

``nothing_here`` answers every request at once as a machine outside any cloud sees it: 404 (AWS IMDS:
no token, no role; Google: no ``Metadata-Flavor`` header, so not Google Cloud) and 400 for Azure's
token path (no identity assigned, which azure-identity does not retry). The autouse fixture points
every SDK at it, so no test's credential search leaves the loopback range.

``black_hole`` accepts connections and never answers, as a network that drops link-local traffic
after a proxy or a firewall accepted it; it counts what it accepted.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from support.serving import serving

AZURE_TOKEN_PATH = "/metadata/identity/oauth2/token"


class MetadataStandIn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.hits: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.netloc}"

    def environ(self) -> dict[str, str]:
        """Each SDK's own setting for where its metadata service is (their names, from their sources)."""
        return {
            # botocore: the EC2 instance metadata service (IMDSv2 token, then the role).
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.url + "/",
            # google-auth: the ping that decides "on Google Cloud" uses the IP, requests use the host.
            "GCE_METADATA_IP": self.netloc,
            "GCE_METADATA_HOST": self.netloc,
            # azure-identity: IMDS, as AKS pod identity moves it; no App Service/Arc variables are set.
            "AZURE_POD_IDENTITY_AUTHORITY_HOST": self.url,
        }


@contextmanager
def nothing_here() -> Iterator[MetadataStandIn]:
    holder: list[MetadataStandIn] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            site = holder[0]
            path = self.path.split("?", 1)[0]
            with site.lock:
                site.hits[f"{self.command} {path}"] += 1
            status = 400 if path == AZURE_TOKEN_PATH else 404
            body = b'{"error":"invalid_request","error_description":"Identity not found"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder.append(MetadataStandIn(server.server_address[1]))
    with serving(server):
        yield holder[0]


class BlackHole:
    """A listening socket that accepts and never answers; ``settle()`` counts the connections."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._held: list[socket.socket] = []
        self._peers: list[int] = []
        self._markers: set[int] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.netloc}"

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._held.append(conn)
                self._peers.append(int(peer[1]))

    def settle(self, timeout: float = 30.0) -> int:
        """How many connections the clients made so far. Connections wait in the kernel's queue until
        accepted; a marker connection of our own, once accepted, proves every earlier one was."""
        marker = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        mark = marker.getsockname()[1]
        self._markers.add(mark)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with self._lock:
                    peers = list(self._peers)
                if mark in peers:
                    return sum(1 for port in peers if port not in self._markers)
                time.sleep(0.01)
            raise AssertionError("the black hole did not accept its own marker connection")
        finally:
            marker.close()

    def start(self) -> BlackHole:
        self._thread.start()
        return self

    def close(self) -> None:
        # shutdown() wakes the accept() in the thread; close() alone may not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join()
        with self._lock:
            for conn in self._held:
                conn.close()


@contextmanager
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole().start()
    try:
        yield hole
    finally:
        hole.close()
