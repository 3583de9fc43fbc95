"""``regauth proxy``: options from the command line, the loopback rule, and the server's life cycle.

Listens on 127.0.0.1 unless told otherwise; any other address needs client auth, and TLS for it unless
``--accept-cleartext-credentials`` (``options.check_exposure``). Connections go through a
``ConnectionGuard`` (a cap, a header-read timeout) and idle ones close after ``idle_timeout``. SIGTERM
and SIGINT stop accepting, let in-flight pulls finish (up to ``--shutdown-timeout``), then exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import resource
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from regauth.config import Settings
from regauth.errors import UsageError
from regauth.proxy import state
from regauth.proxy.accesslog import ACCESS_LOG, SERVER_LOG, AccessLogger
from regauth.proxy.app import CONNECTIONS, make_proxy_app
from regauth.proxy.clientauth import read_token_file
from regauth.proxy.connections import GuardedSite
from regauth.proxy.options import ProxyOptions, check_exposure, parse_listen, parse_size
from regauth.registries import RegistryBook
from regauth.store.base import SecretStore

# File descriptors a client connection may need (its socket, one upstream socket or cache file), and
# those kept for everything else (listening sockets, the store, logs, token fetches).
_FDS_PER_CONNECTION = 2
_FDS_SPARE = 256


def options_from_args(args: argparse.Namespace) -> ProxyOptions:
    cache_dir = Path(args.cache_dir).expanduser().resolve() if args.cache_dir else None
    max_size = parse_size(args.cache_max_size) if args.cache_max_size else None
    if max_size is not None and cache_dir is None:
        raise UsageError("--cache-max-size needs --cache-dir")
    cache_url = getattr(args, "cache_url", None)
    cache_lease = getattr(args, "cache_lease", None) or ProxyOptions.cache_lease
    if cache_lease <= 0:
        raise UsageError("--cache-lease must be more than 0 seconds")
    cache_redirect = getattr(args, "cache_redirect", None) or 0.0
    if cache_redirect < 0 or (cache_redirect and not cache_url):
        raise UsageError("--cache-redirect takes seconds (more than 0) and needs --cache-url")
    serve_stale = getattr(args, "serve_stale", None) or 0.0
    if serve_stale < 0:
        raise UsageError("--serve-stale must be 0 (off) or more seconds")
    if serve_stale and cache_dir is None:
        raise UsageError("--serve-stale needs --cache-dir (the manifest cache it serves from)")
    token_file = getattr(args, "client_token_file", None)
    htpasswd = getattr(args, "htpasswd", None)
    max_connections = getattr(args, "max_connections", None)
    if max_connections is None:
        max_connections = ProxyOptions.max_connections
    if max_connections < 1:
        raise UsageError("--max-connections must be at least 1")
    return ProxyOptions(
        cache_dir=cache_dir,
        cache_max_size=max_size,
        manifest_tag_ttl=args.manifest_ttl,
        serve_stale=serve_stale,
        cache_url=cache_url,
        cache_lease=cache_lease,
        cache_redirect=cache_redirect,
        docker_hub=args.docker_hub,
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        client_token=read_token_file(Path(token_file)) if token_file else None,
        htpasswd=Path(htpasswd) if htpasswd else None,
        max_connections=max_connections,
    )


def run_proxy(args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore) -> int:
    host, port = parse_listen(args.listen)
    options = options_from_args(args)
    tls = server_tls(getattr(args, "tls_cert", None), getattr(args, "tls_key", None))
    check_exposure(
        args.listen,
        host,
        client_auth=options.client_auth,
        tls=tls is not None,
        cleartext=bool(getattr(args, "accept_cleartext_credentials", False)),
    )
    options = replace(options, max_connections=fit_connections(options.max_connections))
    if not args.quiet:
        ACCESS_LOG.setLevel(logging.INFO)
    notice = _no_registry_notice(book, options)
    also = _api_site(args, settings, book, store, tls)
    app = make_proxy_app(settings, book, store, options=options)
    asyncio.run(
        serve(app, host, port, shutdown_timeout=args.shutdown_timeout, tls=tls, notice=notice, also=also)
    )
    return 0


def _api_site(
    args: argparse.Namespace,
    settings: Settings,
    book: RegistryBook,
    store: SecretStore,
    tls: ssl.SSLContext | None,
) -> Callable[[], Awaitable[web.AppRunner]] | None:
    """``--api-listen``: `regauth serve`'s API and console from this process too (its own exposure rule)."""
    listen = getattr(args, "api_listen", None)
    if listen is None:
        return None
    from regauth.api.accesslog import ACCESS_LOG as API_ACCESS_LOG
    from regauth.api.main import api_site, start_api

    if not args.quiet:
        API_ACCESS_LOG.setLevel(logging.INFO)
    cleartext = bool(getattr(args, "accept_cleartext_credentials", False))
    site = api_site(settings, book, store, listen, tls, cleartext=cleartext)
    return lambda: start_api(site)


