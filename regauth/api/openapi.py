"""The OpenAPI 3.1 document of the API, served at ``/api/v1/openapi.json``.

Written here once, beside the handlers it describes; the tests check it with ``openapi-spec-validator``
and run ``schemathesis`` from it against the server, so a drift between the two fails them. The
secret fields (``password``, ``token``) appear in request bodies only, ``writeOnly``.
"""

from __future__ import annotations

from typing import Any

from regauth import __version__
from regauth.api.tokens import SCOPES
from regauth.audit import ACTIONS
from regauth.distribution.access import READ_ONLY, READ_WRITE, UNKNOWN
from regauth.distribution.errors import Outcome
from regauth.registries import PROVIDERS

_NULLABLE_STR = {"type": ["string", "null"]}
_OPTIONS = {"type": "object", "additionalProperties": {"type": "string"}}
_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body_properties() -> dict[str, Any]:
    return {
        "name": {"type": "string", "description": "lower-case letters, digits, '.', '_' and '-'"},
        "url": {"type": "string", "description": "any spelling: ghcr.io, https://host:5000/v2/"},
        "username": _NULLABLE_STR,
        "password": {"type": "string", "writeOnly": True},
        "token": {"type": "string", "writeOnly": True, "description": "an identity or registry token"},
        "provider": {"type": "string", "enum": list(PROVIDERS)},
        "options": _OPTIONS,
        "ca_pem": {"type": ["string", "null"], "description": "the CA certificate (PEM text) to trust"},
        "insecure": {"type": "boolean"},
        "repository": _NULLABLE_STR,
        "active": {"type": "boolean", "default": True},
        "validate": {"type": "boolean", "default": True},
    }


def _schemas() -> dict[str, Any]:
    validation_fields = {
        "outcome": {"type": "string", "enum": [str(o) for o in Outcome]},
        "message": {"type": "string"},
        "access": {
            "type": "string",
            "enum": [READ_ONLY, READ_WRITE, UNKNOWN],
            "description": "what the token grants on the repository (read-write: push or delete too)",
        },
    }
    record_fields: dict[str, Any] = {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "url": {
            "type": "string",
            "description": "the normalised host[:port] (and /PREFIX for a record of a repository prefix)",
        },
        "username": _NULLABLE_STR,
        "provider": {"type": "string", "enum": list(PROVIDERS)},
        "options": _OPTIONS,
        "insecure": {"type": "boolean"},
        "repository": _NULLABLE_STR,
        "active": {"type": "boolean"},
        "has_secret": {"type": "boolean"},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "created_by": _NULLABLE_STR,
        "updated_by": _NULLABLE_STR,
        "last_validation": {"oneOf": [_ref("LastValidation"), {"type": "null"}]},
    }
    return {
        "Registry": {
            "type": "object",
            "properties": record_fields,
            "required": list(record_fields),
            "additionalProperties": False,
        },
        "LastValidation": {
            "type": "object",
            "properties": {**validation_fields, "at": {"type": "string"}},
            "required": ["outcome", "message", "at"],
        },
        "RegistryCreate": {
            "type": "object",
            "properties": _body_properties(),
            "required": ["name", "url"],
            "additionalProperties": False,
        },
        "RegistryUpdate": {
            "type": "object",
            "properties": _body_properties(),
            "additionalProperties": False,
        },
        "RegistryCheck": {
            "type": "object",
            "properties": _body_properties(),
            "required": ["url"],
            "additionalProperties": False,
        },
        "Validation": {
            "type": "object",
            "properties": {"valid": {"type": "boolean"}, **validation_fields},
            "required": ["valid", "outcome", "message"],
            "additionalProperties": False,
        },
        "Event": {
            "type": "object",
            "properties": {
                "at": {"type": "string"},
                "actor": {"type": "string"},
                "action": {"type": "string", "enum": list(ACTIONS)},
                "registry_id": {"type": "string"},
                "registry_name": {"type": "string"},
                "fields": {"type": "array", "items": {"type": "string"}},
                "secret": {"type": "string", "enum": ["set", "dropped"]},
                "outcome": {"type": "string"},
            },
            "required": ["at", "actor", "action", "registry_id", "registry_name", "fields"],
        },
        "Error": {
            "type": "object",
            "properties": {
                "errors": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "field": {"type": "string"},
                            "outcome": {"type": "string", "enum": [str(o) for o in Outcome]},
                        },
                        "required": ["code", "message"],
                    },
                }
            },
            "required": ["errors"],
        },
    }


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ref("Error")}}}


