"""No test sends a packet outside the loopback range: a cloud ``get`` with no credentials, run by the
installed helper in the autouse environment, under a guard that stops and records any connection,
datagram or name lookup for a non-loopback address.

The guard is a ``sitecustomize`` on PYTHONPATH that installs an audit hook (PEP 578): the hook runs
before the socket call, and raising there means the packet is never sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from metadata_stand_in import AZURE_TOKEN_PATH, MetadataStandIn

from regauth.helper.texts import NOT_FOUND

GUARD = """
import ipaddress, os, socket, sys

_LOG = os.environ["NETWORK_GUARD_LOG"]
_NAMES = {None, "", b"", "localhost", b"localhost"}


def _loopback(host):
    if host in _NAMES:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _hook(event, args):
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock, address = args[0], args[-1]
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
            return
        host = address[0]
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        host = args[0]
    else:
        return
    if not _loopback(host):
        with open(_LOG, "a") as log:
            log.write(f"{event} {host!r}\\n")
        raise PermissionError(f"network guard: {event} for {host!r} is outside the loopback range")


sys.addaudithook(_hook)
"""

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
    site = tmp_path / "guard"
    site.mkdir()
    (site / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "network-guard.log"
    log.touch()
    env = {**os.environ, "PYTHONPATH": str(site), "NETWORK_GUARD_LOG": str(log)}
    return env, log


def test_the_guard_stops_a_packet_to_a_non_loopback_address(tmp_path: Path) -> None:
    env, log = guarded(tmp_path)
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
