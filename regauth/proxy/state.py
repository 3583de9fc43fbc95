"""What the handlers share, under typed application keys (made by ``app.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from regauth.proxy.blobcache import BlobCache
from regauth.proxy.manifestcache import ManifestCache
from regauth.proxy.metrics import Metrics
from regauth.proxy.options import ProxyOptions
from regauth.proxy.routing import Upstreams
from regauth.proxy.upstream import UpstreamClient

if TYPE_CHECKING:
    # flights.py imports this module: the key is typed, not checked, at run time.
    from regauth.proxy.flights import Flights
    from regauth.proxy.sharedcache import SharedCache

OPTIONS = web.AppKey("options", ProxyOptions)
UPSTREAMS = web.AppKey("upstreams", Upstreams)
METRICS = web.AppKey("metrics", Metrics)
CLIENT = web.AppKey("client", UpstreamClient)
BLOBS: web.AppKey[BlobCache | None] = web.AppKey("blobs")
MANIFESTS: web.AppKey[ManifestCache | None] = web.AppKey("manifests")
FLIGHTS: web.AppKey[Flights] = web.AppKey("flights")
SHARED: web.AppKey[SharedCache | None] = web.AppKey("shared")
# The SO_SNDBUF streamed bodies get, 0 for the kernel's own (see relay.usable_send_buffer).
SEND_BUFFER = web.AppKey("send_buffer", int)

# Per-request notes for the access log and the metrics: what was asked and where it was answered from.
KIND = web.RequestKey("kind", str)
SOURCE = web.RequestKey("source", str)
UPSTREAM = web.RequestKey("upstream", str)
# Body bytes actually sent, where the response object cannot tell (a stream cut short).
SENT = web.RequestKey("sent", int)
