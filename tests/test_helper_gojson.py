"""go_json, written without the json module, against json.dumps with Go's extra escapes."""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from regauth.helper.gojson import go_json


def reference(value: dict[str, str]) -> str:
    """What go_json wrote through json.dumps before it lost the import."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text + "\n"


# Lone surrogates too: what a Python string holds where Go's would hold an invalid byte.
_ANY_TEXT = st.text(alphabet=st.characters() | st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"]))


@hsettings(max_examples=500, deadline=None)
@given(value=st.dictionaries(_ANY_TEXT, _ANY_TEXT, max_size=4))
@example(value={"Secret": '<&>\u2028\u2029 "q" \\ \t\n\r\b\f\x01\x1f\x7f é 😀 \ud800 \udfff'})
@example(value={})
def test_go_json_is_json_dumps_with_gos_escapes(value: dict[str, str]) -> None:
    assert go_json(value) == reference(value)
