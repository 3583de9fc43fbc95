"""Fuzzing the image-reference parser: a reference that round-trips, or one short printable UsageError.

The checks live in ``fuzz/targets.py``, shared with the coverage-guided fuzzer (``fuzz/fuzz.py``); the
agreement with distribution's grammar is in ``test_reference.py``.
"""

from __future__ import annotations

import pytest
from fuzz.targets import MESSAGE_MAX, check_reference, examples, line_events
from hypothesis import given, settings
from hypothesis import strategies as st

from regauth.errors import UsageError
from regauth.reference import parse_reference

FUZZ = settings(max_examples=examples(300), deadline=None)

_FRAGMENTS = st.sampled_from(
    [
        "a",
        "0",
        "A",
        "/",
        ":",
        "@",
        ".",
        "_",
        "__",
        "-",
        "[",
        "]",
        "::1",
        "localhost",
        "docker.io",
        "index.docker.io",
        "library/",
        "sha256:",
        "sha512:",
        "0123456789abcdef" * 4,
        ":5000",
        "\x00",
        "\n",
        "\u0130",
        "\udcff",
    ]
)
_SOUP = st.lists(st.one_of(_FRAGMENTS, st.text(max_size=2)), max_size=25).map("".join)


@FUZZ
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    check_reference(text)


@FUZZ
@given(_SOUP)
def test_grammar_soup(text: str) -> None:
    check_reference(text)


@FUZZ
@given(st.binary(max_size=200))
def test_argv_bytes_as_python_decodes_them(raw: bytes) -> None:
    check_reference(raw.decode("utf-8", "surrogateescape"))


@pytest.mark.parametrize(
    "text",
    [
        "a" * 256,
        "a/" * 200 + "a",
        "app:" + "t" * 129,
        "app@sha256:" + "A" * 64,
        "app@sha256:" + "0" * 10_000,
        "[" + ":" * 1000,
        "x" * 100_000 + "\x1b[2J",
        "reg.example/\u202e" + "a" * 300,
    ],
)
def test_long_and_hostile_text_gives_a_short_line(text: str) -> None:
    check_reference(text)
    with pytest.raises(UsageError) as caught:
        parse_reference(text)
    assert len(str(caught.value)) <= MESSAGE_MAX


_UNITS = ["a", "-", "a-", "a/", "/", "a.", "__", "a._", "A", "[", "[a", ":1", "a:", "0", "a--", "-."]


@pytest.mark.parametrize("prefix", ["", "reg.example/a", "app:", "app@sha256:"])
@pytest.mark.parametrize("unit", _UNITS)
def test_work_is_linear_in_the_input(prefix: str, unit: str) -> None:
    once = line_events(parse_reference, prefix + unit * 400)
    twice = line_events(parse_reference, prefix + unit * 800)
    assert twice <= 2.2 * once + 50, (once, twice)
