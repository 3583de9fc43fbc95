"""``docker login`` and ``docker logout`` keep what the user configured.

The real docker CLI (client side, a private DOCKER_CONFIG whose ``credsStore`` is regauth) logs in to
the real TLS htpasswd registry, and the installed ``regauth`` and ``docker-credential-regauth`` show what
was kept. The clients' CA directories are the test's own (``REGAUTH_CERTS_DIRS``), never /etc.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.registry import RegistryFixture

from regauth.helper import fastget, texts

TIMEOUT = 60
ECR_HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def run(
    argv: list[str], stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False
    )


class Docker:
    def __init__(self, fx: RegistryFixture, config_dir: Path, env: dict[str, str]) -> None:
        exe = shutil.which("docker")
        assert exe is not None, "the docker CLI is not installed; these tests need it (never skipped)"
        self.exe, self.fx = exe, fx
        config_dir.mkdir()
        (config_dir / "config.json").write_text(json.dumps({"credsStore": "regauth"}))
        self.env = {**env, "DOCKER_CONFIG": str(config_dir)}

    def login(self) -> subprocess.CompletedProcess[str]:
        assert self.fx.username and self.fx.password
        argv = [self.exe, "login", "-u", self.fx.username, "--password-stdin", self.fx.host]
        return run(argv, self.fx.password, self.env)

    def logout(self) -> subprocess.CompletedProcess[str]:
        return run([self.exe, "logout", self.fx.host], "", self.env)


@pytest.fixture
def certs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """The user's, containers' and docker's certs.d directories, in the order regauth searches them."""
    dirs = (tmp_path / "user-certs.d", tmp_path / "containers-certs.d", tmp_path / "docker-certs.d")
    monkeypatch.setenv("REGAUTH_CERTS_DIRS", os.pathsep.join(map(str, dirs)))
    return dirs


@pytest.fixture
def docker(registry_htpasswd: RegistryFixture, tmp_path: Path, certs: object, helper_exe: str) -> Docker:
    assert shutil.which("docker-credential-regauth") == helper_exe
    return Docker(registry_htpasswd, tmp_path / "docker-config", dict(os.environ))


