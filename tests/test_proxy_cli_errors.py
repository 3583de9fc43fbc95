"""`regauth proxy` refuses bad start-up input with one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest


def run(exe: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, "proxy", *argv], capture_output=True, text=True, timeout=60)


def test_a_port_in_use_is_one_line(regauth_exe: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(regauth_exe, "--listen", f"127.0.0.1:{port}")
    assert done.returncode == 1
    # The first run of `regauth proxy` meets a registry on its default port: say how to move.
    assert done.stderr.strip().splitlines() == [
        f"regauth: error: cannot listen on 127.0.0.1:{port}: Address already in use (something else, "
        "a registry perhaps, holds that port); choose another address with --listen HOST:PORT"
    ]


def test_the_default_port_in_use_names_listen(regauth_exe: str) -> None:
    """`regauth proxy` with no options, on a machine where a registry holds 127.0.0.1:5000."""
    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", 5000))
            taken.listen()
        except OSError:
            pass  # something on this machine holds it already, which is the case under test
        done = run(regauth_exe)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen on 127.0.0.1:5000" in lines[0], done.stderr
    assert "--listen HOST:PORT" in lines[0] and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--listen", "0.0.0.0:5000"], "is not a loopback address"),
        (["--listen", "0.0.0.0:5000", "--accept-cleartext-credentials"], "set --client-token-file"),
        (["--max-connections", "0"], "--max-connections must be at least 1"),
        (["--listen", "nonsense"], "use HOST:PORT"),
        (["--listen", "127.0.0.1:99999"], "use HOST:PORT"),
        (["--cache-dir", "/tmp/regauth-x", "--cache-max-size", "12XB"], "invalid size"),
        (["--cache-max-size", "1GiB"], "needs --cache-dir"),
        (["--cache-dir", "/dev/null/cache"], "cannot use it"),
    ],
)
def test_bad_options_are_one_line(regauth_exe: str, argv: list[str], expected: str) -> None:
    done = run(regauth_exe, *argv)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in done.stderr


@pytest.mark.parametrize("option", ["--client-token-file", "--htpasswd"])
def test_a_client_auth_file_that_is_no_utf8_is_one_line(
    regauth_exe: str, tmp_path: Path, option: str
) -> None:
    path = tmp_path / "auth-file"
    path.write_bytes(b"ci:\xff\xfe-not-text-0123456789\n")
    done = run(regauth_exe, "--listen", "127.0.0.1:0", option, str(path))
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [f"regauth: error: {option} {path}: it is not UTF-8 text"]
