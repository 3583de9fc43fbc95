"""The installed ``regauth`` command run as a user runs it, for the tests of whole commands."""

from __future__ import annotations

import shutil
import subprocess


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
