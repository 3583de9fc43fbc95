"""`regauth proxy` as a newcomer first runs it, as the real console script: what its stderr says when no
registry is configured, after a TLS probe on its plain-HTTP port, and under a low open-files limit."""

from __future__ import annotations

import asyncio
import resource
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
from support.proxy import MANIFEST_V2, Fake, ProxyProcess, add_upstream, host_of, start_fake
from support.registry import free_port

from regauth.config import Settings


def _lines_after_start(proxy: ProxyProcess) -> list[str]:
    lines = proxy.log().splitlines()
    started = next(i for i, line in enumerate(lines) if "listening on" in line)
    return lines[started + 1 :]


def _wait_for_line(proxy: ProxyProcess, text: str) -> None:
    deadline = time.monotonic() + 20
    while text not in proxy.log():
        assert time.monotonic() < deadline, f"no {text!r} in the proxy's log: {proxy.log()}"
        time.sleep(0.05)


def test_with_no_registry_it_says_how_to_add_one(regauth_exe: str, tmp_path: Path) -> None:
    proxy = ProxyProcess(regauth_exe, tmp_path)
    try:
        proxy.wait_ready()
    finally:
        assert proxy.stop() == 0, proxy.log()
    notice = [line for line in _lines_after_start(proxy) if "no registry is configured" in line]
    assert len(notice) == 1 and "regauth registry add NAME --url HOST" in notice[0]


def test_with_a_registry_there_is_no_notice(regauth_exe: str, settings: Settings, tmp_path: Path) -> None:
    add_upstream(settings, "127.0.0.1:9", username=None)
    proxy = ProxyProcess(regauth_exe, tmp_path)
    try:
        proxy.wait_ready()
    finally:
        assert proxy.stop() == 0, proxy.log()
    assert "no registry is configured" not in proxy.log()


def test_a_tls_client_hello_on_the_http_port_is_one_short_line(
    regauth_exe: str, settings: Settings, tmp_path: Path
) -> None:
    add_upstream(settings, "127.0.0.1:9", username=None)
    proxy = ProxyProcess(regauth_exe, tmp_path)
    try:
        proxy.wait_ready()
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as sock:
            try:
                context.wrap_socket(sock, server_hostname="127.0.0.1")
            except ssl.SSLError:
                pass
            else:
                raise AssertionError("a TLS handshake succeeded on the plain-HTTP port")
        # A marker request after the probe: once its line is there, the probe's lines are too.
        with urllib.request.urlopen(f"{proxy.url}/v2/?marker=1", timeout=20):
            pass
        _wait_for_line(proxy, "/v2/?marker=1")
    finally:
        assert proxy.stop() == 0, proxy.log()
    # Everything but the lines of wait_ready's requests, the marker's and the stopping line.
    probe = [line for line in _lines_after_start(proxy) if "GET /v2/" not in line and "stopping" not in line]
    assert len(probe) <= 1, probe
    assert all(len(line) < 160 for line in probe), probe
    assert "Traceback" not in proxy.log() and "Unhandled exception" not in proxy.log()


async def test_a_low_open_files_limit_lowers_the_cap_and_pulls_still_work(
    aiohttp_server: Any, settings: Settings, regauth_exe: str, tmp_path: Path
) -> None:
    """Under `ulimit -n 300`, 300 idle connections would leave no descriptor to accept a pull; the proxy
    fits its connection cap to the limit instead, and closes idle connections to make room."""
    fake = Fake(auth="none")
    image = fake.add_image()
    server = await start_fake(aiohttp_server, fake)
    add_upstream(settings, host_of(server), name="b", username=None)
    port = free_port()
    log_path = tmp_path / "proxy.log"

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))

    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [regauth_exe, "proxy", "--listen", f"127.0.0.1:{port}"],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            preexec_fn=low_limit,
        )
    writers: list[asyncio.StreamWriter] = []
    try:
        await _wait_listening(log_path, process)
        for _ in range(300):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writers.append(writer)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            url = f"http://127.0.0.1:{port}/v2/b/org/app/manifests/1.0"
            async with session.get(url, headers={"Accept": MANIFEST_V2}) as resp:
                assert resp.status == 200
                assert await resp.read() == image["manifest"]
        assert process.poll() is None
    finally:
        for writer in writers:
            writer.transport.abort()
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(asyncio.to_thread(process.wait), timeout=30)
    text = log_path.read_text()
    assert code == 0, text
    assert "the open-files limit (300) allows 22 client connections" in text
    assert "Traceback" not in text


async def _wait_listening(log_path: Path, process: subprocess.Popen[bytes]) -> None:
    for _ in range(400):
        if "listening on" in log_path.read_text():
            return
        assert process.poll() is None, log_path.read_text()
        await asyncio.sleep(0.05)
    raise AssertionError(f"the proxy did not start: {log_path.read_text()}")


def test_skopeo_trying_https_first_leaves_one_line(
    regauth_exe: str, settings: Settings, tmp_path: Path
) -> None:
    """skopeo with --tls-verify=false tries HTTPS before plain HTTP, as podman does."""
    add_upstream(settings, "127.0.0.1:9", username=None)
    proxy = ProxyProcess(regauth_exe, tmp_path)
    try:
        proxy.wait_ready()
        subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{proxy.host}/nowhere/app:1.0"],
            capture_output=True,
            timeout=120,
            check=False,
        )
        _wait_for_line(proxy, "/v2/nowhere/app/manifests/1.0")
    finally:
        assert proxy.stop() == 0, proxy.log()
    lines = _lines_after_start(proxy)
    assert len([line for line in lines if "malformed request" in line]) == 1, lines
    assert "Traceback" not in proxy.log() and "Unhandled exception" not in proxy.log()
