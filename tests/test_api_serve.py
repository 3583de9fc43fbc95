"""`regauth serve` as a process: loopback by default, /healthz, TLS, the exposure rule (the proxy's),
and the CLI side of the records the API shows (`registry disable|enable`, the list, the audit log)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support.api import http, start_serve
from support.tls import PKI

from regauth.audit import AuditLog
from regauth.config import Settings
from regauth.registries import RegistryBook


def run(exe: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, *argv], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_serves_healthz_and_the_api_on_loopback(regauth_exe: str, tmp_path: Path) -> None:
    tok = run(regauth_exe, "token", "create", "ci", "--scope", "read").stdout.strip()
    server = start_serve(regauth_exe, log_dir=tmp_path)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        status, data, _ = http("GET", f"{server.url}/healthz")
        assert status == 200 and data == {"status": "ok"}
        status, data, headers = http("GET", f"{server.url}/api/v1/registries", tok)
        assert status == 200 and data == [] and headers["X-Total-Count"] == "0"
        assert http("GET", f"{server.url}/api/v1/registries")[0] == 401
    finally:
        log = server.stop()
    assert tok not in log and "Traceback" not in log
    # One access line per request, with the token's name (never the token).
    assert "GET /api/v1/registries 200" in log and "caller=ci" in log and "GET /api/v1/registries 401" in log


def test_a_non_loopback_address_needs_tls(regauth_exe: str) -> None:
    done = run(regauth_exe, "serve", "--listen", "0.0.0.0:8450")
    assert done.returncode == 1 and "not a loopback address and has no TLS" in done.stderr
    assert "--tls-cert" in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    half = run(regauth_exe, "serve", "--tls-cert", "/nonexistent.pem")
    assert half.returncode == 1 and "--tls-cert and --tls-key go together" in half.stderr
    bad = run(regauth_exe, "serve", "--listen", "nowhere")
    assert bad.returncode == 1 and "HOST:PORT" in bad.stderr


def test_serves_https_with_a_certificate(regauth_exe: str, test_pki: PKI, tmp_path: Path) -> None:
    tok = run(regauth_exe, "token", "create", "ci", "--scope", "read").stdout.strip()
    tls = ["--tls-cert", str(test_pki.cert_file), "--tls-key", str(test_pki.key_file)]
    server = start_serve(regauth_exe, *tls, log_dir=tmp_path)
    try:
        assert server.url.startswith("https://")
        status, data, _ = http(
            "GET", f"{server.url}/api/v1/registries", tok, context=test_pki.client_context()
        )
        assert status == 200 and data == []
    finally:
        server.stop()


def test_registry_disable_and_enable(regauth_exe: str, settings: Settings) -> None:
    added = run(
        regauth_exe, "registry", "add", "lab", "--url", "http://127.0.0.1:1", "--insecure", "--no-validate"
    )
    assert added.returncode == 0, added.stderr
    done = run(regauth_exe, "registry", "disable", "lab")
    assert done.returncode == 0 and "disabled registry 'lab'" in done.stdout
    assert RegistryBook.for_settings(settings).get("lab").active is False
    listed = run(regauth_exe, "registry", "list")
    assert "inactive" in listed.stdout
    as_json = json.loads(run(regauth_exe, "registry", "list", "--json").stdout)
    assert as_json[0]["active"] is False and as_json[0]["created_by"] == "cli"
    assert "already disabled" in run(regauth_exe, "registry", "disable", "lab").stdout
    which = run(regauth_exe, "registry", "which", "127.0.0.1:1")
    assert which.returncode == 1 and "is disabled" in which.stdout
    assert run(regauth_exe, "registry", "enable", "lab").returncode == 0
    assert RegistryBook.for_settings(settings).get("lab").active is True
    missing = run(regauth_exe, "registry", "disable", "nope")
    assert missing.returncode == 1 and "no registry named 'nope'" in missing.stderr
    actions = [(e["actor"], e["action"]) for e in AuditLog.for_settings(settings).read()]
    assert actions == [("cli", "created"), ("cli", "disabled"), ("cli", "enabled")]


def test_a_disabled_record_is_not_found_by_the_helper(regauth_exe: str, helper_exe: str) -> None:
    argv = ["registry", "add", "lab", "--url", "127.0.0.1:5999", "--insecure", "--no-validate"]
    done = subprocess.run(
        [regauth_exe, *argv, "--username", "u", "--password-stdin"],
        input="pw-4711\n",
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    got = subprocess.run([helper_exe, "get"], input="127.0.0.1:5999", capture_output=True, text=True)
    assert got.returncode == 0 and json.loads(got.stdout)["Secret"] == "pw-4711"
    assert run(regauth_exe, "registry", "disable", "lab").returncode == 0
    got = subprocess.run([helper_exe, "get"], input="127.0.0.1:5999", capture_output=True, text=True)
    assert (
        got.returncode == 1
        and "credentials not found" in got.stdout
        and "pw-4711" not in got.stdout + got.stderr
    )


def test_cli_update_to_another_host_keeps_no_secret(regauth_exe: str, settings: Settings) -> None:
    argv = ["registry", "add", "lab", "--url", "127.0.0.1:5998", "--insecure", "--no-validate"]
    done = subprocess.run(
        [regauth_exe, *argv, "--username", "u", "--password-stdin"],
        input="pw-4712\n",
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    # Checked, the move needs the secret again; unchecked, the record moves without it.
    moved = run(regauth_exe, "registry", "update", "lab", "--url", "127.0.0.1:5997")
    assert moved.returncode == 1 and "keeps no stored secret" in moved.stderr
    moved = run(regauth_exe, "registry", "update", "lab", "--url", "127.0.0.1:5997", "--no-validate")
    assert moved.returncode == 0, moved.stderr
    shown = json.loads(run(regauth_exe, "registry", "show", "lab", "--json").stdout)
    assert shown["registry"] == "127.0.0.1:5997" and shown["secret"] == "missing"


def test_the_helper_s_store_and_erase_are_in_the_audit_log(
    helper_exe: str, regauth_exe: str, settings: Settings
) -> None:
    request = '{"ServerURL":"127.0.0.1:5996","Username":"h","Secret":"helper-pw-1"}'
    assert (
        subprocess.run([helper_exe, "store"], input=request, capture_output=True, text=True).returncode == 0
    )
    listed = subprocess.run([helper_exe, "list"], input="", capture_output=True, text=True)
    assert "127.0.0.1:5996" in listed.stdout
    name = RegistryBook.for_settings(settings).all()[0].name
    assert run(regauth_exe, "registry", "disable", name).returncode == 0
    # A disabled record is not listed: the helper would not answer a get for it.
    listed = subprocess.run([helper_exe, "list"], input="", capture_output=True, text=True)
    assert "127.0.0.1:5996" not in listed.stdout
    assert (
        subprocess.run(
            [helper_exe, "erase"], input="127.0.0.1:5996", capture_output=True, text=True
        ).returncode
        == 0
    )
    actions = [(e["actor"], e["action"]) for e in AuditLog.for_settings(settings).read()]
    assert actions == [("helper", "created"), ("cli", "disabled"), ("helper", "deleted")]
    assert "helper-pw-1" not in AuditLog.for_settings(settings).path.read_text()
