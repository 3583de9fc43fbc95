"""The proxy's documented client set-ups, with the real clients: containerd 1.6 (its own daemon, ``ctr``
with a ``hosts.toml`` mirror) and podman 4.3 (a ``registries.conf`` mirror with the record's name as path
prefix) pull a real image (a gzip'd tar layer, unpacked) from the token-auth registry through ``regauth
proxy``. Neither client holds a credential: each test first shows the client refused by the upstream
directly (its CA trusted), then the pull through the proxy, digests equal to the upstream's. Missing
binaries fail these tests; none skips."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.daemon import Daemon
from support.image import PushedImage, push_runnable_image
from support.podman import podman_argv, podman_env, stop_podman
from support.proxy import ProxyProcess, caching_proxy_before
from support.registry import RegistryFixture

from regauth.config import Settings

NAME = "tok"  # the proxy record's name: the path prefix of the podman mirror
LAYER_FILE = b"pulled through regauth\n"
_TIMEOUT = 60  # bounds a hung client; no test asserts a duration


@pytest.fixture
def image(registry_token: RegistryFixture) -> PushedImage:
    fx = registry_token
    return push_runnable_image(
        fx.url,
        context=fx.ssl_context(),
        username=fx.username,
        password=fx.password,
        files={"hello.txt": LAYER_FILE},
    )


@pytest.fixture
def proxy(
    regauth_exe: str, settings: Settings, tmp_path: Path, registry_token: RegistryFixture
) -> Iterator[ProxyProcess]:
    with caching_proxy_before(regauth_exe, settings, tmp_path, {NAME: registry_token}) as proc:
        yield proc


def _run(argv: list[str], *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which(argv[0])
    assert binary, f"{argv[0]} is not installed: the client tests need it (see the CI package list)"
    return subprocess.run(
        [binary, *argv[1:]], env=env, capture_output=True, text=True, timeout=_TIMEOUT, check=False
    )


def _ok(argv: list[str], *, env: dict[str, str] | None = None) -> str:
    result = _run(argv, env=env)
    assert result.returncode == 0, f"{argv}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _fails(argv: list[str], *, env: dict[str, str] | None = None) -> str:
    result = _run(argv, env=env)
    assert result.returncode != 0, f"{argv} succeeded:\n{result.stdout}"
    return result.stderr


# ---- containerd ----------------------------------------------------------------------------------------


class Containerd(Daemon):
    """A containerd daemon of the test's own (root, state, socket and config under ``workdir``), with
    only the plugins a pull needs."""

    _DISABLED = (
        "io.containerd.grpc.v1.cri",
        "io.containerd.internal.v1.opt",
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.tracing.processor.v1.otlp",
    )

    name = "containerd"

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir()
        self.root = workdir / "root"
        self.socket = workdir / "containerd.sock"
        config = workdir / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{self.root}"\nstate = "{workdir / "state"}"\n'
            f"disabled_plugins = {json.dumps(list(self._DISABLED))}\n"
            f'[grpc]\n  address = "{self.socket}"\n'
        )
        super().__init__(workdir, ["--config", str(config)])

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if gone := self.exited():
                raise AssertionError(gone)
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(str(self.socket))
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"containerd did not listen in {timeout}s: {self.log()}")

    def ctr(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.socket), "--namespace", "regauth-test", *args]


@pytest.fixture
def containerd(short_tmp: Path) -> Iterator[Containerd]:
    daemon = Containerd(short_tmp / "containerd")
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.stop()


def write_hosts_toml(hosts_dir: Path, directory: str, upstream: str, mirror: str) -> None:
    """``hosts.toml`` as the README shows it, in ``hosts_dir/directory``."""
    path = hosts_dir / directory / "hosts.toml"
    path.parent.mkdir(parents=True)
    path.write_text(
        f'server = "https://{upstream}"\n\n[host."{mirror}"]\n  capabilities = ["pull", "resolve"]\n'
    )


def write_direct_hosts_toml(hosts_dir: Path, upstream: str, ca_file: str) -> None:
    """The upstream alone, its CA trusted: what containerd can do without the proxy."""
    path = hosts_dir / upstream / "hosts.toml"
    path.parent.mkdir(parents=True)
    path.write_text(
        f'server = "https://{upstream}"\n\n[host."https://{upstream}"]\n'
        f'  capabilities = ["pull", "resolve"]\n  ca = "{ca_file}"\n'
    )


def _ctr_digest(listing: str, ref: str) -> str:
    # `ctr images ls`: REF TYPE DIGEST SIZE PLATFORMS LABELS
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == ref:
            return fields[2]
    raise AssertionError(f"{ref} not in:\n{listing}")


# containerd 1.6 looks for an upstream with a port in certs.d/host:port and in certs.d/host_port_.
@pytest.mark.parametrize("directory", ["host:port", "host_port_"])
def test_containerd_pulls_through_a_hosts_toml_mirror(
    containerd: Containerd,
    proxy: ProxyProcess,
    registry_token: RegistryFixture,
    image: PushedImage,
    tmp_path: Path,
    directory: str,
) -> None:
    upstream = registry_token.host
    host, port = upstream.rsplit(":", 1)
    ref = f"{upstream}/{image.repository}:{image.tag}"
    pull = ["images", "pull", "--snapshotter", "native", "--hosts-dir"]
    # Alone, even trusting the upstream's CA, containerd cannot pull: it has no credentials.
    assert registry_token.ca_file
    write_direct_hosts_toml(tmp_path / "direct", upstream, registry_token.ca_file)
    refused = _fails(containerd.ctr(*pull, str(tmp_path / "direct"), ref))
    assert "pull access denied" in refused

    named = upstream if directory == "host:port" else f"{host}_{port}_"
    write_hosts_toml(tmp_path / "certs.d", named, upstream, proxy.url)
    _ok(containerd.ctr(*pull, str(tmp_path / "certs.d"), ref))

    assert _ctr_digest(_ok(containerd.ctr("images", "ls")), ref) == image.digest
    # Unpacked: the layer's file is in a snapshot of the native snapshotter.
    snapshots = containerd.root / "io.containerd.snapshotter.v1.native" / "snapshots"
    assert [p.read_bytes() for p in snapshots.glob("*/hello.txt")] == [LAYER_FILE]
    # Every request containerd sent the mirror named the upstream in ns=.
    requests = [line for line in proxy.log().splitlines() if f"/v2/{image.repository}/" in line]
    assert requests and all(f"?ns={upstream} 200 " in line for line in requests), proxy.log()


# ---- podman --------------------------------------------------------------------------------------------


def _registries_conf(path: Path, upstream: str, mirror: str | None = None) -> Path:
    text = f'[[registry]]\nlocation = "{upstream}"\n'
    if mirror:
        text += f'\n[[registry.mirror]]\nlocation = "{mirror}"\ninsecure = true\n'
    path.write_text(text)
    return path


def test_podman_pulls_through_a_registries_conf_mirror(
    proxy: ProxyProcess,
    registry_token: RegistryFixture,
    image: PushedImage,
    tmp_path: Path,
    short_tmp: Path,
    request: pytest.FixtureRequest,
) -> None:
    upstream = registry_token.host
    ref = f"{upstream}/{image.repository}:{image.tag}"
    auth = tmp_path / "empty-auth.json"
    auth.write_text("{}")
    storage = short_tmp / "podman"
    env = {**os.environ, **podman_env(storage), "REGISTRY_AUTH_FILE": str(auth)}
    podman = podman_argv(storage)
    request.addfinalizer(lambda: stop_podman(storage))
    # podman trusts the upstream's CA: only the missing credentials keep it from pulling by itself.
    certs = tmp_path / "certs"
    certs.mkdir()
    assert registry_token.ca_file
    shutil.copy(registry_token.ca_file, certs / "ca.crt")
    pull = ["pull", "--cert-dir", str(certs), ref]
    direct = _registries_conf(tmp_path / "direct.conf", upstream)
    refused = _fails([*podman, *pull], env={**env, "CONTAINERS_REGISTRIES_CONF": str(direct)})
    assert "unauthorized" in refused.lower()

    mirrored = _registries_conf(tmp_path / "registries.conf", upstream, f"{proxy.host}/{NAME}")
    env["CONTAINERS_REGISTRIES_CONF"] = str(mirrored)
    _ok([*podman, *pull], env=env)

    inspected = json.loads(_ok([*podman, "image", "inspect", ref], env=env))
    assert inspected[0]["Digest"] == image.digest
    assert [p.read_bytes() for p in (storage / "root").glob("vfs/dir/*/hello.txt")] == [LAYER_FILE]
    requests = [line for line in proxy.log().splitlines() if f"/v2/{NAME}/{image.repository}/" in line]
    assert any("/manifests/" in line and " 200 " in line for line in requests), proxy.log()
