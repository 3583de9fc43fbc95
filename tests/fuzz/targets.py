"""The fuzz targets: what "nothing but regauth's own errors comes out, whatever the input" means.

Each ``check_*`` takes one input, runs one parser or the helper on it, and raises ``AssertionError``
(or lets a foreign exception through) when the input breaks the contract. The property tests
(``tests/test_fuzz_*.py``, hypothesis, a few hundred inputs) and the coverage-guided fuzzer
(``tests/fuzz/fuzz.py``, atheris, as long as it is let run) call the same checks, so a rule is written
once and a crash found by either is a test the other can run.

Nothing here may touch the real credentials of whoever runs it: ``isolate`` points every regauth path
at a scratch directory before the helper check runs (pytest's conftest does the same for the tests).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from regauth.config import load_settings
from regauth.distribution.challenge import Challenge, parse_challenges
from regauth.errors import RegauthError, UsageError
from regauth.helper import main as helper_main
from regauth.helper import texts
from regauth.helper.gojson import go_json
from regauth.providers.routing import cloud_for
from regauth.reference import PATH_MAX, TAG_MAX, parse_reference
from regauth.servers import normalize_registry

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# A quoted input is shortened to ~60 characters in a message, so no message is long whatever the input.
MESSAGE_MAX = 400


def examples(default: int, *, cost: int = 1) -> int:
    """Hypothesis examples for a property: ``default`` in the suite, more with ``FUZZ_EXAMPLES=N``
    (divided by ``cost`` for a property that starts processes, so one N suits every file)."""
    wanted = os.environ.get("FUZZ_EXAMPLES", "").strip()
    return max(default, int(wanted) // cost) if wanted.isdigit() else default


# --- WWW-Authenticate --------------------------------------------------------------------------------


def check_challenge(header: str) -> list[Challenge]:
    """The parser never raises; what it returns is well formed and survives rendering and re-parsing."""
    parsed = parse_challenges(header)
    for challenge in parsed:
        assert isinstance(challenge, Challenge)
        assert _is_token(challenge.scheme) and challenge.scheme == challenge.scheme.lower()
        assert challenge.token68 is None or (isinstance(challenge.token68, str) and challenge.token68)
        for name, value in challenge.params.items():
            assert _is_token(name) and name == name.lower()
            assert isinstance(value, str)
    # Nothing the grammar keeps is changed or invented by a second pass over its own rendering.
    assert parse_challenges(render_challenges(parsed)) == parsed
    return parsed


def render_challenges(challenges: list[Challenge]) -> str:
    """Challenges as a server would send them: quoted values with backslash escapes."""
    return ", ".join(_render(challenge) for challenge in challenges)


def _render(challenge: Challenge) -> str:
    params = [
        f'{name}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for name, value in challenge.params.items()
    ]
    head = challenge.scheme + (f" {challenge.token68}" if challenge.token68 else "")
    if not params:
        return head
    return head + (", " if challenge.token68 else " ") + ", ".join(params)


def _is_token(text: str) -> bool:
    return bool(text) and all(char in _TCHAR for char in text)


# --- image references --------------------------------------------------------------------------------


def check_reference(text: str) -> None:
    """A reference parses and round-trips, or fails with one short printable ``UsageError`` line."""
    try:
        ref = parse_reference(text)
    except RegauthError as exc:
        assert type(exc) is UsageError, type(exc)
        _check_message(str(exc))
        return
    assert len(ref.path) <= PATH_MAX
    assert ref.tag is None or 0 < len(ref.tag) <= TAG_MAX
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar()) == ref
    assert parse_reference(ref.name) == ref._replace(tag=None, digest=None)


def _check_message(message: str) -> None:
    # Escaped control characters: a hostile string cannot forge a line or drive the terminal.
    assert message and message.isascii() and message.isprintable(), repr(message)
    assert len(message) <= MESSAGE_MAX, len(message)


# --- the credential helper's stdin -------------------------------------------------------------------

ACTIONS = ("get", "store", "erase", "list")
KEEP_SERVER = "keep.example"
KEEP = {"ServerURL": KEEP_SERVER, "Username": "keeper", "Secret": "kept-secret"}


class HelperRun:
    """One run of ``docker-credential-regauth <action>``: exit code, stdout, stderr."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"HelperRun({self.code!r}, {self.out!r}, {self.err!r})"


