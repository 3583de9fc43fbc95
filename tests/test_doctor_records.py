"""``regauth doctor`` on each record's last use (``--unused-days``) and reach (read-write is a WARN, which
leaves the exit status alone), and on the helper's PATH for each kind of client; text and JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from support.cli import ok, regauth
from support.records import add_record
from support.registry import RegistryFixture

from regauth import usage
from regauth.config import Settings

TIMEOUT = 60
DAY = 86400.0


@pytest.fixture(autouse=True)
def runtime_dir(isolated_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The containers clients' runtime auth file is the test's (else the machine's /run/containers/UID)."""
    (tmp_path / "run").mkdir(exist_ok=True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))


def configured() -> None:
    """The clients point at regauth, so the only verdicts left are the records' own."""
    ok(regauth("configure", "docker"))
    ok(regauth("configure", "podman"))


def findings(*args: str) -> list[dict[str, str]]:
    return json.loads(regauth("doctor", "--json", *args).stdout)  # type: ignore[no-any-return]


def test_last_use_and_the_unused_threshold(settings: Settings, regauth_exe: str) -> None:
    state = str(settings.state_dir)
    fresh = add_record(settings, "fresh.lab:5000", None, name="fresh")
    stale = add_record(settings, "stale.lab:5000", None, name="stale")
    add_record(settings, "never.lab:5000", None, name="never")
    configured()
    # Before anything was marked here, "never used" is all there is to say.
    before = regauth("doctor")
    assert "info   registry never: never used here yet" in before.stdout
    assert before.returncode == 0, before.stdout

    usage.mark_used(state, fresh.id)
    usage.mark_used(state, stale.id)
    now = time.time()
    os.utime(settings.state_dir / usage.USED_DIR / fresh.id, (now - 3 * DAY - 60, now - 3 * DAY - 60))
    os.utime(settings.state_dir / usage.USED_DIR / stale.id, (now - 120 * DAY, now - 120 * DAY))
    out = regauth("doctor")
    assert out.returncode == 1, out.stdout
    assert "ok     registry fresh: last used here 3 days ago" in out.stdout
    assert (
        "ACTION registry stale: last used here 120 days ago (over 90 days): if nothing needs it, "
        "`regauth registry remove stale` (or `disable`); --unused-days sets the threshold" in out.stdout
    )
    # Marks began just now: a never-used record is not yet "unused for long".
    assert "info   registry never: never used here yet" in out.stdout
    assert {"check": "registry stale", "status": "action"} in [
        {k: f[k] for k in ("check", "status")} for f in findings() if "last used" in f["message"]
    ]
    assert regauth("doctor", "--unused-days", "200").returncode == 0

    # Marks began long ago and the record is older still: never used in all that time.
    since = settings.state_dir / usage.USED_DIR / usage.SINCE
    os.utime(since, (now - 400 * DAY, now - 400 * DAY))
    data = json.loads(settings.registries_file.read_text())
    for item in data["registries"]:
        if item["name"] == "never":
            item["created_at"] = "2020-01-01T00:00:00+00:00"
    settings.registries_file.write_text(json.dumps(data))
    out = regauth("doctor", "--unused-days", "200")
    assert out.returncode == 1
    assert "ACTION registry never: never used here in 400 days (over 200)" in out.stdout

    # A disabled record is unused by design.
    ok(regauth("registry", "disable", "stale"))
    assert "info   registry stale: disabled: not used by design" in regauth("doctor").stdout


def test_read_write_credentials_are_a_warning(
    settings: Settings, regauth_exe: str, registry_token: RegistryFixture
) -> None:
    fx = registry_token
    server = fx.token_server
    assert server is not None and fx.password and fx.ca_file
    add = ["registry", "add", "rw", "--url", fx.host, "--ca-file", fx.ca_file, "--username", str(fx.username)]
    ok(
        subprocess.run(
            [regauth_exe, *add, "--repository", fx.repository, "--password-stdin"],
            input=fx.password,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    )
    configured()
    warned = (
        f"WARN   registry rw: {fx.host}: its credential can also push or delete on {fx.repository} "
        "(read-write); use read-only credentials when possible"
    )
    # From the last validation, and from a new one.
    for args in ((), ("--validate",)):
        out = regauth("doctor", *args)
        assert warned in out.stdout, out.stdout
        assert out.returncode == 0, out.stdout  # a warning, not an action
        assert fx.password not in out.stdout + out.stderr
    assert {"check": "registry rw", "status": "warn", "message": warned.split(": ", 1)[1]} in findings()

    user = next(name for name in server.users if name != fx.username)
    with server.granting(user, {"pull"}):
        update = ["registry", "update", "rw", "--username", user, "--password-stdin"]
        ok(
            subprocess.run(
                [regauth_exe, *update],
                input=server.users[user],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
        )
        out = regauth("doctor", "--validate")
    assert (
        f"ok     registry rw: {fx.host}: its credential is read-only (pull only on {fx.repository})"
        in out.stdout
    )
    assert "WARN" not in out.stdout


def test_the_helper_on_each_clients_path(settings: Settings, isolated_env: Path, tmp_path: Path) -> None:
    exe = shutil.which("regauth")
    helper = shutil.which("docker-credential-regauth")
    assert exe and helper
    # The tests' helper lives in the venv: on the user's PATH, not on systemd's.
    out = regauth("doctor")
    assert (
        f"ok     helper: {helper} is on PATH for the docker CLI, podman and skopeo and answers" in out.stdout
    )
    assert (
        "info   helper: docker-credential-regauth is on PATH for the docker CLI, podman and skopeo but not "
        "for systemd services (CRI-O): " in out.stdout
    )
    # A user whose PATH does not hold it: the docker CLI and podman cannot run it.
    bare = tmp_path / "bin"
    bare.mkdir()
    out = regauth("doctor", env=dict(os.environ, PATH=str(bare)))
    assert out.returncode == 1
    assert (
        "ACTION helper: docker-credential-regauth is not on PATH for the docker CLI, podman and skopeo "
        "(your PATH)" in out.stdout
    )
    assert "is not on PATH either for systemd services (CRI-O)" in out.stdout
    # One that is there but does not answer.
    broken = bare / "docker-credential-regauth"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    out = regauth("doctor", "--json", env=dict(os.environ, PATH=str(bare)))
    assert {
        "check": "helper",
        "status": "action",
        "message": f"{broken} is on PATH for the docker CLI, podman and skopeo "
        "but did not answer `version` (exit 3)",
    } in json.loads(out.stdout)
