"""``credential-helpers = []`` in registries.conf is the default list (the auth files alone) to the
containers clients, as skopeo shows: regauth put first keeps the auth files after it, and doctor does
not call a host unreachable through them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from support.cli import ok, recording_helper, regauth

HOST = "127.0.0.1:1"  # nothing listens: skopeo fails fast once it has chosen a credential


def test_an_empty_credential_helpers_list(isolated_env: Path, regauth_exe: str, tmp_path: Path) -> None:
    bin_dir, calls = recording_helper(tmp_path)
    (tmp_path / "run").mkdir()
    auth = isolated_env / ".config" / "containers" / "auth.json"
    auth.parent.mkdir(parents=True)
    auth.write_text('{"credHelpers": {"127.0.0.1:2": "other"}}')
    conf = tmp_path / "registries.conf"
    conf.write_text("# the team's\ncredential-helpers = []\n")
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        XDG_RUNTIME_DIR=str(tmp_path / "run"),
        CONTAINERS_REGISTRIES_CONF=str(conf),
    )
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is not installed; these tests need it (never skipped)"
    inspect = [
        skopeo,
        "--registries-conf",
        str(conf),
        "inspect",
        "--tls-verify=false",
        "docker://127.0.0.1:2/app",
    ]

    def asked_other() -> bool:
        calls.unlink(missing_ok=True)
        subprocess.run(inspect, capture_output=True, timeout=60, env=env, check=False)
        return calls.exists() and "get 127.0.0.1:2" in calls.read_text()

    assert asked_other()  # [] reads the auth files, as no list at all does
    ok(regauth("registry", "add", "lab", "--url", HOST, "--no-validate", env=env))
    ok(regauth("configure", "podman", env=env))  # credHelpers in the auth file, which [] still reads
    doctor = regauth("doctor", env=env).stdout
    assert f"ok     podman: {auth}: credHelpers name regauth" in doctor and "ACTION podman" not in doctor, (
        doctor
    )
    ok(regauth("configure", "podman", "--registries-conf", env=env))
    assert 'credential-helpers = ["regauth", "containers-auth.json"]' in conf.read_text()
    assert conf.read_text().startswith("# the team's\n")
    assert asked_other()  # the auth files still answer after regauth
