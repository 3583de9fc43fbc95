"""The typed keys of the API application's and its requests' shared state."""

from __future__ import annotations

from aiohttp import web

from regauth.api.service import RegistryService
from regauth.api.tokens import ApiToken, TokenBook
from regauth.audit import AuditLog

SERVICE = web.AppKey("service", RegistryService)
TOKENS = web.AppKey("tokens", TokenBook)
AUDIT = web.AppKey("audit", AuditLog)
# The token a request was authenticated with (set by the bearer middleware or the console's session).
CALLER = web.RequestKey("caller", ApiToken)
