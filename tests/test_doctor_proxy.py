"""``regauth doctor --proxy URL``: the real proxy up and its upstreams (the real registries) answering
through it, one that does not answer named; doctor's requests follow no environment proxy and no
redirect (hostile servers on 127.0.0.1 record what reached them); the marks it caused are put back."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.cli import regauth
from support.proxy import caching_proxy_before
from support.records import add_record
from support.registry import RegistryFixture, free_port

from regauth import usage
from regauth.config import Settings
from regauth.registries import RegistryBook


@pytest.fixture(autouse=True)
def runtime_dir(isolated_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The containers clients' runtime auth file is the test's (else the machine's /run/containers/UID)."""
    (tmp_path / "run").mkdir(exist_ok=True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))


class Recorder:
    """A loopback HTTP server that records each request line and answers ``status`` (with ``location``)."""

    def __init__(self, status: int, location: str = "") -> None:
        self.seen: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                recorder.seen.append(self.requestline)
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def recorders() -> Iterator[list[Recorder]]:
    made: list[Recorder] = []
    yield made
    for recorder in made:
        recorder.close()


def test_the_proxy_and_its_upstreams(
    regauth_exe: str,
    settings: Settings,
    tmp_path: Path,
    registry_token: RegistryFixture,
    registry_htpasswd: RegistryFixture,
) -> None:
    upstreams = {"tok": registry_token, "htp": registry_htpasswd}
    with caching_proxy_before(regauth_exe, settings, tmp_path, upstreams) as proxy:
        book = RegistryBook.for_settings(settings)
        tok = book.get("tok")
        book.update("tok", {"repository": registry_token.repository}, None)
        down = add_record(book, f"127.0.0.1:{free_port()}", None, name="down", insecure=True)
        state = str(settings.state_dir)
        usage.mark_used(state, tok.id)
        used_at = usage.last_used(state, tok.id)
        assert used_at is not None
        os.utime(settings.state_dir / usage.USED_DIR / tok.id, (used_at - 500, used_at - 500))

        out = regauth("doctor", "--proxy", proxy.url)
        assert out.returncode == 1, out.stdout
        text = out.stdout
        assert f"ok     proxy: {proxy.url} answers the Registry V2 API" in text
        assert (
            f"ok     proxy tok: {registry_token.host} answers through the proxy "
            f"(the tags of {registry_token.repository})" in text
        )
        assert f"ok     proxy htp: {registry_htpasswd.host} answers through the proxy (" in text
        assert f"ACTION proxy down: {down.registry} does not answer through the proxy: 502" in text
        for secret in (registry_token.password, registry_htpasswd.password):
            assert secret and secret not in text + out.stderr
        found = json.loads(regauth("doctor", "--json", "--proxy", proxy.url).stdout)
        assert {f["check"]: f["status"] for f in found if f["check"].startswith("proxy ")} == {
            "proxy tok": "ok",
            "proxy htp": "ok",
            "proxy down": "action",
        }
        # Asking through the proxy was doctor's use, not a client's: the marks are as they were.
        assert usage.last_used(state, tok.id) == used_at - 500
        assert usage.last_used(state, book.get("htp").id) is None
    # Stopped: it does not answer.
    gone = regauth("doctor", "--proxy", proxy.url)
    assert gone.returncode == 1 and f"ACTION proxy: {proxy.url} does not answer" in gone.stdout


def test_no_environment_proxy_and_no_redirect(
    settings: Settings, regauth_exe: str, recorders: list[Recorder]
) -> None:
    elsewhere = Recorder(200)
    env_proxy = Recorder(200)
    redirecting = Recorder(302, location=f"{elsewhere.url}/v2/")
    recorders += [elsewhere, env_proxy, redirecting]
    env = dict(os.environ, HTTP_PROXY=env_proxy.url, http_proxy=env_proxy.url, NO_PROXY="", no_proxy="")
    out = regauth("doctor", "--proxy", redirecting.url, env=env)
    assert out.returncode == 1
    assert f"ACTION proxy: {redirecting.url}/v2/ answered 302: is it regauth's proxy?" in out.stdout
    assert redirecting.seen == ["GET /v2/ HTTP/1.1"]
    assert env_proxy.seen == [] and elsewhere.seen == []
