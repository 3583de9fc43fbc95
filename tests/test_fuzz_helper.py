"""Fuzzing the credential helper's stdin: every verb, any bytes, against a real file store in tmp.

In-process (``helper.main`` with its streams swapped) for hundreds of inputs, and through the installed
``docker-credential-regauth`` for a few: the protocol's answer, or exactly one line on stdout and exit 1,
no traceback, and the seeded credential still there with its secret. The checks live in
``fuzz/targets.py``, shared with the coverage-guided fuzzer (``fuzz/fuzz.py helper``).
"""

from __future__ import annotations

import json

import pytest
from fuzz.targets import ACTIONS, KEEP, KEEP_SERVER, check_helper, examples, process_runner, reaches_a_cloud
from hypothesis import given, settings
from hypothesis import strategies as st

from regauth.helper import texts

FUZZ = settings(max_examples=examples(150, cost=3), deadline=None)

_SERVER_PIECES = st.sampled_from(
    [
        KEEP_SERVER,
        "https://",
        "http://",
        "ftp://",
        "user:pw@",
        "docker.io",
        "index.docker.io",
        "[::1]",
        "[",
        "]",
        ":5000",
        ":0",
        ":443",
        "/v2/",
        "?x#y",
        "..",
        "-",
        " ",
        "\n",
        "\r\n",
        "\t",
        "\x00",
        "\x1b[2J",
        "\u0130",
        "\u2028",
        "\uff15",
    ]
)
_SERVER = st.lists(st.one_of(_SERVER_PIECES, st.text(max_size=3)), max_size=8).map("".join)
_KEYS = st.sampled_from(
    [
        "ServerURL",
        "serverurl",
        "SERVERURL",
        "\u017fervERURL",
        "Username",
        "username",
        "Secret",
        "secret",
        "\u017fecret",
        "Email",
        "",
        "Extra",
    ]
)
_VALUES = st.one_of(
    _SERVER,
    st.text(max_size=20),
    st.sampled_from(["<token>", "a\\ud800b", None, 0, 1e308, True, [], {}, ["x"], {"a": None}]),
)


def _payload(pairs: list[tuple[str, object]], cut: int | None) -> bytes:
    # Pairs, not a dict: duplicates and several spellings of one field are part of what Go decodes.
    text = "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}"
    return text.encode("utf-8", "surrogatepass")[:cut]


_HOSTS = st.sampled_from(["r.example", "https://r.example:5000/v2/", KEEP_SERVER, "docker.io", "[::1]:5000"])
# A valid payload first, so that the random pairs after it (which Go applies in turn) often leave
# something storable; sometimes cut short.
_STORE_INPUT = st.builds(
    lambda host, user, pairs, cut: _payload([("ServerURL", host), ("Username", user), *pairs], cut),
    _HOSTS,
    st.one_of(st.just("u"), st.text(min_size=1, max_size=10)),
    st.lists(st.tuples(_KEYS, _VALUES), max_size=5),
    st.one_of(st.none(), st.none(), st.none(), st.integers(min_value=0, max_value=80)),
)


@FUZZ
@given(st.sampled_from(ACTIONS), st.binary(max_size=200))
def test_any_verb_any_bytes(action: str, stdin: bytes) -> None:
    check_helper(action, stdin)


@FUZZ
@given(st.sampled_from(("get", "erase")), _SERVER)
def test_get_and_erase_any_server_text(action: str, server: str) -> None:
    check_helper(action, server.encode("utf-8", "surrogatepass"))


@FUZZ
@given(_STORE_INPUT)
def test_store_any_json_object(stdin: bytes) -> None:
    result = check_helper("store", stdin)
    assert result is not None and "kept-secret" not in result.out + result.err


# Inputs that a random search rarely builds: nesting, size limits, bytes that are not UTF-8.
HOSTILE: list[tuple[str, bytes]] = [
    ("store", b'{"x":' + b"[" * 100_000),
    ("store", b'{"a":' * 20_000),
    ("store", b'{"ServerURL":"r.example","Username":"u","n":' + b"9" * 5_000 + b"}"),
    ("store", b'{"ServerURL":"r.example","Username":"u","n":NaN}'),
    ("store", b'{"ServerURL":"r.example","Username":"u","Secret":"' + b"s" * (texts.MAX_INPUT_BYTES) + b'"}'),
    ("store", b'{"ServerURL":"r.example","Username":"u\\u0000","Secret":"\\udfff"}'),
    ("store", b'{"ServerURL":"r\\u0000.example","Username":"u","Secret":"kept-secret"}'),
    ("store", b"\xef\xbb\xbf{}"),
    ("store", b"\xff\xfe{\x00}\x00"),
    ("store", b"null"),
    ("store", json.dumps({**KEEP, "Secret": None, "username": "other"}).encode()),
    ("get", b"\xed\xa0\x80"),
    ("get", b"r" * (texts.MAX_INPUT_BYTES + 1)),
    ("get", b"\x00" * 1000),
    ("get", KEEP_SERVER.encode() + b"\n\n"),
    ("get", b"https://" + KEEP_SERVER.encode() + b":443/v2/"),
    ("erase", b"[" * 5000),
    ("erase", b"https://:@/"),
    ("list", b"\xff" * 100),
]


@pytest.mark.parametrize(("action", "stdin"), HOSTILE, ids=[f"{a}-{i}" for i, (a, _) in enumerate(HOSTILE)])
def test_hostile_input_in_process(action: str, stdin: bytes) -> None:
    check_helper(action, stdin)


@pytest.mark.parametrize(("action", "stdin"), HOSTILE, ids=[f"{a}-{i}" for i, (a, _) in enumerate(HOSTILE)])
def test_hostile_input_through_the_installed_script(action: str, stdin: bytes, helper_exe: str) -> None:
    result = check_helper(action, stdin, process_runner(helper_exe))
    assert result is not None and result.err == ""


@settings(max_examples=examples(8, cost=50), deadline=None)
@given(st.sampled_from(ACTIONS), st.one_of(st.binary(max_size=100), _STORE_INPUT))
def test_random_input_through_the_installed_script(action: str, stdin: bytes) -> None:
    from conftest import SCRIPTS_DIR

    check_helper(action, stdin, process_runner(str(SCRIPTS_DIR / "docker-credential-regauth")))


@pytest.mark.parametrize(
    "server",
    [
        b"gcr.io",
        b"eu.gcr.io",
        b"x-docker.pkg.dev",
        b"r.azurecr.io",
        b"public.ecr.aws",
        b"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/",
    ],
)
def test_a_get_for_a_cloud_host_is_not_fuzzed(server: bytes) -> None:
    # Its SDK would look for ambient credentials on the network; the provider tests fake those.
    assert reaches_a_cloud(server)
    assert check_helper("get", server) is None
