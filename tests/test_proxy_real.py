"""Real clients through the real proxy: ``skopeo copy`` from real registries (token auth, htpasswd over
TLS) through ``regauth proxy`` run as its console script, with no credentials on the client side."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.image import MANIFEST_V2
from support.proxy import ProxyProcess, caching_proxy_before
from support.registry import RegistryFixture

from regauth.config import Settings


@pytest.fixture
def proxy(
    regauth_exe: str,
    settings: Settings,
    tmp_path: Path,
    registry_token: RegistryFixture,
    registry_htpasswd: RegistryFixture,
) -> Iterator[ProxyProcess]:
    upstreams = {"tok": registry_token, "htp": registry_htpasswd}
    with caching_proxy_before(regauth_exe, settings, tmp_path, upstreams) as proc:
        yield proc


def _skopeo_copy(source: str, dest: Path, tmp_path: Path) -> None:
    auth = tmp_path / "empty-auth.json"
    auth.write_text("{}")
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(auth)}
    result = subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", "--authfile", str(auth), source, f"dir:{dest}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def _check_copy(dest: Path, fx: RegistryFixture) -> None:
    manifest = (dest / "manifest.json").read_bytes()
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == fx.digest
    for digest in fx.image.blob_digests:
        hex_part = digest.split(":")[1]
        assert hashlib.sha256((dest / hex_part).read_bytes()).hexdigest() == hex_part


def _metric(proxy: ProxyProcess, prefix: str) -> int:
    with urllib.request.urlopen(f"{proxy.url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


@pytest.mark.parametrize("name", ["tok", "htp"])
def test_skopeo_copy_through_the_proxy(
    proxy: ProxyProcess,
    tmp_path: Path,
    registry_token: RegistryFixture,
    registry_htpasswd: RegistryFixture,
    name: str,
) -> None:
    fx = registry_token if name == "tok" else registry_htpasswd
    _skopeo_copy(f"docker://{proxy.host}/{name}/{fx.repository}:{fx.tag}", tmp_path / "cold", tmp_path)
    _check_copy(tmp_path / "cold", fx)
    assert _metric(proxy, 'regauth_proxy_cache_hits_total{kind="blob"}') == 0
    # Again: the blobs come from the proxy's cache this time.
    _skopeo_copy(f"docker://{proxy.host}/{name}/{fx.repository}@{fx.digest}", tmp_path / "warm", tmp_path)
    _check_copy(tmp_path / "warm", fx)
    assert _metric(proxy, 'regauth_proxy_cache_hits_total{kind="blob"}') == len(fx.image.blob_digests)
    if name == "tok":
        assert _metric(proxy, "regauth_proxy_token_mints_total") == 1


def test_containerd_style_ns_request(proxy: ProxyProcess, registry_token: RegistryFixture) -> None:
    fx = registry_token
    url = f"{proxy.url}/v2/{fx.repository}/manifests/{fx.tag}?ns={fx.host}"
    request = urllib.request.Request(url, headers={"Accept": MANIFEST_V2})
    with urllib.request.urlopen(request, timeout=10) as resp:
        body = resp.read()
        assert resp.headers["Docker-Content-Digest"] == fx.digest
    assert body == fx.image.manifest
    assert json.loads(body)["mediaType"] == MANIFEST_V2


def test_registries_conf_mirror_with_a_location_prefix(
    proxy: ProxyProcess, tmp_path: Path, registry_htpasswd: RegistryFixture
) -> None:
    """podman/CRI-O style: the registry's mirror is the proxy with the record's NAME as path prefix.
    The client has no credentials, so only the mirror can succeed."""
    fx = registry_htpasswd
    # containers/image 5.23 (skopeo 1.9) reads no CONTAINERS_REGISTRIES_CONF; it reads the user's file.
    conf = Path(os.environ["HOME"]) / ".config" / "containers" / "registries.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        f'[[registry]]\nlocation = "{fx.host}"\n'
        f'[[registry.mirror]]\nlocation = "{proxy.host}/htp"\ninsecure = true\n'
    )
    auth = tmp_path / "empty-auth.json"
    auth.write_text("{}")
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(auth)}
    dest = tmp_path / "mirrored"
    source = f"docker://{fx.host}/{fx.repository}:{fx.tag}"
    result = subprocess.run(
        ["skopeo", "copy", source, f"dir:{dest}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    _check_copy(dest, fx)
    assert _metric(proxy, 'regauth_proxy_requests_total{method="GET",kind="manifest"') >= 1
