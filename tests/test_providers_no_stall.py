"""Cloud lookups never stall a pull: metadata endpoints that accept connections and never answer.

Each SDK is pointed at a loopback black hole through its own endpoint setting. The first ``get`` must
answer not-found with the provider's one-line cause (the subprocess timeout is only a hang guard; no
test here measures time); the second must answer the same from memory, without contacting the black
hole again. The bound holds in validation (``registry add``) and in the proxy as well.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer
from support.metadata_stand_in import BlackHole, black_hole
from support.proxy import ProxyProcess

from regauth.config import Settings
from regauth.helper.texts import NOT_FOUND
from regauth.registries import Registry, RegistryBook

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ACR = "myreg.azurecr.io"
GAR = "europe-docker.pkg.dev"
# Far above any bounded answer, far below an SDK's own unbounded wait (azure-core reads for 300 s).
HANG_GUARD = 60
REMEMBERED = "(remembered for up to 60s; `regauth cache clear` forgets it)"


def _ecr_imds(hole: BlackHole) -> dict[str, str]:
    return {"AWS_EC2_METADATA_SERVICE_ENDPOINT": hole.url + "/"}


def _ecr_container(hole: BlackHole) -> dict[str, str]:
    # ECS and EKS Pod Identity: botocore waits 2 s, three times, with a pause between.
    return {"AWS_CONTAINER_CREDENTIALS_FULL_URI": hole.url + "/v2/credentials"}


def _acr_imds(hole: BlackHole) -> dict[str, str]:
    return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": hole.url}


def _acr_app_service(hole: BlackHole) -> dict[str, str]:
    return {"IDENTITY_ENDPOINT": hole.url + "/msi/token", "IDENTITY_HEADER": "header-value"}


def _gcp_metadata(hole: BlackHole) -> dict[str, str]:
    return {"GCE_METADATA_IP": hole.netloc, "GCE_METADATA_HOST": hole.netloc}


CASES = [
    (ECR, _ecr_imds, f"ecr provider for {ECR}: no AWS credentials found"),
    (ECR, _ecr_container, f"ecr provider for {ECR}: no AWS credentials found"),
    (ACR, _acr_imds, f"acr provider for {ACR}: no Azure credentials found"),
    (ACR, _acr_app_service, f"acr provider for {ACR}: no Azure credentials found"),
    (GAR, _gcp_metadata, f"gcp provider for {GAR}: no Google credentials found"),
]
IDS = ["ecr-imds", "ecr-container", "acr-imds", "acr-app-service", "gcp-metadata"]


@pytest.fixture
def hole() -> Iterator[BlackHole]:
    with black_hole() as site:
        yield site


def get(helper_exe: str, server: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [helper_exe, "get"], input=server, capture_output=True, text=True, timeout=HANG_GUARD
    )
    return proc.returncode, proc.stdout, proc.stderr


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize(("host", "endpoint", "cause"), CASES, ids=IDS)
def test_a_black_holed_metadata_endpoint_is_asked_once_per_identity(
    helper_exe: str, hole: BlackHole, monkeypatch: pytest.MonkeyPatch, host: str, endpoint, cause: str
) -> None:
    for name, value in endpoint(hole).items():
        monkeypatch.setenv(name, value)
    code, out, err = get(helper_exe, host)
    assert (code, out) == (1, NOT_FOUND + "\n")
    assert cause in one_line(err)
    asked = hole.settle()
    assert asked >= 1, "the SDK did not reach the black hole: the test proves nothing"

    code, out, err = get(helper_exe, f"https://{host}")
    assert (code, out) == (1, NOT_FOUND + "\n")
    line = one_line(err)
    assert cause in line and line.endswith(REMEMBERED)
    assert hole.settle() == asked


def test_no_credentials_ttl_zero_asks_every_time(
    helper_exe: str, hole: BlackHole, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _gcp_metadata(hole).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REGAUTH_NO_CREDENTIALS_TTL", "0")
    seen = []
    for _ in range(2):
        code, out, err = get(helper_exe, GAR)
        assert (code, out) == (1, NOT_FOUND + "\n") and "remembered" not in one_line(err)
        seen.append(hole.settle())
    assert 0 < seen[0] < seen[1]


def test_a_bad_ttl_is_one_line(helper_exe: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGAUTH_NO_CREDENTIALS_TTL", "a minute")
    code, out, err = get(helper_exe, GAR)
    assert code == 1 and "REGAUTH_NO_CREDENTIALS_TTL='a minute' is not a number of seconds" in out + err


def test_cache_clear_forgets_a_remembered_absence(
    helper_exe: str, regauth_exe: str, hole: BlackHole, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _ecr_imds(hole).items():
        monkeypatch.setenv(name, value)
    get(helper_exe, ECR)
    asked = hole.settle()
    cleared = subprocess.run([regauth_exe, "cache", "clear"], capture_output=True, text=True, timeout=60)
    assert cleared.returncode == 0, cleared.stderr
    code, _, err = get(helper_exe, ECR)
    assert code == 1 and "remembered" not in one_line(err)
    assert hole.settle() > asked


def test_a_login_is_seen_at_once(
    helper_exe: str, hole: BlackHole, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    """``aws configure`` writes ~/.aws/credentials: the remembered absence no longer applies."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        moto_host, moto_port = moto.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{moto_host}:{moto_port}")
        for name, value in _ecr_imds(hole).items():
            monkeypatch.setenv(name, value)
        for _ in range(2):
            code, out, _ = get(helper_exe, ECR)
            assert (code, out) == (1, NOT_FOUND + "\n")
        credentials = isolated_env / ".aws" / "credentials"
        credentials.parent.mkdir()
        credentials.write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
        code, out, err = get(helper_exe, ECR)
    finally:
        moto.stop()
    assert code == 0, out + err
    assert json.loads(out)["Secret"] == "123456789012-auth-token"


