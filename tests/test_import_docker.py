"""``regauth import docker|podman``: the plaintext ``auths`` of a real ``docker login`` (no helper
configured) move into regauth after validation against the real registry; the docker CLI still
authenticates, through the helper, and the file holds no secret; what does not validate stays."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

from support.registry import RegistryFixture

TIMEOUT = 60


def run(
    argv: list[str], stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(argv[0])
    assert exe, f"{argv[0]} is not installed; these tests need it (never skipped)"
    return subprocess.run(
        [exe, *argv[1:]], input=stdin, capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_docker_login_imported_then_docker_still_authenticates(
    registry_htpasswd: RegistryFixture, isolated_env: Path, regauth_exe: str, helper_exe: str
) -> None:
    fx = registry_htpasswd
    assert fx.username and fx.password
    config_dir = Path(os.environ["DOCKER_CONFIG"])
    config_dir.mkdir()
    config = config_dir / "config.json"
    # What `docker login` leaves where no credential store is found: base64 in the file. (Here the docker
    # CLI would pick docker-credential-pass by itself, so the file is written as it would be.)
    auth = b64(f"{fx.username}:{fx.password}")
    config.write_text(
        json.dumps(
            {
                "auths": {fx.host: {"auth": auth}, "127.0.0.1:1": {"auth": b64("u:wrong-secret-1")}},
                "x-kept": {"a": 1},
            },
            indent="\t",
        )
    )
    original = config.read_bytes()
    # The clients trust the registry's CA from certs.d; the import takes it from there, as a login does.
    assert fx.ca_file
    (isolated_env / "certs.d" / fx.host).mkdir(parents=True)
    shutil.copyfile(fx.ca_file, isolated_env / "certs.d" / fx.host / "ca.crt")
    # The plaintext works for the docker CLI as it is (`docker manifest inspect` runs client side).
    manifest = ["docker", "manifest", "inspect", "--insecure", f"{fx.host}/{fx.repository}:{fx.tag}"]
    assert json.loads(ok(run(manifest)))["schemaVersion"] == 2

    dry = run(["regauth", "import", "docker", "--dry-run"])
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert f"would move {fx.host} (user {fx.username})" in dry.stdout
    assert "did not validate: 127.0.0.1:1" in dry.stdout
    for secret in (fx.password, b64(f"{fx.username}:{fx.password}"), "wrong-secret-1"):
        assert secret not in dry.stdout + dry.stderr
    assert ok(run(["regauth", "registry", "list", "--json"])) == "[]\n"

    imported = run(["regauth", "import", "docker"])
    assert imported.returncode == 1  # something left in place
    assert f"moved {fx.host} (user {fx.username}) -> registry" in imported.stdout
    text = config.read_text()
    assert fx.password not in text and b64(f"{fx.username}:{fx.password}") not in text
    after = json.loads(text)
    assert after["credHelpers"] == {fx.host: "regauth"}
    assert fx.host not in after["auths"] and "127.0.0.1:1" in after["auths"]
    assert after["x-kept"] == {"a": 1}
    got = run([helper_exe, "get"], fx.host)
    assert json.loads(ok(got)) == {"ServerURL": fx.host, "Username": fx.username, "Secret": fx.password}

    [saved] = json.loads(ok(run(["regauth", "registry", "list", "--json"])))
    assert (saved["registry"], saved["username"], saved["ca_file"]) == (
        fx.host,
        fx.username,
        str(isolated_env / "certs.d" / fx.host / "ca.crt"),
    )
    assert saved["last_validation"]["outcome"] == "valid"
    # The docker CLI authenticates through the helper now.
    assert json.loads(ok(run(manifest)))["schemaVersion"] == 2
    assert fx.password not in config.read_text()
    # The backup holds the plaintext, and only its owner can read it.
    [backup_dir] = (isolated_env / ".local/state/regauth/backups/import-docker").iterdir()
    kept = [p for p in backup_dir.iterdir() if p.name != "manifest.json"]
    assert [p.stat().st_mode & 0o777 for p in kept] == [0o600]
    assert (backup_dir.stat().st_mode & 0o777) == 0o700
    assert kept[0].read_bytes() == original

    # A second run moves nothing more; what regauth already has is said so.
    second = run(["regauth", "import", "docker"])
    assert "did not validate: 127.0.0.1:1" in second.stdout
    assert fx.password not in second.stdout + second.stderr


def test_podman_auth_file_without_validation(isolated_env: Path, regauth_exe: str, tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    auth.write_text(
        json.dumps(
            {
                "auths": {
                    "registry.lab:5000": {"auth": b64("ci:s3cret-lab")},
                    "quay.io/team/app": {"auth": b64("robot:s3cret-quay")},
                    "broken.example": {"auth": "%%%"},
                },
                "credHelpers": {"ghcr.io": "gh"},
            }
        )
    )
    env = dict(os.environ, REGISTRY_AUTH_FILE=str(auth))
    ok(run(["regauth", "registry", "add", "lab", "--url", "registry.lab:5000", "--no-validate"], env=env))
    out = run(["regauth", "import", "podman", "--no-validate"], env=env)
    assert "already there: registry.lab:5000: already in regauth as 'lab'" in out.stdout
    assert "left in place: quay.io/team/app: a namespaced entry" in out.stdout
    assert "left in place: broken.example" in out.stdout
    assert "s3cret" not in out.stdout + out.stderr and out.returncode == 1
    assert "registry.lab:5000" in json.loads(auth.read_text())["auths"]

    auth.write_text(
        json.dumps(
            {
                "auths": {
                    "docker.io": {"auth": b64("me:s3cret-hub")},
                    "quay.io": {"identitytoken": "s3cret-id"},
                }
            }
        )
    )
    out = run(["regauth", "import", "podman", "--no-validate"], env=env)
    assert out.returncode == 0 and "moved docker.io (user me) -> registry 'docker.io'" in out.stdout
    assert "moved quay.io (user <token>) -> registry 'quay.io'" in out.stdout
    assert json.loads(auth.read_text()) == {
        "auths": {},
        "credHelpers": {"docker.io": "regauth", "quay.io": "regauth"},
    }
    got = subprocess.run(
        [shutil.which("docker-credential-regauth") or "", "get"],
        input="quay.io",
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(got.stdout) == {"ServerURL": "quay.io", "Username": "<token>", "Secret": "s3cret-id"}
    assert "s3cret" not in out.stdout + out.stderr


def test_import_undo_puts_the_file_back_and_removes_the_records(
    registry_htpasswd: RegistryFixture, isolated_env: Path, regauth_exe: str, helper_exe: str
) -> None:
    fx = registry_htpasswd
    assert fx.username and fx.password and fx.ca_file
    config_dir = Path(os.environ["DOCKER_CONFIG"])
    config_dir.mkdir()
    config = config_dir / "config.json"
    auth = b64(f"{fx.username}:{fx.password}")
    # As a user's file is: tabs, unknown keys, no newline at the end.
    config.write_bytes(
        json.dumps({"auths": {fx.host: {"auth": auth}}, "x-kept": [1, {"b": None}]}, indent="\t").encode()
    )
    original = config.read_bytes()
    (isolated_env / "certs.d" / fx.host).mkdir(parents=True)
    shutil.copyfile(fx.ca_file, isolated_env / "certs.d" / fx.host / "ca.crt")
    manifest = ["docker", "manifest", "inspect", "--insecure", f"{fx.host}/{fx.repository}:{fx.tag}"]

    ok(run(["regauth", "import", "docker"]))
    assert fx.password not in config.read_text()
    [saved] = json.loads(ok(run(["regauth", "registry", "list", "--json"])))

    dry = run(["regauth", "import", "docker", "--undo", "--dry-run"])
    assert dry.returncode == 0, dry.stderr
    assert f"would remove registry {saved['name']!r} ({fx.host}), made by the import" in dry.stdout
    for secret in (fx.password, auth):
        assert secret not in dry.stdout + dry.stderr
    assert "<redacted>" in dry.stdout
    assert fx.password not in config.read_text()

    undone = run(["regauth", "import", "docker", "--undo"])
    assert undone.returncode == 0, undone.stderr
    assert f"removed registry {saved['name']!r} ({fx.host}), made by the import" in undone.stdout
    assert fx.password not in undone.stdout + undone.stderr
    assert config.read_bytes() == original
    assert ok(run(["regauth", "registry", "list", "--json"])) == "[]\n"
    # The helper has nothing for the host now; the docker CLI authenticates with the plaintext again.
    assert run([helper_exe, "get"], fx.host).returncode != 0
    assert json.loads(ok(run(manifest)))["schemaVersion"] == 2
    again = run(["regauth", "import", "docker", "--undo"])
    assert again.returncode != 0
    assert (
        "no backup of a `regauth import docker` run" in again.stderr and len(again.stderr.splitlines()) == 1
    )


def test_import_undo_refuses_when_the_record_changed(isolated_env: Path, regauth_exe: str) -> None:
    config_dir = Path(os.environ["DOCKER_CONFIG"])
    config_dir.mkdir()
    config = config_dir / "config.json"
    config.write_text(json.dumps({"auths": {"registry.lab:5000": {"auth": b64("ci:s3cret-lab")}}}))
    original = config.read_bytes()
    ok(run(["regauth", "import", "docker", "--no-validate"]))
    imported = config.read_bytes()
    ok(
        run(
            [
                "regauth",
                "registry",
                "update",
                "registry.lab-5000",
                "--repository",
                "team/app",
                "--no-validate",
            ]
        )
    )

    refused = run(["regauth", "import", "docker", "--undo"])
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "registry 'registry.lab-5000' changed since `regauth import docker` made it" in refused.stderr
    assert config.read_bytes() == imported
    forced = run(["regauth", "import", "docker", "--undo", "--force"])
    assert forced.returncode == 0, forced.stderr
    assert "kept registry 'registry.lab-5000': changed since the import" in forced.stdout
    assert config.read_bytes() == original
    assert [r["name"] for r in json.loads(ok(run(["regauth", "registry", "list", "--json"])))] == [
        "registry.lab-5000"
    ]
    assert "s3cret" not in refused.stderr + forced.stdout + forced.stderr
    alone = run(["regauth", "import", "docker", "--force"])
    assert alone.returncode == 1 and alone.stderr == "regauth: error: --force goes with --undo only\n"


def test_podman_import_undo_round_trip(isolated_env: Path, regauth_exe: str, tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    auth.write_text(
        '{\n    "auths": {\n        "quay.io": {"identitytoken": "s3cret-id"}\n    },\n    "x": 1\n}\n'
    )
    auth.chmod(0o640)
    original = auth.read_bytes()
    env = dict(os.environ, REGISTRY_AUTH_FILE=str(auth))
    ok(run(["regauth", "import", "podman", "--no-validate"], env=env))
    assert "s3cret" not in auth.read_text()
    undone = run(["regauth", "import", "podman", "--undo"], env=env)
    assert undone.returncode == 0, undone.stderr
    assert "removed registry 'quay.io' (quay.io), made by the import" in undone.stdout
    assert auth.read_bytes() == original and (auth.stat().st_mode & 0o777) == 0o640
    assert ok(run(["regauth", "registry", "list", "--json"], env=env)) == "[]\n"
    assert "s3cret" not in undone.stdout + undone.stderr
