"""Go's encoding/json output, as the reference helpers write it and clients read it.

Written out here rather than through ``json.dumps``: the helper's fast ``get`` prints it, and importing
``json`` (with the ``re`` and ``enum`` it imports) costs that ``get`` about 4 ms.
``tests/test_helper_gojson.py`` holds it equal to ``json.dumps`` with Go's extra escapes.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: importing typing costs the fast get 4 ms; mypy honours the name alone.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

# What Go escapes in a string: the control characters (\b and \f short since Go 1.22), the quote and
# the backslash, the HTML characters, and the two JavaScript line separators.
_ESCAPES = {code: f"\\u{code:04x}" for code in range(0x20)}
_SHORT = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}
_ESCAPES.update({ord(char): escape for char, escape in _SHORT.items()})
_ESCAPES.update({ord(char): f"\\u{ord(char):04x}" for char in "<>&\u2028\u2029"})


def go_json(value: Mapping[str, str]) -> str:
    """A map of strings as Go's encoding/json writes it: compact, HTML characters escaped, a newline.

    Backspace and form feed come out as ``\\b`` and ``\\f``, as Go writes them since 1.22 (before,
    ``\\u0008`` and ``\\u000c``; a JSON reader takes either).

    Like Go, the output is valid UTF-8 whatever the strings hold: a lone surrogate (what a Python string
    has where Go's would hold an invalid byte) becomes U+FFFD instead of failing the write to stdout.
    """
    return "{" + ",".join(f"{_quoted(key)}:{_quoted(text)}" for key, text in value.items()) + "}\n"


def _quoted(text: str) -> str:
    text = text.translate(_ESCAPES)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)
    return '"' + text + '"'
