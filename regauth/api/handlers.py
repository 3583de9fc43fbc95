"""The JSON API under ``/api/v1``: registries (list, create, get, update, delete, validate) and events.

Each handler reads its request (``records.read_body`` for bodies, ``_int_query`` for paging), calls the
service, and answers JSON. A record in an answer is ``records.as_answer``: never a secret.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from regauth.api import state
from regauth.api.errors import FieldError
from regauth.api.records import as_answer, read_body
from regauth.distribution.validate import ValidationResult
from regauth.registries import PROVIDERS, Registry

PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 100
_QUERY_MAX = 256


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(data),
        content_type="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


async def list_registries(request: web.Request) -> web.Response:
    service = request.app[state.SERVICE]
    provider = _text_query(request, "provider")
    if provider is not None and provider not in PROVIDERS:
        raise FieldError("provider", f"must be one of {', '.join(PROVIDERS)}")
    page, size = _paging(request)
    found = await service.page(provider, _text_query(request, "q"), page, size)
    keys = await service.secret_keys()
    items = [as_answer(r, _has_secret(r, keys)) for r in found.records]
    return json_response(items, headers={"X-Total-Count": str(found.total)})


async def create_registry(request: web.Request) -> web.Response:
    body = read_body(await _json(request), create=True)
    saved = await request.app[state.SERVICE].create(body, request[state.CALLER].name)
    return json_response(await _answer(request, saved), status=201)


async def get_registry(request: web.Request) -> web.Response:
    record = await request.app[state.SERVICE].find(request.match_info["key"])
    return json_response(await _answer(request, record))


async def update_registry(request: web.Request) -> web.Response:
    body = read_body(await _json(request), create=False)
    key = request.match_info["key"]
    saved = await request.app[state.SERVICE].update(key, body, request[state.CALLER].name)
    return json_response(await _answer(request, saved))


async def delete_registry(request: web.Request) -> web.Response:
    await request.app[state.SERVICE].delete(request.match_info["key"], request[state.CALLER].name)
    return web.Response(status=204, headers={"Cache-Control": "no-store"})


async def validate_saved(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    result = await request.app[state.SERVICE].check_saved(key, request[state.CALLER].name)
    return json_response(validation_answer(result))


async def validate_unsaved(request: web.Request) -> web.Response:
    data = await _json(request)
    if isinstance(data, dict) and "url" not in data:
        raise FieldError("url", "is required")
    body = read_body(data, create=False)
    result = await request.app[state.SERVICE].check_unsaved(body)
    return json_response(validation_answer(result))


async def list_events(request: web.Request) -> web.Response:
    page, size = _paging(request)
    events = await asyncio.to_thread(request.app[state.AUDIT].read)
    start = (page - 1) * size
    return json_response(events[start : start + size], headers={"X-Total-Count": str(len(events))})


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def validation_answer(result: ValidationResult) -> dict[str, Any]:
    return {
        "valid": result.ok,
        "outcome": str(result.outcome),
        "message": result.message,
        "access": result.access,
    }


async def _answer(request: web.Request, record: Registry) -> dict[str, Any]:
    keys = await request.app[state.SERVICE].secret_keys()
    return as_answer(record, _has_secret(record, keys))


def _has_secret(record: Registry, keys: frozenset[str]) -> bool:
    return not record.anonymous and record.secret_key in keys


async def _json(request: web.Request) -> object:
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        raise FieldError("body", "the request body is not JSON") from None
    except RecursionError:
        raise FieldError("body", "the request body is nested too deeply") from None


def _text_query(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and len(value) > _QUERY_MAX:
        raise FieldError(name, f"is longer than {_QUERY_MAX} characters")
    return value or None


def _paging(request: web.Request) -> tuple[int, int]:
    page = _int_query(request, "page", 1, 1, 1_000_000)
    size = _int_query(request, "page_size", PAGE_SIZE_DEFAULT, 1, PAGE_SIZE_MAX)
    return page, size


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise FieldError(name, f"must be a whole number from {low} to {high}")
    return int(text)
