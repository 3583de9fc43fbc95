"""The last-use mark: one utime per use, never a path out of its directory, never a failed pull."""

from __future__ import annotations

import os
from pathlib import Path

from regauth import usage


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
