"""Fuzzing the WWW-Authenticate parser: whatever a registry sends, it returns challenges and never raises.

The checks live in ``fuzz/targets.py``, shared with the coverage-guided fuzzer (``fuzz/fuzz.py``); here
hypothesis feeds them a few hundred inputs, and long adversarial inputs show the work stays linear.
"""

from __future__ import annotations

import pytest
from fuzz.targets import check_challenge, examples, line_events
from hypothesis import given, settings
from hypothesis import strategies as st

from regauth.distribution.challenge import parse_challenges

FUZZ = settings(max_examples=examples(300), deadline=None)

# Pieces of the grammar and of its usual mistakes, so random soups reach the parser's corners.
_FRAGMENTS = st.sampled_from(
    [
        "Bearer",
        "Basic",
        "realm",
        "service",
        "scope",
        "=",
        "==",
        ",",
        " ",
        "\t",
        '"',
        "\\",
        '\\"',
        "abc",
        "a+/b",
        "https://auth.example/token?x=y",
        "repository:a:pull,push",
        "\x00",
        "\r\n",
        "\u00e9",
    ]
)
_SOUP = st.lists(st.one_of(_FRAGMENTS, st.text(max_size=3)), max_size=30).map("".join)


@FUZZ
@given(st.text(max_size=300))
def test_any_text(header: str) -> None:
    check_challenge(header)


@FUZZ
@given(_SOUP)
def test_grammar_soup(header: str) -> None:
    check_challenge(header)


@FUZZ
@given(st.binary(max_size=200))
def test_header_bytes_as_aiohttp_decodes_them(raw: bytes) -> None:
    check_challenge(raw.decode("utf-8", "surrogateescape"))


@pytest.mark.parametrize(
    "header",
    [
        '"' * 3,
        "\\" * 5,
        'Bearer realm="\\',
        'Bearer realm="a\\"',
        "Bearer ===, =",
        "Negotiate abc==, realm=x",
        "Basic realm=\x00\x7f, Bearer realm=\udcff",
        "a" * 10_000,
    ],
)
def test_corner_cases(header: str) -> None:
    check_challenge(header)


# Repeated pieces that a backtracking or rescanning parser would take quadratic time over.
_UNITS = ['"', "\\", ",", " ", "a", "a=", "a ", "=", 'a="', "Basic ", "x=y, ", "abc==", '"\\', "a b", "a, "]


@pytest.mark.parametrize("prefix", ["", "Bearer "])
@pytest.mark.parametrize("unit", _UNITS)
def test_work_is_linear_in_the_input(prefix: str, unit: str) -> None:
    once = line_events(parse_challenges, prefix + unit * 400)
    twice = line_events(parse_challenges, prefix + unit * 800)
    assert twice <= 2.2 * once + 50, (once, twice)
