"""``regauth proxy``: options from the command line, the loopback rule, and the server's life cycle.

Listens on 127.0.0.1 unless told otherwise; any other address needs client auth. SIGTERM and SIGINT
stop accepting, let in-flight pulls finish (up to ``--shutdown-timeout``), then exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
from pathlib import Path

from aiohttp import web

from regauth.config import Settings
from regauth.errors import UsageError
from regauth.proxy.accesslog import ACCESS_LOG, AccessLogger
from regauth.proxy.app import make_proxy_app
from regauth.proxy.clientauth import read_token_file
from regauth.proxy.options import ProxyOptions, is_loopback, parse_listen, parse_size
from regauth.registries import RegistryBook


def options_from_args(args: argparse.Namespace) -> ProxyOptions:
    cache_dir = Path(args.cache_dir).expanduser().resolve() if args.cache_dir else None
    max_size = parse_size(args.cache_max_size) if args.cache_max_size else None
    if max_size is not None and cache_dir is None:
        raise UsageError("--cache-max-size needs --cache-dir")
    token_file = getattr(args, "client_token_file", None)
    htpasswd = getattr(args, "htpasswd", None)
    return ProxyOptions(
        cache_dir=cache_dir,
        cache_max_size=max_size,
        manifest_tag_ttl=args.manifest_ttl,
        docker_hub=args.docker_hub,
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        client_token=read_token_file(Path(token_file)) if token_file else None,
        htpasswd=Path(htpasswd) if htpasswd else None,
    )


def run_proxy(args: argparse.Namespace, settings: Settings, book: RegistryBook) -> int:
    host, port = parse_listen(args.listen)
    options = options_from_args(args)
    if not is_loopback(host) and not options.client_auth:
        raise UsageError(
            f"--listen {args.listen} is not a loopback address: anyone who can reach it could pull with "
            "your credentials; set --client-token-file or --htpasswd to require client auth"
        )
    if not args.quiet:
        ACCESS_LOG.setLevel(logging.INFO)
    tls = server_tls(getattr(args, "tls_cert", None), getattr(args, "tls_key", None))
    app = make_proxy_app(settings, book, options=options)
    asyncio.run(serve(app, host, port, shutdown_timeout=args.shutdown_timeout, tls=tls))
    return 0


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


async def serve(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float, tls: ssl.SSLContext | None = None
) -> None:
    runner = web.AppRunner(
        app, access_log_class=AccessLogger, access_log=ACCESS_LOG, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            # asyncio puts the whole address tuple in strerror; the errno's own text reads better.
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise UsageError(f"cannot listen on {host}:{port}: {reason}") from exc
        bound = ", ".join(_address(s) for s in (runner.addresses or []))
        # One line on stderr that scripts (and the tests) can wait for.
        sys.stderr.write(f"regauth proxy: listening on {bound}\n")
        sys.stderr.flush()
        await stop.wait()
        sys.stderr.write("regauth proxy: stopping; letting in-flight requests finish\n")
        sys.stderr.flush()
    finally:
        await runner.cleanup()


def _address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in str(host) else f"{host}:{address[1]}"
    return str(address)
