"""The pure helper protocol core: ``serve`` over ``io.StringIO`` and an in-memory backend.

Every expected output is written out byte for byte, as the reference docker-credential-helpers (Go)
would print it: compact JSON, ``<``, ``>`` and ``&`` escaped, one trailing newline.
"""

from __future__ import annotations

import io
import json

import pytest

from regauth.errors import NotFoundError, StoreError
from regauth.helper import texts
from regauth.helper.protocol import go_json, serve


class MemoryBackend:
    """A dict of server -> (username, secret); records every call."""

    def __init__(self, entries: dict[str, tuple[str, str]] | None = None) -> None:
        self.entries: dict[str, tuple[str, str]] = dict(entries or {})
        self.calls: list[tuple[str, ...]] = []

    def store(self, server_url: str, username: str, secret: str) -> None:
        self.calls.append(("store", server_url, username, secret))
        self.entries[server_url] = (username, secret)

    def get(self, server_url: str) -> tuple[str, str]:
        self.calls.append(("get", server_url))
        if server_url not in self.entries:
            raise NotFoundError(f"nothing for {server_url}")
        return self.entries[server_url]

    def erase(self, server_url: str) -> None:
        self.calls.append(("erase", server_url))
        self.entries.pop(server_url, None)

    def list(self) -> dict[str, str]:
        self.calls.append(("list",))
        return {server: username for server, (username, _) in self.entries.items()}


class FailingBackend(MemoryBackend):
    def store(self, server_url: str, username: str, secret: str) -> None:
        raise StoreError("the secret store /x/secrets.enc is damaged: test; it was left untouched")

    def get(self, server_url: str) -> tuple[str, str]:
        raise StoreError("the secret store /x/secrets.enc is damaged: test; it was left untouched")


def run(action: str, stdin: bytes | str, backend: MemoryBackend) -> tuple[int, str]:
    raw = stdin.encode() if isinstance(stdin, str) else stdin
    out = io.StringIO()
    code = serve(action, raw, out, backend)
    return code, out.getvalue()


# --- the verbs -------------------------------------------------------------------------------------


def test_store_prints_nothing_and_stores() -> None:
    backend = MemoryBackend()
    payload = '{"ServerURL":"registry.example:5000","Username":"alice","Secret":"pw"}'
    assert run("store", payload, backend) == (0, "")
    assert backend.entries == {"registry.example:5000": ("alice", "pw")}


def test_store_updates_an_existing_entry() -> None:
    backend = MemoryBackend({"r.example": ("old", "old-pw")})
    assert run("store", '{"ServerURL":"r.example","Username":"new","Secret":"new-pw"}', backend) == (0, "")
    assert backend.entries == {"r.example": ("new", "new-pw")}


def test_get_prints_go_json_exactly() -> None:
    backend = MemoryBackend({"registry.example:5000": ("alice", "pw")})
    code, out = run("get", "registry.example:5000", backend)
    assert code == 0
    assert out == '{"ServerURL":"registry.example:5000","Username":"alice","Secret":"pw"}\n'


def test_get_trims_whitespace_and_newline_like_the_reference() -> None:
    backend = MemoryBackend({"r.example": ("u", "s")})
    code, out = run("get", "  r.example\n", backend)
    assert (code, out) == (0, '{"ServerURL":"r.example","Username":"u","Secret":"s"}\n')
    assert backend.calls == [("get", "r.example")]


def test_get_escapes_html_characters_like_go() -> None:
    backend = MemoryBackend({"r.example": ("a<b>&c", "<&>")})
    code, out = run("get", "r.example", backend)
    assert code == 0
    assert out == (
        '{"ServerURL":"r.example","Username":"a\\u003cb\\u003e\\u0026c","Secret":"\\u003c\\u0026\\u003e"}\n'
    )


def test_get_keeps_non_ascii_as_utf8_and_escapes_line_separators() -> None:
    backend = MemoryBackend({"r.example": ("jürgen", 'p"w\\é\u2028\u2029\n')})
    code, out = run("get", "r.example", backend)
    assert code == 0
    assert out == ('{"ServerURL":"r.example","Username":"jürgen","Secret":"p\\"w\\\\é\\u2028\\u2029\\n"}\n')


def test_get_not_found_text_is_exact() -> None:
    code, out = run("get", "absent.example", MemoryBackend())
    assert (code, out) == (1, "credentials not found in native keychain\n")
    assert texts.NOT_FOUND == "credentials not found in native keychain"


