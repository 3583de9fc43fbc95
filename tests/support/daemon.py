"""A daemon a test starts for itself (containerd, dockerd): output to a log file in its own directory,
killed with the test run if pytest dies, stopped with SIGTERM and then SIGKILL."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .registry import _die_with_parent


class Daemon:
    name = "daemon"
    package = ""

    def __init__(self, workdir: Path, args: list[str]) -> None:
        binary = shutil.which(self.name)
        assert binary, f"{self.name} is not installed: apt-get install {self.package or self.name}"
        self.dir = workdir
        self.log_path = workdir / f"{self.name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                _die_with_parent([binary, *args]), stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )

    def exited(self) -> str | None:
        """Why the daemon is gone, or None while it runs."""
        if self.process.poll() is None:
            return None
        return f"{self.name} exited {self.process.returncode}: {self.log()}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
