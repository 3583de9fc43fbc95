"""A client's JSON file (Docker's config.json, the containers auth file), edited without losing anything.

The whole object is kept as parsed, keys in their order, unknown keys and entries included (the Docker
CLI's own save drops top-level keys it does not know: this does not). Only when the object really
changes is it written again, in the layout the file had (its indent, its final newline), so a second run
finds the bytes equal and writes nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any

from regauth.configure.files import FileState
from regauth.errors import ConfigError

_INDENT = re.compile(rb"\n([ \t]+)\S")


def load_object(state: FileState) -> dict[str, Any]:
    """The top-level object of ``state`` ({} for a missing or empty file)."""
    if state.data is None or not state.data.strip():
        return {}
    try:
        value = json.loads(state.data.decode("utf-8"), object_pairs_hook=_no_duplicates(state))
    except UnicodeDecodeError:
        raise ConfigError(f"{state.path} is not UTF-8 text; it was left as it was") from None
    except ValueError as exc:
        raise ConfigError(f"{state.path} is not valid JSON ({exc}); it was left as it was") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{state.path} holds JSON that is not an object; it was left as it was")
    return value


def _no_duplicates(state: FileState) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                # Rewriting would silently keep only one of them: the user must choose.
                raise ConfigError(f"{state.path} has the key {key!r} twice; it was left as it was")
            result[key] = value
        return result

    return pairs


def section(obj: dict[str, Any], key: str, state: FileState) -> dict[str, Any]:
    """The object under ``key``, made if missing; refused if it is something else."""
    value = obj.setdefault(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{state.path}: {key!r} is not an object; it was left as it was")
    return value


def rewrite(state: FileState, before: dict[str, Any], after: dict[str, Any]) -> bytes:
    """The new bytes of ``state``'s file holding ``after``: the file untouched when nothing changed;
    otherwise every top-level member whose value did not change is copied as it was written (numbers,
    spacing and all), and only the changed ones are written anew, in the file's indent."""
    if after == before and state.data is not None:
        return state.data
    raw = _raw_members(state.data.decode("utf-8")) if state.data is not None and state.data.strip() else {}
    indent = _indent(state)
    # A file with CRLF line ends (written on Windows) keeps them: its copied members have them inside.
    eol = "\r\n" if state.data is not None and b"\r\n" in state.data else "\n"
    parts = []
    for key, value in after.items():
        if key in raw and key in before and before[key] == value:
            raw_key, raw_value = raw[key]
        else:
            raw_key = json.dumps(key, ensure_ascii=False)
            raw_value = _serialize(value, indent).replace("\n", eol)
        parts.append(f"{raw_key}: {raw_value}")
    if not parts:
        text = "{}"
    elif indent is None:
        text = "{" + ", ".join(parts) + "}"
    else:
        text = "{" + eol + ("," + eol).join(indent + part for part in parts) + eol + "}"
    newline = eol if state.data is None or not state.data.strip() or state.data.endswith(b"\n") else ""
    return (text + newline).encode("utf-8")


def _indent(state: FileState) -> str | None:
    """The file's indent unit; None for a file on one line; a tab (Docker's own) for a new file."""
    if state.data is None or not state.data.strip():
        return "\t"
    found = _INDENT.search(state.data)
    if found:
        return found.group(1).decode()
    return None if b"\n" not in state.data.strip() else "\t"


def _serialize(value: Any, indent: str | None) -> str:
    if indent is None:
        return json.dumps(value, ensure_ascii=False)
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    # One level in: the member's own lines after its first follow the file's nesting.
    return text.replace("\n", "\n" + indent)


def _raw_members(text: str) -> dict[str, tuple[str, str]]:
    """Each top-level member's key and value exactly as written (the file already parsed once)."""
    decoder = json.JSONDecoder()
    members: dict[str, tuple[str, str]] = {}
    i = _skip(text, 0) + 1  # past "{"
    while True:
        i = _skip(text, i)
        if text[i] == "}":
            return members
        key, end = decoder.raw_decode(text, i)
        raw_key = text[i:end]
        i = _skip(text, end) + 1  # past ":"
        start = _skip(text, i)
        _, end = decoder.raw_decode(text, start)
        members[key] = (raw_key, text[start:end])
        i = _skip(text, end)
        if text[i] == ",":
            i += 1


def _skip(text: str, i: int) -> int:
    while text[i] in " \t\r\n":
        i += 1
    return i