def _ok(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {_JSON: {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


_AUTH = {
    "401": _error("no token, or an unknown or revoked one"),
    "403": _error("the token's scope is too small"),
    # Asked of every request, from the token file on.
    "503": _error("a file of the server's (tokens, records, secret store) cannot be used; said in full"),
}
# A body over the server's limit (2 MiB), refused before it is read.
_TOO_LARGE = {"413": _error("the request body is too large")}
_TOTAL = {"X-Total-Count": {"description": "how many there are in all", "schema": {"type": "integer"}}}
_KEY = {
    "name": "key",
    "in": "path",
    "required": True,
    "description": "the registry's id or name",
    "schema": {"type": "string"},
}


def _paging() -> list[dict[str, Any]]:
    return [
        {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
        {
            "name": "page_size",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
        },
    ]


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {_JSON: {"schema": _ref(schema)}}}


def _paths() -> dict[str, Any]:
    invalid = _error("a malformed field or query parameter, named in `field`")
    registry = _ok("the record", _ref("Registry"))
    validation = _ok("the outcome of the check", _ref("Validation"))
    return {
        "/registries": {
            "get": {
                "operationId": "listRegistries",
                "summary": "list the registries",
                "parameters": [
                    {
                        "name": "provider",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(PROVIDERS)},
                    },
                    {
                        "name": "q",
                        "in": "query",
                        "description": "part of a name or host",
                        "schema": {"type": "string"},
                    },
                    *_paging(),
                ],
                "responses": {
                    "200": _ok("a page of records", {"type": "array", "items": _ref("Registry")}, _TOTAL),
                    "422": invalid,
                    **_AUTH,
                },
            },
            "post": {
                "operationId": "createRegistry",
                "summary": "create a registry, validated against it first unless `validate` is false",
                "requestBody": _body("RegistryCreate"),
                "responses": {
                    "201": _ok("the record as saved", _ref("Registry")),
                    "400": _error("the validation failed (its `outcome` says how); nothing was saved"),
                    "409": _error("the name or the host is taken"),
                    "422": invalid,
                    **_TOO_LARGE,
                    **_AUTH,
                },
            },
        },
        "/registries/{key}": {
            "parameters": [_KEY],
            "get": {
                "operationId": "getRegistry",
                "responses": {"200": registry, "404": _error("no such registry"), **_AUTH},
            },
            "patch": {
                "operationId": "updateRegistry",
                "summary": "change fields; validated when a credential or the host changes. A record that "
                "moves to another host, or to plain HTTP, keeps no stored secret unless a new one comes with "
                "the change.",
                "requestBody": _body("RegistryUpdate"),
                "responses": {
                    "200": registry,
                    "400": _error("the validation failed; nothing was changed"),
                    "404": _error("no such registry"),
                    "409": _error("the new name or host is taken, or the record changed meanwhile"),
                    "422": invalid,
                    **_TOO_LARGE,
                    **_AUTH,
                },
            },
            "delete": {
                "operationId": "deleteRegistry",
                "responses": {
                    "204": {"description": "removed, with its secret"},
                    "404": _error("no such registry"),
                    **_AUTH,
                },
            },
        },
        "/registries/{key}/validate": {
            "parameters": [_KEY],
            "post": {
                "operationId": "validateRegistry",
                "summary": "check a saved registry against the registry",
                "responses": {
                    "200": validation,
                    "400": _error("the record's provider could make no credential to check with"),
                    "404": _error("no such registry, or no secret stored for it"),
                    "422": invalid,
                    **_AUTH,
                },
            },
        },
        "/validate": {
            "post": {
                "operationId": "validateUnsaved",
                "summary": "check an unsaved registry body (nothing is saved; a write-scope token: the "
                "check runs the body's provider with the server's environment and cloud identity)",
                "requestBody": _body("RegistryCheck"),
                "responses": {
                    "200": validation,
                    "400": _error("the provider could make no credential to check with"),
                    "422": invalid,
                    **_TOO_LARGE,
                    **_AUTH,
                },
            },
        },
        "/events": {
            "get": {
                "operationId": "listEvents",
                "summary": "the audit log, oldest first",
                "parameters": _paging(),
                "responses": {
                    "200": _ok("a page of events", {"type": "array", "items": _ref("Event")}, _TOTAL),
                    "422": invalid,
                    **_AUTH,
                },
            },
        },
    }


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "regauth registries API",
            "version": __version__,
            "description": "Registry configurations: validated before they are saved, secrets write-only. "
            f"Bearer tokens with a scope of {' or '.join(SCOPES)} (`regauth token create`).",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
