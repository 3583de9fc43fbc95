"""The web console at ``/``: server-side pages (Jinja2 templates, no build step) over the API's service.

Sign-in takes an API token and keeps it in a cookie that is ``HttpOnly``, ``SameSite=Strict`` and, over
TLS, ``Secure``; every request checks it against the token book as the API does, so a revoked token
signs the console out. Every form is a POST that must come from this origin (its ``Origin`` header, or
with none its ``Referer``): with the Strict cookie, a page elsewhere can neither ride the session nor
sign the browser in to a token of its choosing. Forms go through ``records.read_body``, the API's own
checks; the secret field is write-only and never filled back in.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from regauth.api import state
from regauth.api.auth import identify, require
from regauth.api.errors import FORBIDDEN, ApiError, response_for
from regauth.api.handlers import validation_answer
from regauth.api.records import as_answer, read_body
from regauth.api.tokens import READ, WRITE, ApiToken
from regauth.errors import RegauthError, UsageError
from regauth.registries import PROVIDERS, Registry

COOKIE = "regauth_console"
# The outcome of the last form, shown once by the list it redirects to (post/redirect/get: a reload
# or a back button never sends the form again).
NOTE_COOKIE = "regauth_console_note"
_NOTE_MAX = 1000
_TEMPLATES = web.AppKey("console_templates", jinja2.Environment)
_SECURE = web.AppKey("console_secure_cookies", bool)
_HEADERS = {
    "Cache-Control": "no-store",
    # Pages of this console only: no framing (clickjacking), no script, no outside resources.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def add_console_routes(app: web.Application, *, secure_cookies: bool) -> None:
    app[_TEMPLATES] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    app[_SECURE] = secure_cookies
    router = app.router
    router.add_get("/", index)
    router.add_post("/login", login)
    router.add_post("/logout", logout)
    router.add_get("/registries/new", new_form)
    router.add_post("/registries/new", create)
    router.add_get("/registries/{key}/edit", edit_form)
    router.add_post("/registries/{key}/edit", edit)
    router.add_post("/registries/{key}/{action:validate|enable|disable|remove}", act)


# --- pages ----------------------------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    caller = await _caller(request)
    if caller is None:
        return _page(request, "signin.html", status=200)
    note = unquote(request.cookies.get(NOTE_COOKIE, ""))
    error = note.startswith("!")
    response = await _list(request, caller, note=note.removeprefix("!") or None, error=error)
    if note:
        response.del_cookie(NOTE_COOKIE, path="/")
    return response


async def login(request: web.Request) -> web.Response:
    _same_origin(request)
    form = await request.post()
    token = str(form.get("token", "")).strip()
    try:
        await identify(request.app[state.TOKENS], token or None)
    except ApiError as exc:
        return _page(request, "signin.html", status=exc.status, note=exc.message, note_error=True)
    response = web.HTTPSeeOther("/")
    # The token itself, checked again on every request: a revoked token signs the console out.
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="Strict", secure=request.app[_SECURE], path="/"
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    _same_origin(request)
    response = web.HTTPSeeOther("/")
    response.del_cookie(COOKIE, path="/")
    raise response


async def new_form(request: web.Request) -> web.Response:
    caller = await _signed_in(request, WRITE)
    values: dict[str, Any] = dict.fromkeys(("name", "url", "username", "options", "repository"), "")
    values |= {"provider": "static", "insecure": False, "active": True}
    return _form(request, caller, None, values)


async def create(request: web.Request) -> web.Response:
    caller = await _signed_in(request, WRITE)
    form = await request.post()
    service = request.app[state.SERVICE]
    try:
        body = read_body(_body_from(form, create=True), create=True)
        saved = await service.create(body, caller.name)
    except RegauthError as exc:
        status = response_for(exc).status
        return _form(request, caller, None, _values_from(form), note=exc.message, status=status)
    return _done(request, f"added registry {saved.name!r} ({saved.registry})")


async def edit_form(request: web.Request) -> web.Response:
    caller = await _signed_in(request, WRITE)
    record = await request.app[state.SERVICE].find(request.match_info["key"])
    return _form(request, caller, record, _values_of(record))


async def edit(request: web.Request) -> web.Response:
    caller = await _signed_in(request, WRITE)
    service = request.app[state.SERVICE]
    record = await service.find(request.match_info["key"])
    form = await request.post()
    try:
        body = read_body(_changes(record, _body_from(form, create=False)), create=False)
        saved = await service.update(record.id, body, caller.name)
    except RegauthError as exc:
        status = response_for(exc).status
        return _form(request, caller, record, _values_from(form), note=exc.message, status=status)
    return _done(request, f"updated registry {saved.name!r} ({saved.registry})")


async def act(request: web.Request) -> web.Response:
    action = request.match_info["action"]
    caller = await _signed_in(request, READ if action == "validate" else WRITE)
    service = request.app[state.SERVICE]
    key = request.match_info["key"]
    try:
        if action == "validate":
            result = validation_answer(await service.check_saved(key, caller.name))
            return _done(request, result["message"], error=not result["valid"])
        if action == "remove":
            gone = await service.delete(key, caller.name)
            return _done(request, f"removed registry {gone.name!r}")
        body = read_body({"active": action == "enable"}, create=False)
        saved = await service.update(key, body, caller.name)
    except RegauthError as exc:
        return _done(request, exc.message, error=True)
    return _done(request, f"{action}d registry {saved.name!r}")


# --- the parts --------------------------------------------------------------------------------------


def _done(request: web.Request, note: str, *, error: bool = False) -> web.Response:
    """Back to the list, which shows ``note`` once."""
    response = web.Response(status=303, headers={"Location": "/", **_HEADERS})
    value = quote(("!" if error else "") + note[:_NOTE_MAX], safe="")
    response.set_cookie(
        NOTE_COOKIE, value, httponly=True, samesite="Strict", secure=request.app[_SECURE], path="/"
    )
    return response


async def _list(
    request: web.Request, caller: ApiToken, *, note: str | None = None, error: bool = False, status: int = 200
) -> web.Response:
    service = request.app[state.SERVICE]
    page = await service.page(None, None, 1, 10_000)
    keys = await service.secret_keys()
    rows = []
    for record in page.records:
        row = as_answer(record, not record.anonymous and record.secret_key in keys)
        row["age"] = _age(record.created_at)
        rows.append(row)
    return _page(
        request, "list.html", caller=caller, records=rows, note=note, note_error=error, status=status
    )


def _form(
    request: web.Request,
    caller: ApiToken,
    record: Registry | None,
    values: dict[str, Any],
    *,
    note: str | None = None,
    status: int = 200,
) -> web.Response:
    action = f"/registries/{record.id}/edit" if record else "/registries/new"
    return _page(
        request,
        "form.html",
        caller=caller,
        record=record,
        values=values,
        action=action,
        providers=PROVIDERS,
        note=note,
        note_error=note is not None,
        status=status,
    )


def _page(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    context.setdefault("caller", None)
    context.setdefault("note", None)
    context.setdefault("note_error", False)
    text = request.app[_TEMPLATES].get_template(template).render(**context)
    return web.Response(status=status, text=text, content_type="text/html", headers=_HEADERS)


async def _caller(request: web.Request) -> ApiToken | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        return await identify(request.app[state.TOKENS], token)
    except ApiError:
        return None


async def _signed_in(request: web.Request, scope: str) -> ApiToken:
    if request.method == "POST":
        _same_origin(request)
    caller = await _caller(request)
    if caller is None:
        raise web.HTTPSeeOther("/")
    require(caller, scope)
    return caller


def _same_origin(request: web.Request) -> None:
    """A form POST must come from a page of this origin (CSRF): its Origin, else its Referer, says so."""
    expected = f"{request.scheme}://{request.host}"
    origin = request.headers.get("Origin")
    if origin is not None:
        ok = origin == expected
    else:
        referer = request.headers.get("Referer", "")
        ok = referer == expected or referer.startswith(expected + "/")
    if not ok:
        raise ApiError(403, FORBIDDEN, "a console form must be sent from the console's own page")


def _body_from(form: MultiDictProxy[Any], *, create: bool) -> dict[str, Any]:
    """A form as the API's JSON body, so that one reader (``records.read_body``) checks both."""
    text = {
        key: str(form.get(key, "")).strip() for key in ("name", "url", "username", "provider", "repository")
    }
    body: dict[str, Any] = {
        "name": text["name"],
        "url": text["url"],
        "provider": text["provider"] or "static",
    }
    body["username"] = text["username"] or None
    body["repository"] = text["repository"] or None
    body["options"] = _options(str(form.get("options", "")))
    body["insecure"] = form.get("insecure") == "1"
    body["active"] = form.get("active") == "1"
    body["validate"] = form.get("validate") == "1"
    password = str(form.get("password", ""))
    if password:
        body["password"] = password
    ca_pem = str(form.get("ca_pem", "")).strip()
    if ca_pem:
        body["ca_pem"] = ca_pem
    return body


