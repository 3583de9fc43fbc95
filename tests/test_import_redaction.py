"""``regauth import docker --dry-run`` shows its diff with every secret as ``<redacted>``: the secret as
the auth file spells it (JSON-escaped, as Go escapes ``<``), and nothing else that merely looks like it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

TIMEOUT = 60


def dry_run(regauth_exe: str) -> subprocess.CompletedProcess[str]:
    argv = [regauth_exe, "import", "docker", "--dry-run", "--no-validate"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_escaped_password_field_is_redacted(isolated_env: Path, regauth_exe: str) -> None:
    config_dir = Path(os.environ["DOCKER_CONFIG"])
    config_dir.mkdir()
    secret = 'pa"ss\\w<rd'
    # json.dumps writes \" and \\; Go's encoder (the docker CLI's) also writes < as \u003c.
    text = json.dumps({"auths": {"lab.example:5000": {"auth": b64(f"u:{secret}"), "password": secret}}})
    (config_dir / "config.json").write_text(text.replace("<", "\\u003c"))
    proc = dry_run(regauth_exe)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert '"password": "<redacted>"' in out or '"password":"<redacted>"' in out, out
    for spelling in (secret, json.dumps(secret)[1:-1], 'pa\\"ss', "\\u003crd"):
        assert spelling not in out, out


def test_a_short_password_does_not_show_where_it_occurs(isolated_env: Path, regauth_exe: str) -> None:
    """Replacing the raw password everywhere turned `.docker` into `.<redacted>` for the password
    `docker`: the diff then told the secret by where the mark stood."""
    config_dir = Path(os.environ["DOCKER_CONFIG"])
    config_dir.mkdir()
    (config_dir / "config.json").write_text(
        json.dumps({"auths": {"lab.example:5000": {"auth": b64("u:lab")}}})
    )
    proc = dry_run(regauth_exe)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [before] = [line for line in proc.stdout.splitlines() if line.startswith("-{")]
    assert '"lab.example:5000"' in before, proc.stdout
    assert f"{config_dir}/config.json".lstrip("/") in proc.stdout, proc.stdout
    assert '"auth": "<redacted>"' in proc.stdout or '"auth":"<redacted>"' in proc.stdout, proc.stdout
