"""``docker-credential-regauth`` as clients run it: the installed script, stdin, stdout, exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from regauth.config import Settings
from regauth.helper import texts
from regauth.registries import RegistryBook, stored_secret
from regauth.store import open_store

TIMEOUT = 60


def helper(
    exe: str, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    proc = subprocess.run(
        [exe, *args],
        input=stdin,
        capture_output=True,
        timeout=TIMEOUT,
        env=dict(os.environ) if env is None else env,
        check=False,
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def store(exe: str, server: str, username: str, secret: str) -> None:
    payload = json.dumps({"ServerURL": server, "Username": username, "Secret": secret}).encode()
    code, out, err = helper(exe, "store", stdin=payload)
    assert (code, out) == (0, ""), err


def get(exe: str, server: str) -> tuple[int, str]:
    code, out, _ = helper(exe, "get", stdin=server.encode())
    return code, out


def listing(exe: str) -> dict[str, str]:
    code, out, err = helper(exe, "list", stdin=b"unused")
    assert code == 0, out + err
    result = json.loads(out)
    assert isinstance(result, dict)
    return result


def test_round_trip_store_get_list_erase(helper_exe: str) -> None:
    store(helper_exe, "registry.example:5000", "alice", "s3cret<&>")
    code, out = get(helper_exe, "registry.example:5000")
    assert code == 0
    assert out == (
        '{"ServerURL":"registry.example:5000","Username":"alice","Secret":"s3cret\\u003c\\u0026\\u003e"}\n'
    )
    assert listing(helper_exe) == {"registry.example:5000": "alice"}
    code, out, _ = helper(helper_exe, "erase", stdin=b"registry.example:5000")
    assert (code, out) == (0, "")
    assert get(helper_exe, "registry.example:5000") == (1, texts.NOT_FOUND + "\n")
    assert listing(helper_exe) == {}


def test_list_raw_output_is_sorted_go_json(helper_exe: str) -> None:
    store(helper_exe, "zeta.example", "z", "1")
    store(helper_exe, "alpha.example", "<token>", "2")
    code, out, _ = helper(helper_exe, "list", stdin=b"unused")
    assert (code, out) == (0, '{"alpha.example":"\\u003ctoken\\u003e","zeta.example":"z"}\n')


def test_version(helper_exe: str) -> None:
    from regauth import __version__

    assert helper(helper_exe, "version") == (0, f"docker-credential-regauth (regauth) {__version__}\n", "")


@pytest.mark.parametrize("stored_as", ["https://index.docker.io/v1/", "registry-1.docker.io"])
def test_docker_hub_aliases_are_one_registry(helper_exe: str, stored_as: str) -> None:
    store(helper_exe, stored_as, "hubuser", "hubpass")
    for asked in ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"):
        code, out = get(helper_exe, asked)
        assert code == 0, asked
        assert json.loads(out) == {"ServerURL": asked, "Username": "hubuser", "Secret": "hubpass"}
    # The Docker CLI looks Docker Hub up by this key, so list must give it back.
    assert listing(helper_exe) == {"https://index.docker.io/v1/": "hubuser"}


def test_nerdctl_spellings_find_one_entry(helper_exe: str) -> None:
    store(helper_exe, "https://Registry.Example.COM/v2/", "u", "pw")
    for asked in (
        "registry.example.com:443",
        "https://registry.example.com:443",
        "http://registry.example.com",
        "registry.example.com",
        "https://registry.example.com",
        "https://registry.example.com/",
        "REGISTRY.EXAMPLE.COM",
        "HTTPS://Registry.Example.Com/v2/some/path",
    ):
        code, out = get(helper_exe, asked)
        assert code == 0, asked
        assert json.loads(out)["Secret"] == "pw"
    assert listing(helper_exe) == {"registry.example.com": "u"}


def test_port_is_kept(helper_exe: str) -> None:
    store(helper_exe, "127.0.0.1:5000", "u", "pw")
    assert get(helper_exe, "https://127.0.0.1:5000/")[0] == 0
    assert get(helper_exe, "127.0.0.1:5001") == (1, texts.NOT_FOUND + "\n")
    assert get(helper_exe, "127.0.0.1") == (1, texts.NOT_FOUND + "\n")


def test_erase_of_absent_server_exits_0(helper_exe: str) -> None:
    assert helper(helper_exe, "erase", stdin=b"absent.example") == (0, "", "")
    store(helper_exe, "present.example", "u", "pw")
    assert helper(helper_exe, "erase", stdin=b"absent.example") == (0, "", "")
    assert listing(helper_exe) == {"present.example": "u"}


def test_erase_by_any_spelling(helper_exe: str) -> None:
    store(helper_exe, "registry.example.com", "u", "pw")
    # docker logout erases host, http://host and https://host in turn.
    for spelling in ("https://registry.example.com", "http://registry.example.com", "registry.example.com"):
        assert helper(helper_exe, "erase", stdin=spelling.encode()) == (0, "", "")
    assert listing(helper_exe) == {}


def test_store_updates_an_existing_entry(helper_exe: str) -> None:
    store(helper_exe, "registry.example", "old", "old-pw")
    store(helper_exe, "https://registry.example/", "new", "new-pw")
    code, out = get(helper_exe, "registry.example")
    assert code == 0
    assert json.loads(out) == {"ServerURL": "registry.example", "Username": "new", "Secret": "new-pw"}
    assert listing(helper_exe) == {"registry.example": "new"}


def test_identity_token_round_trips(helper_exe: str) -> None:
    store(helper_exe, "registry.example", "<token>", "refresh-token-value")
    code, out = get(helper_exe, "registry.example")
    assert code == 0
    assert out == (
        '{"ServerURL":"registry.example","Username":"\\u003ctoken\\u003e","Secret":"refresh-token-value"}\n'
    )


# --- bad input: one line on stdout, exit 1, store files byte for byte unchanged -----------------------

TEN_MB = b'{"ServerURL":"r.example","Username":"u","Secret":"' + b"x" * (10 * 1024 * 1024) + b'"}'

BAD_INPUT: list[tuple[str, list[str], bytes, str]] = [
    ("no verb", [], b"", texts.USAGE),
    ("two verbs", ["get", "list"], b"", texts.USAGE),
    ("unknown verb", ["frobnicate"], b"", "docker-credential-regauth: unknown action: frobnicate"),
    ("store empty stdin", ["store"], b"", "no credentials on standard input"),
    ("store invalid json", ["store"], b'{"ServerURL":"r.example",', "invalid credentials JSON"),
    ("store json list", ["store"], b'["r.example","u","p"]', "expected an object"),
    ("store json number", ["store"], b"42", "expected an object"),
    # Go decodes null into a struct as nothing at all, so the server URL is what is missing.
    ("store json null", ["store"], b"null", texts.MISSING_SERVER_URL),
    ("store missing server", ["store"], b'{"Username":"u","Secret":"p"}', texts.MISSING_SERVER_URL),
    ("store missing username", ["store"], b'{"ServerURL":"r.example","Secret":"p"}', texts.MISSING_USERNAME),
    ("store server number", ["store"], b'{"ServerURL":1,"Username":"u","Secret":"p"}', "must be a string"),
    ("store username object", ["store"], b'{"ServerURL":"r","Username":{},"Secret":"p"}', "must be a string"),
    ("store secret list", ["store"], b'{"ServerURL":"r","Username":"u","Secret":["p"]}', "must be a string"),
    (
        "store bad server",
        ["store"],
        b'{"ServerURL":"ftp://r","Username":"u","Secret":"p"}',
        "unsupported scheme",
    ),
    ("store non-utf8", ["store"], b'{"ServerURL":"r","Username":"\xc3\x28","Secret":"p"}', "not valid UTF-8"),
    ("store 10 MB", ["store"], TEN_MB, "larger than"),
    ("get empty stdin", ["get"], b"", texts.MISSING_SERVER_URL),
    ("get non-utf8", ["get"], b"keep.example\xff", "not valid UTF-8"),
    ("get 10 MB", ["get"], b"k" * (10 * 1024 * 1024), "larger than"),
    ("erase empty stdin", ["erase"], b"", texts.MISSING_SERVER_URL),
    ("erase non-utf8", ["erase"], b"\xffkeep.example", "not valid UTF-8"),
    ("erase 10 MB", ["erase"], b"keep.example" + b" " * (10 * 1024 * 1024), "larger than"),
    ("erase bad server", ["erase"], b"keep.example:99999", "invalid port"),
]


def book(settings: Settings) -> RegistryBook:
    return RegistryBook.for_settings(settings)


def snapshot(settings: Settings) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (settings.registries_file, settings.secrets_file)}


@pytest.mark.parametrize(
    ("args", "stdin", "expected"), [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
def test_bad_input_is_one_line_exit_1_store_unchanged(
    helper_exe: str, settings: Settings, args: list[str], stdin: bytes, expected: str
) -> None:
    # Seeded in-process: the table is long and each helper process costs a start-up.
    book(settings).upsert_static("keep.example", "keeper", "kept-secret")
    before = snapshot(settings)
    code, out, err = helper(helper_exe, *args, stdin=stdin)
    assert code == 1
    assert out.count("\n") == 1 and out.endswith("\n"), out[:300]
    assert expected in out
    assert "Traceback" not in out + err
    assert snapshot(settings) == before
    assert stored_secret(open_store(settings), book(settings).get("keep.example")) == "kept-secret"


# --- the hot path stays light ---------------------------------------------------------------------

HEAVY = ("aiohttp", "keyring", "boto3", "botocore", "azure", "google", "requests", "msal")


def imported_modules(helper_exe: str, server: str, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", helper_exe, "get"],
        input=server.encode(),
        capture_output=True,
        timeout=TIMEOUT,
        env=dict(os.environ) if env is None else env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = set()
    for line in proc.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name == "site":
                # What site and its .pth hooks imported is the interpreter's, not the helper's.
                names.clear()
            elif name != "imported package":
                names.add(name)
    assert "regauth.helper.main" in names
    return names, proc.stdout.decode()


def test_get_imports_no_heavy_module(helper_exe: str) -> None:
    store(helper_exe, "registry.example", "u", "pw")
    names, out = imported_modules(helper_exe, "registry.example")
    assert json.loads(out)["Secret"] == "pw"
    heavy = sorted(n for n in names if n.split(".")[0] in HEAVY)
    assert heavy == []


# What the general path imports and the fast get (a static record in the file store) must not.
GENERAL_ONLY = ("typing", "pathlib", "cryptography", "regauth.config", "regauth.registries")
# Nor these: json imports re, and re enum and functools (about 4 ms); the installed script (not pip's
# entry-point wrapper, which imports re) and the fast path's own JSON (jsonlite) do without them.
FAST_NEVER = ("re", "enum", "json", "functools", "collections")


def test_static_get_takes_the_fast_path(helper_exe: str) -> None:
    store(helper_exe, "registry.example", "u", "pw")
    names, out = imported_modules(helper_exe, "registry.example")
    assert json.loads(out)["Secret"] == "pw"
    assert "regauth.helper.fastget" in names
    assert sorted(n for n in names if n in GENERAL_ONLY or n.split(".")[0] == "cryptography") == []
    assert sorted(n for n in names if n in FAST_NEVER) == []
    # Core dumps go off on this path too, with a C module and the ctypes that libcrypto needs anyway.
    assert {"regauth.coredump", "resource", "ctypes"} <= names


def test_a_declined_get_takes_the_general_path(helper_exe: str) -> None:
    store(helper_exe, "registry.example", "u", "pw")
    env = dict(os.environ, REGAUTH_LOG_LEVEL="ERROR", REGAUTH_STORE=" FILE ")
    names, out = imported_modules(helper_exe, "registry.example", env)
    assert "regauth.config" not in names and json.loads(out)["Secret"] == "pw"
    names, out = imported_modules(helper_exe, "registry.example", dict(os.environ, REGAUTH_LOG_LEVEL="DEBUG"))
    assert "regauth.registries" in names and json.loads(out)["Secret"] == "pw"


def test_get_with_remembered_auto_choice_does_not_import_keyring(helper_exe: str, settings: Settings) -> None:
    store(helper_exe, "registry.example", "u", "pw")
    settings.store_choice_file.parent.mkdir(parents=True, exist_ok=True)
    settings.store_choice_file.write_text("file\n")
    env = dict(os.environ, REGAUTH_STORE="auto")
    names, out = imported_modules(helper_exe, "registry.example", env)
    assert json.loads(out)["Secret"] == "pw"
    assert sorted(n for n in names if n.split(".")[0] in HEAVY) == []


def test_store_files_are_private(helper_exe: str, settings: Settings) -> None:
    store(helper_exe, "registry.example", "u", "pw")
    for path in (settings.registries_file, settings.secrets_file, settings.key_file):
        assert Path(path).stat().st_mode & 0o777 == 0o600, path


@pytest.mark.parametrize("which", ["registries", "secrets"])
@pytest.mark.parametrize("action", ["store", "get", "erase", "list"])
def test_damaged_files_are_named_and_left_untouched(
    helper_exe: str, settings: Settings, which: str, action: str
) -> None:
    book(settings).upsert_static("keep.example", "keeper", "kept-secret")
    path = settings.registries_file if which == "registries" else settings.secrets_file
    path.write_bytes(path.read_bytes()[:-7])
    before = snapshot(settings)
    stdin = {
        "store": b'{"ServerURL":"keep.example","Username":"u","Secret":"new"}',
        "get": b"keep.example",
        "erase": b"keep.example",
        "list": b"unused",
    }[action]
    code, out, err = helper(helper_exe, action, stdin=stdin)
    if which == "secrets" and action == "list":
        # list reads only the records, never the secrets.
        assert (code, json.loads(out)) == (0, {"keep.example": "keeper"})
    else:
        assert code == 1
        assert out.count("\n") == 1 and str(path) in out
        assert "Traceback" not in err
    assert snapshot(settings) == before


@pytest.mark.parametrize("encoding", ["latin-1", "ascii"])
def test_output_is_utf8_whatever_the_locale(helper_exe: str, encoding: str) -> None:
    store(helper_exe, "registry.example", "jürgen", "秘密-é")
    env = dict(os.environ, PYTHONIOENCODING=encoding)
    proc = subprocess.run(
        [helper_exe, "get"],
        input=b"registry.example",
        capture_output=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == '{"ServerURL":"registry.example","Username":"jürgen","Secret":"秘密-é"}\n'.encode()
    code, out, _ = helper(helper_exe, "list", stdin=b"unused", env=env)
    assert (code, out) == (0, '{"registry.example":"jürgen"}\n')


def test_the_helper_is_a_plain_script_and_the_other_commands_are_entry_points(helper_exe: str) -> None:
    """pyproject.toml installs docker-credential-regauth from scripts/ (no `import re` wrapper) and
    keeps the other commands as entry points."""
    from importlib.metadata import distribution

    scripts = {ep.name for ep in distribution("regauth").entry_points if ep.group == "console_scripts"}
    assert scripts == {"regauth", "regauth-credential-provider"}
    first, *rest = Path(helper_exe).read_text().splitlines()
    assert first.startswith("#!/") and "python" in first
    assert "import re" not in rest
