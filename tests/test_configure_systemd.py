"""``regauth configure systemd``: a unit running ``regauth proxy`` with the given options, hardened and
restarted on failure, that ``systemd-analyze verify`` accepts without a word; written to the test's own
unit directory (the real systemd is never asked to load it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

TIMEOUT = 60


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(argv[0])
    assert exe, f"{argv[0]} is not installed; these tests need it (dev/setup installs it; never skipped)"
    return subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=TIMEOUT, check=False)


def ok(argv: list[str]) -> str:
    proc = run(argv)
    assert proc.returncode == 0, f"{argv}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def directives(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_user_unit_verified_by_systemd_analyze(isolated_env: Path, regauth_exe: str, tmp_path: Path) -> None:
    cache = tmp_path / "blob cache%1"
    out = ok(
        [
            "regauth",
            "configure",
            "systemd",
            "--user",
            "--",
            "--listen",
            "127.0.0.1:5050",
            "--cache-dir",
            str(cache),
        ]
    )
    unit = isolated_env / ".config/systemd/user/regauth-proxy.service"
    assert f"created {unit}" in out and "systemctl --user daemon-reload" in out
    text = unit.read_text()
    found = directives(text)
    quoted_cache = '"' + str(cache).replace("%", "%%") + '"'
    assert found["ExecStart"] == f"{regauth_exe} proxy --listen 127.0.0.1:5050 --cache-dir {quoted_cache}"
    assert found["Restart"] == "on-failure"
    for key, value in (("NoNewPrivileges", "yes"), ("PrivateTmp", "yes"), ("ProtectSystem", "strict")):
        assert found[key] == value
    assert f"-{quoted_cache}" in found["ReadWritePaths"]
    assert found["WantedBy"] == "default.target"

    verify = run(["systemd-analyze", "verify", str(unit)])
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr

    assert "nothing to change" in ok(
        [
            "regauth",
            "configure",
            "systemd",
            "--user",
            "--",
            "--listen",
            "127.0.0.1:5050",
            "--cache-dir",
            str(cache),
        ]
    )
    ok(["regauth", "configure", "systemd", "--undo"])
    assert not unit.exists()


def test_system_unit_in_a_given_directory(isolated_env: Path, regauth_exe: str, tmp_path: Path) -> None:
    units = tmp_path / "system"
    ok(["regauth", "configure", "systemd", "--unit-dir", str(units), "--", "--listen", "127.0.0.1:5051"])
    unit = units / "regauth-proxy.service"
    assert directives(unit.read_text())["WantedBy"] == "multi-user.target"
    verify = run(["systemd-analyze", "verify", str(unit)])
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    os.chmod(unit, 0o600)
    ok(["regauth", "configure", "systemd", "--unit-dir", str(units), "--", "--listen", "127.0.0.1:5052"])
    assert (unit.stat().st_mode & 0o777) == 0o600 and "127.0.0.1:5052" in unit.read_text()


def test_misspelt_proxy_options_write_nothing(isolated_env: Path, regauth_exe: str, tmp_path: Path) -> None:
    units = tmp_path / "system"
    bad = run(
        ["regauth", "configure", "systemd", "--unit-dir", str(units), "--", "--lisen", "127.0.0.1:5050"]
    )
    assert bad.returncode != 0 and "not valid for `regauth proxy`" in bad.stderr
    # One line, naming the option: argparse's own line is not printed beside it.
    [line] = bad.stderr.splitlines()
    assert "--lisen" in line and bad.stdout == "", bad.stderr
    assert not units.exists()


def test_a_port_below_1024_keeps_only_the_capability_to_bind_it(
    isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    units = tmp_path / "system"
    argv = ["regauth", "configure", "systemd", "--unit-dir", str(units), "--", "--listen", "127.0.0.1:443"]
    ok([*argv, "--tls-cert", "/etc/regauth/proxy.pem", "--tls-key", "/etc/regauth/proxy.key"])
    unit = units / "regauth-proxy.service"
    found = directives(unit.read_text())
    assert found["CapabilityBoundingSet"] == found["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    verify = run(["systemd-analyze", "verify", str(unit)])
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
