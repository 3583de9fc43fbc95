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

import pytest
from support import kubelet as kube_kubelet
from support.image import PushedImage, push_test_image
from support.kubelet import keyring_lookup, kubelet_decode, run_plugin
from support.records import add_record
from support.registry import RegistryFixture

from regauth.config import Settings


def skopeo_copy(
    fx: RegistryFixture, workdir: Path, creds: dict[str, str] | None, image: PushedImage | None = None
) -> subprocess.CompletedProcess[str]:
    image = image or fx.image
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
    argv += [f"docker://{fx.host}/{image.repository}:{image.tag}", f"dir:{dest}"]
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


def test_per_prefix_identities_pull_each_its_own_repository(
    registry_token: RegistryFixture, settings: Settings, tmp_path: Path
) -> None:
    fx, server = registry_token, registry_token.token_server
    assert server is not None and fx.username == "bob" and fx.password is not None
    team_b = push_test_image(
        fx.url, "team-b/app", context=fx.ssl_context(), username="bob", password=fx.password
    )
    # bob may pull test/app and not team-b/app; dave the other way round.
    server.refused_for.update({"bob": {"team-b/app"}, "dave": {fx.repository}})
    try:
        add_record(settings, fx.host, fx.password, username="bob", ca_file=fx.ca_file)
        add_record(settings, fx.host, server.users["dave"], name="team-b", username="dave", prefix="team-b")
        answers = {}
        # Per image both: the kubelet's cache is looked up by image, then by registry, so a host-wide
        # answer cached for the registry would be served for team-b/app as well.
        for repository, cache_key_type in ((fx.repository, "Image"), ("team-b/app", "Image")):
            image = f"{fx.host}/{repository}"
            proc = kube_kubelet.run_plugin(kube_kubelet.request(image))
            assert (proc.returncode, proc.stderr) == (0, "")
            data = kubelet_decode(proc.stdout)
            assert data["cacheKeyType"] == cache_key_type
            [answers[repository]] = keyring_lookup(data["auth"], image)
        assert answers[fx.repository]["username"] == "bob" and answers["team-b/app"]["username"] == "dave"
        assert skopeo_copy(fx, tmp_path, answers[fx.repository]).returncode == 0
        assert skopeo_copy(fx, tmp_path, answers[fx.repository], team_b).returncode != 0
        pulled = skopeo_copy(fx, tmp_path, answers["team-b/app"], team_b)
        assert pulled.returncode == 0, pulled.stderr
        raw = (tmp_path / "image" / "manifest.json").read_bytes()
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == team_b.digest
        assert skopeo_copy(fx, tmp_path, answers["team-b/app"]).returncode != 0
    finally:
        server.refused_for.clear()