def regauth(exe: str, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run([exe, *argv], stdin, dict(os.environ))


def shown(exe: str, name: str) -> dict[str, object]:
    done = regauth(exe, "registry", "show", name, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def helper(exe: str, action: str, payload: str) -> subprocess.CompletedProcess[str]:
    return run([exe, action], payload, dict(os.environ))


def place_ca(directory: Path, host: str, ca_file: str, name: str = "ca.crt") -> Path:
    (directory / host).mkdir(parents=True)
    path = directory / host / name
    path.write_bytes(Path(ca_file).read_bytes())
    path.chmod(0o644)
    return path


# --- logout ------------------------------------------------------------------------------------------


def test_logout_keeps_a_record_made_with_registry_add(
    docker: Docker, regauth_exe: str, helper_exe: str
) -> None:
    fx = docker.fx
    assert fx.ca_file and fx.username and fx.password
    add = ["registry", "add", "ht", "--url", fx.host, "--ca-file", fx.ca_file, "--repository", fx.repository]
    add += ["--option", "realm_hosts=auth.example", "--username", fx.username, "--password-stdin"]
    done = regauth(regauth_exe, *add, stdin=fx.password)
    assert done.returncode == 0, done.stderr

    login = docker.login()
    assert login.returncode == 0, login.stdout + login.stderr
    logout = docker.logout()
    assert logout.returncode == 0, logout.stdout + logout.stderr
    # docker passes the helper's stderr through: the user is told what stayed.
    assert "registry 'ht' keeps its settings" in logout.stderr

    record = shown(regauth_exe, "ht")
    assert record["ca_file"] == fx.ca_file and record["repository"] == fx.repository
    assert record["options"] == {"realm_hosts": "auth.example"} and record["origin"] == "cli"
    assert record["username"] is None and record["secret"] == "none (anonymous)"
    # The login is gone for every client: the helper answers "not found" (fast get and general path).
    got = helper(helper_exe, "get", fx.host)
    assert (got.returncode, got.stdout) == (1, texts.NOT_FOUND + "\n")
    assert fastget.answer(fx.host.encode(), os.environ) is None  # the general path answers it
    assert fx.password not in json.dumps(record) + got.stdout + got.stderr

    # Logging in again fills the kept record in.
    again = docker.login()
    assert again.returncode == 0, again.stderr
    assert shown(regauth_exe, "ht")["username"] == fx.username
    assert json.loads(helper(helper_exe, "get", fx.host).stdout)["Secret"] == fx.password


def test_logout_removes_a_record_that_a_login_made(docker: Docker, regauth_exe: str) -> None:
    assert docker.login().returncode == 0
    logout = docker.logout()
    assert logout.returncode == 0 and "keeps" not in logout.stderr
    listed = regauth(regauth_exe, "registry", "list", "--json")
    assert json.loads(listed.stdout) == []


def test_a_login_record_changed_with_registry_update_is_the_users(
    docker: Docker, regauth_exe: str, tmp_path: Path
) -> None:
    assert docker.login().returncode == 0
    [made] = json.loads(regauth(regauth_exe, "registry", "list", "--json").stdout)
    assert made["origin"] == "helper"
    update = regauth(regauth_exe, "registry", "update", made["name"], "--ca-file", str(docker.fx.ca_file))
    assert update.returncode == 0, update.stderr
    assert docker.logout().returncode == 0
    kept = shown(regauth_exe, made["name"])
    assert kept["ca_file"] == docker.fx.ca_file and kept["username"] is None and kept["origin"] == "cli"


def _write_records(home: Path, records: list[dict[str, object]]) -> None:
    path = home / ".config/regauth/registries.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "registries": records}))
    path.chmod(0o600)


def test_records_from_before_origins_keep_what_they_configure(
    isolated_env: Path, regauth_exe: str, helper_exe: str, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    # Files written by an older regauth have no origin: a record with a CA was configured by hand.
    _write_records(
        isolated_env,
        [
            {"id": "a1", "name": "corp", "registry": "corp.example", "username": "u", "ca_file": str(ca)},
            {"id": "b2", "name": "plain", "registry": "plain.example", "username": "u"},
        ],
    )
    for host in ("corp.example", "plain.example"):
        erased = helper(helper_exe, "erase", host)
        assert erased.returncode == 0, erased.stderr
    records = json.loads(regauth(regauth_exe, "registry", "list", "--json").stdout)
    assert [(r["name"], r["username"], r["ca_file"]) for r in records] == [("corp", None, str(ca))]


def test_erase_of_a_provider_record_leaves_it(isolated_env: Path, regauth_exe: str, helper_exe: str) -> None:
    add = ["registry", "add", "prod", "--url", ECR_HOST, "--provider", "ecr", "--no-validate"]
    assert regauth(regauth_exe, *add).returncode == 0
    erased = helper(helper_exe, "erase", ECR_HOST)
    assert erased.returncode == 0 and "left in place" in erased.stderr
    assert shown(regauth_exe, "prod")["provider"] == "ecr"


# --- login: the clients' CA --------------------------------------------------------------------------


def test_login_picks_up_the_ca_docker_trusts(
    docker: Docker, certs: tuple[Path, Path, Path], regauth_exe: str
) -> None:
    fx = docker.fx
    assert fx.ca_file
    placed = place_ca(certs[2], fx.host, fx.ca_file)
    login = docker.login()
    assert login.returncode == 0, login.stdout + login.stderr
    [record] = json.loads(regauth(regauth_exe, "registry", "list", "--json").stdout)
    assert record["ca_file"] == str(placed)
    # regauth's own check now trusts what the client trusted.
    checked = regauth(regauth_exe, "registry", "validate", record["name"])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("ok ")


def test_the_users_certs_dir_comes_first_and_a_writable_ca_is_not_trusted(
    docker: Docker, certs: tuple[Path, Path, Path], regauth_exe: str, helper_exe: str
) -> None:
    fx = docker.fx
    assert fx.ca_file and fx.username and fx.password
    user_ca = place_ca(certs[0], fx.host, fx.ca_file, "registry.crt")
    place_ca(certs[1], fx.host, fx.ca_file)
    assert docker.login().returncode == 0
    [record] = json.loads(regauth(regauth_exe, "registry", "list", "--json").stdout)
    assert record["ca_file"] == str(user_ca)
    assert docker.logout().returncode == 0

    # A CA that others may write could be swapped for theirs: not taken.
    for base in certs[:2]:
        shutil.rmtree(base)
    writable = place_ca(certs[2], fx.host, fx.ca_file)
    writable.chmod(0o666)
    payload = json.dumps({"ServerURL": fx.host, "Username": fx.username, "Secret": fx.password})
    assert helper(helper_exe, "store", payload).returncode == 0
    [record] = json.loads(regauth(regauth_exe, "registry", "list", "--json").stdout)
    assert record["ca_file"] is None


def test_a_login_with_no_ca_anywhere_stores_none(docker: Docker, regauth_exe: str) -> None:
    assert docker.login().returncode == 0
    [record] = json.loads(regauth(regauth_exe, "registry", "list", "--json").stdout)
    assert record["ca_file"] is None


# --- login: cloud registries -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "username", "provider"),
    [
        (ECR_HOST, "AWS", "ecr"),
        ("corp.azurecr.io", "00000000-0000-0000-0000-000000000000", "acr"),
        ("europe-west1-docker.pkg.dev", "oauth2accesstoken", "gcp"),
    ],
)
def test_a_token_login_to_a_cloud_registry_is_stored_with_a_note(
    isolated_env: Path, regauth_exe: str, helper_exe: str, host: str, username: str, provider: str
) -> None:
    token = "short-lived-token-123"
    payload = json.dumps({"ServerURL": f"https://{host}", "Username": username, "Secret": token})
    stored = helper(helper_exe, "store", payload)
    assert stored.returncode == 0 and stored.stdout == ""
    note = stored.stderr
    assert note.startswith("docker-credential-regauth: note: ") and "its token expires" in note
    assert f"`docker logout {host}`" in note and token not in note
    got = json.loads(helper(helper_exe, "get", host).stdout)
    assert (got["Username"], got["Secret"]) == (username, token)
    which = json.loads(regauth(regauth_exe, "registry", "which", host, "--json").stdout)
    assert which["answered_by"] == "record" and token not in json.dumps(which)

    # Following the note: the login goes, and regauth's provider answers for the host again.
    assert helper(helper_exe, "erase", host).returncode == 0
    which = json.loads(regauth(regauth_exe, "registry", "which", host, "--json").stdout)
    assert (which["answered_by"], which["provider"]) == ("provider", provider)


def test_a_lasting_secret_for_a_cloud_registry_gets_no_note(isolated_env: Path, helper_exe: str) -> None:
    # GCP's service-account key login does not expire.
    payload = json.dumps({"ServerURL": "gcr.io", "Username": "_json_key", "Secret": "{}"})
    stored = helper(helper_exe, "store", payload)
    assert (stored.returncode, stored.stderr) == (0, "")