def test_get_without_server_is_missing_server_url() -> None:
    for stdin in ("", "   \n", "\n"):
        assert run("get", stdin, MemoryBackend()) == (1, "no credentials server URL\n")


def test_erase_prints_nothing_and_erases() -> None:
    backend = MemoryBackend({"r.example": ("u", "s"), "other.example": ("v", "t")})
    assert run("erase", "r.example\n", backend) == (0, "")
    assert backend.entries == {"other.example": ("v", "t")}


def test_erase_of_absent_server_succeeds() -> None:
    assert run("erase", "absent.example", MemoryBackend()) == (0, "")


def test_erase_without_server_is_missing_server_url() -> None:
    assert run("erase", "", MemoryBackend()) == (1, "no credentials server URL\n")


def test_list_is_sorted_compact_escaped() -> None:
    backend = MemoryBackend(
        {
            "zeta.example": ("z", "1"),
            "https://index.docker.io/v1/": ("hub", "2"),
            "alpha.example:5000": ("<token>", "3"),
        }
    )
    code, out = run("list", "unused", backend)
    assert code == 0
    assert out == (
        '{"alpha.example:5000":"\\u003ctoken\\u003e","https://index.docker.io/v1/":"hub",'
        '"zeta.example":"z"}\n'
    )
    assert list(json.loads(out)) == sorted(json.loads(out))


def test_list_empty_is_an_empty_object() -> None:
    assert run("list", b"", MemoryBackend()) == (0, "{}\n")


def test_list_ignores_its_input() -> None:
    backend = MemoryBackend({"r.example": ("u", "s")})
    for stdin in (b"unused", b"", b"\xff\xfe not json", b"{"):
        assert run("list", stdin, backend) == (0, '{"r.example":"u"}\n')


def test_unknown_action_in_core() -> None:
    assert run("frobnicate", "x", MemoryBackend()) == (
        1,
        "docker-credential-regauth: unknown action: frobnicate\n",
    )


# --- how store payloads are decoded (as Go's encoding/json does) -----------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        '{"serverurl":"r.example","username":"u","secret":"s"}',
        '{"SERVERURL":"r.example","USERNAME":"u","SECRET":"s"}',
        '{"serverURL":"r.example","userName":"u","sEcReT":"s"}',
    ],
)
def test_field_names_match_case_insensitively(payload: str) -> None:
    backend = MemoryBackend()
    assert run("store", payload, backend) == (0, "")
    assert backend.entries == {"r.example": ("u", "s")}


def test_extra_fields_are_ignored() -> None:
    backend = MemoryBackend()
    payload = '{"ServerURL":"r.example","Username":"u","Secret":"s","Email":"e@x","Extra":{"a":[1,2]}}'
    assert run("store", payload, backend) == (0, "")
    assert backend.entries == {"r.example": ("u", "s")}


def test_null_secret_is_an_empty_secret() -> None:
    backend = MemoryBackend()
    assert run("store", '{"ServerURL":"r.example","Username":"u","Secret":null}', backend) == (0, "")
    assert backend.entries == {"r.example": ("u", "")}


def test_missing_secret_is_an_empty_secret() -> None:
    backend = MemoryBackend()
    assert run("store", '{"ServerURL":"r.example","Username":"u"}', backend) == (0, "")
    assert backend.entries == {"r.example": ("u", "")}


def test_lone_surrogate_becomes_replacement_character_like_go() -> None:
    backend = MemoryBackend()
    assert run("store", '{"ServerURL":"r.example","Username":"u","Secret":"a\\ud800b"}', backend) == (0, "")
    assert backend.entries == {"r.example": ("u", "a\ufffdb")}
    code, out = run("get", "r.example", backend)
    assert (code, out) == (0, '{"ServerURL":"r.example","Username":"u","Secret":"a\ufffdb"}\n')


def test_escaped_surrogate_pair_is_one_character() -> None:
    backend = MemoryBackend()
    assert run("store", '{"ServerURL":"r.example","Username":"u","Secret":"\\ud83d\\ude00"}', backend)[0] == 0
    assert backend.entries["r.example"] == ("u", "\U0001f600")


