"""The installed ``regauth`` command run as a user runs it, for the tests of whole commands."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def regauth(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("regauth")
    assert exe, "regauth is not on PATH"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    """The command's stdout, asserting it succeeded (with its output as the failure's message)."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def recording_helper(directory: Path, name: str = "other") -> tuple[Path, Path]:
    """``docker-credential-NAME`` in ``directory``/bin: it appends each call ("ACTION STDIN") to the
    returned calls file and answers nothing (exit 1). Returns (its bin directory, the calls file)."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = directory / "calls"
    helper = bin_dir / f"docker-credential-{name}"
    helper.write_text(f'#!/bin/sh\necho "$1 $(cat)" >> {calls}\nexit 1\n')
    helper.chmod(0o755)
    return bin_dir, calls
