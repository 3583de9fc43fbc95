"""The last-use mark: one utime per use, never a path out of its directory, never a failed pull."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from regauth import usage
from regauth.config import Settings


def test_a_mark_is_created_then_touched(tmp_path: Path) -> None:
    state = str(tmp_path)
    assert usage.last_used(state, "abc") is None
    usage.mark_used(state, "abc")
    first = usage.last_used(state, "abc")
    assert first is not None
    os.utime(tmp_path / usage.USED_DIR / "abc", (first - 100, first - 100))
    usage.mark_used(state, "abc")
    again = usage.last_used(state, "abc")
    assert again is not None and again > first - 100
    assert (tmp_path / usage.USED_DIR).stat().st_mode & 0o777 == 0o700
    assert (tmp_path / usage.USED_DIR / "abc").stat().st_size == 0


def test_ids_never_name_a_path_outside(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for bad in ("", "../escape", ".hidden", "a/b", "nul\0"):
        usage.mark_used(str(state), bad)
        assert usage.last_used(str(state), bad) is None
    assert not (tmp_path / "escape").exists()
    assert not (state / usage.USED_DIR).exists() or list((state / usage.USED_DIR).iterdir()) == []


def test_a_planted_link_is_not_followed(tmp_path: Path) -> None:
    used = tmp_path / usage.USED_DIR
    used.mkdir(mode=0o700)
    target = tmp_path / "victim"
    target.write_text("x")
    os.utime(target, (1000, 1000))
    (used / "abc").symlink_to(target)
    usage.mark_used(str(tmp_path), "abc")
    assert target.stat().st_mtime == 1000


def test_an_unwritable_state_dir_costs_the_pull_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state dir belongs")
    usage.mark_used(str(blocker), "abc")  # no exception
    assert usage.last_used(str(blocker), "abc") is None


def test_forget_drops_the_mark(tmp_path: Path) -> None:
    usage.mark_used(str(tmp_path), "abc")
    usage.forget(str(tmp_path), "abc")
    usage.forget(str(tmp_path), "abc")
    assert usage.last_used(str(tmp_path), "abc") is None


def test_a_first_mark_under_a_loose_umask_leaves_the_state_dir_private(
    settings: Settings, helper_exe: str
) -> None:
    """A get that is the first to need the state dir (a new XDG_STATE_HOME, a cleaned ~/.local/state)
    makes it as every other regauth directory is made, 0700: made 0775 under Ubuntu's umask 002, the
    next `docker login` and every log line were refused as group-writable."""

    def helper(action: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [helper_exe, action], input=stdin, capture_output=True, timeout=60, umask=0o002, check=False
        )

    login = {"ServerURL": "a.example", "Username": "u", "Secret": "s"}
    assert helper("store", json.dumps(login).encode()).returncode == 0
    shutil.rmtree(settings.state_dir.parent)
    got = helper("get", b"a.example")
    assert got.returncode == 0 and json.loads(got.stdout)["Secret"] == "s"
    for directory in (settings.state_dir.parent, settings.state_dir, settings.state_dir / usage.USED_DIR):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    again = helper("store", json.dumps({**login, "ServerURL": "b.example"}).encode())
    assert (again.returncode, again.stdout) == (0, b"")