Runner = Callable[[str, bytes], HelperRun]


def run_in_process(action: str, stdin: bytes) -> HelperRun:
    """``helper.main`` with real streams swapped for buffers: the whole edge, argv to exit code."""
    saved = sys.stdin, sys.stdout, sys.stderr
    # Byte-backed UTF-8 like the real stdout, so a string that cannot be written fails here too.
    out_bytes = io.BytesIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", newline="\n", write_through=True)
    err = io.StringIO()
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    sys.stdout, sys.stderr = out, err
    try:
        code = helper_main.main([action])
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    return HelperRun(code, out_bytes.getvalue().decode("utf-8"), err.getvalue())


def process_runner(exe: str, env: Mapping[str, str] | None = None) -> Runner:
    """Runs the installed script, as the Docker CLI does."""

    def run(action: str, stdin: bytes) -> HelperRun:
        proc = subprocess.run(
            [exe, action],
            input=stdin,
            capture_output=True,
            timeout=60,
            env=None if env is None else dict(env),
            check=False,
        )
        return HelperRun(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    return run


def seed_store(run: Runner = run_in_process) -> None:
    """A credential that no failing verb may lose: every helper check starts from it."""
    result = run("store", json.dumps(KEEP).encode())
    assert (result.code, result.out) == (0, ""), result


def check_helper(
    action: str, stdin: bytes, run: Runner = run_in_process, *, control: Runner = run_in_process
) -> HelperRun | None:
    """One verb on arbitrary stdin: the protocol's answer, or one line and exit 1 with nothing lost.

    None, with nothing run, for a ``get`` that would reach a cloud (see ``reaches_a_cloud``).

    ``run`` runs the verb under test; ``control`` (in-process, so cheap) lists the store before and
    after, reads back what a ``store`` stored, and puts the store back to its seeded state, so inputs
    do not pile up records.
    """
    if action == "get" and reaches_a_cloud(stdin):
        return None
    before = _listing(control)
    if before.get(KEEP_SERVER) != KEEP["Username"]:
        seed_store(control)
        before = _listing(control)
    result = run(action, stdin)
    assert "Traceback" not in result.out + result.err, result
    assert result.code in (0, 1), result
    if result.code == 1:
        _check_error_line(result.out)
        if action == "store":
            _check_secret_not_echoed(stdin, result)
        assert _listing(control) == before, "a failing verb changed the store"
        assert _kept_secret(control) == KEEP["Secret"], "a failing verb changed a secret"
    elif action == "get":
        _check_get_answer(stdin, result.out)
    elif action == "list":
        assert result.out == go_json(dict(sorted(before.items())))
    else:
        assert result.out == "", result
        if action == "store":
            _check_stored(stdin, control)
    _restore(before, control)
    return result


def _check_error_line(out: str) -> None:
    # Serve prints the error with Println: one line, and clients compare its text (NOT_FOUND).
    assert out.endswith("\n") and out.count("\n") == 1, repr(out)
    line = out[:-1]
    assert line and line == " ".join(line.split()), repr(out)


def _check_secret_not_echoed(stdin: bytes, result: HelperRun) -> None:
    try:
        sent = _go_decode(stdin)
    except (ValueError, RecursionError):
        return
    secret = sent[texts.FIELD_SECRET]
    others = sent[texts.FIELD_SERVER_URL] + sent[texts.FIELD_USERNAME]
    if len(secret) >= 6 and secret not in others:
        assert secret not in result.out + result.err, "an error echoed the secret"


def _check_get_answer(stdin: bytes, out: str) -> None:
    assert out.endswith("}\n") and out.count("\n") == 1, repr(out)
    answer = json.loads(out)
    assert list(answer) == [texts.FIELD_SERVER_URL, texts.FIELD_USERNAME, texts.FIELD_SECRET]
    assert all(isinstance(value, str) for value in answer.values())
    assert answer[texts.FIELD_SERVER_URL] == stdin.decode("utf-8").strip()
    assert answer[texts.FIELD_USERNAME]
    assert out == go_json(answer)


def _check_stored(stdin: bytes, run: Runner) -> None:
    """What ``store`` accepted, ``get`` gives back for the same ServerURL (as Go decoded it)."""
    sent = _go_decode(stdin)
    server = sent[texts.FIELD_SERVER_URL]
    got = run("get", server.encode())
    assert got.code == 0, got
    answer = json.loads(got.out)
    assert answer[texts.FIELD_USERNAME] == sent[texts.FIELD_USERNAME]
    assert answer[texts.FIELD_SECRET] == sent[texts.FIELD_SECRET]
    assert not sent[texts.FIELD_SECRET] or sent[texts.FIELD_SECRET] not in got.err


class _Pairs(list[tuple[str, Any]]):
    """A JSON object's pairs in order (duplicates kept), told apart from an array."""


def _go_decode(stdin: bytes) -> dict[str, str]:
    """The three fields as Go's encoding/json fills them: the last spelling in any case wins, null
    leaves a field as it was, a lone surrogate escape is U+FFFD. ValueError where Go fails."""
    fields = {texts.FIELD_SERVER_URL: "", texts.FIELD_USERNAME: "", texts.FIELD_SECRET: ""}
    wanted = {name.lower(): name for name in fields}
    pairs = json.loads(stdin, object_pairs_hook=_Pairs, parse_int=lambda _: 0)
    if not isinstance(pairs, _Pairs):
        raise ValueError("not an object")
    for key, value in pairs:
        name = wanted.get(key.lower().replace("\u017f", "s"))
        if name is None or value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{name} is not a string")
        fields[name] = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
    return fields


def _listing(run: Runner) -> dict[str, str]:
    result = run("list", b"")
    assert result.code == 0, result
    listing = json.loads(result.out)
    assert isinstance(listing, dict) and all(isinstance(v, str) for v in listing.values())
    return listing


def _restore(before: dict[str, str], run: Runner) -> None:
    now = _listing(run)
    for server in now:
        if now[server] != before.get(server):
            run("erase", server.encode())
    if _kept_secret(run) != KEEP["Secret"]:
        seed_store(run)


def _kept_secret(run: Runner) -> str | None:
    got = run("get", KEEP_SERVER.encode())
    return str(json.loads(got.out)[texts.FIELD_SECRET]) if got.code == 0 else None


def reaches_a_cloud(stdin: bytes) -> bool:
    """Whether a ``get`` of this stdin would ask a cloud SDK, which looks for credentials on the network
    (instance metadata): such inputs are left to the providers' own tests, which fake the endpoints."""
    try:
        host = normalize_registry(stdin.decode("utf-8"))
    except (UsageError, UnicodeDecodeError):
        return False
    # Which cloud a host is comes from its name alone: an empty environment is as good as any.
    return cloud_for(load_settings({}), host) is not None


# --- the environment of a fuzzing run ----------------------------------------------------------------

_STRIP_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_", "REGAUTH_", "DOCKER_", "CLOUDSDK_", "CI_", "GITHUB_")


def isolate(scratch: str) -> None:
    """Point HOME, the XDG dirs and the store at ``scratch``: a fuzzer never reaches real credentials."""
    for name in list(os.environ):
        if name.startswith(_STRIP_PREFIXES):
            del os.environ[name]
    os.environ["HOME"] = scratch
    for var, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_STATE_HOME", ".local/state"),
    ):
        os.environ[var] = os.path.join(scratch, sub)
    os.environ["DOCKER_CONFIG"] = os.path.join(scratch, ".docker")
    os.environ["REGAUTH_STORE"] = "file"


# --- work, counted rather than timed -----------------------------------------------------------------


def line_events(function: Callable[[str], object], text: str) -> int:
    """How many Python lines ``function(text)`` runs: a deterministic measure of its work.

    Doubling a long adversarial input must roughly double this number; a quadratic loop (or a
    backtracking matcher written in Python) shows as four times as many, with no clock involved.
    """
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        function(text)
    except RegauthError:
        pass
    finally:
        sys.settrace(previous)
    return count