def test_identity_token_round_trips() -> None:
    backend = MemoryBackend()
    token = "eyJhbGciOiJSUzI1NiJ9.refresh-token-body.sig"
    payload = json.dumps({"ServerURL": "https://r.example", "Username": "<token>", "Secret": token})
    assert run("store", payload, backend) == (0, "")
    code, out = run("get", "https://r.example", backend)
    assert code == 0
    assert out == (
        '{"ServerURL":"https://r.example","Username":"\\u003ctoken\\u003e","Secret":"' + token + '"}\n'
    )
    assert json.loads(out) == {"ServerURL": "https://r.example", "Username": "<token>", "Secret": token}
    assert run("list", "unused", backend) == (0, '{"https://r.example":"\\u003ctoken\\u003e"}\n')


# --- errors: one line, exit 1, nothing stored -------------------------------------------------------

BAD_STORE_INPUT: list[tuple[str, bytes, str]] = [
    ("empty", b"", "no credentials on standard input (expected a JSON object)"),
    ("blank", b"  \n", "no credentials on standard input (expected a JSON object)"),
    ("invalid json", b'{"ServerURL": ', "invalid credentials JSON: "),
    (
        "not an object: array",
        b'["r.example","u","s"]',
        "invalid credentials JSON: expected an object, got an array",
    ),
    ("not an object: string", b'"r.example"', "invalid credentials JSON: expected an object, got a string"),
    ("not an object: number", b"5", "invalid credentials JSON: expected an object, got a number"),
    ("not an object: boolean", b"true", "invalid credentials JSON: expected an object, got a boolean"),
    # Go decodes null into the struct as nothing, and then finds no server.
    ("null", b"null", "no credentials server URL"),
    ("NaN is not JSON", b'{"ServerURL":"r","Username":"u","x":NaN}', "NaN is not a JSON value"),
    ("Infinity is not JSON", b'{"x":-Infinity}', "-Infinity is not a JSON value"),
    ("nested too deeply", b'{"x":' + b"[" * 100_000, "invalid credentials JSON: nested too deeply"),
    ("objects nested too deeply", b'{"a":' * 5_000, "invalid credentials JSON: nested too deeply"),
    ("trailing data", b'{"ServerURL":"r","Username":"u"} {', "invalid credentials JSON: Extra data"),
    ("number for a field", b'{"ServerURL":"r","Username":1e999}', "Username must be a string"),
    ("missing server", b'{"Username":"u","Secret":"s"}', "no credentials server URL"),
    ("empty server", b'{"ServerURL":"","Username":"u","Secret":"s"}', "no credentials server URL"),
    ("null server", b'{"ServerURL":null,"Username":"u","Secret":"s"}', "no credentials server URL"),
    ("missing username", b'{"ServerURL":"r.example","Secret":"s"}', "no credentials username"),
    ("empty username", b'{"ServerURL":"r.example","Username":"","Secret":"s"}', "no credentials username"),
    ("server not string", b'{"ServerURL":5,"Username":"u","Secret":"s"}', "ServerURL must be a string"),
    ("username not string", b'{"ServerURL":"r","Username":["u"],"Secret":"s"}', "Username must be a string"),
    ("secret not string", b'{"ServerURL":"r","Username":"u","Secret":{"a":1}}', "Secret must be a string"),
    ("secret bool", b'{"ServerURL":"r","Username":"u","Secret":true}', "Secret must be a string"),
    ("non-utf8", b'{"ServerURL":"r","Username":"u\xff","Secret":"s"}', "input is not valid UTF-8 (byte 30)"),
    ("too large", b" " * (texts.MAX_INPUT_BYTES + 1), f"input is larger than {texts.MAX_INPUT_BYTES} bytes"),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [c[1:] for c in BAD_STORE_INPUT], ids=[c[0] for c in BAD_STORE_INPUT]
)
def test_bad_store_input_is_one_line_exit_1_and_stores_nothing(raw: bytes, expected: str) -> None:
    backend = MemoryBackend({"keep.example": ("k", "kept")})
    code, out = run("store", raw, backend)
    assert code == 1
    assert out.endswith("\n") and out.count("\n") == 1
    assert expected in out
    assert backend.entries == {"keep.example": ("k", "kept")}
    assert [c for c in backend.calls if c[0] == "store"] == []


def test_missing_field_texts_are_exact() -> None:
    assert run("store", '{"Username":"u"}', MemoryBackend()) == (1, "no credentials server URL\n")
    assert run("store", '{"ServerURL":"r"}', MemoryBackend()) == (1, "no credentials username\n")
    assert texts.MISSING_SERVER_URL == "no credentials server URL"
    assert texts.MISSING_USERNAME == "no credentials username"


