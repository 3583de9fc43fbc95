"""The installed ``docker-credential-regauth get`` over the providers: the not-found fallback with its
cause on stderr and in the log file, and a cached cloud token served by the real process.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from support.providers import start_moto

from regauth.config import load_settings
from regauth.helper.texts import NOT_FOUND

HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def get(helper_exe: str, server: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helper_exe, "get"], input=server, capture_output=True, text=True, check=False)


def test_provider_failure_answers_not_found_and_says_why(
    helper_exe: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    proc = get(helper_exe, HOST)
    assert (proc.returncode, proc.stdout) == (1, NOT_FOUND + "\n")
    cause = f"ecr provider for {HOST}: no AWS credentials found"
    assert cause in proc.stderr and "Traceback" not in proc.stderr
    assert cause in load_settings().log_file.read_text()


def test_cached_token_is_served_after_the_endpoint_is_gone(
    helper_exe: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_moto(monkeypatch)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    first = get(helper_exe, HOST)
    server.stop()
    assert first.returncode == 0, first.stdout + first.stderr
    second = get(helper_exe, f"https://{HOST}")
    assert (
        json.loads(second.stdout)["Secret"] == json.loads(first.stdout)["Secret"] == "123456789012-auth-token"
    )
    # Bypassing the cache must mint, and the endpoint is gone.
    monkeypatch.setenv("REGAUTH_NO_CACHE", "1")
    third = get(helper_exe, HOST)
    assert third.stdout == NOT_FOUND + "\n" and "EndpointConnectionError" in third.stderr


def test_sdk_chatter_stays_off_stderr(helper_exe: str) -> None:
    proc = get(helper_exe, "myreg.azurecr.io")
    assert proc.stdout == NOT_FOUND + "\n"
    (line,) = proc.stderr.splitlines()
    assert "acr provider for myreg.azurecr.io: no Azure credentials found" in line
