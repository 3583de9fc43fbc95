"""What a regauth process leaves where others can read it: ``REGAUTH_PASSPHRASE`` leaves the environment
once read, so an SDK's child process never sees it, and the helper, the CLI and the proxy run with core
dumps off (RLIMIT_CORE 0, checked in the running process's ``/proc/PID/limits`` and in a child)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer
from support.proxy import ProxyProcess

from regauth.config import load_settings
from regauth.store import sealed

ECR_HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
PASSPHRASE = "correct horse battery staple 42"
TIMEOUT = 60

# An AWS credential_process: records what it inherited, then hands boto3 moto's fake keys.
_CREDENTIAL_PROCESS = """
import json, os, sys
with open(sys.argv[1], "w") as out:
    json.dump({"environ": dict(os.environ), "limits": open("/proc/self/limits").read()}, out)
print(json.dumps({"Version": 1, "AccessKeyId": "testing", "SecretAccessKey": "testing"}))
"""


def core_limit(limits: str) -> tuple[str, str]:
    (line,) = [line for line in limits.splitlines() if line.startswith("Max core file size")]
    soft, hard = line.split()[4:6]
    return soft, hard


def wait_for_core_limit(pid: int) -> tuple[str, str]:
    """The core limit of a running process, once it has set it to 0 (bounded wait)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        limit = core_limit(Path(f"/proc/{pid}/limits").read_text())
        if limit == ("0", "0") or time.monotonic() > deadline:
            return limit
        time.sleep(0.01)


@pytest.fixture
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_the_passphrase_leaves_the_environment_once_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGAUTH_PASSPHRASE", PASSPHRASE)
    settings = load_settings()
    assert settings.passphrase == PASSPHRASE
    assert "REGAUTH_PASSPHRASE" not in os.environ and "REGAUTH_PASSPHRASE" not in settings.environ
    assert PASSPHRASE not in repr(settings)
    child = subprocess.run(
        [sys.executable, "-c", "import os, sys; sys.stdout.write(repr(dict(os.environ)))"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    assert PASSPHRASE not in child.stdout and "REGAUTH_PASSPHRASE" not in child.stdout


def test_settings_given_an_environment_leave_the_process_environment_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REGAUTH_PASSPHRASE", PASSPHRASE)
    settings = load_settings({"REGAUTH_PASSPHRASE": "other", "HOME": "/nonexistent"})
    assert settings.passphrase == "other" and "REGAUTH_PASSPHRASE" not in settings.environ
    assert os.environ["REGAUTH_PASSPHRASE"] == PASSPHRASE


def test_an_sdk_child_of_the_helper_sees_no_passphrase_and_no_core_dumps(
    helper_exe: str, moto_url: str, isolated_env: Path, tmp_path: Path
) -> None:
    """The real helper's ``get`` for an ECR host: boto3 runs the profile's credential_process."""
    script = tmp_path / "credential_process.py"
    script.write_text(_CREDENTIAL_PROCESS)
    seen = tmp_path / "seen.json"
    (isolated_env / ".aws").mkdir()
    (isolated_env / ".aws" / "config").write_text(
        f"[default]\ncredential_process = {sys.executable} {script} {seen}\n"
    )
    env = dict(
        os.environ, REGAUTH_PASSPHRASE=PASSPHRASE, AWS_ENDPOINT_URL=moto_url, AWS_EC2_METADATA_DISABLED="true"
    )
    done = subprocess.run(
        [helper_exe, "get"], input=ECR_HOST, capture_output=True, text=True, timeout=TIMEOUT, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["Secret"] == "123456789012-auth-token"
    inherited = json.loads(seen.read_text())
    assert "REGAUTH_PASSPHRASE" not in inherited["environ"]
    assert PASSPHRASE not in json.dumps(inherited["environ"])
    # The helper's own limit, inherited: no core file from it, nor from the SDK's children.
    assert core_limit(inherited["limits"]) == ("0", "0")
    # The helper did read it: the token it cached is in a store sealed with the passphrase (scrypt).
    kdf, *_ = sealed.split(load_settings().secrets_file.read_bytes())
    assert kdf == sealed.KDF_SCRYPT


@pytest.mark.parametrize("action", ["get", "store"])
def test_the_running_helper_has_core_dumps_off(helper_exe: str, action: str) -> None:
    # The helper reads its stdin after turning dumps off: held open, it waits there to be looked at.
    proc = subprocess.Popen([helper_exe, action], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert wait_for_core_limit(proc.pid) == ("0", "0")
    finally:
        proc.communicate(b"registry.example", timeout=TIMEOUT)


def test_the_running_cli_has_core_dumps_off(regauth_exe: str) -> None:
    argv = ("registry", "add", "r", "--url", "registry.example", "--username", "u", "--password-stdin")
    proc = subprocess.Popen(
        [regauth_exe, *argv, "--no-validate"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert wait_for_core_limit(proc.pid) == ("0", "0")
    finally:
        proc.communicate(b"pw", timeout=TIMEOUT)
    assert proc.returncode == 0


def test_the_running_proxy_has_core_dumps_off(regauth_exe: str, tmp_path: Path) -> None:
    proxy = ProxyProcess(regauth_exe, tmp_path, "--docker-hub")
    try:
        proxy.wait_ready()
        assert core_limit(Path(f"/proc/{proxy.process.pid}/limits").read_text()) == ("0", "0")
    finally:
        assert proxy.stop() == 0


def test_disable_core_dumps_makes_the_process_not_dumpable() -> None:
    code = (
        "import ctypes, resource\n"
        "from regauth.coredump import disable_core_dumps\n"
        "disable_core_dumps()\n"
        "print(resource.getrlimit(resource.RLIMIT_CORE), ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    # PR_GET_DUMPABLE (3) answers 0: no core, no ptrace attach, /proc/PID/mem closed to the user.
    assert out.stdout.split() == ["(0,", "0)", "0"], out.stderr
