"""`regauth registry ...`: records, secrets kept apart, one-line errors and nothing lost on bad input."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from regauth import cli, commands
from regauth.config import load_settings
from regauth.registries import Registry, RegistryBook, stored_secret
from regauth.store import open_store
from regauth.store.base import SecretStore

SECRET = "s3cret-Pa55"
ADD_GHCR = ("registry", "add", "ghcr", "--url", "ghcr.io", "--username", "bob")


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str, stdin: bytes = b""
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse exits on usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def regauth(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    return lambda *argv, stdin=b"": run(monkeypatch, capsys, *argv, stdin=stdin)


def book() -> RegistryBook:
    settings = load_settings()
    return RegistryBook.for_settings(settings)


def store() -> SecretStore:
    return open_store(load_settings())


def secret(record: Registry) -> str | None:
    return stored_secret(store(), record)


def state(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


def add(regauth, name: str = "ghcr", url: str = "ghcr.io", *extra: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    return regauth(
        "registry",
        "add",
        name,
        "--url",
        url,
        "--username",
        "bob",
        "--password-stdin",
        "--no-validate",
        *extra,
        stdin=SECRET.encode() + b"\n",
    )


def test_add_list_show_update_remove(regauth) -> None:  # type: ignore[no-untyped-def]
    code, out, err = add(regauth, "ghcr", "https://GHCR.io/v2/")
    assert (code, err) == (0, "")
    assert "added registry 'ghcr' (ghcr.io, user bob)" in out
    record = book().get("ghcr")
    assert record.registry == "ghcr.io" and record.username == "bob" and record.provider == "static"
    assert secret(record) == SECRET  # the shell's trailing newline is not part of the secret

    code, out, _ = regauth("registry", "list")
    assert code == 0 and "ghcr" in out and "ghcr.io" in out and SECRET not in out
    code, out, _ = regauth("registry", "list", "--json")
    listed = json.loads(out)
    assert [r["name"] for r in listed] == ["ghcr"] and SECRET not in out
    assert {"id", "name", "registry", "username", "provider", "options", "created_at", "updated_at"} <= set(
        listed[0]
    )
    code, out, _ = regauth("registry", "show", "ghcr", "--json")
    shown = json.loads(out)
    assert shown["secret"] == "stored" and SECRET not in out
    code, out, _ = regauth("registry", "show", "ghcr")
    assert "registry:" in out and SECRET not in out

    code, _, err = regauth(
        "registry",
        "update",
        "ghcr",
        "--username",
        "alice",
        "--password-stdin",
        "--no-validate",
        "--repository",
        "org/app",
        stdin=b"new-secret",
    )
    assert (code, err) == (0, "")
    record = book().get("ghcr")
    assert record.username == "alice" and record.repository == "org/app"
    assert secret(record) == "new-secret"
    assert record.created_at <= record.updated_at

    code, out, _ = regauth("registry", "remove", "ghcr")
    assert code == 0 and "removed registry 'ghcr'" in out
    assert book().all() == [] and store().keys() == []


def test_anonymous_registry_has_no_secret(regauth) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = regauth("registry", "add", "quay", "--url", "quay.io", "--no-validate")
    assert code == 0 and "anonymous" in out
    record = book().get("quay")
    assert record.anonymous and store().keys() == []
    assert json.loads(regauth("registry", "show", "quay", "--json")[1])["secret"] == "none (anonymous)"


def test_update_keeps_the_secret_unless_asked(regauth) -> None:  # type: ignore[no-untyped-def]
    add(regauth)
    assert regauth("registry", "update", "ghcr", "--rename", "github", "--no-validate")[0] == 0
    record = book().get("github")
    assert secret(record) == SECRET
    assert regauth("registry", "update", "github", "--anonymous", "--no-validate")[0] == 0
    assert book().get("github").anonymous and store().keys() == []


def test_record_flags_are_stored(regauth, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    code, _, err = add(
        regauth,
        "local",
        "http://127.0.0.1:5000",
        "--insecure",
        "--ca-file",
        str(ca),
        "--repository",
        "a/b",
        "--option",
        "realm_hosts=auth.example.com",
    )
    assert (code, err) == (0, "")
    record = book().get("local")
    assert record.registry == "127.0.0.1:5000" and record.insecure and record.ca_file == str(ca)
    assert record.repository == "a/b" and dict(record.options) == {"realm_hosts": "auth.example.com"}


BAD_ADDS = [
    (["registry", "add", "x", "--url", "ghcr.io"], "", "already configured"),
    (["registry", "add", "ghcr", "--url", "quay.io"], "", "already exists"),
    (["registry", "add", "Bad_Name!", "--url", "a.io"], "", "invalid registry name"),
    (["registry", "add", "x", "--url", "ftp://a.io"], "", "unsupported scheme"),
    (["registry", "add", "x", "--url", "a.io:99999"], "", "invalid port"),
    (["registry", "add", "x", "--url", ""], "", "no registry host"),
    (["registry", "add", "x", "--url", "a.io", "--username", "u", "--password-stdin"], "", "is empty"),
    (["registry", "add", "x", "--url", "a.io", "--username", "u"], "", "--password-stdin"),
    (["registry", "add", "x", "--url", "a.io", "--option", "novalue"], "", "KEY=VALUE"),
    (["registry", "add", "x", "--url", "a.io", "--ca-file", "/nonexistent.pem"], "", "no such file"),
    (["registry", "add", "x", "--url", "a.io", "--provider", "nope"], "", "invalid choice"),
    (["registry", "add", "x"], "", "required"),
    (["registry", "show", "nope"], "", "no registry named 'nope'"),
    (["registry", "update", "nope", "--no-validate"], "", "no registry named 'nope'"),
    (["registry", "remove", "nope"], "", "no registry named 'nope'"),
    (["registry", "update", "ghcr", "--anonymous", "--username", "u"], "", "cannot go with"),
    (["registry"], "", "required"),
    ([], "", "required"),
]


@pytest.mark.parametrize(("argv", "stdin", "expected"), BAD_ADDS)
def test_bad_input_is_one_line_and_changes_nothing(
    regauth,
    isolated_env: Path,
    argv: list[str],
    stdin: str,
    expected: str,  # type: ignore[no-untyped-def]
) -> None:
    add(regauth)
    before = state(isolated_env)
    if "--no-validate" not in argv and argv[:2] == ["registry", "add"]:
        argv = [*argv, "--no-validate"]
    code, out, err = regauth(*argv, stdin=stdin.encode())
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and expected in err and "Traceback" not in err
    assert state(isolated_env) == before


def test_non_utf8_and_oversized_secrets_are_refused(regauth, isolated_env: Path) -> None:  # type: ignore[no-untyped-def]
    base = ["registry", "add", "x", "--url", "a.io", "--username", "u", "--password-stdin", "--no-validate"]
    before = state(isolated_env)
    for stdin, expected in (
        (b"\xff\xfe", "not valid UTF-8"),
        (b"a" * (commands.MAX_SECRET_BYTES + 1), "larger"),
    ):
        code, _, err = regauth(*base, stdin=stdin)
        assert code == 1 and expected in err and len(err.splitlines()) == 1
    assert state(isolated_env) == before


def test_damaged_config_is_named_and_left_untouched(regauth, settings) -> None:  # type: ignore[no-untyped-def]
    settings.registries_file.parent.mkdir(parents=True)
    settings.registries_file.write_bytes(b"{not json")
    for argv in (["registry", "list"], ["registry", "add", "x", "--url", "a.io", "--no-validate"]):
        code, _, err = regauth(*argv)
        assert code == 1 and str(settings.registries_file) in err and "damaged" in err
    assert settings.registries_file.read_bytes() == b"{not json"


def test_damaged_secret_store_is_named_and_left_untouched(regauth, settings) -> None:  # type: ignore[no-untyped-def]
    add(regauth)
    blob = settings.secrets_file.read_bytes()
    damaged = blob[:-1] + bytes([blob[-1] ^ 1])
    settings.secrets_file.write_bytes(damaged)
    code, _, err = add(regauth, "quay", "quay.io")
    assert code == 1 and str(settings.secrets_file) in err
    assert settings.secrets_file.read_bytes() == damaged
    assert [r.name for r in book().all()] == ["ghcr"]


def test_the_real_script_reads_the_secret_from_stdin_only(regauth_exe: str) -> None:
    argv = [regauth_exe, *ADD_GHCR, "--password-stdin", "--no-validate"]
    done = subprocess.run(argv, input=SECRET.encode(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert SECRET.encode() not in done.stdout + done.stderr
    listed = subprocess.run([regauth_exe, "registry", "list", "--json"], capture_output=True, timeout=60)
    assert json.loads(listed.stdout)[0]["username"] == "bob" and SECRET.encode() not in listed.stdout
    usage = subprocess.run([regauth_exe, "registry", "frobnicate"], capture_output=True, timeout=60)
    assert usage.returncode == 2 and len(usage.stderr.splitlines()) == 1


def test_removing_a_provider_record_drops_its_cached_tokens(regauth) -> None:  # type: ignore[no-untyped-def]
    from regauth.providers.cache import cache_key

    host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    other = "210987654321.dkr.ecr.eu-west-1.amazonaws.com"
    code, _, err = regauth("registry", "add", "ecr", "--url", host, "--provider", "ecr", "--no-validate")
    assert (code, err) == (0, "")
    store().set(cache_key("ecr", host, "identity"), '{"cached": "token"}')
    store().set(cache_key("ecr", other, "identity"), '{"cached": "token"}')
    assert regauth("registry", "remove", "ecr")[0] == 0
    assert store().keys() == [cache_key("ecr", other, "identity")]


@pytest.mark.parametrize("var", ["XDG_CONFIG_HOME", "XDG_DATA_HOME"])
def test_unwritable_locations_are_one_line(
    regauth,
    helper_exe: str,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    var: str,  # type: ignore[no-untyped-def]
) -> None:
    # A file where a directory should be: the OS refuses, even to root.
    blocker = isolated_env / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv(var, str(blocker))
    code, out, err = add(regauth)
    assert code == 1 and out == "" and len(err.splitlines()) == 1
    assert str(blocker) in err and "Traceback" not in err
    stored = subprocess.run(
        [helper_exe, "store"],
        input=b'{"ServerURL":"a.io","Username":"u","Secret":"s"}',
        capture_output=True,
        timeout=60,
    )
    assert stored.returncode == 1 and len(stored.stdout.splitlines()) == 1
    assert str(blocker).encode() in stored.stdout and stored.stderr == b""


def test_the_interactive_prompt_does_not_echo_the_secret(regauth_exe: str) -> None:
    """Without --password-stdin on a terminal, the secret is asked for with echo off (getpass)."""
    import os
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: the real script on the pty
        os.execv(regauth_exe, [regauth_exe, *ADD_GHCR, "--no-validate"])
    seen = b""

    def read_until(marker: bytes) -> None:
        nonlocal seen
        while marker not in seen:
            ready, _, _ = select.select([fd], [], [], 30)
            assert ready, f"timed out waiting for {marker!r}; saw {seen!r}"
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # the child closed the pty
                return
            if not chunk:
                return
            seen += chunk

    read_until(b"Password: ")
    os.write(fd, SECRET.encode() + b"\n")
    read_until(b"added registry")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert SECRET.encode() not in seen
    assert secret(book().get("ghcr")) == SECRET
