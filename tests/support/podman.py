"""podman as the tests run it: its storage, run, tmp and runtime directories under one short directory of
the test's, and, run as a user, the pause process rootless podman leaves behind stopped afterwards."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def podman_argv(storage: Path) -> list[str]:
    argv = ["podman", "--root", str(storage / "root"), "--runroot", str(storage / "run")]
    return [*argv, "--storage-driver", "vfs", "--tmpdir", str(storage / "tmp"), "--events-backend", "file"]


def podman_env(storage: Path) -> dict[str, str]:
    # The tests' environment has no XDG_RUNTIME_DIR: rootless podman would then use /tmp/podman-run-UID.
    runtime = storage / "xdg"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    return {"XDG_RUNTIME_DIR": str(runtime)}


def stop_podman(storage: Path) -> None:
    """Stop the pause process (catatonit) that holds a user's podman namespace: it outlives every
    podman command, one per test's storage, and nothing else would ever stop it."""
    try:
        pid = int((storage / "tmp" / "pause.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"catatonit" in cmdline:
        os.kill(pid, signal.SIGKILL)
