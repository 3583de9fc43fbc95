"""``regauth doctor`` against the files the clients really read, in the order they read them: each case
is checked with the client itself (skopeo's debug log names the file and helper it took the credential
from; the docker CLI runs the helper it picked) so a verdict cannot drift from what the client does."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

from support.cli import ok, recording_helper, regauth

from regauth.config import Settings
from regauth.registries import Registry, RegistryBook

HOST = "127.0.0.1:1"  # nothing listens: each client fails fast after choosing its credential


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def skopeo_source(env: dict[str, str]) -> str:
    """The lines of skopeo's debug log that say where the credential came from."""
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is not installed; these tests need it (never skipped)"
    proc = subprocess.run(
        [skopeo, "--debug", "inspect", "--tls-verify=false", f"docker://{HOST}/app"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    return "\n".join(line for line in proc.stderr.splitlines() if "credential" in line.lower())


def add_record(settings: Settings) -> None:
    RegistryBook.for_settings(settings).add(Registry(id="", name="lab", registry=HOST, username="ci"), "pw")


def test_podman_login_plaintext_in_the_runtime_file_is_read_first(
    settings: Settings, isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    add_record(settings)
    runtime = tmp_path / "run"
    run_file = runtime / "containers" / "auth.json"
    run_file.parent.mkdir(parents=True)
    # Where `podman login` writes by default: the runtime file.
    run_file.write_text(json.dumps({"auths": {HOST: {"auth": b64("ci:s3cret-run")}}}))
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    configured = ok(regauth("configure", "podman", env=env))
    # configure says so too: what it wrote is read after that plaintext.
    assert f"warning: {run_file}, which the clients read first, holds plaintext credentials for {HOST}" in (
        configured
    )
    assert "s3cret" not in configured
    # skopeo takes the runtime file's plaintext, never asking the helper the persistent file names.
    assert f"in file {run_file}" in skopeo_source(env)

    proc = regauth("doctor", env=env)
    assert proc.returncode == 1, proc.stdout
    assert f"ACTION podman: {run_file} holds plaintext credentials for {HOST}" in proc.stdout
    assert "ok     podman:" not in proc.stdout
    assert "s3cret" not in proc.stdout + proc.stderr

    # The import moves it (from the file `podman login` wrote); then the helper answers.
    imported = regauth("import", "podman", "--no-validate", env=env)
    assert "already there" in imported.stdout  # the record existed: the plaintext is left...
    run_file.write_text(json.dumps({"auths": {}}))  # ...so the user logs out of the runtime file
    assert "credential helper regauth" in skopeo_source(env)
    after = regauth("doctor", env=env).stdout
    assert "ok     podman:" in after and "ACTION podman" not in after


def test_podman_reads_the_credhelpers_of_docker_config(
    settings: Settings, isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    add_record(settings)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    ok(regauth("configure", "docker", env=env))
    config = Path(os.environ["DOCKER_CONFIG"], "config.json")
    assert f"credential helper regauth based on credHelpers entry in {config}" in skopeo_source(env)
    out = regauth("doctor", env=env).stdout
    assert "ACTION podman" not in out, out
    assert "ok     podman:" in out


def test_docker_credhelpers_beat_credsstore_and_a_broken_file_is_named(
    settings: Settings, isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    add_record(settings)
    config = Path(os.environ["DOCKER_CONFIG"], "config.json")
    config.parent.mkdir()
    bin_dir, calls = recording_helper(tmp_path)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config.write_text(json.dumps({"credsStore": "regauth", "credHelpers": {HOST: "other"}}))
    docker = shutil.which("docker")
    assert docker, "the docker CLI is not installed; these tests need it (never skipped)"
    subprocess.run(
        [docker, "manifest", "inspect", "--insecure", f"{HOST}/app"],
        capture_output=True,
        timeout=60,
        env=env,
        check=False,
    )
    # The docker CLI asks the credHelpers entry's helper, not credsStore's.
    assert set(calls.read_text().splitlines()) == {f"get {HOST}"}
    proc = regauth("doctor", env=env)
    assert proc.returncode == 1
    assert f"ACTION docker: {config}: not pointed at regauth for {HOST}" in proc.stdout, proc.stdout
    assert "ok     docker:" not in proc.stdout

    # A file the docker CLI cannot read (it warns and goes on with no credentials at all).
    config.write_text('{"credHelpers": {')
    proc = regauth("doctor", env=env)
    assert proc.returncode == 1
    assert f"ACTION docker: {config} is not valid JSON" in proc.stdout, proc.stdout
    assert "no docker config" not in proc.stdout


def test_registries_conf_drop_ins_as_the_containers_clients_read_them(
    isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    (tmp_path / "run").mkdir()
    # XDG_CONFIG_HOME elsewhere: containers/image still reads $HOME/.config/containers/registries.conf.d.
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path / "run"), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    ok(regauth("registry", "add", "lab", "--url", HOST, "--no-validate", env=env))
    ok(regauth("configure", "podman", "--registries-conf", env=env))
    drop_ins = isolated_env / ".config" / "containers" / "registries.conf.d"
    assert (drop_ins / "50-regauth.conf").is_file()
    assert "credential helper regauth" in skopeo_source(env)
    assert f"ok     podman: {drop_ins / '50-regauth.conf'}" in regauth("doctor", env=env).stdout

    # A later drop-in sets credential-helpers again: it replaces regauth's list.
    (drop_ins / "60-other.conf").write_text('credential-helpers = ["containers-auth.json"]\n')
    assert "credential helper regauth" not in skopeo_source(env)
    proc = regauth("doctor", env=env)
    assert proc.returncode == 1, proc.stdout
    assert "ok     podman:" not in proc.stdout
    assert f"ACTION podman: {drop_ins / '60-other.conf'} sets credential-helpers after" in proc.stdout


def test_each_plaintext_file_is_named_with_the_import_that_reaches_it(
    isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    runtime = tmp_path / "run"
    run_file = runtime / "containers" / "auth.json"
    run_file.parent.mkdir(parents=True)
    run_file.write_text(json.dumps({"auths": {"127.0.0.1:1": {"auth": b64("ci:s3cret-run")}}}))
    persistent = isolated_env / ".config" / "containers" / "auth.json"
    persistent.parent.mkdir(parents=True)
    persistent.write_text(json.dumps({"auths": {"127.0.0.1:2": {"auth": b64("ci:s3cret-old")}}}))
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    out = regauth("doctor", env=env).stdout
    # Each remedy, run as written, moves that file's plaintext.
    for line in out.splitlines():
        if "holds plaintext credentials" in line:
            command = line.rsplit("run `", 1)[1].rstrip("`").split()
            assert command[:3] == ["regauth", "import", "podman"], line
            moved = regauth(*command[1:], "--no-validate", env=env)
            assert moved.returncode == 0 and "moved 127.0.0.1:" in moved.stdout, moved.stdout + moved.stderr
    after = regauth("doctor", env=env).stdout
    assert "holds plaintext" not in after, after
    assert "s3cret" not in out + after
