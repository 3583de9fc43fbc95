"""``regauth serve``: the API and console, on loopback unless told otherwise, over TLS elsewhere.

The exposure rule is the proxy's (``proxy.options.check_exposure``): a non-loopback address needs TLS
unless ``--accept-cleartext-credentials`` says the API tokens may cross that network in clear. Client
auth is always on here (every ``/api/v1`` request needs a token), so only the TLS half of the rule bites.
SIGTERM and SIGINT stop the server. ``regauth proxy --api-listen`` serves the same site from the
proxy's process (``api_site`` and ``start_api``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys
from typing import NamedTuple

from aiohttp import web

from regauth.api.accesslog import ACCESS_LOG, AccessLogger
from regauth.api.app import make_api_app
from regauth.config import Settings
from regauth.errors import UsageError
from regauth.proxy.main import server_tls
from regauth.proxy.options import check_exposure, parse_listen
from regauth.registries import RegistryBook
from regauth.store.base import SecretStore


class ApiSite(NamedTuple):
    """Where the API and console are served, checked against the exposure rule."""

    app: web.Application
    host: str
    port: int
    tls: ssl.SSLContext | None


def api_site(
    settings: Settings,
    book: RegistryBook,
    store: SecretStore,
    listen: str,
    tls: ssl.SSLContext | None,
    *,
    cleartext: bool,
    server_credentials: bool = False,
) -> ApiSite:
    host, port = parse_listen(listen)
    check_exposure(listen, host, client_auth=True, tls=tls is not None, cleartext=cleartext)
    app = make_api_app(
        settings, book, store, secure_cookies=tls is not None, server_credentials=server_credentials
    )
    return ApiSite(app, host, port, tls)


def run_serve(args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore) -> int:
    tls = server_tls(args.tls_cert, args.tls_key)
    site = api_site(
        settings,
        book,
        store,
        args.listen,
        tls,
        cleartext=bool(args.accept_cleartext_credentials),
        server_credentials=bool(args.allow_server_credentials),
    )
    if not args.quiet:
        ACCESS_LOG.setLevel(logging.INFO)
    asyncio.run(serve(site))
    return 0


async def start_api(site: ApiSite) -> web.AppRunner:
    """The API listening (the caller cleans the runner up), and the one line that says where."""
    runner = web.AppRunner(site.app, access_log_class=AccessLogger, access_log=ACCESS_LOG)
    await runner.setup()
    try:
        await web.TCPSite(runner, site.host, site.port, ssl_context=site.tls).start()
    except OSError as exc:
        await runner.cleanup()
        raise UsageError(
            f"cannot listen on {site.host}:{site.port}: {exc.strerror or exc}; choose another address"
        ) from exc
    scheme = "https" if site.tls else "http"
    bound = ", ".join(_address(a) for a in runner.addresses)
    # One line on stderr that scripts (and the tests) can wait for.
    sys.stderr.write(f"regauth serve: listening on {scheme}://{bound}\n")
    sys.stderr.flush()
    return runner


async def serve(site: ApiSite) -> None:
    runner = await start_api(site)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in str(host) else f"{host}:{address[1]}"
    return str(address)
