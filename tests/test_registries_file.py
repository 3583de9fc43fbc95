"""A malformed ``registries.json`` is one line naming the file everywhere: the CLI, the helper (whose fast
``get`` declines and leaves the error to the general path) and the proxy's start, never a traceback, a
500 or a ``Username`` that is not a string. Then a property test: whatever the file holds, JSON or
bytes, the loader gives well-typed records or regauth's own ``ConfigError``, and the fast ``get``
answers only where the general path would answer the same."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from regauth.config import Settings, load_settings
from regauth.errors import ConfigError, RegauthError
from regauth.helper.backend import RegauthBackend
from regauth.helper.fastget import answer
from regauth.helper.protocol import serve
from regauth.layout import RECORD_TYPES
from regauth.registries import PROVIDERS, Registry, RegistryBook
from regauth.store import open_store

HOST = "registry.example"
TIMEOUT = 60


def good_entry(**fields: Any) -> dict[str, Any]:
    return {"id": "0123456789abcdef", "name": "reg", "registry": HOST, "username": "u", **fields}


def file_of(*entries: Any, **top: Any) -> bytes:
    return json.dumps({"version": 1, "registries": list(entries), **top}).encode()


MALFORMED: dict[str, bytes] = {
    "not JSON": b"{not json",
    "empty": b"",
    "not UTF-8": b'{"registries": ["\xff\xfe"]}',
    "nested deeply": b"[" * 100_000 + b"]" * 100_000,
    "nested deeply in an entry": b'{"registries": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}",
    "a list": b"[]",
    "a string": b'"registries"',
    "no registries": b'{"version": 1}',
    "registries an object": b'{"version": 1, "registries": {}}',
    "an entry a string": file_of("reg"),
    "an entry a list": file_of([good_entry()]),
    "username a number": file_of(good_entry(username=123)),
    "username an object": file_of(good_entry(username={"a": "b"})),
    "username true": file_of(good_entry(username=True)),
    "name a number": file_of(good_entry(name=7)),
    "no registry": file_of({"id": "x", "name": "n"}),
    "insecure a string": file_of(good_entry(insecure="yes")),
    "insecure 1": file_of(good_entry(insecure=1)),
    "options a list": file_of(good_entry(options=["region=x"])),
    "an option a number": file_of(good_entry(options={"region": 1})),
    "an option nested": file_of(good_entry(options={"region": {"a": [1]}})),
    "an unknown field": file_of(good_entry(colour="blue")),
    "an unknown provider": file_of(good_entry(provider="nope")),
    "a lone surrogate": b'{"version": 1, "registries": [{"id": "x", "name": "\\ud800", "registry": "r"}]}',
    "version 2": file_of(good_entry(), version=2),
    "version true": file_of(good_entry(), version=True),
    "version a string": file_of(good_entry(), version="1"),
}


def write(settings: Settings, content: bytes) -> None:
    settings.registries_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.registries_file.write_bytes(content)


def helper_in_process(settings: Settings, action: str, stdin: bytes) -> tuple[int, str]:
    out = io.StringIO()
    backend = RegauthBackend.for_settings(settings, stderr=io.StringIO())
    return serve(action, stdin, out, backend), out.getvalue()


def assert_one_line_naming(text: str, path: Path) -> None:
    assert len(text.splitlines()) == 1 and text.endswith("\n"), text[:500]
    assert str(path) in text and "Traceback" not in text


@pytest.fixture
def with_secret(settings: Settings) -> Settings:
    """A real store with the secret of the record every malformed file is a variant of."""
    book = RegistryBook.for_settings(settings)
    book.add(Registry(id="", name="reg", registry=HOST, username="u"), "pw")
    return settings


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_file_is_one_line_naming_it(case: str, with_secret: Settings) -> None:
    settings = with_secret
    write(settings, MALFORMED[case])
    with pytest.raises(ConfigError) as info:
        RegistryBook.for_settings(settings).all()
    assert str(settings.registries_file) in str(info.value) and "\n" not in str(info.value)
    assert answer(HOST.encode(), os.environ) is None
    for action, stdin in (("get", HOST.encode()), ("list", b"unused"), ("erase", HOST.encode())):
        code, out = helper_in_process(settings, action, stdin)
        assert code == 1
        assert_one_line_naming(out, settings.registries_file)
    assert settings.registries_file.read_bytes() == MALFORMED[case]


REAL_PROCESS_CASES = ["username a number", "nested deeply", "not JSON", "an option nested"]


@pytest.mark.parametrize("case", REAL_PROCESS_CASES)
def test_the_real_cli_and_helper_say_one_line(
    case: str, with_secret: Settings, regauth_exe: str, helper_exe: str
) -> None:
    settings = with_secret
    write(settings, MALFORMED[case])
    runs = {
        "cli list": ([regauth_exe, "registry", "list"], "", "stderr"),
        "cli validate": ([regauth_exe, "registry", "validate", "--all"], "", "stderr"),
        "cli add": (
            [regauth_exe, "registry", "add", "x", "--url", "x.example", "--no-validate"],
            "",
            "stderr",
        ),
        "helper get": ([helper_exe, "get"], HOST, "stdout"),
        "helper list": ([helper_exe, "list"], "unused", "stdout"),
        "helper store": (
            [helper_exe, "store"],
            json.dumps({"ServerURL": HOST, "Username": "u", "Secret": "s"}),
            "stdout",
        ),
    }
    for name, (argv, stdin, channel) in runs.items():
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 1, (name, done)
        assert_one_line_naming(getattr(done, channel), settings.registries_file)
        assert "Traceback" not in done.stderr, name
    assert settings.registries_file.read_bytes() == MALFORMED[case]


def test_the_proxy_refuses_to_start_on_a_malformed_file(with_secret: Settings, regauth_exe: str) -> None:
    from support.registry import free_port

    write(with_secret, MALFORMED["username a number"])
    done = subprocess.run(
        [regauth_exe, "proxy", "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 1
    assert_one_line_naming(done.stderr, with_secret.registries_file)


# --- property: nothing but regauth's own errors, whatever the file holds ---------------------------

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
)
# Entries close to real ones (valid, or valid but for one field), so that the search reaches the
# field checks and whole files pass often enough to compare the fast get with the general path.
_TEXT = st.text(max_size=12)
_TYPED = {
    str: _TEXT,
    type(None): st.none(),
    bool: st.booleans(),
    dict: st.dictionaries(_TEXT, _TEXT, max_size=3),
}
_VALID_ENTRY = st.fixed_dictionaries(
    {"id": st.just("0123456789abcdef"), "name": st.just("reg"), "registry": st.just(HOST) | _TEXT},
    optional={
        **{
            field: st.one_of(*(_TYPED[t] for t in types))
            for field, types in RECORD_TYPES.items()
            if field not in ("id", "name", "registry", "provider")
        },
        "provider": st.sampled_from(PROVIDERS) | _TEXT,
    },
)
_MUTATED_ENTRY = st.builds(
    lambda entry, field, value: {**entry, field: value},
    _VALID_ENTRY,
    st.sampled_from([*RECORD_TYPES, "extra"]),
    _JSON,
)
_ENTRIES = _VALID_ENTRY | _MUTATED_ENTRY | _JSON
_FILES = (
    st.builds(
        lambda entries, version: file_of(*entries, version=version),
        st.lists(_ENTRIES, max_size=3),
        st.just(1) | _JSON,
    )
    | _JSON.map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=64)
)


def _check_loader(settings: Settings, content: bytes) -> None:
    write(settings, content)
    try:
        records = RegistryBook.for_settings(settings).all()
    except ConfigError as exc:
        assert str(settings.registries_file) in str(exc) and "\n" not in str(exc)
        assert answer(HOST.encode(), os.environ) is None
        return
    for record in records:
        for field, types in RECORD_TYPES.items():
            assert type(getattr(record, field)) in types, (field, record)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in record.options.items())
        record.to_json()
        json.dumps(record.to_json()).encode("utf-8")
    # Where the general path answers, the fast get gives the same bytes or declines.
    code, general = helper_in_process(settings, "get", HOST.encode())
    fast = answer(HOST.encode(), os.environ)
    assert fast is None or (code == 0 and fast == general)
    code, listed = helper_in_process(settings, "list", b"unused")
    if code == 0:
        assert all(isinstance(v, str) for v in json.loads(listed).values())


# A few hundred in the suite; FUZZ_EXAMPLES=20000 for a longer search (the README has the command).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))


@hsettings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=_FILES)
def test_the_loader_gives_records_or_its_own_error(content: bytes) -> None:
    settings = load_settings()
    # One store for every example (the isolated HOME is per test, not per example).
    store = open_store(settings)
    if store.get("registry/0123456789abcdef") is None:
        store.set("registry/0123456789abcdef", "pw")
    try:
        _check_loader(settings, content)
    except RegauthError as exc:
        # Only ConfigError may come from a malformed file; anything else is a bug in the test set-up.
        raise AssertionError(f"unexpected {type(exc).__name__}: {exc}") from exc
