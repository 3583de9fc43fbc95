"""Hostile argv and stdin at the three process edges, run as a user runs them (the installed commands).

Each case must end in one line saying what is wrong, a non-zero exit, no traceback, no secret, and
every file under HOME (the records, the secrets, the clients' files) as it was.
"""

from __future__ import annotations

import os
import subprocess
import sysconfig
from pathlib import Path

import pytest

BIN = Path(sysconfig.get_path("scripts"))
REGAUTH = str(BIN / "regauth")
HELPER = str(BIN / "docker-credential-regauth")
PROVIDER = str(BIN / "regauth-credential-provider")
SECRET = "hostile-argv-secret"


def files(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


@pytest.fixture
def home(isolated_env: Path) -> Path:
    added = subprocess.run(
        [REGAUTH, "registry", "add", "ghcr", "--url", "ghcr.io", "--username", "bob", "--password-stdin"]
        + ["--no-validate"],
        input=SECRET,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    (isolated_env / ".docker").mkdir(exist_ok=True)
    (isolated_env / ".docker" / "config.json").write_text('{"credsStore": "regauth"}\n')
    return isolated_env


def run_shell(script: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """``script`` in sh with "$@" = argv: for closed descriptors and pipes, which only a shell sets up."""
    return subprocess.run(
        ["sh", "-c", script, "sh", *argv], capture_output=True, text=True, timeout=60, errors="replace"
    )


def assert_refused(done: subprocess.CompletedProcess[str], *, stdout_line: bool = False) -> None:
    """One line (on stderr; on stdout for the helper, as the protocol says), exit != 0, no traceback."""
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert SECRET not in done.stdout + done.stderr
    said = done.stdout if stdout_line else done.stderr
    assert len(said.splitlines()) == 1, done.stdout + done.stderr


# --- a closed standard input (`<&-`): Python has no sys.stdin at all -----------------------------------

CLOSED_STDIN = [
    pytest.param([HELPER, "get"], True, id="helper-get"),
    pytest.param([HELPER, "store"], True, id="helper-store"),
    pytest.param([HELPER, "erase"], True, id="helper-erase"),
    pytest.param([PROVIDER], False, id="kube-provider"),
    pytest.param(
        [REGAUTH, "registry", "add", "x", "--url", "x.io", "--username", "u", "--password-stdin"]
        + ["--no-validate"],
        False,
        id="registry-add-password-stdin",
    ),
    pytest.param(
        [REGAUTH, "registry", "update", "ghcr", "--password-stdin", "--no-validate"],
        False,
        id="registry-update-password-stdin",
    ),
]


@pytest.mark.parametrize(("argv", "stdout_line"), CLOSED_STDIN)
def test_a_closed_stdin_is_one_line(home: Path, argv: list[str], stdout_line: bool) -> None:
    before = files(home)
    done = run_shell('exec "$@" <&-', *argv)
    assert_refused(done, stdout_line=stdout_line)
    assert files(home) == before


# --- a reader that goes away (SIGPIPE is ignored by Python: each write then raises BrokenPipeError) -----

PIPES = [
    pytest.param('"$@" | head -c0', [REGAUTH, "registry", "list"], id="registry-list"),
    pytest.param('"$@" | true', [REGAUTH, "doctor"], id="doctor"),
    pytest.param('"$@" | head -c0', [REGAUTH, "--help"], id="help"),
    pytest.param('"$@" | head -c0', [REGAUTH, "registry", "add", "--help"], id="subcommand-help"),
    pytest.param('"$@" | true', [HELPER, "list"], id="helper-list"),
]


@pytest.mark.parametrize(("script", "argv"), PIPES)
def test_a_closed_pipe_is_no_traceback(home: Path, script: str, argv: list[str]) -> None:
    before = files(home)
    # The reader may be gone before or after the first write: a few runs meet both orders.
    for _ in range(3):
        done = run_shell(script, *argv)
        assert "Traceback" not in done.stderr, done.stderr
        assert "BrokenPipeError" not in done.stderr, done.stderr
    assert files(home) == before


# --- numbers: an option of seconds or days takes a finite amount, 0 or more -----------------------------

NOT_AMOUNTS = ["-1", "nan", "1e309", "-inf"]
DOCTOR_AMOUNTS = ["--max-age", "--unused-days"]
PROXY_AMOUNTS = {
    "--manifest-ttl": ["--cache-dir", "{home}/blobs"],
    "--serve-stale": ["--cache-dir", "{home}/blobs"],
    "--cache-lease": ["--cache-url", "s3://bucket/prefix"],
    "--cache-redirect": ["--cache-url", "s3://bucket/prefix"],
    "--connect-timeout": [],
    "--read-timeout": [],
    "--shutdown-timeout": [],
}


def run(argv: list[str], stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, errors="replace"
    )


@pytest.mark.parametrize("value", NOT_AMOUNTS)
@pytest.mark.parametrize("option", DOCTOR_AMOUNTS)
def test_doctor_refuses_a_days_value_that_is_no_amount(home: Path, option: str, value: str) -> None:
    before = files(home)
    done = run([REGAUTH, "doctor", f"{option}={value}"])
    assert_refused(done)
    assert option in done.stderr
    assert files(home) == before


@pytest.mark.parametrize("value", NOT_AMOUNTS)
@pytest.mark.parametrize("option", sorted(PROXY_AMOUNTS))
def test_proxy_refuses_a_seconds_value_that_is_no_amount(home: Path, option: str, value: str) -> None:
    before = files(home)
    extra = [arg.format(home=home) for arg in PROXY_AMOUNTS[option]]
    # Accepted, the proxy would run: the bounded wait turns that into a failure, not a hang.
    done = run([REGAUTH, "proxy", "--listen", "127.0.0.1:1", f"{option}={value}", *extra], timeout=20)
    assert_refused(done)
    assert option in done.stderr
    assert files(home) == before


@pytest.mark.parametrize("value", ["1e309", "inf", "nan", "-1", "0"])
def test_proxy_refuses_a_cache_size_that_is_no_size(home: Path, value: str) -> None:
    before = files(home)
    argv = [REGAUTH, "proxy", "--listen", "127.0.0.1:1", "--cache-dir", str(home / "blobs")]
    done = run([*argv, f"--cache-max-size={value}"], timeout=20)
    assert_refused(done)
    assert "invalid size" in done.stderr
    assert files(home) == before


# --- paths the system refuses outright (a name longer than NAME_MAX) -----------------------------------


@pytest.mark.parametrize("option", ["--kubelet-config"])
def test_doctor_names_a_path_the_system_refuses_in_one_line(home: Path, option: str) -> None:
    before = files(home)
    done = run([REGAUTH, "doctor", option, "A" * 5000])
    assert_refused(done)
    assert done.stderr.startswith("regauth: error: ")
    assert files(home) == before


def test_doctor_refuses_a_kubelet_config_that_is_a_fifo(home: Path) -> None:
    fifo = home / "kubelet-config.json"
    os.mkfifo(fifo)
    # No writer ever comes: a plain open() would wait for one forever (the bounded wait says so).
    done = run([REGAUTH, "doctor", "--kubelet-config", str(fifo)], timeout=20)
    assert "Traceback" not in done.stderr
    assert done.returncode == 1
    assert f"ACTION kubelet: {fifo} is not a regular file" in done.stdout


@pytest.mark.parametrize("option", ["--client-token-file", "--htpasswd"])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_proxy_refuses_an_auth_file_that_is_no_file(home: Path, option: str, kind: str) -> None:
    path = home / "auth"
    if kind == "fifo":
        os.mkfifo(path)  # no writer ever comes
    # /dev/zero never ends: read whole, it would fill the memory before the bounded wait is up.
    target = str(path) if kind == "fifo" else "/dev/zero"
    before = files(home)
    done = run([REGAUTH, "proxy", "--listen", "127.0.0.1:1", option, target], timeout=20)
    assert_refused(done)
    assert f"regauth: error: {option} {target}: " in done.stderr
    assert files(home) == before


# --- an empty value is refused, never taken for "not given" (the system paths, no cap, no auth) ---------

EMPTY = [
    pytest.param(["configure", "kubelet", "--config", "", "--dry-run"], id="kubelet-config"),
    pytest.param(["configure", "kubelet", "--bin-dir", "", "--dry-run"], id="kubelet-bin-dir"),
    pytest.param(
        ["configure", "containerd", "--proxy", "http://127.0.0.1:5000", "--config", ""],
        id="containerd-config",
    ),
    pytest.param(
        ["configure", "containerd", "--proxy", "http://127.0.0.1:5000", "--certs-dir", ""], id="certs-dir"
    ),
    pytest.param(["configure", "containerd", "--proxy", ""], id="containerd-proxy"),
    pytest.param(["configure", "systemd", "--unit-dir", "", "--dry-run"], id="systemd-unit-dir"),
    pytest.param(["configure", "docker", "--config", ""], id="docker-config"),
    pytest.param(["import", "docker", "--config", ""], id="import-config"),
    pytest.param(["doctor", "--kubelet-config", ""], id="doctor-kubelet-config"),
    pytest.param(["proxy", "--listen", "127.0.0.1:1", "--cache-dir", ""], id="proxy-cache-dir"),
    pytest.param(["proxy", "--listen", "127.0.0.1:1", "--client-token-file", ""], id="proxy-token-file"),
    pytest.param(["proxy", "--listen", "127.0.0.1:1", "--cache-max-size", ""], id="proxy-cache-max-size"),
    pytest.param(["proxy", "--listen", "127.0.0.1:1", "--cache-url", ""], id="proxy-cache-url"),
    pytest.param(["registry", "update", "ghcr", "--ca-file", "", "--no-validate"], id="ca-file"),
]


@pytest.mark.parametrize("argv", EMPTY)
def test_an_empty_value_is_refused_not_taken_for_the_default(home: Path, argv: list[str]) -> None:
    # configure kubelet --config "" from an unset variable fell back to /etc/kubernetes (as root: written).
    before = files(home)
    done = run([REGAUTH, *argv], timeout=20)
    assert_refused(done)
    assert done.returncode == 2 and "an empty" in done.stderr, done.stderr
    assert files(home) == before
