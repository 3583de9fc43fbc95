"""No test sends a packet outside the loopback range: a cloud ``get`` with no credentials, run by the
installed helper in the autouse environment, under a guard that stops and records any connection,
datagram or name lookup for a non-loopback address.

The guard (tests/support/network_guard.py) is an audit hook, here in a ``sitecustomize`` of the test's
own, so that the test reads what it stopped; conftest puts the same guard on every test session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.metadata_stand_in import AZURE_TOKEN_PATH, MetadataStandIn
from support.network_guard import site_dir

from regauth.helper.texts import NOT_FOUND

CASES = [
    # (host, what the stand-in must have been asked, the provider's one-line cause)
    (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "PUT /latest/api/token",
        "ecr provider for 123456789012.dkr.ecr.us-east-1.amazonaws.com: no AWS credentials found",
    ),
    (
        "myreg.azurecr.io",
        f"GET {AZURE_TOKEN_PATH}",
        "acr provider for myreg.azurecr.io: no Azure credentials",
    ),
    (
        "europe-docker.pkg.dev",
        "GET /",
        "gcp provider for europe-docker.pkg.dev: no Google credentials found",
    ),
]


def guarded(tmp_path: Path) -> tuple[dict[str, str], Path]:
    site = site_dir(tmp_path / "guard")
    log = tmp_path / "network-guard.log"
    log.touch()
    env = {**os.environ, "PYTHONPATH": str(site), "NETWORK_GUARD_LOG": str(log)}
    return env, log


def test_every_python_child_inherits_the_guard(tmp_path: Path) -> None:
    """The session's guard (conftest) is on PYTHONPATH; only its log is this test's own here."""
    log = tmp_path / "stopped.log"
    log.touch()
    env = {**os.environ, "NETWORK_GUARD_LOG": str(log)}
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): nothing would answer, and the guard sends nothing anyway.
    code = (
        "import socket\n"
        "for attempt in (lambda: socket.socket().connect(('192.0.2.1', 80)),\n"
        "                lambda: socket.getaddrinfo('metadata.google.internal', 80)):\n"
        "    try:\n"
        "        attempt()\n"
        "    except PermissionError as exc:\n"
        "        print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.count("outside the loopback range") == 2, proc.stdout + proc.stderr
    assert log.read_text().splitlines() == [
        "socket.connect '192.0.2.1'",
        "socket.getaddrinfo 'metadata.google.internal'",
    ]


@pytest.mark.parametrize(("host", "asked", "cause"), CASES, ids=["ecr", "acr", "gcp"])
def test_no_credentials_get_asks_only_the_loopback_stand_in(
    tmp_path: Path, helper_exe: str, metadata_service: MetadataStandIn, host: str, asked: str, cause: str
) -> None:
    env, log = guarded(tmp_path)
    before = metadata_service.hits[asked]
    proc = subprocess.run(
        [helper_exe, "get"], input=host, env=env, capture_output=True, text=True, timeout=120
    )
    assert (proc.returncode, proc.stdout) == (1, NOT_FOUND + "\n")
    (line,) = proc.stderr.splitlines()
    assert cause in line
    assert log.read_text() == ""
    # The SDK did search (it was not simply switched off), and where it searched was the stand-in.
    assert metadata_service.hits[asked] > before
