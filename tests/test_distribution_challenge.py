"""WWW-Authenticate parsing: examples from real registries, RFC corner cases, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regauth.distribution.challenge import Challenge, find, parse_challenges, parse_headers


def _simple(header: str) -> list[tuple[str, dict[str, str], str | None]]:
    return [(c.scheme, dict(c.params), c.token68) for c in parse_challenges(header)]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"}, None)]),
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/alpine:pull"',
            [
                (
                    "bearer",
                    {
                        "realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:library/alpine:pull",
                    },
                    None,
                )
            ],
        ),
        (
            'Bearer realm="https://r/token",scope="repository:a:pull,push",error="insufficient_scope"',
            [
                (
                    "bearer",
                    {
                        "realm": "https://r/token",
                        "scope": "repository:a:pull,push",
                        "error": "insufficient_scope",
                    },
                    None,
                )
            ],
        ),
        # The RFC 9110 example: several challenges, an escaped quote, a token value.
        (
            'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"',
            [
                ("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}, None),
                ("basic", {"realm": "simple"}, None),
            ],
        ),
        ('BASIC REALM="x"', [("basic", {"realm": "x"}, None)]),
        (
            "bearer Realm = https://r/t , Service = reg",
            [("bearer", {"realm": "https://r/t", "service": "reg"}, None)],
        ),
        ("Negotiate", [("negotiate", {}, None)]),
        ("Negotiate abc+/def==", [("negotiate", {}, "abc+/def==")]),
        ("Negotiate abc==, Basic realm=x", [("negotiate", {}, "abc=="), ("basic", {"realm": "x"}, None)]),
        (", , Basic realm=x,, ", [("basic", {"realm": "x"}, None)]),
        (
            'Basic realm="a,b", Bearer realm="c"',
            [("basic", {"realm": "a,b"}, None), ("bearer", {"realm": "c"}, None)],
        ),
        # First occurrence of a repeated parameter wins.
        ('Basic realm="a", realm="b"', [("basic", {"realm": "a"}, None)]),
        ('Bearer error_description="a \\\\ b"', [("bearer", {"error_description": "a \\ b"}, None)]),
        ("", []),
        ("   ", []),
    ],
)
def test_parses(header: str, expected: list[tuple[str, dict[str, str], str | None]]) -> None:
    assert _simple(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # Garbage before a good challenge is skipped up to the next comma.
        ('"junk", Basic realm="x"', [("basic", {"realm": "x"}, None)]),
        ('=oops, Bearer realm="x"', [("bearer", {"realm": "x"}, None)]),
        # A parameter before any scheme belongs to nothing.
        ('realm="x", Basic realm="y"', [("basic", {"realm": "y"}, None)]),
        # An unterminated quoted string keeps what there is.
        ('Bearer realm="https://r/t', [("bearer", {"realm": "https://r/t"}, None)]),
        (
            'Basic realm=x @bad, Bearer realm="y"',
            [("basic", {"realm": "x"}, None), ("bearer", {"realm": "y"}, None)],
        ),
    ],
)
def test_tolerates_malformed_pieces(
    header: str, expected: list[tuple[str, dict[str, str], str | None]]
) -> None:
    assert _simple(header) == expected


def test_several_headers_keep_order() -> None:
    challenges = parse_headers(['Basic realm="a"', 'Bearer realm="b",service="s"'])
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert find(challenges, "BEARER") is challenges[1]
    assert find(challenges, "digest") is None


def test_accessors_are_case_insensitive() -> None:
    (challenge,) = parse_challenges(
        'Bearer Realm="r",SERVICE="s",Scope="x",Error="insufficient_scope",Error_Description="d"'
    )
    assert (challenge.realm, challenge.service, challenge.scope) == ("r", "s", "x")
    assert (challenge.error, challenge.error_description) == ("insufficient_scope", "d")
    assert challenge.get("REALM") == "r"


_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+!#$%&'*^`|", min_size=1
)
_value = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="\x7f"), max_size=30
)
_params = st.dictionaries(_token.map(str.lower), _value, max_size=4)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render(scheme: str, params: dict[str, str], sep: str) -> str:
    return scheme + (" " + sep.join(f"{k}={_quote(v)}" for k, v in params.items()) if params else "")


@given(st.lists(st.tuples(_token, _params), min_size=1, max_size=4), st.sampled_from([",", ", ", " , "]))
def test_round_trip(challenges: list[tuple[str, dict[str, str]]], sep: str) -> None:
    header = sep.join(_render(scheme, params, sep) for scheme, params in challenges)
    parsed = parse_challenges(header)
    assert [(c.scheme, dict(c.params)) for c in parsed] == [(s.lower(), p) for s, p in challenges]


@given(st.text(max_size=200))
def test_never_raises(header: str) -> None:
    for challenge in parse_challenges(header):
        assert isinstance(challenge, Challenge)
        assert challenge.scheme == challenge.scheme.lower()
        assert all(name == name.lower() for name in challenge.params)
