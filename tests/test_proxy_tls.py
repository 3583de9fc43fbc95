"""`regauth proxy --tls-cert/--tls-key`: the proxy serves HTTPS, so a client token never crosses in clear.
skopeo pulls through it with TLS verification on and only the proxy's client token."""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support.proxy import ProxyProcess
from support.registry import RegistryFixture
from support.tls import PKI

from regauth.config import Settings
from regauth.registries import Registry, RegistryBook

TOKEN = "proxy-client-token-5d1c"


def wait_https(proxy: ProxyProcess, context: ssl.SSLContext) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proxy.process.poll() is None, proxy.log()
        try:
            request = urllib.request.Request(
                f"https://{proxy.host}/v2/", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            with urllib.request.urlopen(request, timeout=2, context=context):
                return
        except urllib.error.URLError:
            time.sleep(0.05)
    raise AssertionError(f"the proxy did not answer over HTTPS: {proxy.log()}")


def test_skopeo_pulls_over_https_with_verification(
    regauth_exe: str, settings: Settings, tmp_path: Path, test_pki: PKI, registry_token: RegistryFixture
) -> None:
    fx = registry_token
    book = RegistryBook.for_settings(settings)
    book.add(
        Registry(id="", name="tok", registry=fx.host, username=fx.username, ca_file=fx.ca_file), fx.password
    )
    token_file = tmp_path / "client-token"
    token_file.write_text(TOKEN + "\n")
    proxy = ProxyProcess(
        regauth_exe,
        tmp_path,
        "--tls-cert",
        str(test_pki.cert_file),
        "--tls-key",
        str(test_pki.key_file),
        "--client-token-file",
        str(token_file),
    )
    try:
        wait_https(proxy, test_pki.client_context())
        # Plain HTTP to the TLS port gets no registry answer.
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://{proxy.host}/v2/", timeout=5)
        certs = tmp_path / "certs"
        certs.mkdir()
        shutil.copy(test_pki.ca_file, certs / "ca.crt")
        auth = tmp_path / "empty-auth.json"
        auth.write_text("{}")
        dest = tmp_path / "copy"
        done = subprocess.run(
            [
                "skopeo",
                "copy",
                "--src-cert-dir",
                str(certs),
                "--src-creds",
                f"pull:{TOKEN}",
                "--authfile",
                str(auth),
                f"docker://{proxy.host}/tok/{fx.repository}:{fx.tag}",
                f"dir:{dest}",
            ],
            env={**os.environ, "REGISTRY_AUTH_FILE": str(auth)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        manifest = (dest / "manifest.json").read_bytes()
        assert "sha256:" + hashlib.sha256(manifest).hexdigest() == fx.digest
        assert TOKEN not in proxy.log()
    finally:
        assert proxy.stop() == 0, proxy.log()


@pytest.mark.parametrize(
    ("which", "expected"),
    [("cert-only", "go together"), ("key-only", "go together"), ("bad-key", "cannot load --tls-cert")],
)
def test_bad_tls_options_are_one_line(
    regauth_exe: str, test_pki: PKI, tmp_path: Path, which: str, expected: str
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    argv = {
        "cert-only": ["--tls-cert", str(test_pki.cert_file)],
        "key-only": ["--tls-key", str(test_pki.key_file)],
        "bad-key": ["--tls-cert", str(test_pki.cert_file), "--tls-key", str(bad)],
    }[which]
    done = subprocess.run(
        [regauth_exe, "proxy", "--listen", "127.0.0.1:0", *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr
