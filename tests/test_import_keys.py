"""``regauth import`` reads an ``auths`` key as the clients do: a key with a scheme is a legacy URL
(``https://host/v2/``, its path cut off: containers/image's normalizeAuthFileKey, the docker CLI's
ConvertToHostname), the host's own credential; only a bare ``host/ns`` key is namespaced. Checked with
skopeo against a loopback stand-in that records the Authorization it is sent."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support.cli import recording_helper, regauth
from support.serving import serving


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Recorder(BaseHTTPRequestHandler):
    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path != "/v2/":
            Recorder.seen.append(self.headers.get("Authorization"))
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="stand-in"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def skopeo_inspect(host: str, env: dict[str, str]) -> None:
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is not installed; these tests need it (never skipped)"
    subprocess.run(
        [skopeo, "inspect", "--tls-verify=false", f"docker://{host}/app"],
        capture_output=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_a_legacy_url_key_is_the_hosts_credential(
    isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    host = f"127.0.0.1:{server.server_address[1]}"
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {f"http://{host}/v2/": {"auth": b64("ci:s3cret-legacy")}}}))
    env = dict(os.environ, REGISTRY_AUTH_FILE=str(auth))
    expected = "Basic " + b64("ci:s3cret-legacy")
    with serving(server):
        skopeo_inspect(host, env)
        assert Recorder.seen[-1:] == [expected]  # skopeo sends the key's credential for the host

        out = regauth("import", "podman", "--no-validate", env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"moved {host} (user ci)" in out.stdout
        assert json.loads(auth.read_text()) == {"auths": {}, "credHelpers": {host: "regauth"}}
        assert "s3cret" not in out.stdout + out.stderr
        # Now through the helper: the same credential.
        Recorder.seen.clear()
        skopeo_inspect(host, env)
        assert Recorder.seen[-1:] == [expected]


def test_plaintext_another_helper_answers_for_is_left_with_that_helper(
    isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    config = Path(os.environ["DOCKER_CONFIG"], "config.json")
    config.parent.mkdir()
    bin_dir, calls = recording_helper(tmp_path)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    host, hub = "127.0.0.1:1", "https://index.docker.io/v1/"
    body = {
        "auths": {host: {"auth": b64("old:s3cret-stale")}, hub: {"auth": b64("me:s3cret-hub")}},
        "credHelpers": {host: "other"},
        "credsStore": "other",
    }
    config.write_text(json.dumps(body, indent="\t"))
    original = config.read_bytes()
    docker = shutil.which("docker")
    assert docker, "the docker CLI is not installed; these tests need it (never skipped)"
    subprocess.run(
        [docker, "manifest", "inspect", "--insecure", f"{host}/app"], capture_output=True, timeout=60, env=env
    )
    # The docker CLI asks the helper, not the plaintext beside it (which it never sends).
    assert set(calls.read_text().splitlines()) == {f"get {host}"}

    out = regauth("import", "docker", "--no-validate", env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"left in place: {host}: the docker CLI asks the helper 'other' for it" in out.stdout
    assert f"left in place: {hub}: the docker CLI asks the helper 'other' for it" in out.stdout
    assert config.read_bytes() == original  # the other helper still answers for both
    assert regauth("registry", "list", "--json", env=env).stdout == "[]\n"
    assert "s3cret" not in out.stdout + out.stderr


def test_plaintext_regauth_already_has_is_left_in_place_with_exit_1(
    isolated_env: Path, regauth_exe: str
) -> None:
    # README: "what regauth already had (left in place) ... Exit status 1 when something was left in place."
    config = Path(os.environ["DOCKER_CONFIG"], "config.json")
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {"127.0.0.1:1": {"auth": b64("ci:s3cret-kept")}}}))
    assert regauth("registry", "add", "lab", "--url", "127.0.0.1:1", "--no-validate").returncode == 0
    for dry in ([], ["--dry-run"]):
        out = regauth("import", "docker", "--no-validate", *dry)
        assert "already there: 127.0.0.1:1: already in regauth as 'lab'; left in place" in out.stdout
        assert out.returncode == 1, out.stdout + out.stderr
        assert b64("ci:s3cret-kept") in config.read_text() and "s3cret" not in out.stdout + out.stderr
