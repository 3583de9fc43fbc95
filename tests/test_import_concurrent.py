"""``regauth import`` while the client writes the same file: a registry stand-in (HTTPS on loopback)
that, as it validates the credential, rewrites config.json the way a `docker login` elsewhere would.
Validation takes a round trip, so that window is real: what the client wrote must survive, and an import
that cannot write must not leave records behind (the credential would be kept twice, with no undo)."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support.cli import ok, regauth
from support.serving import serving
from support.tls import PKI, make_pki

OTHER = "127.0.0.1:1"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _registry(on_login: Callable[[], None]) -> type[BaseHTTPRequestHandler]:
    class Registry(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.headers.get("Authorization") is None:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="stand-in"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            on_login()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_: object) -> None:
            pass

    return Registry


def test_a_docker_login_during_the_import_is_kept(
    isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    config = Path(os.environ["DOCKER_CONFIG"], "config.json")
    config.parent.mkdir()

    def concurrent_login() -> None:
        # What a `docker login` to another registry does meanwhile: its own whole-file rewrite (a port
        # nothing listens on: the second run's validation of it fails at once, on loopback).
        body = json.loads(config.read_text())
        body["auths"][OTHER] = {"auth": b64("bob:s3cret-other")}
        config.write_text(json.dumps(body, indent="\t"))

    server = ThreadingHTTPServer(("127.0.0.1", 0), _registry(concurrent_login))
    server.socket = pki.server_context().wrap_socket(server.socket, server_side=True)
    host = f"127.0.0.1:{server.server_address[1]}"
    (isolated_env / "certs.d" / host).mkdir(parents=True)
    shutil.copyfile(pki.ca_file, isolated_env / "certs.d" / host / "ca.crt")
    config.write_text(json.dumps({"auths": {host: {"auth": b64("alice:s3cret-alice")}}}, indent="\t"))

    with serving(server):
        proc = regauth("import", "docker")
    after = json.loads(config.read_text())
    # The other login is not lost under the import's older copy of the file.
    assert OTHER in after["auths"], after
    assert proc.returncode != 0
    [line] = proc.stderr.splitlines()
    assert "changed while regauth was editing it" in line and "Traceback" not in proc.stderr
    assert "s3cret" not in proc.stdout + proc.stderr
    # Nothing moved: the plaintext is still the user's, so the store holds no second copy of it.
    assert after["auths"][host] == {"auth": b64("alice:s3cret-alice")}
    assert ok(regauth("registry", "list", "--json")) == "[]\n"
    assert not (isolated_env / ".local/state/regauth/backups/import-docker").exists() or not any(
        (isolated_env / ".local/state/regauth/backups/import-docker").iterdir()
    )
    # Run again once the other program is done: it goes through.
    with serving(_quiet_server(pki, server.server_address[1])):
        again = regauth("import", "docker")
    assert f"moved {host} (user alice)" in again.stdout, again.stdout + again.stderr
    final = json.loads(config.read_text())
    assert final["credHelpers"] == {host: "regauth"} and OTHER in final["auths"]


def _quiet_server(pki: PKI, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), _registry(lambda: None))
    server.socket = pki.server_context().wrap_socket(server.socket, server_side=True)
    return server


def test_configure_refuses_a_file_changed_under_it(isolated_env: Path, regauth_exe: str) -> None:
    """The same rule in the shared writer: the bytes it planned from must still be the file's."""
    from regauth.configure.files import read_state, write_in_place
    from regauth.errors import ConfigError

    config = Path(os.environ["DOCKER_CONFIG"], "config.json")
    config.parent.mkdir()
    config.write_text('{"auths": {}}\n')
    state = read_state(config)
    config.write_text('{"auths": {"x.example": {}}}\n')
    try:
        write_in_place(state, b'{"credHelpers": {}}\n', 0o600)
    except ConfigError as exc:
        assert "changed while regauth was editing it" in str(exc)
    else:
        raise AssertionError("a file changed since it was read was replaced")
    assert config.read_text() == '{"auths": {"x.example": {}}}\n'
    assert [p.name for p in config.parent.iterdir()] == ["config.json"]  # no temporary left
    # A file that appeared meanwhile is not replaced either.
    fresh = config.parent / "new.json"
    state = read_state(fresh)
    fresh.write_text("{}")
    try:
        write_in_place(state, b"[]", 0o600)
    except ConfigError:
        pass
    else:
        raise AssertionError("a file created since it was read was replaced")
    assert fresh.read_text() == "{}"
