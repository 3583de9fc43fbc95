"""The proxy application factory: routes, middlewares, and the state the handlers share.

One ``ClientSession`` per application, made and closed in a cleanup context, with connect and per-read
timeouts but no total (a large blob may stream for minutes); one distribution ``Authenticator`` on it,
so bearer tokens are cached and fetched once per (upstream, scope) across all pulls. Its pool is capped
per upstream host, not in total: slow pulls from one registry hold at most its own share, and the total
is bounded by the client connections (``connections.py``), each of which holds at most one upstream
connection at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Middleware

from regauth.config import Settings
from regauth.distribution.auth import Authenticator
from regauth.distribution.transport import Timeouts, make_session
from regauth.proxy import state
from regauth.proxy.blobcache import BlobCache
from regauth.proxy.clientauth import ClientAuth, read_htpasswd
from regauth.proxy.connections import ConnectionGuard
from regauth.proxy.credentials import Credentials
from regauth.proxy.errors import UNSUPPORTED, ApiError, error_middleware
from regauth.proxy.flights import install as install_flights
from regauth.proxy.handlers import v2
from regauth.proxy.manifestcache import ManifestCache
from regauth.proxy.metrics import Metrics
from regauth.proxy.options import ProxyOptions
from regauth.proxy.relay import usable_send_buffer
from regauth.proxy.routing import Upstreams
from regauth.proxy.sharedcache import SharedCache
from regauth.proxy.upstream import UpstreamClient
from regauth.registries import RegistryBook
from regauth.store.base import SecretStore

CONNECTIONS = web.AppKey("connections", ConnectionGuard)


def make_proxy_app(
    settings: Settings,
    book: RegistryBook,
    store: SecretStore,
    *,
    options: ProxyOptions,
    credentials: Credentials | None = None,
) -> web.Application:
    """The proxy for ``book``'s records; ``store`` is the one the edge opened (lazily) for the book."""
    guard = ConnectionGuard(limit=options.max_connections, header_timeout=options.header_timeout)
    middlewares: list[Middleware] = [guard.middleware()]
    auth: ClientAuth | None = None
    if options.client_auth:
        users = read_htpasswd(options.htpasswd) if options.htpasswd else None
        auth = ClientAuth(
            options.client_token, users, workers=options.bcrypt_workers, queue=options.bcrypt_queue
        )
        middlewares.append(auth.middleware())
    middlewares.append(error_middleware)
    app = web.Application(middlewares=middlewares)
    app[CONNECTIONS] = guard
    metrics = Metrics()
    _connection_gauges(metrics, guard)
    if auth is not None:
        app.on_cleanup.append(lambda _app: _close(auth))
    app[state.OPTIONS] = options
    app[state.SEND_BUFFER] = usable_send_buffer(options.send_buffer)
    app[state.METRICS] = metrics
    app[state.UPSTREAMS] = Upstreams(
        book, docker_hub=options.docker_hub, docker_hub_url=options.docker_hub_url
    )
    blobs = BlobCache(options.cache_dir, options.cache_max_size) if options.cache_dir else None
    app[state.BLOBS] = blobs
    app[state.MANIFESTS] = ManifestCache(options.manifest_tag_ttl) if options.cache_dir else None
    install_flights(app, metrics.gauge)
    app[state.SHARED] = (
        SharedCache(
            options.cache_url, lease_seconds=options.cache_lease, redirect_seconds=options.cache_redirect
        )
        if options.cache_url
        else None
    )
    if blobs is not None:
        metrics.gauge("regauth_proxy_cache_bytes", "gauge", "Bytes in the blob cache.", lambda: blobs.size)
        metrics.gauge(
            "regauth_proxy_cache_evictions_total", "counter", "Blobs evicted.", lambda: blobs.evictions
        )
    app.cleanup_ctx.append(_upstream_client(credentials or Credentials.from_store(settings, store)))
    app.router.add_route("*", "/v2", v2)
    app.router.add_route("*", "/v2/{tail:.*}", v2)
    app.router.add_get("/metrics", _metrics)
    app.router.add_route("*", "/{tail:.*}", _elsewhere)
    return app


def _upstream_client(credentials: Credentials):  # type: ignore[no-untyped-def]
    async def context(app: web.Application) -> AsyncIterator[None]:
        options = app[state.OPTIONS]
        metrics = app[state.METRICS]
        timeouts = Timeouts(connect=options.connect_timeout, read=options.read_timeout, total=None)
        # A larger read buffer than the default: fewer, larger chunks per blob (measured: less CPU per
        # byte than 64 KiB).
        session = make_session(
            timeouts,
            limit=0,
            limit_per_host=options.upstream_connections,
            read_bufsize=options.read_buffer,
        )
        authenticator = Authenticator(session)
        app[state.CLIENT] = UpstreamClient(session, authenticator, credentials, metrics)
        metrics.gauge(
            "regauth_proxy_token_mints_total",
            "counter",
            "Bearer tokens fetched.",
            lambda: authenticator.mints,
        )
        try:
            yield
        finally:
            await session.close()

    return context


def _connection_gauges(metrics: Metrics, guard: ConnectionGuard) -> None:
    metrics.gauge("regauth_proxy_client_connections", "gauge", "Open client connections.", lambda: guard.open)
    metrics.gauge(
        "regauth_proxy_connections_refused_total",
        "counter",
        "Connections answered 503 at --max-connections.",
        lambda: guard.refused,
    )
    metrics.gauge(
        "regauth_proxy_connections_evicted_total",
        "counter",
        "Idle connections closed to make room at --max-connections.",
        lambda: guard.evicted,
    )
    metrics.gauge(
        "regauth_proxy_header_timeouts_total",
        "counter",
        "Connections closed because a request head did not arrive in time.",
        lambda: guard.header_timeouts,
    )


async def _close(auth: ClientAuth) -> None:
    auth.close()


async def _elsewhere(request: web.Request) -> web.Response:
    # Registry clients parse errors as JSON: answer everything outside /v2 and /metrics that way too.
    raise ApiError(404, UNSUPPORTED, f"{request.path} is not served here: this is a Registry V2 proxy (/v2/)")


async def _metrics(request: web.Request) -> web.Response:
    text = request.app[state.METRICS].render()
    return web.Response(
        text=text, content_type="text/plain", charset="utf-8", headers={"Cache-Control": "no-store"}
    )
