"""The web console at ``/``: server-side pages (Jinja2 templates, no build step) over the API's service.

Sign-in takes an API token and keeps it in a cookie that is ``HttpOnly``, ``SameSite=Strict`` and, over
TLS, ``Secure``; every request checks it against the token book as the API does, so a revoked token
signs the console out. Every form is a POST that must come from this origin (its ``Origin`` header, or
with none its ``Referer``): with the Strict cookie, a page elsewhere can neither ride the session nor
sign the browser in to a token of its choosing. Forms go through ``records.read_body``, the API's own
checks; the secret field is write-only and never filled back in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import jinja2
from aiohttp import web

from regauth.api import forms, state
from regauth.api.auth import identify, require
from regauth.api.errors import FORBIDDEN, ApiError, response_for
from regauth.api.handlers import validation_answer
from regauth.api.records import as_answer, read_body
from regauth.api.tokens import READ, WRITE, ApiToken
from regauth.errors import RegauthError
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
        body = read_body(forms.body_from(form, create=True), create=True)
        saved = await service.create(body, caller.name)
    except RegauthError as exc:
        status = response_for(exc).status
        return _form(request, caller, None, forms.values_from(form), note=exc.message, status=status)
    return _done(request, f"added registry {saved.name!r} ({saved.registry})")


async def edit_form(request: web.Request) -> web.Response:
    caller = await _signed_in(request, WRITE)
    record = await request.app[state.SERVICE].find(request.match_info["key"])
    return _form(request, caller, record, forms.values_of(record))


async def edit(request: web.Request) -> web.Response:
    caller = await _signed_in(request, WRITE)
    service = request.app[state.SERVICE]
    record = await service.find(request.match_info["key"])
    form = await request.post()
    try:
        body = read_body(forms.changes(record, forms.body_from(form, create=False)), create=False)
        saved = await service.update(record.id, body, caller.name)
    except RegauthError as exc:
        status = response_for(exc).status
        return _form(request, caller, record, forms.values_from(form), note=exc.message, status=status)
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
        row["age"] = forms.age(record.created_at)
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
