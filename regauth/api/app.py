"""The API application factory: routes, middlewares and the state the handlers share.

``make_api_app`` builds the application over the edge's registry book and secret store (the same the
CLI and the helper use), the token book and the audit log. The console (``console.py``) is mounted on
the same application at ``/``.
"""

from __future__ import annotations

from aiohttp import web

from regauth.api import handlers, state
from regauth.api.auth import bearer_middleware
from regauth.api.errors import error_middleware
from regauth.api.openapi import document
from regauth.api.service import RegistryService
from regauth.api.tokens import TokenBook
from regauth.audit import AuditLog
from regauth.config import Settings
from regauth.registries import RegistryBook
from regauth.store.base import SecretStore

PREFIX = "/api/v1"
# A create body is a few hundred bytes, a CA bundle a few KiB: far below aiohttp's 1 MiB default.
_MAX_BODY = 2 * 1024 * 1024


def make_api_app(
    settings: Settings,
    book: RegistryBook,
    store: SecretStore,
    *,
    tokens: TokenBook | None = None,
    audit_log: AuditLog | None = None,
    console: bool = True,
    secure_cookies: bool = False,
    server_credentials: bool = False,
) -> web.Application:
    app = web.Application(middlewares=[error_middleware, bearer_middleware], client_max_size=_MAX_BODY)
    app[state.TOKENS] = tokens or TokenBook.for_settings(settings)
    app[state.AUDIT] = audit_log or AuditLog.for_settings(settings)
    app[state.SERVICE] = RegistryService(
        settings, book, store, app[state.AUDIT], server_credentials=server_credentials
    )
    add_api_routes(app.router)
    if console:
        from regauth.api.console import add_console_routes

        add_console_routes(app, secure_cookies=secure_cookies)
    return app


def add_api_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/healthz", handlers.healthz)
    router.add_get(f"{PREFIX}/openapi.json", _openapi)
    router.add_get(f"{PREFIX}/registries", handlers.list_registries)
    router.add_post(f"{PREFIX}/registries", handlers.create_registry)
    router.add_get(f"{PREFIX}/registries/{{key}}", handlers.get_registry)
    router.add_patch(f"{PREFIX}/registries/{{key}}", handlers.update_registry)
    router.add_delete(f"{PREFIX}/registries/{{key}}", handlers.delete_registry)
    router.add_post(f"{PREFIX}/registries/{{key}}/validate", handlers.validate_saved)
    router.add_post(f"{PREFIX}/validate", handlers.validate_unsaved)
    router.add_get(f"{PREFIX}/events", handlers.list_events)


async def _openapi(request: web.Request) -> web.Response:
    return handlers.json_response(document())
