"""``regauth serve``: the API and console, on loopback unless told otherwise, over TLS elsewhere.

The exposure rule is the proxy's (``proxy.options.check_exposure``): a non-loopback address needs TLS
unless ``--accept-cleartext-credentials`` says the API tokens may cross that network in clear. Client
auth is always on here (every ``/api/v1`` request needs a token), so only the TLS half of the rule bites.
SIGTERM and SIGINT stop the server.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys

from aiohttp import web

from regauth.api.accesslog import ACCESS_LOG, AccessLogger
from regauth.api.app import make_api_app
from regauth.config import Settings
from regauth.errors import UsageError
from regauth.proxy.main import server_tls
from regauth.proxy.options import check_exposure, parse_listen
from regauth.registries import RegistryBook
from regauth.store.base import SecretStore


def run_serve(args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore) -> int:
    host, port = parse_listen(args.listen)
    tls = server_tls(args.tls_cert, args.tls_key)
    check_exposure(
        args.listen,
        host,
        client_auth=True,
        tls=tls is not None,
        cleartext=bool(args.accept_cleartext_credentials),
    )
    if not args.quiet:
        ACCESS_LOG.setLevel(logging.INFO)
    app = make_api_app(settings, book, store, secure_cookies=tls is not None)
    asyncio.run(serve(app, host, port, tls))
    return 0


async def serve(app: web.Application, host: str, port: int, tls: ssl.SSLContext | None) -> None:
    runner = web.AppRunner(app, access_log_class=AccessLogger, access_log=ACCESS_LOG)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --listen"
        ) from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        scheme = "https" if tls else "http"
        bound = ", ".join(_address(a) for a in runner.addresses)
        # One line on stderr that scripts (and the tests) can wait for.
        sys.stderr.write(f"regauth serve: listening on {scheme}://{bound}\n")
        sys.stderr.flush()
        await stop.wait()
    finally:
        await runner.cleanup()


def _address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in str(host) else f"{host}:{address[1]}"
    return str(address)
