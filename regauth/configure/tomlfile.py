"""TOML files the clients read (registries.conf, containerd's config.toml), edited in place.

tomlkit keeps what a person wrote, comments, order and layout included, and changes only the one key
regauth owns; every result is parsed again with the standard library's ``tomllib`` where there is one,
so a file regauth writes is one the clients can read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tomlkit
import tomlkit.exceptions
from tomlkit.container import Container
from tomlkit.items import Table

from regauth.configure.files import FileState
from regauth.errors import ConfigError


def parse(state: FileState) -> tomlkit.TOMLDocument:
    if state.data is None:
        return tomlkit.document()
    try:
        return tomlkit.parse(state.data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{state.path} is not UTF-8 text; it was left as it was") from None
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(f"{state.path} is not valid TOML ({exc}); it was left as it was") from None


def render(state: FileState, doc: tomlkit.TOMLDocument) -> bytes:
    data = tomlkit.dumps(doc).encode("utf-8")
    _check_readable(state, data)
    return data


def _check_readable(state: FileState, data: bytes) -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: tomlkit's own parse is the check
        tomlkit.parse(data.decode("utf-8"))
        return
    try:
        tomllib.loads(data.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"editing {state.path} would leave invalid TOML ({exc}); it was left as it was"
        ) from exc


def with_first_helper(state: FileState, helper: str, fallback: str, *, header: str) -> bytes:
    """``credential-helpers`` with ``helper`` first, the others kept after it (``fallback`` when the
    key is new, as containers-registries.conf(5)'s default is the auth files alone)."""
    doc = parse(state)
    current = doc.get("credential-helpers")
    # An empty list is the default to the clients (containers/image reads it as the auth files alone).
    if current is None or current == []:
        if state.data is None:
            doc = tomlkit.parse(header)
        doc["credential-helpers"] = [helper, fallback]
        return render(state, doc)
    if not isinstance(current, list) or not all(isinstance(item, str) for item in current):
        raise ConfigError(f"{state.path}: credential-helpers is not a list of names; it was left as it was")
    if current and current[0] == helper:
        return state.data or b""
    rest = [item for item in current if item != helper]
    doc["credential-helpers"] = [helper, *rest]
    return render(state, doc)


def get_path(doc: tomlkit.TOMLDocument, keys: Sequence[str]) -> Any:
    node: Any = doc
    for key in keys:
        if not isinstance(node, (dict, Container, Table)) or key not in node:
            return None
        node = node[key]
    return node


def set_path(state: FileState, doc: tomlkit.TOMLDocument, keys: Sequence[str], value: str) -> None:
    """Set ``keys`` (the last one a plain key) to ``value``, making the tables on the way."""
    node: Any = doc
    for depth, key in enumerate(keys[:-1]):
        if key not in node:
            # The intermediate tables stay implicit ([a."b".c] alone, as containerd's docs write it).
            node[key] = tomlkit.table(is_super_table=depth < len(keys) - 2)
        node = node[key]
        if not isinstance(node, (dict, Container, Table)):
            raise ConfigError(
                f"{state.path}: {'.'.join(keys[: depth + 1])} is not a table; it was left as it was"
            )
    node[keys[-1]] = value
