"""The plugin and the docker helper share records, store and token cache: one mint serves both.

ECR through moto in server mode on 127.0.0.1 (boto3 finds it through ``AWS_ENDPOINT_URL``); once the
token is cached, moto is stopped, so any second mint would fail and show.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from support.kubelet import go_seconds, keyring_lookup, kubelet_decode, request, run_plugin
from support.providers import start_moto

HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
IMAGE = f"{HOST}/team/app"


def helper_get(helper_exe: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helper_exe, "get"], input=HOST, capture_output=True, text=True, timeout=60)


def test_a_token_minted_by_the_helper_is_served_to_the_kubelet(
    monkeypatch: pytest.MonkeyPatch, helper_exe: str
) -> None:
    server = start_moto(monkeypatch)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    got = helper_get(helper_exe)
    server.stop()
    assert got.returncode == 0, got.stdout + got.stderr
    minted = json.loads(got.stdout)
    before = time.time()
    proc = run_plugin(request(IMAGE))
    assert (proc.returncode, proc.stderr) == (0, "")
    data = kubelet_decode(proc.stdout)
    assert keyring_lookup(data["auth"], IMAGE) == [{"username": "AWS", "password": minted["Secret"]}]
    assert data["cacheKeyType"] == "Registry"
    # moto's token "expires" in the past, which regauth takes as 600 s from the mint: the kubelet keeps
    # it for half of what is left.
    assert 0 < go_seconds(data["cacheDuration"]) <= 300
    assert go_seconds(data["cacheDuration"]) >= (600 - (time.time() - before) - 60) // 2


def test_a_token_minted_by_the_plugin_is_served_to_the_helper(
    monkeypatch: pytest.MonkeyPatch, helper_exe: str
) -> None:
    server = start_moto(monkeypatch)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    proc = run_plugin(request(IMAGE), "--default-cache-duration", "12h")
    server.stop()
    assert proc.returncode == 0, proc.stderr
    secret = kubelet_decode(proc.stdout)["auth"][HOST]["password"]
    got = helper_get(helper_exe)
    assert got.returncode == 0, got.stdout + got.stderr
    assert json.loads(got.stdout)["Secret"] == secret


def test_a_provider_that_cannot_mint_exits_1_saying_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    proc = run_plugin(request(IMAGE))
    assert proc.returncode == 1 and proc.stdout == ""
    line = proc.stderr
    assert (
        line.startswith(f"regauth-credential-provider: ecr provider for {HOST}: ") and line.count("\n") == 1
    )
    assert "check the network" in line and "testing" not in line


def test_no_cloud_credentials_exits_1_saying_how_to_log_in() -> None:
    proc = run_plugin(request(IMAGE))
    assert proc.returncode == 1 and proc.stdout == ""
    assert (
        proc.stderr.startswith("regauth-credential-provider: ecr provider") and proc.stderr.count("\n") == 1
    )
    assert "Traceback" not in proc.stderr


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """An endpoint that accepts connections and never answers (a firewall that drops replies)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def test_an_endpoint_that_never_answers_ends_within_the_kubelets_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # boto3's own retries would wait 3 x 20 s here: the client's deadline (awshttp) answers first.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with black_hole() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        proc = run_plugin(request(IMAGE))  # fails the test if the kubelet's 60 s pass
    assert proc.returncode == 1 and proc.stdout == "" and proc.stderr.count("\n") == 1
    assert f"no complete answer from {url}/ within 20s" in proc.stderr and "AWS_ENDPOINT_URL" in proc.stderr
