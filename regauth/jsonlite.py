"""JSON for the helper's fast ``get`` without the ``json`` module, which imports ``re`` and ``enum``.

Importing ``json`` costs a static ``get`` about 4 ms of its 19. The files the fast path reads are
regauth's own JSON (the registries file, the decrypted secrets map, a cached token), so ``loads``
reads only the plain subset of JSON those hold, and gives exactly what ``json.loads`` gives for it:
objects, arrays, strings, ``true``/``false``/``null`` and numbers of at most ``MAX_NUMBER`` characters,
nested at most ``MAX_DEPTH`` deep. Anything else it declines (``Declined``): ``NaN`` and
``Infinity``, a lone UTF-16 surrogate escape, a control character, a BOM, invalid JSON. The caller then
leaves the question to the general path, which uses ``json``. ``tests/test_jsonlite.py`` holds both
functions equal to ``json`` on generated inputs.

``dumps_sorted`` is ``json.dumps(value, sort_keys=True, separators=(",", ":"))`` for strings, None,
lists, tuples and objects of them: the token cache's identity text.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: importing typing costs the fast get 4 ms; mypy honours the name alone.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

MAX_DEPTH = 32
# 100 digits parse to the same int or float as json.loads, and stay clear of int()'s digit limit.
MAX_NUMBER = 100
_SPACE = " \t\n\r"
_DIGITS = "0123456789"
_HEX = frozenset("0123456789abcdefABCDEF")
_ESCAPED = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_ASCII_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class Declined(ValueError):
    """Not JSON, or JSON outside the subset ``loads`` reads: ask ``json`` (the general path)."""


def loads(text: str) -> object:
    """``json.loads(text)``, or ``Declined``."""
    value, end = _value(text, _skip(text, 0), 0)
    if _skip(text, end) != len(text):
        raise Declined("data after the value")
    return value


def _skip(text: str, at: int) -> int:
    end = len(text)
    while at < end and text[at] in _SPACE:
        at += 1
    return at


def _value(text: str, at: int, depth: int) -> tuple[object, int]:
    first = text[at : at + 1]
    if first == '"':
        return _string(text, at + 1)
    if first == "{":
        return _object(text, at + 1, depth + 1)
    if first == "[":
        return _array(text, at + 1, depth + 1)
    if first and first in "-0123456789":
        return _number(text, at)
    for word, value in (("true", True), ("false", False), ("null", None)):
        if text.startswith(word, at):
            return value, at + len(word)
    raise Declined("not a JSON value")


def _object(text: str, at: int, depth: int) -> tuple[dict[str, object], int]:
    if depth > MAX_DEPTH:
        raise Declined("nested too deeply")
    result: dict[str, object] = {}
    at = _skip(text, at)
    if text[at : at + 1] == "}":
        return result, at + 1
    while True:
        if text[at : at + 1] != '"':
            raise Declined("expected a key")
        key, at = _string(text, at + 1)
        at = _skip(text, at)
        if text[at : at + 1] != ":":
            raise Declined("expected ':'")
        # As json.loads: a repeated key keeps its first place and its last value.
        result[key], at = _value(text, _skip(text, at + 1), depth)
        at = _skip(text, at)
        after = text[at : at + 1]
        if after == "}":
            return result, at + 1
        if after != ",":
            raise Declined("expected ',' or '}'")
        at = _skip(text, at + 1)


def _array(text: str, at: int, depth: int) -> tuple[list[object], int]:
    if depth > MAX_DEPTH:
        raise Declined("nested too deeply")
    result: list[object] = []
    at = _skip(text, at)
    if text[at : at + 1] == "]":
        return result, at + 1
    while True:
        item, at = _value(text, at, depth)
        result.append(item)
        at = _skip(text, at)
        after = text[at : at + 1]
        if after == "]":
            return result, at + 1
        if after != ",":
            raise Declined("expected ',' or ']'")
        at = _skip(text, at + 1)


def _number(text: str, at: int) -> tuple[int | float, int]:
    start = at
    end = len(text)
    if text[at] == "-":
        at += 1
    digits = at
    while at < end and text[at] in _DIGITS:
        at += 1
    # No digits ("-", "-Infinity"), or a leading zero ("01", which json.loads refuses).
    if at == digits or (text[digits] == "0" and at - digits > 1):
        raise Declined("not a JSON number")
    is_float = False
    if text[at : at + 1] == ".":
        at += 1
        fraction = at
        while at < end and text[at] in _DIGITS:
            at += 1
        if at == fraction:
            raise Declined("not a JSON number")
        is_float = True
    if text[at : at + 1] in ("e", "E"):
        at += 1
        if text[at : at + 1] in ("+", "-"):
            at += 1
        exponent = at
        while at < end and text[at] in _DIGITS:
            at += 1
        if at == exponent:
            raise Declined("not a JSON number")
        is_float = True
    token = text[start:at]
    if len(token) > MAX_NUMBER:
        raise Declined("a number too long")
    return (float(token) if is_float else int(token)), at


def _string(text: str, at: int) -> tuple[str, int]:
    """The string whose body starts at ``at`` (after the opening quote), and where it ends."""
    parts: list[str] = []
    while True:
        close = text.find('"', at)
        if close < 0:
            raise Declined("unterminated string")
        escape = text.find("\\", at, close)
        chunk = text[at : close if escape < 0 else escape]
        # isprintable() is False for every control character, and for more: then check exactly.
        if not chunk.isprintable() and any(char < " " for char in chunk):
            raise Declined("a control character in a string")
        parts.append(chunk)
        if escape < 0:
            return "".join(parts), close + 1
        char, at = _escape(text, escape + 1)
        parts.append(char)


def _escape(text: str, at: int) -> tuple[str, int]:
    """The character of the escape whose letter is at ``at``, and where the escape ends."""
    letter = text[at : at + 1]
    if letter != "u":
        if letter not in _ESCAPED:
            raise Declined("an unknown escape")
        return _ESCAPED[letter], at + 1
    code = _hex4(text, at + 1)
    if 0xDC00 <= code <= 0xDFFF:
        raise Declined("a lone surrogate escape")
    if 0xD800 <= code <= 0xDBFF:
        # Only a high surrogate escape followed at once by a low one: json.loads joins the two.
        low = _hex4(text, at + 7) if text[at + 5 : at + 7] == "\\u" else -1
        if not 0xDC00 <= low <= 0xDFFF:
            raise Declined("a lone surrogate escape")
        return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)), at + 11
    return chr(code), at + 5


def _hex4(text: str, at: int) -> int:
    digits = text[at : at + 4]
    if len(digits) != 4 or not _HEX.issuperset(digits):
        raise Declined("a bad \\u escape")
    return int(digits, 16)


def dumps_sorted(value: str | None | Sequence[object] | Mapping[str, object]) -> str:
    """``json.dumps(value, sort_keys=True, separators=(",", ":"))`` (ASCII, as its default)."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return _quote_ascii(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps_sorted(item) for item in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(_quote_ascii(k) + ":" + dumps_sorted(v) for k, v in items) + "}"
    raise TypeError(f"dumps_sorted takes strings, None, lists and objects, not {type(value).__name__}")


def _quote_ascii(text: str) -> str:
    # Printable ASCII is " " to "~", exactly what json's ensure_ascii leaves as it is.
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return '"' + text + '"'
    return '"' + "".join(_escape_ascii(char) for char in text) + '"'


def _escape_ascii(char: str) -> str:
    if " " <= char <= "~":
        return _ASCII_ESCAPES.get(char, char)
    special = _ASCII_ESCAPES.get(char)
    if special is not None:
        return special
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"
