"""An audit log that cannot be written never turns a saved change into a reported failure.

The change is made before its event is appended, so an error then would tell ``docker login`` (or
``registry add``) that nothing was stored while the login is in the book: the retry then meets
"already exists", and docker says "Error saving credentials" for a stored secret. As
docker-credential-helpers, the exit status says whether the credential was stored; the lost event
is one warning line on stderr, never the secret.
"""

from __future__ import annotations

import json
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path

from regauth.audit import _READ_MAX, AuditLog, events_path
from regauth.config import load_settings
from regauth.helper.texts import NOT_FOUND

SECRET = "canary-s3cret-0451"
HOST = "registry.example.test"


def helper(
    helper_exe: str, action: str, data: str, preexec: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helper_exe, action], input=data, capture_output=True, text=True, check=False, preexec_fn=preexec
    )


def blocked_log() -> Path:
    """The events file made a directory: every open for append fails (EISDIR), even as root."""
    path = events_path(load_settings())
    path.mkdir(parents=True)
    return path


def test_helper_store_and_erase_succeed_when_the_audit_log_cannot_be_opened(helper_exe: str) -> None:
    blocked_log()
    login = json.dumps({"ServerURL": HOST, "Username": "u", "Secret": SECRET})
    stored = helper(helper_exe, "store", login)
    assert (stored.returncode, stored.stdout) == (0, ""), stored.stdout + stored.stderr
    (line,) = stored.stderr.splitlines()
    assert "audit" in line and SECRET not in line and "Traceback" not in line
    got = helper(helper_exe, "get", HOST)
    assert got.returncode == 0 and json.loads(got.stdout)["Secret"] == SECRET

    erased = helper(helper_exe, "erase", HOST)
    assert (erased.returncode, erased.stdout) == (0, ""), erased.stdout + erased.stderr
    assert helper(helper_exe, "get", HOST).stdout == NOT_FOUND + "\n"


def test_cli_add_succeeds_when_the_audit_log_cannot_be_opened(regauth_exe: str) -> None:
    blocked_log()
    argv = [regauth_exe, "registry", "add", "myreg", "--url", HOST, "--username", "u", "--password-stdin"]
    added = subprocess.run(argv + ["--no-validate"], input=SECRET, capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    assert "audit" in added.stderr and SECRET not in added.stderr + added.stdout
    listed = subprocess.run([regauth_exe, "registry", "list"], capture_output=True, text=True, check=True)
    assert HOST in listed.stdout


def _file_size_limit(limit: int) -> None:
    # As a full disk for files past ``limit`` bytes: write fails with EFBIG (Python ignores SIGXFSZ).
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_full_disk_loses_the_event_not_the_login_and_tears_no_line(helper_exe: str) -> None:
    path = events_path(load_settings())
    path.parent.mkdir(parents=True, mode=0o700)
    old = json.dumps({"at": "2026-01-01T00:00:00+00:00", "actor": "cli", "action": "created"}) + "\n"
    path.write_bytes(old.encode() * 200)
    path.chmod(0o600)
    size = path.stat().st_size
    login = json.dumps({"ServerURL": HOST, "Username": "u", "Secret": SECRET})
    # The book and the store are small files, well under the limit; the log is past it.
    stored = helper(helper_exe, "store", login, lambda: _file_size_limit(size - 10))
    assert (stored.returncode, stored.stdout) == (0, ""), stored.stdout + stored.stderr
    assert "Traceback" not in stored.stderr and SECRET not in stored.stderr
    assert path.read_bytes() == old.encode() * 200
    assert json.loads(helper(helper_exe, "get", HOST).stdout)["Secret"] == SECRET


def test_a_log_past_the_read_limit_still_reads_its_newest_events(tmp_path: Path) -> None:
    # The log grows without bound; a read past the limit must give the newest events, not fail
    # (GET /api/v1/events would fail from then on). Sparse: the old part costs no disk.
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    path = state / "events.jsonl"
    with path.open("wb") as handle:
        handle.seek(_READ_MAX + 4096)
        handle.write(b"\n")  # the old events' last line end
    path.chmod(0o600)
    log = AuditLog(path)
    log.append("cli", "created", "id1", "newest")
    log.append("cli", "deleted", "id1", "newest")
    assert [(e["action"], e["registry_name"]) for e in log.read()] == [
        ("created", "newest"),
        ("deleted", "newest"),
    ]
