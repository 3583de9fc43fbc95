"""The helper fuzzed against the reference: Debian's Go ``docker-credential-pass``.

Whatever JSON a client sends to ``store``, regauth accepts it exactly when the reference helper does,
and reads the same three fields from it (Go's encoding/json: field names folded, the last spelling
wins, null leaves a field alone, numbers of any size skipped, NaN refused); ``get`` answers the same
bytes. The reference runs against a real ``pass`` store with a throw-away GnuPG key in a scratch
directory; it is the oracle, so what it answers is learnt from it (store, list, get, erase).

Deliberate differences, kept out of the generated inputs and pinned below: regauth refuses bytes that
are not UTF-8 (Go replaces them), data after the JSON object (Go reads the first value and ignores
the rest), and raw line breaks (Go's line scanner drops them before decoding, in ``get``'s server
too); it accepts a line longer than 64 KiB, up to its 1 MiB input limit (Go's scanner stops at 64
KiB: a large identity token would not fit).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fuzz.targets import examples, run_in_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regauth.errors import UsageError
from regauth.helper.protocol import decode_input, parse_credentials

REFERENCE = "docker-credential-pass"
TIMEOUT = 60

Run = Callable[[str, bytes], tuple[int, str]]
Fields = tuple[str, str, str]


@pytest.fixture(scope="module")
def reference() -> Iterator[Run]:
    """``docker-credential-pass <action>`` over a fresh pass store; fails, never skips, without it."""
    root = Path(tempfile.mkdtemp(prefix="regauth-pass-"))
    gnupg = root / "g"
    gnupg.mkdir(mode=0o700)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(root),
        "GNUPGHOME": str(gnupg),
        "PASSWORD_STORE_DIR": str(root / "store"),
        "LANG": "C.UTF-8",
    }

    def setup(*argv: str) -> str:
        return subprocess.run(argv, env=env, check=True, capture_output=True, timeout=TIMEOUT).stdout.decode()

    uid = "regauth test <test@regauth.invalid>"
    gen_key = ("gpg", "--batch", "--passphrase", "", "--pinentry-mode", "loopback", "--quick-gen-key")
    setup(*gen_key, uid, "future-default", "default", "never")
    keys = setup("gpg", "--batch", "--with-colons", "--list-keys", uid)
    fingerprint = next(line.split(":")[9] for line in keys.splitlines() if line.startswith("fpr:"))
    setup("pass", "init", fingerprint)

    def run(action: str, stdin: bytes) -> tuple[int, str]:
        proc = subprocess.run(
            [REFERENCE, action], input=stdin, env=env, capture_output=True, timeout=TIMEOUT, check=False
        )
        return proc.returncode, proc.stdout.decode()

    try:
        yield run
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def go_fields(run: Run, payload: bytes) -> Fields | None:
    """What the reference stored for ``payload``, or None when it refused it."""
    code, out = run("store", payload)
    if code != 0:
        return None
    code, out = run("list", b"")
    assert code == 0, out
    ((server, _),) = json.loads(out).items()
    code, out = run("get", server.encode())
    assert code == 0, out
    answer = json.loads(out)
    assert run("erase", server.encode())[0] == 0
    return server, answer["Username"], answer["Secret"]


def regauth_fields(payload: bytes) -> Fields | None:
    try:
        return parse_credentials(decode_input(payload))
    except UsageError:
        return None


# Values a pass store keeps as they are (pass makes files of the server and the username, so no "/",
# no dot names, no spaces that its `get` would trim); the JSON around them is where the variety is.
_SAFE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=8).filter(
    lambda s: s.strip(".") != ""
)
_STRING = st.one_of(
    _SAFE,
    _SAFE.map(lambda s: s + "\u00e9"),
    _SAFE.map(lambda s: s + "\ud800"),
    _SAFE.map(lambda s: s + "\U0001f600"),
    _SAFE.map(lambda s: s + "<&>"),
)
_VALUE = st.one_of(
    _STRING,
    st.sampled_from([None, 0, -1, 1.5e3, 1e999, True, False, [], {}, ["x", None], {"ServerURL": "n"}]),
    st.just(int("9" * 400)),
)
_KEY = st.sampled_from(
    [
        "ServerURL",
        "serverURL",
        "SERVERURL",
        "\u017ferverurl",
        "Username",
        "userName",
        "U\u017fERNAME",
        "Secret",
        "secret",
        "\u017fecret",
        "Email",
        "",
        "ServerURL ",
        "K\u212a",
    ]
)


def _render(pairs: list[tuple[str, object]], ascii_only: bool, space: str) -> bytes:
    body = f",{space}".join(
        f"{json.dumps(key, ensure_ascii=ascii_only)}:{space}{json.dumps(value, ensure_ascii=ascii_only)}"
        for key, value in pairs
    )
    return ("{" + space + body + space + "}").encode("utf-8", "surrogatepass")


_PAYLOAD = st.builds(
    lambda head, pairs, ascii_only, space: _render(head + pairs, ascii_only, space),
    st.one_of(st.just([]), st.tuples(_SAFE, _SAFE).map(lambda t: [("ServerURL", t[0]), ("Username", t[1])])),
    st.lists(st.tuples(_KEY, _VALUE), max_size=5),
    st.booleans(),
    st.sampled_from(["", " ", "\t"]),
).filter(lambda raw: _valid_utf8(raw))


def _valid_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(
    max_examples=examples(20, cost=30), deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)
@given(_PAYLOAD)
def test_store_decodes_what_the_reference_decodes(reference: Run, payload: bytes) -> None:
    assert regauth_fields(payload) == go_fields(reference, payload)


PINNED = [
    b'{"ServerURL":"r","Username":"u","secret":"a","Secret":"b","secret":"c"}',
    b'{"ServerURL":"r","Username":"u","Secret":"a","Secret":null}',
    b'{"ServerURL":"r","U\xc5\xbfername":"u"}',
    b'{"ServerURL":"r","Username":"u","n":' + b"1" * 5000 + b"}",
    b'{"ServerURL":"r","Username":"u","n":1e999}',
    b'{"ServerURL":"r","Username":"u","n":NaN}',
    b'{"ServerURL":"r","Username":"u","n":-Infinity}',
    b'{"ServerURL":"r","Username":"u","x":' + b"[" * 300 + b"]" * 300 + b"}",
    b'{"ServerURL":"r","Username":"u","Secret":"\\ud800\\udc00\\udc00"}',
    b'{"ServerURL":"r","Username":5}',
    b'{"ServerURL":"r","Username":""}',
    b'{"ServerURL":"","Username":"u"}',
    b'{"ServerURL":"r"',
    b"null",
    b"[]",
    b'"r"',
    b"",
]


@pytest.mark.parametrize("payload", PINNED, ids=range(len(PINNED)))
def test_pinned_payloads_as_the_reference(reference: Run, payload: bytes) -> None:
    assert regauth_fields(payload) == go_fields(reference, payload)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"ServerURL":"r","Username":"u"} trailing',
        b'{"ServerURL":"r","Username":"u\xff"}',
        b'{"ServerURL":"r","User\nname":"u"}',
    ],
)
def test_deliberate_differences(reference: Run, payload: bytes) -> None:
    """The reference accepts these; regauth refuses them with one line rather than guess."""
    assert go_fields(reference, payload) is not None
    assert regauth_fields(payload) is None


def test_a_line_longer_than_go_scans_is_accepted(reference: Run) -> None:
    payload = json.dumps({"ServerURL": "r", "Username": "u", "Secret": "s" * 70_000}).encode()
    assert reference("store", payload) == (1, "bufio.Scanner: token too long\n")
    assert regauth_fields(payload) == ("r", "u", "s" * 70_000)


@pytest.mark.parametrize(
    "stdin",
    [
        b"r.example",
        b"r.example\n",
        b" \tr.example\r\n",
        "\u00a0r.example\u2028\u0085".encode(),
        "r.example\u3000\u2029".encode(),
    ],
)
def test_get_trims_its_input_as_the_reference(reference: Run, stdin: bytes) -> None:
    """Go's TrimSpace and Python's strip agree on these; the answer is the same bytes."""
    payload = json.dumps({"ServerURL": "r.example", "Username": "u<&>", "Secret": "s\u00e9"}).encode()
    assert reference("store", payload) == (0, "")
    seed = run_in_process("store", payload)
    assert (seed.code, seed.out) == (0, "")
    try:
        ours = run_in_process("get", stdin)
        assert (ours.code, ours.out) == reference("get", stdin)
        assert ours.code == 0
    finally:
        reference("erase", b"r.example")


# Any text but what the pass backend changes: it trims the secret file's surrounding white space.
def test_get_refuses_a_server_split_over_lines(reference: Run) -> None:
    """Deliberate: Go's line scanner joins "r.exa" and "mple" into "r.example"; regauth names no such
    host and says so on one line rather than answer for a server the client did not write."""
    payload = json.dumps({"ServerURL": "r.example", "Username": "u", "Secret": "s"}).encode()
    assert reference("store", payload) == (0, "")
    assert run_in_process("store", payload).code == 0
    try:
        assert reference("get", b"r.exa\nmple")[0] == 0
        ours = run_in_process("get", b"r.exa\nmple")
        assert ours.code == 1 and ours.out.count("\n") == 1
    finally:
        reference("erase", b"r.example")


_ANY_SECRET = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\b\f\r\n"), min_size=1, max_size=40
).filter(lambda s: s == s.strip())
# Printable ASCII without "/" or a name of dots (pass makes a file of it) and ":" (refused by regauth).
_PLAIN_USERNAME = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/:"), min_size=1
).filter(lambda s: s.strip(".") != "")


@settings(max_examples=examples(20, cost=30), deadline=None)
@given(_ANY_SECRET, _PLAIN_USERNAME)
def test_get_answers_the_same_bytes_as_the_reference(reference: Run, secret: str, username: str) -> None:
    """go_json against Go itself. (Go before 1.22, as in this reference, writes \\b and \\f as
    \\u0008 and \\u000c; since 1.22 as \\b and \\f, which is what regauth writes.)"""
    payload = json.dumps({"ServerURL": "r.example", "Username": username, "Secret": secret}).encode()
    assert reference("store", payload) == (0, "")
    stored = run_in_process("store", payload)
    assert (stored.code, stored.out) == (0, "")
    try:
        ours = run_in_process("get", b"r.example")
        assert (ours.code, ours.out) == reference("get", b"r.example")
    finally:
        reference("erase", b"r.example")
