"""The API's view of a registry record: a request body read field by field, and a record as answered.

Each field of a body is checked for its JSON type and its own rule here, so a malformed one answers
422 naming it (``FieldError``); the record rules themselves are ``registries``' (``check_name``,
``check_username``, ...), the same the CLI runs. A record in an answer never holds a secret: only
``has_secret``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from regauth.api.errors import FieldError
from regauth.distribution.credential import IDENTITY_TOKEN_USERNAME
from regauth.errors import UsageError
from regauth.layout import encodable
from regauth.reference import check_repository
from regauth.registries import PROVIDERS, Registry, check_host, check_name, check_option, check_username
from regauth.registry_ops import url_prefix
from regauth.servers import normalize_registry

MAX_SECRET_BYTES = 64 * 1024
MAX_PEM_BYTES = 1024 * 1024
MAX_TEXT = 2048
# The body fields and the JSON types each may hold; ``name`` and ``url`` are required on create.
_TYPES: Mapping[str, tuple[type, ...]] = {
    "name": (str,),
    "url": (str,),
    "username": (str, type(None)),
    "password": (str,),
    "token": (str,),
    "provider": (str,),
    "options": (dict,),
    "ca_pem": (str, type(None)),
    "insecure": (bool,),
    "repository": (str, type(None)),
    "active": (bool,),
    "validate": (bool,),
}
_JSON = {str: "a string", bool: "a boolean", dict: "an object", type(None): "null"}


@dataclass(frozen=True)
class Body:
    """What a create, update or check body asks for: record fields, a secret, and how to save it."""

    fields: dict[str, Any]
    # The URL as given: the plain-HTTP rule needs its spelling, not the host it names.
    url: str | None = None
    secret: str | None = None
    # A new CA certificate (text), or "" to drop the record's CA; None leaves it as it is.
    ca_pem: str | None = None
    validate: bool = True
    given: frozenset[str] = field(default_factory=frozenset)


def read_body(data: object, *, create: bool) -> Body:
    """The checked body of a create (``create``: ``name`` and ``url`` required) or a partial update."""
    if not isinstance(data, dict):
        raise FieldError("body", "the request body must be a JSON object")
    for key, value in data.items():
        types = _TYPES.get(key)
        if types is None:
            raise FieldError(key, f"unknown field (known: {', '.join(_TYPES)})")
        if type(value) not in types:
            raise FieldError(key, "must be " + " or ".join(_JSON[t] for t in types))
        if isinstance(value, str) and not encodable(value):
            raise FieldError(key, "is not valid Unicode text")
    if create:
        for required in ("name", "url"):
            if required not in data:
                raise FieldError(required, "is required")
    if "password" in data and "token" in data:
        raise FieldError("token", "give a password or a token, not both")
    fields: dict[str, Any] = {}
    if "name" in data:
        fields["name"] = _checked("name", check_name, data["name"])
    if "url" in data:
        fields["registry"] = _host(data["url"])
        prefix = url_prefix(data["url"])
        fields["prefix"] = prefix and _checked("url", check_repository, prefix)
    if "provider" in data:
        if data["provider"] not in PROVIDERS:
            raise FieldError("provider", f"must be one of {', '.join(PROVIDERS)}")
        fields["provider"] = data["provider"]
    if "username" in data:
        username = data["username"]
        fields["username"] = None if username is None else _checked("username", check_username, username)
    if "options" in data:
        fields["options"] = _options(data["options"])
    if "insecure" in data:
        fields["insecure"] = data["insecure"]
    if "repository" in data:
        repository = data["repository"]
        checked = None if repository is None else _checked("repository", check_repository, repository)
        fields["repository"] = checked
    if "active" in data:
        fields["active"] = data["active"]
    secret = _secret(data)
    if "token" in data:
        if data.get("username") not in (None, IDENTITY_TOKEN_USERNAME):
            raise FieldError("token", "an identity token goes without a username")
        fields["username"] = IDENTITY_TOKEN_USERNAME
    return Body(
        fields=fields,
        url=data.get("url"),
        secret=secret,
        ca_pem=_pem(data["ca_pem"]) if "ca_pem" in data else None,
        validate=data.get("validate", True),
        given=frozenset(data),
    )


def as_answer(record: Registry, has_secret: bool) -> dict[str, Any]:
    """A record as the API answers it: never a secret, never a file path."""
    return {
        "id": record.id,
        "name": record.name,
        "url": record.location,
        "username": record.username,
        "provider": record.provider,
        "options": dict(record.options),
        "insecure": record.insecure,
        "repository": record.repository,
        "active": record.active,
        "has_secret": has_secret,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "created_by": record.created_by,
        "updated_by": record.updated_by,
        "last_validation": record.last_validation,
    }


def _checked(name: str, check: Any, value: str) -> Any:
    try:
        return check(value)
    except UsageError as exc:
        raise FieldError(name, exc.message) from None


def _host(url: str) -> str:
    if len(url) > MAX_TEXT:
        raise FieldError("url", f"is longer than {MAX_TEXT} characters")
    try:
        return check_host(normalize_registry(url))
    except UsageError as exc:
        raise FieldError("url", exc.message) from None


def _options(options: dict[str, Any]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in options.items():
        if not isinstance(value, str) or not encodable(key) or not encodable(value):
            raise FieldError("options", "must be an object of strings")
        try:
            check_option(key, value)
        except UsageError as exc:
            raise FieldError("options", exc.message) from None
        checked[key] = value
    return checked


def _secret(data: Mapping[str, Any]) -> str | None:
    for name in ("password", "token"):
        if name in data:
            secret: str = data[name]
            if not secret:
                raise FieldError(name, "is empty")
            if len(secret.encode("utf-8")) > MAX_SECRET_BYTES:
                raise FieldError(name, f"is larger than {MAX_SECRET_BYTES} bytes")
            return secret
    return None


def _pem(text: str | None) -> str:
    if not text:
        return ""
    if len(text.encode("utf-8")) > MAX_PEM_BYTES:
        raise FieldError("ca_pem", f"is larger than {MAX_PEM_BYTES} bytes")
    import ssl

    if not text.isascii():
        # PEM is ASCII; ssl would raise a TypeError on anything else.
        raise FieldError("ca_pem", "is not PEM text (PEM is ASCII)")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError):
        raise FieldError("ca_pem", "holds no PEM certificate that could be read") from None
    return text
