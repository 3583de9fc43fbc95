"""Go's encoding/json output, as the reference helpers write it and clients read it."""

from __future__ import annotations

import json
from collections.abc import Mapping


def go_json(value: Mapping[str, str]) -> str:
    """A map of strings as Go's encoding/json writes it: compact, HTML characters escaped, a newline.

    Backspace and form feed come out as ``\\b`` and ``\\f``, as Go writes them since 1.22 (before,
    ``\\u0008`` and ``\\u000c``; a JSON reader takes either).

    Like Go, the output is valid UTF-8 whatever the strings hold: a lone surrogate (what a Python string
    has where Go's would hold an invalid byte) becomes U+FFFD instead of failing the write to stdout.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text + "\n"
