"""Real clients against a real registry (docker-registry, htpasswd over TLS), with regauth as their helper.

skopeo finds regauth through ``credHelpers`` in the auth file named by REGISTRY_AUTH_FILE (it ignores
``credsStore``); the docker CLI through ``credsStore`` in ``$DOCKER_CONFIG/config.json``. Both run the
installed ``docker-credential-regauth`` found first on PATH. A missing client fails these tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.registry import RegistryFixture

from regauth.config import Settings
from regauth.helper import texts

TIMEOUT = 60


def run(
    argv: list[str], stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=dict(os.environ) if env is None else env,
        check=False,
    )


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed; these tests need it (never skipped)"
    return path


def helper_list(helper_exe: str) -> dict[str, str]:
    proc = run([helper_exe, "list"], b"unused")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert isinstance(result, dict)
    return result


def helper_get(helper_exe: str, server: str) -> subprocess.CompletedProcess[str]:
    return run([helper_exe, "get"], server.encode())


def store_files(settings: Settings) -> dict[str, bytes | None]:
    paths = (settings.registries_file, settings.secrets_file)
    return {p.name: p.read_bytes() if p.exists() else None for p in paths}


@pytest.fixture
def on_path(helper_exe: str) -> None:
    # The clients must run the installed helper, not one found later on PATH (a pyenv shim, say).
    assert shutil.which("docker-credential-regauth") == helper_exe


# --- skopeo ---------------------------------------------------------------------------------------


class Skopeo:
    def __init__(self, fx: RegistryFixture, workdir: Path) -> None:
        self.fx = fx
        self.exe = tool("skopeo")
        self.cert_dir = workdir / "certs"
        self.cert_dir.mkdir(parents=True)
        assert fx.ca_file is not None
        shutil.copyfile(fx.ca_file, self.cert_dir / "ca.crt")
        self.auth_file = workdir / "auth.json"
        self.auth_file.write_text(json.dumps({"credHelpers": {fx.host: "regauth"}}))
        self.env = dict(os.environ, REGISTRY_AUTH_FILE=str(self.auth_file))

    def __call__(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
        return run([self.exe, *args], stdin, self.env)

    def login(self, password: str) -> subprocess.CompletedProcess[str]:
        assert self.fx.username is not None
        return self(
            "login",
            "--cert-dir",
            str(self.cert_dir),
            "-u",
            self.fx.username,
            "--password-stdin",
            self.fx.host,
            stdin=password.encode(),
        )

    def inspect(self) -> subprocess.CompletedProcess[str]:
        image = f"docker://{self.fx.host}/{self.fx.repository}:{self.fx.tag}"
        return self("inspect", "--cert-dir", str(self.cert_dir), image)


@pytest.fixture
def skopeo(registry_htpasswd: RegistryFixture, tmp_path: Path, on_path: None) -> Skopeo:
    return Skopeo(registry_htpasswd, tmp_path / "skopeo")


def test_skopeo_login_inspect_logout(skopeo: Skopeo, helper_exe: str, regauth_exe: str) -> None:
    fx = skopeo.fx
    assert fx.password is not None

    # No credential yet: the helper answers "not found", skopeo goes anonymous and is refused.
    refused = skopeo.inspect()
    assert refused.returncode != 0
    assert "unauthorized" in (refused.stderr + refused.stdout).lower()

    login = skopeo.login(fx.password)
    assert login.returncode == 0, login.stdout + login.stderr
    assert helper_list(helper_exe) == {fx.host: fx.username}
    got = helper_get(helper_exe, fx.host)
    assert got.returncode == 0
    assert json.loads(got.stdout) == {"ServerURL": fx.host, "Username": fx.username, "Secret": fx.password}
    listed = run([regauth_exe, "registry", "list", "--json"])
    assert listed.returncode == 0, listed.stderr
    assert [(r["registry"], r["username"], r["provider"]) for r in json.loads(listed.stdout)] == [
        (fx.host, fx.username, "static")
    ]
    # The auth file still only names the helper: the password went to regauth, not into it.
    auth = skopeo.auth_file.read_text()
    assert fx.password not in auth
    assert json.loads(auth)["credHelpers"] == {fx.host: "regauth"}

    inspected = skopeo.inspect()
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Digest"] == fx.digest

    logout = skopeo("logout", fx.host)
    assert logout.returncode == 0, logout.stdout + logout.stderr
    assert helper_list(helper_exe) == {}
    assert helper_get(helper_exe, fx.host).stdout == texts.NOT_FOUND + "\n"
    assert skopeo.inspect().returncode != 0


def test_skopeo_login_with_wrong_password_stores_nothing(
    skopeo: Skopeo, helper_exe: str, settings: Settings
) -> None:
    before = store_files(settings)
    login = skopeo.login("not-the-password")
    assert login.returncode != 0
    assert "invalid username/password" in login.stderr
    assert helper_list(helper_exe) == {}
    assert store_files(settings) == before
    assert skopeo.inspect().returncode != 0


# --- the docker CLI (client side only: no daemon runs here) ----------------------------------------


class Docker:
    def __init__(self, fx: RegistryFixture, config_dir: Path) -> None:
        self.fx = fx
        self.exe = tool("docker")
        config_dir.mkdir()
        self.config = config_dir / "config.json"
        self.config.write_text(json.dumps({"credsStore": "regauth"}))
        self.env = dict(os.environ, DOCKER_CONFIG=str(config_dir))

    def __call__(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
        return run([self.exe, *args], stdin, self.env)

    def login(self, password: str) -> subprocess.CompletedProcess[str]:
        assert self.fx.username is not None
        return self(
            "login", "-u", self.fx.username, "--password-stdin", self.fx.host, stdin=password.encode()
        )


@pytest.fixture
def docker(registry_htpasswd: RegistryFixture, tmp_path: Path, on_path: None) -> Docker:
    return Docker(registry_htpasswd, tmp_path / "docker-config")


def test_docker_login_get_logout(docker: Docker, helper_exe: str) -> None:
    fx = docker.fx
    assert fx.password is not None

    login = docker.login(fx.password)
    assert login.returncode == 0, login.stdout + login.stderr
    assert "Login Succeeded" in login.stdout
    got = helper_get(helper_exe, fx.host)
    assert got.returncode == 0, got.stdout
    assert json.loads(got.stdout) == {"ServerURL": fx.host, "Username": fx.username, "Secret": fx.password}
    assert helper_list(helper_exe) == {fx.host: fx.username}
    config = docker.config.read_text()
    assert fx.password not in config
    assert json.loads(config)["credsStore"] == "regauth"

    # A second login (same user) updates the one entry.
    again = docker.login(fx.password)
    assert again.returncode == 0, again.stdout + again.stderr
    assert helper_list(helper_exe) == {fx.host: fx.username}

    # docker logout erases several spellings of the host; the absent ones must not fail it.
    logout = docker("logout", fx.host)
    assert logout.returncode == 0, logout.stdout + logout.stderr
    assert helper_list(helper_exe) == {}
    assert helper_get(helper_exe, fx.host).stdout == texts.NOT_FOUND + "\n"
    # A second logout finds nothing to erase and still succeeds.
    assert docker("logout", fx.host).returncode == 0


def test_docker_login_with_wrong_password_stores_nothing(
    docker: Docker, helper_exe: str, settings: Settings
) -> None:
    before = store_files(settings)
    login = docker.login("not-the-password")
    assert login.returncode != 0
    # It tries https (refused: 401), then plain http on the TLS port (400); both fail.
    assert "401 Unauthorized" in login.stderr
    assert helper_list(helper_exe) == {}
    assert store_files(settings) == before
