"""The docker-credential-helpers protocol over byte input and a text output, with no process edge.

``serve`` takes the action, the raw stdin bytes, an output stream and a backend, and returns the exit
code; ``helper.main`` is the only place that touches argv, the real streams and the exit.
"""

from __future__ import annotations

import json
import re
from typing import IO, Protocol

from regauth.errors import NotFoundError, RegauthError, UsageError
from regauth.helper import texts
from regauth.helper.gojson import go_json
from regauth.printable import printable

# json.loads has already joined valid surrogate pairs, so any surrogate left is a lone one.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class CredentialBackend(Protocol):
    def store(self, server_url: str, username: str, secret: str) -> None: ...

    def get(self, server_url: str) -> tuple[str, str]:
        """(username, secret); raises ``NotFoundError`` when there is none."""
        ...

    def erase(self, server_url: str) -> None: ...

    def list(self) -> dict[str, str]: ...


def decode_input(raw: bytes) -> str:
    if len(raw) > texts.MAX_INPUT_BYTES:
        raise UsageError(f"input is larger than {texts.MAX_INPUT_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"input is not valid UTF-8 (byte {exc.start})") from None


def parse_credentials(text: str) -> tuple[str, str, str]:
    """Decode a ``store`` payload the way Go's encoding/json fills the reference helper's struct."""
    if not text.strip():
        raise UsageError("no credentials on standard input (expected a JSON object)")
    data = _decode_json(text)
    if data is None:
        # Go decodes a top-level null into the struct as nothing at all.
        data = _Object()
    if not isinstance(data, _Object):
        raise UsageError(f"invalid credentials JSON: expected an object, got {_json_kind(data)}")
    fields = {texts.FIELD_SERVER_URL: "", texts.FIELD_USERNAME: "", texts.FIELD_SECRET: ""}
    wanted = {name.lower(): name for name in fields}
    # Pairs in order, duplicates kept: Go assigns each in turn, so the last spelling of a field wins.
    for key, value in data:
        name = wanted.get(_go_fold(key))
        if name is None:
            continue
        if value is None:
            # Go: null leaves a string field as it was.
            continue
        if not isinstance(value, str):
            raise UsageError(f"invalid credentials JSON: {name} must be a string")
        # Go's decoder turns a lone UTF-16 surrogate (a "\ud800" escape) into U+FFFD; kept as is,
        # it could be stored but never written back out as UTF-8.
        fields[name] = _LONE_SURROGATE.sub("\ufffd", value)
    if not fields[texts.FIELD_SERVER_URL]:
        raise UsageError(texts.MISSING_SERVER_URL)
    if not fields[texts.FIELD_USERNAME]:
        raise UsageError(texts.MISSING_USERNAME)
    return fields[texts.FIELD_SERVER_URL], fields[texts.FIELD_USERNAME], fields[texts.FIELD_SECRET]


class _Object(list[tuple[str, object]]):
    """A JSON object as its pairs in order, told apart from a JSON array."""


_NUMBER = object()


def _decode_json(text: str) -> object:
    try:
        return json.loads(
            text,
            object_pairs_hook=_Object,
            # Numbers are never a field's value, so they are not converted: Go skips a 5,000-digit one
            # where int() would refuse it.
            parse_int=lambda _: _NUMBER,
            parse_float=lambda _: _NUMBER,
            parse_constant=_not_json,
        )
    except RecursionError:
        # The C decoder recurses per level; Go stops at 10,000 levels, Python at about 1,000.
        raise UsageError("invalid credentials JSON: nested too deeply") from None
    except ValueError as exc:
        raise UsageError(f"invalid credentials JSON: {exc}") from None


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "a boolean" if isinstance(value, bool) else "a number"


def _not_json(word: str) -> object:
    # NaN and Infinity are Python's extension; Go's decoder, like the JSON grammar, refuses them.
    raise ValueError(f"{word} is not a JSON value")


def _go_fold(key: str) -> str:
    """``key`` folded as Go's EqualFold matches it against the ASCII field names.

    Besides ASCII case, Unicode simple folding makes the long s (U+017F) an "s" and the Kelvin sign
    (U+212A) a "k"; ``lower()`` does the second.
    """
    return key.lower().replace("\u017f", "s")


def read_server_url(text: str) -> str:
    server = text.strip()
    if not server:
        raise UsageError(texts.MISSING_SERVER_URL)
    return server


def serve(action: str, raw_input: bytes, out: IO[str], backend: CredentialBackend) -> int:
    """Run one action; write its output or its one-line error to ``out``; return the exit code."""
    try:
        out.write(_run(action, raw_input, backend))
    except NotFoundError:
        out.write(texts.NOT_FOUND + "\n")
        return 1
    except RegauthError as exc:
        # A store's or an SDK's text may be in it: escaped like every edge's, so it stays one line.
        out.write(f"{printable(str(exc))}\n")
        return 1
    return 0


def _run(action: str, raw_input: bytes, backend: CredentialBackend) -> str:
    if action == "list":
        # Clients send the word "unused"; the input carries nothing.
        return go_json(dict(sorted(backend.list().items())))
    text = decode_input(raw_input)
    if action == "store":
        server, username, secret = parse_credentials(text)
        backend.store(server, username, secret)
        return ""
    if action == "get":
        server = read_server_url(text)
        username, secret = backend.get(server)
        return go_json(
            {texts.FIELD_SERVER_URL: server, texts.FIELD_USERNAME: username, texts.FIELD_SECRET: secret}
        )
    if action == "erase":
        backend.erase(read_server_url(text))
        return ""
    raise UsageError(texts.UNKNOWN_ACTION.format(action=printable(action)))
