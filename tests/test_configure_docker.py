"""``regauth configure docker`` with the real docker CLI (client side: no daemon runs here), through the
installed ``regauth`` and ``docker-credential-regauth`` on a private ``DOCKER_CONFIG``; and the common
behaviour every ``configure`` shares: the diff, the backup, the second run, ``--undo``, links, modes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from support.registry import RegistryFixture

from regauth.config import Settings
from regauth.registries import Registry, RegistryBook

TIMEOUT = 60
# Keys the docker CLI does not know (its own save would drop them) and values in a spelling of their own.
USER_CONFIG = (
    '{\n\t"auths": {},\n\t"x-team-note": {"keep":   [1,2, 1e5]},\n\t"psFormat": "table {{.ID}}"\n}\n'
)


def run(
    argv: list[str], stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(argv[0])
    assert exe, f"{argv[0]} is not installed; these tests need it (never skipped)"
    return subprocess.run(
        [exe, *argv[1:]], input=stdin, capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False
    )


def regauth(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run(["regauth", *args], env=env)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def backups(home: Path) -> list[Path]:
    root = home / ".local/state/regauth/backups/docker"
    return sorted(root.iterdir()) if root.exists() else []


def test_docker_cli_logs_in_and_out_through_the_helper_after_configure(
    registry_htpasswd: RegistryFixture, isolated_env: Path, regauth_exe: str, helper_exe: str
) -> None:
    fx = registry_htpasswd
    assert fx.username and fx.password
    config_dir = Path(os.environ["DOCKER_CONFIG"])
    config_dir.mkdir()
    config = config_dir / "config.json"
    config.write_text(USER_CONFIG)

    out = ok(regauth("configure", "docker", "--registries", fx.host))
    assert f"updated {config}" in out
    written = json.loads(config.read_text())
    assert written["credHelpers"] == {fx.host: "regauth"}
    # Everything else exactly as the user wrote it.
    assert '"x-team-note": {"keep":   [1,2, 1e5]}' in config.read_text()
    assert written["psFormat"] == "table {{.ID}}"

    login = run(["docker", "login", "-u", fx.username, "--password-stdin", fx.host], fx.password)
    assert "Login Succeeded" in ok(login)
    got = run([helper_exe, "get"], fx.host)
    assert json.loads(ok(got)) == {"ServerURL": fx.host, "Username": fx.username, "Secret": fx.password}
    assert fx.password not in config.read_text()
    assert json.loads(config.read_text())["credHelpers"] == {fx.host: "regauth"}

    ok(run(["docker", "logout", fx.host]))
    assert json.loads(ok(run([helper_exe, "list"], "unused"))) == {}
    assert json.loads(config.read_text())["credHelpers"] == {fx.host: "regauth"}


def test_creds_store_and_configured_records(isolated_env: Path, regauth_exe: str) -> None:
    ok(regauth("registry", "add", "hub", "--url", "docker.io", "--no-validate"))
    ok(regauth("registry", "add", "lab", "--url", "registry.lab:5000", "--no-validate"))
    ok(regauth("registry", "add", "off", "--url", "off.example", "--no-validate"))
    ok(regauth("registry", "disable", "off"))
    ok(regauth("configure", "docker", "--creds-store"))
    config = json.loads(Path(os.environ["DOCKER_CONFIG"], "config.json").read_text())
    # Docker Hub is looked up under its v1 URL by the docker CLI.
    assert config == {
        "credsStore": "regauth",
        "credHelpers": {"https://index.docker.io/v1/": "regauth", "registry.lab:5000": "regauth"},
    }
    assert (Path(os.environ["DOCKER_CONFIG"]).stat().st_mode & 0o777) == 0o700
    assert (Path(os.environ["DOCKER_CONFIG"], "config.json").stat().st_mode & 0o777) == 0o600


def test_dry_run_second_run_and_undo_round_trip(isolated_env: Path, regauth_exe: str) -> None:
    config = Path(os.environ["DOCKER_CONFIG"], "config.json")
    config.parent.mkdir()
    config.write_text(USER_CONFIG)
    os.chmod(config, 0o640)
    before = config.read_bytes()

    dry = ok(regauth("configure", "docker", "--registries", "ghcr.io", "--dry-run"))
    assert '+\t"credHelpers": {' in dry and "dry run, nothing written" in dry
    assert config.read_bytes() == before and backups(isolated_env) == []

    ok(regauth("configure", "docker", "--registries", "ghcr.io"))
    after = config.read_bytes()
    assert after != before and (config.stat().st_mode & 0o777) == 0o640
    [kept] = backups(isolated_env)
    assert (kept.stat().st_mode & 0o777) == 0o700
    assert [(p.stat().st_mode & 0o777) for p in kept.iterdir()] == [0o600, 0o600]

    again = ok(regauth("configure", "docker", "--registries", "ghcr.io"))
    assert "already configured, nothing to change" in again
    assert config.read_bytes() == after and len(backups(isolated_env)) == 1

    ok(regauth("configure", "docker", "--undo"))
    assert config.read_bytes() == before and (config.stat().st_mode & 0o777) == 0o640
    assert backups(isolated_env) == []
    nothing = regauth("configure", "docker", "--undo")
    assert nothing.returncode == 1 and "nothing to undo" in nothing.stderr


def test_a_new_file_is_removed_again_by_undo(isolated_env: Path, regauth_exe: str) -> None:
    config_dir = Path(os.environ["DOCKER_CONFIG"])
    ok(regauth("configure", "docker", "--registries", "ghcr.io"))
    assert json.loads((config_dir / "config.json").read_text()) == {"credHelpers": {"ghcr.io": "regauth"}}
    ok(regauth("configure", "docker", "--undo"))
    assert not config_dir.exists()


def test_a_symlinked_config_stays_a_link(isolated_env: Path, regauth_exe: str, tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "docker-config.json"
    target.write_text(USER_CONFIG)
    before = target.read_bytes()
    config_dir = Path(os.environ["DOCKER_CONFIG"])
    config_dir.mkdir()
    (config_dir / "config.json").symlink_to(target)

    out = ok(regauth("configure", "docker", "--registries", "ghcr.io"))
    assert f"updated {target} (through the link {config_dir / 'config.json'})" in out
    assert (config_dir / "config.json").is_symlink()
    assert json.loads(target.read_text())["credHelpers"] == {"ghcr.io": "regauth"}
    ok(regauth("configure", "docker", "--undo"))
    assert (config_dir / "config.json").is_symlink() and target.read_bytes() == before


def test_undo_refuses_to_overwrite_later_changes(isolated_env: Path, regauth_exe: str) -> None:
    config = Path(os.environ["DOCKER_CONFIG"], "config.json")
    config.parent.mkdir()
    config.write_text("{}")
    ok(regauth("configure", "docker", "--registries", "ghcr.io"))
    config.write_text('{"credHelpers": {"ghcr.io": "regauth"}, "mine": true}')
    refused = regauth("configure", "docker", "--undo")
    assert refused.returncode == 1 and "changed since regauth wrote it" in refused.stderr
    assert "mine" in config.read_text()
    ok(regauth("configure", "docker", "--undo", "--force"))
    assert config.read_text() == "{}"


def test_bad_input_is_one_line_and_changes_nothing(isolated_env: Path, regauth_exe: str) -> None:
    config = Path(os.environ["DOCKER_CONFIG"], "config.json")
    config.parent.mkdir()
    for text, why in (
        ('{"auths": {', "is not valid JSON"),
        ("[1]", "not an object"),
        ('{"credHelpers": []}', "'credHelpers' is not an object"),
        ('{"a": 1, "a": 2}', "the key 'a' twice"),
    ):
        config.write_text(text)
        proc = regauth("configure", "docker", "--registries", "ghcr.io")
        assert proc.returncode == 1 and why in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert config.read_text() == text
    pattern = regauth("configure", "docker", "--registries", "*.dkr.ecr.eu-west-1.amazonaws.com")
    assert pattern.returncode == 1 and "exact hosts, not patterns" in pattern.stderr
    nothing = regauth("configure", "docker")
    assert nothing.returncode == 1 and "no registries to configure docker for" in nothing.stderr


def test_owner_kept_helpers_replaced_said_and_hostile_bytes_escaped(
    isolated_env: Path, regauth_exe: str
) -> None:
    config = Path(os.environ["DOCKER_CONFIG"], "config.json")
    config.parent.mkdir()
    # A right-to-left override is valid in a JSON string, and would reorder what the terminal shows.
    config.write_text('{"credHelpers": {"ghcr.io": "desktop"}, "x-note": "\u202egnp.exe"}\n')
    before = config.read_bytes()
    if os.geteuid() == 0:
        # As root (CI): a file of another user stays that user's.
        os.chown(config, 4321, 4321)
    owner = (config.stat().st_uid, config.stat().st_gid)
    dry = ok(regauth("configure", "docker", "--registries", "ghcr.io", "--dry-run"))
    assert "\u202e" not in dry and "\\u202egnp.exe" in dry
    out = ok(regauth("configure", "docker", "--registries", "ghcr.io"))
    assert "note: ghcr.io was served by 'desktop'; it is now 'regauth'" in out
    assert (config.stat().st_uid, config.stat().st_gid) == owner
    undo_dry = ok(regauth("configure", "docker", "--undo", "--dry-run"))
    assert '-{"credHelpers": {"ghcr.io": "regauth"}' in undo_dry and "nothing restored" in undo_dry
    ok(regauth("configure", "docker", "--undo"))
    assert config.read_bytes() == before and (config.stat().st_uid, config.stat().st_gid) == owner


def test_a_host_with_only_per_prefix_records_is_left_to_the_proxy(
    settings: Settings, isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    book = RegistryBook.for_settings(settings)
    book.add(Registry(id="", name="org-a", registry="ghcr.io", prefix="org-a"), None)
    book.add(Registry(id="", name="quay", registry="quay.io"), None)
    ok(regauth("configure", "docker"))
    # The helper is asked for a host, and answers from host-wide records only.
    config = json.loads(Path(os.environ["DOCKER_CONFIG"], "config.json").read_text())
    assert config["credHelpers"] == {"quay.io": "regauth"}
    certs = tmp_path / "certs.d"
    argv = [
        "configure",
        "containerd",
        "--proxy",
        "http://127.0.0.1:5000",
        "--certs-dir",
        str(certs),
        "--no-config",
    ]
    ok(regauth(*argv))
    assert sorted(p.name for p in certs.iterdir()) == ["ghcr.io", "quay.io"]


def test_a_crlf_file_keeps_its_line_ends(isolated_env: Path, regauth_exe: str) -> None:
    config_dir = Path(os.environ["DOCKER_CONFIG"])
    config_dir.mkdir()
    config = config_dir / "config.json"
    # Written on Windows (a shared dotfiles checkout): CRLF, a member over several lines.
    config.write_bytes(b'{\r\n\t"auths": {},\r\n\t"x-note": {\r\n\t\t"keep": 1\r\n\t}\r\n}\r\n')
    original = config.read_bytes()
    ok(regauth("configure", "docker", "--registries", "ghcr.io"))
    data = config.read_bytes()
    assert b"\n" not in data.replace(b"\r\n", b""), data  # no bare LF: one line end throughout
    assert json.loads(data) == {"auths": {}, "x-note": {"keep": 1}, "credHelpers": {"ghcr.io": "regauth"}}
    assert "nothing to change" in ok(regauth("configure", "docker", "--registries", "ghcr.io"))
    ok(regauth("configure", "docker", "--undo"))
    assert config.read_bytes() == original