def test_validation_is_bounded_too(
    regauth_exe: str, hole: BlackHole, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    for name, value in _acr_imds(hole).items():
        monkeypatch.setenv(name, value)
    proc = subprocess.run(
        [regauth_exe, "registry", "add", "acr", "--url", ACR, "--provider", "acr"],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )
    assert proc.returncode != 0
    assert f"acr provider for registry 'acr' ({ACR}): no Azure credentials found" in one_line(proc.stderr)
    assert hole.settle() >= 1
    assert RegistryBook.for_settings(settings).all() == []


def proxy_get(proxy: ProxyProcess, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"{proxy.url}{path}", timeout=HANG_GUARD) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_proxy_is_bounded_and_remembers(
    regauth_exe: str,
    hole: BlackHole,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    tmp_path: Path,
) -> None:
    for name, value in _acr_imds(hole).items():
        monkeypatch.setenv(name, value)
    # The credential is asked for before the upstream, so nothing needs to listen there.
    record = Registry(id="", name="acr", registry="127.0.0.1:9", provider="acr", insecure=True)
    RegistryBook.for_settings(settings).add(record, None)
    proxy = ProxyProcess(regauth_exe, tmp_path)
    try:
        proxy.wait_ready()
        answers = []
        for _ in range(2):
            status, body = proxy_get(proxy, "/v2/acr/org/app/manifests/1.0")
            answers.append((status, json.loads(body)["errors"][0]["message"]))
            if len(answers) == 1:
                asked = hole.settle()
    finally:
        proxy.stop()
    assert [status for status, _ in answers] == [502, 502]
    assert all("no Azure credentials found" in message for _, message in answers)
    assert REMEMBERED in answers[1][1]
    assert asked >= 1 and hole.settle() == asked


def test_stderr_of_the_first_get_is_the_only_trace(helper_exe: str, hole: BlackHole) -> None:
    """An abandoned search ends with its process: nothing is printed at exit, nothing is left running."""
    env = {**os.environ, **_acr_imds(hole)}
    proc = subprocess.run(
        [helper_exe, "get"], input=ACR, env=env, capture_output=True, text=True, timeout=HANG_GUARD
    )
    assert proc.stdout == NOT_FOUND + "\n"
    assert "within 2.5s" in one_line(proc.stderr)


def test_a_credential_process_slower_than_the_deadline_is_waited_for(
    helper_exe: str, hole: BlackHole, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    """A profile's credential_process (aws-vault, a key that waits for a touch) is the user's own
    program: the search deadline does not cut it short."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        moto_host, moto_port = moto.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{moto_host}:{moto_port}")
        for name, value in _ecr_imds(hole).items():
            monkeypatch.setenv(name, value)
        script = isolated_env / "slow-credentials"
        answer = '{"Version": 1, "AccessKeyId": "testing", "SecretAccessKey": "testing"}'
        # Longer than DISCOVERY_DEADLINE (2.5 s), as a person touching a key would be.
        script.write_text(f"#!/bin/sh\nsleep 4\necho '{answer}'\n")
        script.chmod(0o755)
        config = isolated_env / ".aws" / "config"
        config.parent.mkdir()
        config.write_text(f"[default]\ncredential_process = {script}\n")
        code, out, err = get(helper_exe, ECR)
    finally:
        moto.stop()
    assert code == 0, out + err
    assert json.loads(out)["Secret"] == "123456789012-auth-token"


def test_a_named_managed_identity_is_bounded_too(
    helper_exe: str, hole: BlackHole, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    for name, value in _acr_imds(hole).items():
        monkeypatch.setenv(name, value)
    record = Registry(id="", name="acr", registry=ACR, provider="acr", options={"credential": "managed"})
    RegistryBook.for_settings(settings).add(record, None)
    cause = f"acr provider for registry 'acr' ({ACR}): no Azure credentials found within 2.5s"
    code, out, err = get(helper_exe, ACR)
    assert (code, out) == (1, NOT_FOUND + "\n") and cause in one_line(err)
    asked = hole.settle()
    code, out, err = get(helper_exe, ACR)
    assert (code, out) == (1, NOT_FOUND + "\n") and one_line(err).endswith(REMEMBERED)
    assert asked >= 1 and hole.settle() == asked