def _changes(record: Registry, body: dict[str, Any]) -> dict[str, Any]:
    """Only what the edit form changed: a PATCH, so an unchanged host is not a move."""
    current = _values_of(record)
    changed = {key: value for key, value in body.items() if key in ("password", "ca_pem", "validate")}
    for key in ("name", "username", "provider", "repository", "insecure", "active"):
        # An empty text field is the record's None.
        old = (current[key] or None) if isinstance(current[key], str) else current[key]
        if body[key] != old:
            changed[key] = body[key]
    if body["url"] != record.registry:
        changed["url"] = body["url"]
    if body["options"] != dict(record.options):
        changed["options"] = body["options"]
    return changed


def _options(text: str) -> dict[str, str]:
    options = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise UsageError(f"options: write each as KEY=VALUE, not {line.strip()[:40]!r}")
        options[key.strip()] = value.strip()
    return options


def _values_of(record: Registry) -> dict[str, Any]:
    return {
        "name": record.name,
        "url": record.registry,
        "username": record.username or "",
        "provider": record.provider,
        "options": "\n".join(f"{k}={v}" for k, v in sorted(record.options.items())),
        "repository": record.repository or "",
        "insecure": record.insecure,
        "active": record.active,
    }


def _values_from(form: MultiDictProxy[Any]) -> dict[str, Any]:
    """What the user typed, to show the form again after a refusal: never the secret."""
    values: dict[str, Any] = {
        key: str(form.get(key, ""))
        for key in ("name", "url", "username", "provider", "options", "repository")
    }
    values["insecure"] = form.get("insecure") == "1"
    values["active"] = form.get("active") == "1"
    return values


def _age(created_at: str) -> str:
    try:
        then = datetime.fromisoformat(created_at)
    except ValueError:
        return "-"
    seconds = max(0, int((datetime.now(timezone.utc) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