def _no_registry_notice(book: RegistryBook, options: ProxyOptions) -> str | None:
    if book.all() or options.docker_hub:
        return None
    return (
        "regauth proxy: no registry is configured, so every pull will be refused; add one with "
        "`regauth registry add NAME --url HOST` (the proxy picks it up without a restart), "
        "or pass --docker-hub to pull from Docker Hub anonymously"
    )


def fit_connections(wanted: int) -> int:
    """``wanted``, after raising the soft open-files limit towards what that many connections need (up
    to the hard limit); fewer, with a note, when the hard limit is too low. Running out of descriptors
    would make the server fail to accept anyone, which is worse than a 503 at a known cap."""
    needed = wanted * _FDS_PER_CONNECTION + _FDS_SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    except (ValueError, OSError):
        pass
    if soft >= needed:
        return wanted
    fitted = max(1, (soft - _FDS_SPARE) // _FDS_PER_CONNECTION)
    sys.stderr.write(
        f"regauth proxy: the open-files limit ({soft}) allows {fitted} client connections, so "
        f"--max-connections is {fitted}, not {wanted} (raise the limit with `ulimit -n`)\n"
    )
    return fitted


def server_tls(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The listening side's TLS, so a client token never crosses a network in clear."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UsageError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot load --tls-cert {cert} / --tls-key {key}: {reason}") from exc
    return context


async def start(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float = 60.0,
    tls: ssl.SSLContext | None = None,
) -> web.AppRunner:
    """The app, listening on ``host:port`` behind its connection guard (the caller cleans it up)."""
    options = app[state.OPTIONS]
    runner = web.AppRunner(
        app,
        access_log_class=AccessLogger,
        access_log=ACCESS_LOG,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=options.idle_timeout,
        logger=SERVER_LOG,
    )
    await runner.setup()
    site = GuardedSite(runner, host, port, guard=app[CONNECTIONS], ssl_context=tls)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise UsageError(_listen_error(host, port, exc)) from exc
    return runner


def _listen_error(host: str, port: int, exc: OSError) -> str:
    # asyncio puts the whole address tuple in strerror; the errno's own text reads better.
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    held = " (something else, a registry perhaps, holds that port)" if exc.errno == errno.EADDRINUSE else ""
    return f"cannot listen on {host}:{port}: {reason}{held}; choose another address with --listen HOST:PORT"


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float,
    tls: ssl.SSLContext | None = None,
    notice: str | None = None,
    also: Callable[[], Awaitable[web.AppRunner]] | None = None,
) -> None:
    runner = await start(app, host, port, shutdown_timeout=shutdown_timeout, tls=tls)
    try:
        also_runner = await also() if also is not None else None
    except BaseException:
        await runner.cleanup()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_one_line)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        bound = ", ".join(_address(s) for s in (runner.addresses or []))
        # One line on stderr that scripts (and the tests) can wait for.
        sys.stderr.write(f"regauth proxy: listening on {bound}\n")
        if notice:
            sys.stderr.write(notice + "\n")
        sys.stderr.flush()
        await stop.wait()
        sys.stderr.write("regauth proxy: stopping; letting in-flight requests finish\n")
        sys.stderr.flush()
    finally:
        if also_runner is not None:
            await also_runner.cleanup()
        await runner.cleanup()


def _one_line(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """What asyncio reports outside any request (an accept() out of descriptors, a transport error),
    as one line: its own handler prints a traceback per event."""
    exc = context.get("exception")
    reason = ""
    if isinstance(exc, OSError) and exc.strerror:
        reason = f": {exc.strerror}"
    elif isinstance(exc, BaseException):
        reason = f": {type(exc).__name__}"
    SERVER_LOG.error("%s%s", context.get("message", "event loop error"), reason)


def _address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in str(host) else f"{host}:{address[1]}"
    return str(address)
