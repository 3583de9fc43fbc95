"""``regauth configure podman``: podman and skopeo pull from the TLS registry (htpasswd) through the
helper once configured, by ``credHelpers`` in the auth file or by ``credential-helpers`` in
registries.conf; the user's JSON and TOML (comments included) survive, and ``--undo`` gives them back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.image import push_runnable_image
from support.podman import podman_argv, podman_env, stop_podman
from support.registry import RegistryFixture

from regauth.config import Settings
from regauth.registries import Registry, RegistryBook

TIMEOUT = 90
USER_REGISTRIES_CONF = """\
# The team's registries: keep this comment.
unqualified-search-registries = ["docker.io"]   # and this one

[[registry]]
location = "registry.example:5000"  # a mirror we use
"""


def run(argv: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    exe = shutil.which(argv[0])
    assert exe, f"{argv[0]} is not installed; these tests need it (never skipped)"
    return subprocess.run(
        [exe, *argv[1:]], input=stdin, capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


class Clients:
    """skopeo and podman (storage under a short tmp dir) trusting the registry's CA, no credentials."""

    def __init__(self, fx: RegistryFixture, workdir: Path, short: Path) -> None:
        self.fx = fx
        # podman unpacks what it pulls: a real gzip'd tar layer.
        self.image = push_runnable_image(
            fx.url, "test/configure", context=fx.ssl_context(), username=fx.username, password=fx.password
        )
        self.ref = f"{fx.host}/{self.image.repository}:{self.image.tag}"
        self.skopeo_flags: list[str] = []
        self.certs = workdir / "certs"
        self.certs.mkdir(parents=True)
        assert fx.ca_file
        shutil.copyfile(fx.ca_file, self.certs / "ca.crt")
        self.storage = short / "podman"
        self.env = {**os.environ, **podman_env(self.storage)}
        self.podman = podman_argv(self.storage)

    def skopeo_inspect(self) -> subprocess.CompletedProcess[str]:
        image = f"docker://{self.ref}"
        return run(["skopeo", *self.skopeo_flags, "inspect", "--cert-dir", str(self.certs), image], self.env)

    def podman_pull(self) -> subprocess.CompletedProcess[str]:
        return run([*self.podman, "pull", "--cert-dir", str(self.certs), self.ref], self.env)

    def regauth(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(["regauth", *args], self.env)


@pytest.fixture
def clients(
    registry_htpasswd: RegistryFixture, settings: Settings, tmp_path: Path, short_tmp: Path, regauth_exe: str
) -> Iterator[Clients]:
    fx = registry_htpasswd
    # The user's credential is in regauth; the clients hold none.
    record = Registry(id="", name="lab", registry=fx.host, username=fx.username, ca_file=fx.ca_file)
    RegistryBook.for_settings(settings).add(record, fx.password)
    result = Clients(fx, tmp_path / "clients", short_tmp)
    # A registries.conf of the test's own, with only the registry: nothing from the machine's /etc.
    conf = tmp_path / "registries.conf"
    conf.write_text(USER_REGISTRIES_CONF)
    result.env["CONTAINERS_REGISTRIES_CONF"] = str(conf)
    try:
        yield result
    finally:
        stop_podman(result.storage)


def test_credhelpers_in_the_auth_file(clients: Clients, tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    auth.write_text('{"auths": {"other.example": {"auth": "dTpw"}}, "x-kept": [1e5]}')
    clients.env["REGISTRY_AUTH_FILE"] = str(auth)
    refused = clients.skopeo_inspect()
    assert refused.returncode != 0 and "unauthorized" in refused.stderr.lower()

    out = ok(clients.regauth("configure", "podman"))
    assert f"updated {auth}" in out and "regauth import podman" in out
    assert auth.read_text() == (
        '{"auths": {"other.example": {"auth": "dTpw"}}, "x-kept": [1e5], '
        f'"credHelpers": {{"{clients.fx.host}": "regauth"}}}}'
    )
    assert json.loads(ok(clients.skopeo_inspect()))["Digest"] == clients.image.digest
    ok(clients.podman_pull())
    inspected = json.loads(
        ok(
            run(
                [
                    *clients.podman,
                    "image",
                    "inspect",
                    clients.ref,
                ],
                clients.env,
            )
        )
    )
    assert inspected[0]["Digest"] == clients.image.digest

    assert "nothing to change" in ok(clients.regauth("configure", "podman"))
    ok(clients.regauth("configure", "podman", "--undo"))
    assert auth.read_text() == '{"auths": {"other.example": {"auth": "dTpw"}}, "x-kept": [1e5]}'


def test_credential_helpers_in_registries_conf(clients: Clients, tmp_path: Path) -> None:
    conf = Path(clients.env["CONTAINERS_REGISTRIES_CONF"])
    # skopeo 1.9 does not read CONTAINERS_REGISTRIES_CONF (podman does): it is told the file.
    clients.skopeo_flags = ["--registries-conf", str(conf)]
    auth = tmp_path / "empty-auth.json"
    auth.write_text("{}")
    clients.env["REGISTRY_AUTH_FILE"] = str(auth)
    assert clients.podman_pull().returncode != 0

    dry = ok(clients.regauth("configure", "podman", "--registries-conf", "--dry-run"))
    assert '+credential-helpers = ["regauth", "containers-auth.json"]' in dry
    assert conf.read_text() == USER_REGISTRIES_CONF
    ok(clients.regauth("configure", "podman", "--registries-conf"))
    text = conf.read_text()
    # Only the one key is new: the comments and the rest as written.
    assert (
        text.replace('credential-helpers = ["regauth", "containers-auth.json"]\n', "") == USER_REGISTRIES_CONF
    )
    assert json.loads(ok(clients.skopeo_inspect()))["Digest"] == clients.image.digest
    ok(clients.podman_pull())
    assert auth.read_text() == "{}"

    assert "nothing to change" in ok(clients.regauth("configure", "podman", "--registries-conf"))
    ok(clients.regauth("configure", "podman", "--undo"))
    assert conf.read_text() == USER_REGISTRIES_CONF


def test_a_drop_in_of_its_own_without_containers_registries_conf(
    isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    env = dict(os.environ)
    conf_dir = tmp_path / "registries.conf.d"
    ok(run(["regauth", "configure", "podman", "--registries-conf", "--conf-dir", str(conf_dir)], env))
    assert (
        (conf_dir / "50-regauth.conf")
        .read_text()
        .endswith('credential-helpers = ["regauth", "containers-auth.json"]\n')
    )
    ok(run(["regauth", "configure", "podman", "--undo"], env))
    assert not conf_dir.exists()
    # The default is the user's own drop-in directory.
    ok(run(["regauth", "configure", "podman", "--registries-conf"], env))
    assert (isolated_env / ".config/containers/registries.conf.d/50-regauth.conf").is_file()


def test_an_existing_list_gets_regauth_first(isolated_env: Path, regauth_exe: str, tmp_path: Path) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text('# helpers\ncredential-helpers = ["pass", "regauth"]  # ours\n')
    env = dict(os.environ, CONTAINERS_REGISTRIES_CONF=str(conf))
    ok(run(["regauth", "configure", "podman", "--registries-conf"], env))
    assert conf.read_text() == '# helpers\ncredential-helpers = ["regauth", "pass"]  # ours\n'
    conf.write_text("credential-helpers = 'regauth'\n")
    bad = run(["regauth", "configure", "podman", "--registries-conf"], env)
    assert bad.returncode == 1 and "not a list of names" in bad.stderr
    conf.write_text("credential-helpers = [\n")
    bad = run(["regauth", "configure", "podman", "--registries-conf"], env)
    assert bad.returncode == 1 and "is not valid TOML" in bad.stderr and bad.stderr.count("\n") == 1


def test_the_user_drop_in_is_what_the_clients_read(
    clients: Clients, tmp_path: Path, isolated_env: Path
) -> None:
    # No CONTAINERS_REGISTRIES_CONF: the clients read the system file and the user's drop-ins.
    del clients.env["CONTAINERS_REGISTRIES_CONF"]
    auth = tmp_path / "empty-auth.json"
    auth.write_text("{}")
    clients.env["REGISTRY_AUTH_FILE"] = str(auth)
    assert clients.skopeo_inspect().returncode != 0
    ok(clients.regauth("configure", "podman", "--registries-conf"))
    assert (isolated_env / ".config/containers/registries.conf.d/50-regauth.conf").is_file()
    assert json.loads(ok(clients.skopeo_inspect()))["Digest"] == clients.image.digest
    ok(clients.podman_pull())
