"""`regauth registry add/update/validate` against the real registries, through the installed script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support.registry import RegistryFixture


def run(exe: str, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, *argv], input=stdin or "", capture_output=True, text=True, timeout=60)


def add(
    exe: str, name: str, fx: RegistryFixture, password: str | None = None, *extra: str
) -> subprocess.CompletedProcess[str]:
    argv = ["registry", "add", name, "--url", fx.host, *extra]
    if fx.ca_file:
        argv += ["--ca-file", fx.ca_file]
    else:
        argv += ["--insecure"]
    if fx.username:
        argv += ["--username", fx.username, "--password-stdin"]
    return run(exe, *argv, stdin=(password if password is not None else fx.password or "") + "\n")


def listed(exe: str) -> list[dict[str, object]]:
    done = run(exe, "registry", "list", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def files(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


def secret_state(exe: str, name: str) -> str:
    done = run(exe, "registry", "show", name, "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["secret"])


def test_a_passing_validation_saves(regauth_exe: str, registry_htpasswd: RegistryFixture) -> None:
    fx = registry_htpasswd
    done = add(regauth_exe, "ht", fx, None, "--repository", fx.repository)
    assert done.returncode == 0, done.stderr
    assert [r["name"] for r in listed(regauth_exe)] == ["ht"]
    assert secret_state(regauth_exe, "ht") == "stored"
    assert fx.password and fx.password not in done.stdout + done.stderr


def test_wrong_password_saves_nothing(
    regauth_exe: str, registry_htpasswd: RegistryFixture, registry_token: RegistryFixture, isolated_env: Path
) -> None:
    assert add(regauth_exe, "anon-ok", _anon_like(registry_token)).returncode == 0
    before = files(isolated_env)
    for name, fx in (("ht", registry_htpasswd), ("tok", registry_token)):
        done = add(regauth_exe, name, fx, "wrong-password-42")
        assert done.returncode == 1
        assert len(done.stderr.splitlines()) == 1 and "nothing was saved" in done.stderr
        assert fx.host in done.stderr and "refused" in done.stderr
        assert "wrong-password-42" not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
    assert [r["name"] for r in listed(regauth_exe)] == ["anon-ok"]
    assert files(isolated_env) == before


def test_no_pull_permission_and_missing_repository_save_nothing(
    regauth_exe: str, registry_token: RegistryFixture, isolated_env: Path
) -> None:
    fx = registry_token
    assert fx.token_server is not None
    with fx.token_server.refusing(fx.repository):
        done = add(regauth_exe, "tok", fx, None, "--repository", fx.repository)
    assert done.returncode == 1 and "no pull permission" in done.stderr, done.stderr
    done = add(regauth_exe, "tok", fx, None, "--repository", "test/missing")
    assert done.returncode == 1 and "not found" in done.stderr, done.stderr
    assert listed(regauth_exe) == []
    assert not (isolated_env / ".local/share/regauth/secrets.enc").exists()


def test_unreachable_saves_nothing(regauth_exe: str, registry_anon: RegistryFixture) -> None:
    done = run(regauth_exe, "registry", "add", "gone", "--url", "127.0.0.1:1", "--insecure")
    assert done.returncode == 1 and "cannot connect" in done.stderr, done.stderr
    assert listed(regauth_exe) == []


def test_update_with_a_wrong_password_keeps_the_old_one(
    regauth_exe: str, registry_token: RegistryFixture, isolated_env: Path
) -> None:
    fx = registry_token
    assert add(regauth_exe, "tok", fx).returncode == 0
    before = files(isolated_env)
    done = run(regauth_exe, "registry", "update", "tok", "--password-stdin", stdin="bad-one-77\n")
    assert done.returncode == 1 and "nothing was saved" in done.stderr, done.stderr
    assert files(isolated_env) == before
    assert run(regauth_exe, "registry", "validate", "tok").returncode == 0


def test_validate_all(
    regauth_exe: str,
    registry_anon: RegistryFixture,
    registry_htpasswd: RegistryFixture,
    registry_token: RegistryFixture,
) -> None:
    for name, fx in (("anon", registry_anon), ("ht", registry_htpasswd), ("tok", registry_token)):
        done = add(regauth_exe, name, fx)
        assert done.returncode == 0, done.stderr
    done = run(regauth_exe, "registry", "validate", "--all", "--repository", "test/app")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("ok") for line in lines), lines
    # Break one without validating, then validate again.
    done = run(
        regauth_exe, "registry", "update", "ht", "--password-stdin", "--no-validate", stdin="broken-55\n"
    )
    assert done.returncode == 0, done.stderr
    done = run(regauth_exe, "registry", "validate", "--all")
    assert done.returncode == 1
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and "'ht'" in failed[0] and "broken-55" not in done.stdout
    done = run(regauth_exe, "registry", "validate", "tok", "--repository", "test/missing")
    assert done.returncode == 1 and "not found" in done.stdout


def _anon_like(fx: RegistryFixture) -> RegistryFixture:
    """The token registry as an anonymous record: reachable and V2 is all that is checked."""
    return RegistryFixture(
        fx.kind, fx.host, fx.url, fx.ca_file, None, None, fx.image, fx.process, fx.token_server
    )


def test_add_and_validate_say_read_only_or_read_write(
    regauth_exe: str, registry_token: RegistryFixture
) -> None:
    fx = registry_token
    server = fx.token_server
    assert server is not None and fx.password
    done = add(regauth_exe, "rw", fx, None, "--repository", fx.repository)
    assert done.returncode == 0, done.stderr
    assert "read-write: it can also push or delete, use read-only credentials when possible" in done.stdout
    [checked] = json.loads(run(regauth_exe, "registry", "validate", "rw", "--json").stdout)
    assert checked["ok"] is True and checked["access"] == "read-write"
    text = run(regauth_exe, "registry", "validate", "rw").stdout
    assert (
        text.startswith("ok   ")
        and f"read-write: the token server grants delete and push on {fx.repository}" in text
    )

    # One record per host: the pull-only user's replaces it.
    assert run(regauth_exe, "registry", "remove", "rw").returncode == 0
    user = next(name for name in server.users if name != fx.username)
    argv = ["registry", "add", "ro", "--url", fx.host, "--ca-file", str(fx.ca_file), "--username", user]
    with server.granting(user, {"pull"}):
        done = run(
            regauth_exe, *argv, "--repository", fx.repository, "--password-stdin", stdin=server.users[user]
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.rstrip().endswith(f"user {user}; read-only)")
        [checked] = json.loads(run(regauth_exe, "registry", "validate", "ro", "--json").stdout)
        assert checked["access"] == "read-only"
    saved = {r["name"]: r for r in listed(regauth_exe)}
    assert saved["ro"]["last_validation"]["access"] == "read-only"  # type: ignore[index]
    for secret in (fx.password, server.users[user]):
        assert secret not in done.stdout + text
