"""The console's forms as the API's bodies, and records as the forms' values.

A submitted form becomes the JSON body the API takes (``body_from``; an edit only what changed,
``changes``), so one reader, ``records.read_body``, checks both. The values shown in a form never
include the secret.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from multidict import MultiDictProxy

from regauth.errors import UsageError
from regauth.registries import Registry


def body_from(form: MultiDictProxy[Any], *, create: bool) -> dict[str, Any]:
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


def changes(record: Registry, body: dict[str, Any]) -> dict[str, Any]:
    """Only what the edit form changed: a PATCH, so an unchanged host is not a move."""
    current = values_of(record)
    changed = {key: value for key, value in body.items() if key in ("password", "ca_pem", "validate")}
    for key in ("name", "username", "provider", "repository", "insecure", "active"):
        # An empty text field is the record's None.
        old = (current[key] or None) if isinstance(current[key], str) else current[key]
        if body[key] != old:
            changed[key] = body[key]
    if body["url"] != record.location:
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


def values_of(record: Registry) -> dict[str, Any]:
    return {
        "name": record.name,
        "url": record.location,
        "username": record.username or "",
        "provider": record.provider,
        "options": "\n".join(f"{k}={v}" for k, v in sorted(record.options.items())),
        "repository": record.repository or "",
        "insecure": record.insecure,
        "active": record.active,
    }


def values_from(form: MultiDictProxy[Any]) -> dict[str, Any]:
    """What the user typed, to show the form again after a refusal: never the secret."""
    values: dict[str, Any] = {
        key: str(form.get(key, ""))
        for key in ("name", "url", "username", "provider", "options", "repository")
    }
    values["insecure"] = form.get("insecure") == "1"
    values["active"] = form.get("active") == "1"
    return values


def age(created_at: str) -> str:
    try:
        then = datetime.fromisoformat(created_at)
    except ValueError:
        return "-"
    seconds = max(0, int((datetime.now(timezone.utc) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
