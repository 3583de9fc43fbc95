"""The fast get's JSON reader and identity writer against the json module: equal, or declined."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from regauth import jsonlite

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


def same(a: object, b: object) -> bool:
    """Equal and of the same types all the way down (1, 1.0 and True are three answers)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return a == b


def agrees(text: str) -> bool:
    """jsonlite gives what json gives, or declines; it never accepts what json refuses."""
    try:
        ours = jsonlite.loads(text)
    except jsonlite.Declined:
        return True
    return same(ours, json.loads(text))


@hsettings(max_examples=400, deadline=None)
@given(
    value=_VALUES,
    ascii_only=st.booleans(),
    indent=st.sampled_from([None, 0, 2, "\t"]),
)
def test_reads_what_json_writes(value: object, ascii_only: bool, indent: int | str | None) -> None:
    # Never declined: what json writes of regauth's kind of data (no lone surrogates) is the subset.
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    assert same(jsonlite.loads(text), json.loads(text))


@hsettings(max_examples=600, deadline=None)
@given(
    text=st.text(
        alphabet=st.sampled_from(list('{}[]:,"\\ \t\n\r\x00\x1f-+.eE0123456789abcdfnrtuxNaIy/é')), max_size=40
    )
)
@example('"\\ud83d\\ude00"')
@example('"\\ud83d"')
@example('"\\ude00\\ud83d"')
@example('"\\ud83d\\u0041"')
@example("01")
@example("-0")
@example("1.5e+3")
@example("NaN")
@example("-Infinity")
@example('{"a":1,"a":2}')
@example("\ufeff{}")
@example('"\\u00e9\\u00E9"')
@example("[1,]")
@example("1e400")
def test_any_text_is_read_as_json_reads_it_or_declined(text: str) -> None:
    assert agrees(text)


@hsettings(max_examples=300, deadline=None)
@given(text=st.text())
def test_any_unicode_text_agrees(text: str) -> None:
    assert agrees(text)
    assert agrees(json.dumps(text))
    assert agrees(json.dumps(text, ensure_ascii=False))


@pytest.mark.parametrize(
    "text", ["NaN", "-Infinity", '"\\ud800"', '"\\udc00\\ud800"', "\ufeff{}", '"a\tb"', "[1,]", "01", "1e"]
)
def test_declines_what_is_unusual_or_not_json(text: str) -> None:
    with pytest.raises(jsonlite.Declined):
        jsonlite.loads(text)


def test_declines_deep_nesting_and_long_numbers() -> None:
    with pytest.raises(jsonlite.Declined):
        jsonlite.loads("[" * 100 + "]" * 100)
    with pytest.raises(jsonlite.Declined):
        jsonlite.loads("1" * 5000)
    assert jsonlite.loads("[" * 32 + "]" * 32) == json.loads("[" * 32 + "]" * 32)


_IDENTITY = st.recursive(
    st.none() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@hsettings(max_examples=400, deadline=None)
@given(value=_IDENTITY)
@example(value={"b": "\x7f\ud800\U0001f600\u2028", "a": ['"\\\b\f\n\r\t\x01']})
def test_dumps_sorted_is_json_dumps_sorted(value: object) -> None:
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"))
    assert jsonlite.dumps_sorted(value) == expected  # type: ignore[arg-type]