@pytest.mark.parametrize("action", ["get", "erase"])
def test_bad_bytes_for_get_and_erase(action: str) -> None:
    backend = MemoryBackend({"r.example": ("u", "s")})
    assert run(action, b"r.example\xff", backend) == (1, "input is not valid UTF-8 (byte 9)\n")
    too_big = b"r" * (texts.MAX_INPUT_BYTES + 1)
    assert run(action, too_big, backend) == (1, f"input is larger than {texts.MAX_INPUT_BYTES} bytes\n")
    assert backend.entries == {"r.example": ("u", "s")}
    assert backend.calls == []


def test_backend_error_is_one_line_and_exit_1() -> None:
    backend = FailingBackend()
    code, out = run("store", '{"ServerURL":"r","Username":"u","Secret":"topsecret"}', backend)
    assert code == 1
    assert out == "the secret store /x/secrets.enc is damaged: test; it was left untouched\n"
    assert "topsecret" not in out
    code, out = run("get", "r", backend)
    assert (code, out) == (1, "the secret store /x/secrets.enc is damaged: test; it was left untouched\n")


class ChattyBackend(MemoryBackend):
    def get(self, server_url: str) -> tuple[str, str]:
        # A keyring or D-Bus error passes its own text on: it may hold a newline or a terminal escape.
        raise StoreError("the keyring refused: org.freedesktop.DBus.Error\n\x1b[2Jok")


def test_a_backend_error_with_control_characters_is_still_one_line() -> None:
    code, out = run("get", "r", ChattyBackend())
    assert (code, out) == (1, "the keyring refused: org.freedesktop.DBus.Error \\x1b[2Jok\n")


def test_go_json_matches_go_encoding() -> None:
    assert go_json({}) == "{}\n"
    assert go_json({"a": "<>&"}) == '{"a":"\\u003c\\u003e\\u0026"}\n'
    assert go_json({"k": "tab\tcr\r\x01"}) == '{"k":"tab\\tcr\\r\\u0001"}\n'
    # Go 1.22 and later; the Debian reference helper (older Go) writes \u0008 and \u000c.
    assert go_json({"k": "\b\f"}) == '{"k":"\\b\\f"}\n'


# --- Go's encoding/json, field by field: what the reference helper's struct ends up holding ----------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # Each pair is assigned in turn, whatever the spelling: the last one wins.
        ('{"ServerURL":"r","Username":"u","secret":"a","Secret":"b","secret":"c"}', ("u", "c")),
        ('{"ServerURL":"r","Username":"a","USERNAME":"b"}', ("b", "")),
        # null leaves a string field as it was.
        ('{"ServerURL":"r","Username":"u","Secret":"a","Secret":null}', ("u", "a")),
        ('{"ServerURL":"r","Username":"u","username":null}', ("u", "")),
        # Unicode simple folding: a long s matches "s".
        ('{"ServerURL":"r","U\u017fername":"u","\u017fecret":"x"}', ("u", "x")),
        # A number in a field nobody reads is skipped, however long; deep nesting within Go's limit too.
        ('{"ServerURL":"r","Username":"u","n":' + "1" * 5000 + "}", ("u", "")),
        ('{"ServerURL":"r","Username":"u","n":1e999,"x":' + "[" * 300 + "]" * 300 + "}", ("u", "")),
    ],
)
def test_store_decodes_fields_as_go_does(payload: str, expected: tuple[str, str]) -> None:
    backend = MemoryBackend()
    assert run("store", payload, backend) == (0, "")
    assert backend.entries == {"r": expected}


def test_go_json_output_is_valid_utf8_like_go() -> None:
    # Go coerces strings to valid UTF-8 when it encodes; a lone surrogate must not fail the write.
    out = go_json({"ServerURL": "r\udcff", "Secret": "a\ud800b"})
    assert out == '{"ServerURL":"r\ufffd","Secret":"a\ufffdb"}\n'
    out.encode("utf-8")


def test_unknown_action_is_printed_escaped() -> None:
    # argv is the user's, but a terminal must not run what it holds.
    assert run("\x1b[2Jok\r", "", MemoryBackend()) == (
        1,
        "docker-credential-regauth: unknown action: \\x1b[2Jok\\x0d\n",
    )
