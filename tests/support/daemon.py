"""A daemon a test starts for itself (containerd, dockerd): output to a log file in its own directory,
killed with the test run if pytest dies, stopped with SIGTERM and then SIGKILL."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .registry import _die_with_parent


def find_binary(name: str) -> str | None:
    # Debian installs daemons (dockerd) in /usr/sbin, which is not on a user's PATH.
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(["/usr/sbin", "/sbin"]))


class Daemon:
    name = "daemon"
    package = ""
    # Directories the daemon writes whatever its flags say (dockerd: /run/docker, /etc/docker/key.json):
    # each gets a tmpfs of the daemon's own, in a mount namespace of its own, so nothing lands outside
    # the test's directories and a user needs no write access there.
    private_dirs: tuple[str, ...] = ()

    def __init__(self, workdir: Path, args: list[str]) -> None:
        binary = find_binary(self.name)
        assert binary, f"{self.name} is not installed: apt-get install {self.package or self.name}"
        self.dir = workdir
        self.log_path = workdir / f"{self.name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self._confined(_die_with_parent([binary, *args])),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )

    def _confined(self, argv: list[str]) -> list[str]:
        if self.private_dirs:
            mounts = " && ".join(f"mount -t tmpfs tmpfs {d}" for d in self.private_dirs)
            argv = ["sh", "-c", f'{mounts} && exec "$@"', "sh", *argv]
        if os.geteuid() != 0:
            # As a user, as rootless containerd and Docker do: root of a user namespace of its own (the
            # user's uid mapped to 0), to chown its sockets and files to 0 and mount while it unpacks.
            return ["unshare", "--user", "--map-root-user", "--mount", *argv]
        return ["unshare", "--mount", *argv] if self.private_dirs else argv

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
