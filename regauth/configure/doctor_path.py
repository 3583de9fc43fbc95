"""Is the helper on the PATH each client runs it with, and does it answer?

The docker daemon never runs a credential helper: the docker CLI does, as do podman, skopeo and
buildah, all with the user's ``PATH``. A system service (CRI-O, which reads the system
``registries.conf.d``) runs it with systemd's ``PATH``: what ``systemctl show-environment`` says, else
systemd's default. containerd and the kubelet run no helper (containerd pulls through the proxy; the
kubelet runs ``regauth-credential-provider`` from its own bin dir, checked with its config).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping

from regauth.configure.findings import ACTION, INFO, OK, Finding
from regauth.configure.hosts import HELPER

HELPER_EXE = f"docker-credential-{HELPER}"
# systemd's built-in PATH for services (DEFAULT_PATH in its sources, without split /usr/sbin).
SYSTEMD_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
USER_CLIENTS = "the docker CLI, podman and skopeo"
SERVICES = "systemd services (CRI-O)"


def helper_findings(environ: Mapping[str, str], system_clients_use_it: bool) -> Iterator[Finding]:
    """``system_clients_use_it``: a system-wide configuration names the helper (then a helper missing
    from systemd's PATH is something to fix, not only to know)."""
    user_path = environ.get("PATH", os.defpath)
    service_path, whose = systemd_path()
    user_exe = shutil.which(HELPER_EXE, path=user_path)
    service_exe = shutil.which(HELPER_EXE, path=service_path)
    if user_exe is None:
        but = f", though {SERVICES} find {service_exe}" if service_exe else ""
        yield Finding("helper", ACTION, f"{HELPER_EXE} is not on PATH for {USER_CLIENTS} (your PATH){but}")
    else:
        yield _answers(user_exe, f"is on PATH for {USER_CLIENTS}")
    if service_exe is None:
        also = f"on PATH for {USER_CLIENTS} but not" if user_exe else "not on PATH either"
        status = ACTION if system_clients_use_it else INFO
        yield Finding(
            "helper",
            status,
            f"{HELPER_EXE} is {also} for {SERVICES}: {whose} PATH is {service_path}; "
            f"install it in one of those directories if a service is to run it",
        )
    elif service_exe == user_exe:
        yield Finding("helper", OK, f"{service_exe} is on PATH for {SERVICES} too ({whose} PATH)")
    else:
        yield _answers(service_exe, f"is on PATH for {SERVICES} ({whose} PATH)")


def systemd_path() -> tuple[str, str]:
    """systemd's PATH for services, and whose it is (for the message)."""
    systemctl = shutil.which("systemctl")
    if systemctl is not None:
        try:
            proc = subprocess.run(
                [systemctl, "show-environment"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            proc = None
        if proc is not None and proc.returncode == 0:
            for line in proc.stdout.splitlines():
                if line.startswith("PATH="):
                    return line.removeprefix("PATH="), "systemd's"
    return SYSTEMD_DEFAULT_PATH, "systemd's default"


def _answers(exe: str, where: str) -> Finding:
    try:
        proc = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding("helper", ACTION, f"{exe} {where} but did not answer `version`: {exc}")
    if proc.returncode != 0:
        return Finding(
            "helper", ACTION, f"{exe} {where} but did not answer `version` (exit {proc.returncode})"
        )
    return Finding("helper", OK, f"{exe} {where} and answers")
