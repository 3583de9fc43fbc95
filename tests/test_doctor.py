"""``regauth doctor``: a verdict per line, exit status 1 when anything needs action, never a secret;
with the real registry (htpasswd over TLS) for ``--validate`` and the clients' files in the test's home."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from support.cli import ok, regauth
from support.registry import RegistryFixture

from regauth.config import Settings
from regauth.registries import Registry, RegistryBook


@pytest.fixture(autouse=True)
def runtime_dir(isolated_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The containers clients' runtime auth file is the test's (else the machine's /run/containers/UID)."""
    (tmp_path / "run").mkdir(exist_ok=True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))


def test_a_healthy_set_up(
    registry_htpasswd: RegistryFixture, settings: Settings, isolated_env: Path, regauth_exe: str
) -> None:
    fx = registry_htpasswd
    assert fx.password
    record = Registry(id="", name="lab", registry=fx.host, username=fx.username, ca_file=fx.ca_file)
    RegistryBook.for_settings(settings).add(record, fx.password)
    ok(regauth("configure", "docker"))
    ok(regauth("configure", "podman"))

    out = ok(regauth("doctor"))
    lines = out.splitlines()
    assert all(line.split()[0] in ("ok", "info") for line in lines), out
    assert any(line.startswith("ok     helper:") for line in lines)
    assert any(line.startswith("ok     docker:") and "credHelpers" in line for line in lines)
    assert any(line.startswith("ok     store: the file store") for line in lines)
    assert "not validated since it was saved" in out

    checked = json.loads(ok(regauth("doctor", "--json", "--validate")))
    assert {"check": "registry lab", "status": "ok", "message": f"validates ({fx.host})"} in checked
    assert fx.password not in out + json.dumps(checked)


def test_what_needs_action_is_named_without_secrets(
    settings: Settings, isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    book = RegistryBook.for_settings(settings)
    book.add(Registry(id="", name="old", registry="registry.lab:5000", username="ci"), "s3cret-old")
    book.add(Registry(id="", name="gcr", registry="gcr.io"), None)
    # A record last changed long ago.
    path = settings.registries_file
    data = json.loads(path.read_text())
    data["registries"][0]["updated_at"] = "2020-01-01T00:00:00+00:00"
    path.write_text(json.dumps(data))
    docker_auth = base64.b64encode(b"me:s3cret-docker").decode()
    config = Path(os.environ["DOCKER_CONFIG"], "config.json")
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {"ghcr.io": {"auth": docker_auth}}}))
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": {"quay.io": {"identitytoken": "s3cret-quay"}}}))
    env = dict(os.environ, REGISTRY_AUTH_FILE=str(auth_file))

    proc = regauth(
        "doctor",
        "--containerd-certs-dir",
        str(tmp_path / "certs.d"),
        "--proxy",
        "http://127.0.0.1:1",
        env=env,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    for needed in (
        f"ACTION docker: {config}: not pointed at regauth for registry.lab:5000, gcr.io",
        f"ACTION docker: {config} holds plaintext credentials for ghcr.io; run `regauth import docker`",
        f"ACTION podman: {auth_file} holds plaintext credentials for quay.io; run `regauth import podman`",
        "ACTION containerd:",
        "ACTION proxy: http://127.0.0.1:1 does not answer",
        "ACTION registry gcr: gcr.io is Container Registry",
        "ACTION registry old: its secret is",
    ):
        assert needed in out, out
    for secret in ("s3cret", docker_auth):
        assert secret not in out + proc.stderr
    findings = json.loads(regauth("doctor", "--json", env=env).stdout)
    assert {f["status"] for f in findings} <= {"ok", "action", "info"}
    assert any(f["check"] == "podman" and f["status"] == "action" for f in findings)
    # A longer threshold: the old secret is fine.
    assert "its secret is" not in regauth("doctor", "--max-age", "100000", env=env).stdout


def test_kubelet_config_and_cached_tokens(
    settings: Settings, isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    import time

    from regauth.providers.cache import CachedToken, cache_key
    from regauth.store import open_store

    host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    now = time.time()
    token = CachedToken(username="AWS", secret="s3cret-token", expires_at=now + 120, minted_at=now - 3600)
    open_store(settings).set(cache_key("ecr", host, "role"), token.to_text())
    kubelet = tmp_path / "providers.json"
    kubelet.write_text(
        json.dumps({"kind": "CredentialProviderConfig", "providers": [{"name": "ecr-credential-provider"}]})
    )

    proc = regauth("doctor", "--kubelet-config", str(kubelet))
    assert proc.returncode == 1
    assert f"ACTION kubelet: {kubelet}: no regauth-credential-provider provider" in proc.stdout
    assert f"info   tokens: the cached ecr token for {host} expires in 2 min" in proc.stdout
    assert "s3cret" not in proc.stdout + proc.stderr

    kubelet.write_text(json.dumps({"providers": [{"name": "regauth-credential-provider"}]}))
    assert (
        f"ok     kubelet: {kubelet}: the kubelet runs regauth-credential-provider"
        in regauth("doctor", "--kubelet-config", str(kubelet)).stdout
    )
    missing = regauth("doctor", "--kubelet-config", str(tmp_path / "none.json"))
    assert "ACTION kubelet:" in missing.stdout and "no such file" in missing.stdout


def test_the_kubelet_plugin_is_installed_answers_and_covers_every_record(
    settings: Settings, isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    book = RegistryBook.for_settings(settings)
    book.add(Registry(id="", name="lab", registry="registry.example.com", username="u"), "pw")
    config, bin_dir = tmp_path / "providers.json", tmp_path / "bin"
    kubelet = ("--kubelet-config", str(config), "--kubelet-bin-dir", str(bin_dir))
    ok(regauth("configure", "kubelet", "--no-cloud", "--config", str(config), "--bin-dir", str(bin_dir),
               "--backup-dir", str(tmp_path / "bk")))  # fmt: skip
    out = regauth("doctor", *kubelet).stdout
    assert (
        f"ok     kubelet: {bin_dir}/regauth-credential-provider: answers (regauth-credential-provider" in out
    )
    assert "matchImages cover no image" not in out

    # A record added since: the kubelet never runs the plugin for its images.
    book.add(Registry(id="", name="org", registry="ghcr.io", prefix="org-a", username="u"), "pw")
    proc = regauth("doctor", *kubelet)
    assert proc.returncode == 1
    assert f"ACTION kubelet: {config}: matchImages cover no image of ghcr.io/org-a" in proc.stdout

    # The plugin gone from the bin dir the kubelet is given, then one that fails.
    plugin = bin_dir / "regauth-credential-provider"
    plugin.unlink()
    assert f"ACTION kubelet: {plugin}: no such file" in regauth("doctor", *kubelet).stdout
    plugin.write_text("#!/bin/sh\nexit 3\n")
    plugin.chmod(0o755)
    assert f"ACTION kubelet: {plugin}: `--version` failed (exit 3)" in regauth("doctor", *kubelet).stdout


def test_podman_through_registries_conf(settings: Settings, isolated_env: Path, regauth_exe: str) -> None:
    RegistryBook.for_settings(settings).add(Registry(id="", name="lab", registry="registry.lab:5000"), None)
    before = regauth("doctor").stdout
    assert "ACTION podman:" in before and "not pointed at regauth for registry.lab:5000" in before
    ok(regauth("configure", "podman", "--registries-conf"))
    after = regauth("doctor").stdout
    drop_in = isolated_env / ".config/containers/registries.conf.d/50-regauth.conf"
    assert f"ok     podman: {drop_in}: credential-helpers asks regauth first" in after
