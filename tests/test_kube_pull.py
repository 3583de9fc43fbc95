"""The plugin's credentials pull a real image: skopeo copies it from the test registries with them.

As on a node: the kubelet asks the plugin for the image (no tag, as it sends it), picks the entry with
its keyring rules, and the runtime pulls with that username and password. skopeo stands for the runtime:
it is given the credentials and nothing else (no auth file, no helper), so only they can open the
registry: without them the same copy is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import kube_kubelet
import pytest
from kube_kubelet import keyring_lookup, kubelet_decode, run_plugin
from support.records import add_record
from support.registry import RegistryFixture

from regauth.config import Settings


def skopeo_copy(
    fx: RegistryFixture, workdir: Path, creds: dict[str, str] | None
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("skopeo")
    assert exe is not None, "skopeo is not installed; these tests need it (never skipped)"
    certs = workdir / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    assert fx.ca_file is not None
    shutil.copyfile(fx.ca_file, certs / "ca.crt")
    dest = workdir / "image"
    shutil.rmtree(dest, ignore_errors=True)
    # An empty auth file: skopeo must find no credential of its own.
    auth = workdir / "auth.json"
    auth.write_text("{}")
    argv = [exe, "copy", "--src-cert-dir", str(certs)]
    if creds is not None:
        argv += ["--src-creds", f"{creds['username']}:{creds['password']}"]
    argv += [f"docker://{fx.host}/{fx.repository}:{fx.tag}", f"dir:{dest}"]
    env = dict(os.environ, REGISTRY_AUTH_FILE=str(auth))
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.mark.parametrize("fixture", ["registry_htpasswd", "registry_token"])
def test_the_answer_pulls_the_image(
    fixture: str, request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> None:
    fx: RegistryFixture = request.getfixturevalue(fixture)
    assert fx.username is not None and fx.password is not None
    add_record(settings, fx.host, fx.password, username=fx.username, ca_file=fx.ca_file)
    image = f"{fx.host}/{fx.repository}"
    proc = run_plugin(kube_kubelet.request(image), "--default-cache-duration", "1h")
    assert (proc.returncode, proc.stderr) == (0, "")
    entries = keyring_lookup(kubelet_decode(proc.stdout)["auth"], image)
    assert len(entries) == 1

    refused = skopeo_copy(fx, tmp_path, None)
    assert refused.returncode != 0
    pulled = skopeo_copy(fx, tmp_path, entries[0])
    assert pulled.returncode == 0, pulled.stderr
    raw = (tmp_path / "image" / "manifest.json").read_bytes()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == fx.digest
    assert len(json.loads(raw)["layers"]) >= 1
