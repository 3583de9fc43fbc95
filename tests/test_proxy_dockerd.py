"""The Docker Engine set-up of the README, with a real daemon: Debian's ``dockerd`` (its own data root,
exec root, socket and containerd, no iptables, no bridge, the vfs storage driver) reads the README's
``daemon.json`` with ``registry-mirrors`` set to the proxy, and ``docker pull hello:1.0`` pulls
``docker.io/library/hello:1.0`` through ``regauth proxy``. The daemon holds no credential; the proxy's
Docker Hub is the token-auth registry (Docker Hub's own auth scheme) and its ``docker.io`` record has the
credential. The image's digest equals the upstream's and its layer is unpacked.

The proxy runs in-process here: only ProxyOptions can point Docker Hub at a local registry."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from support.daemon import Daemon
from support.image import PushedImage, push_runnable_image
from support.registry import RegistryFixture, free_port

from regauth.config import Settings
from regauth.proxy.accesslog import ACCESS_LOG, AccessLogger
from regauth.proxy.app import make_proxy_app
from regauth.proxy.options import ProxyOptions
from regauth.registries import Registry, RegistryBook
from regauth.servers import DOCKER_HUB
from regauth.store.lazy import LazyStore

LAYER_FILE = b"pulled by dockerd through regauth\n"
_TIMEOUT = 120  # bounds a hung daemon or pull; no test asserts a duration


class Dockerd(Daemon):
    """A Docker daemon of the test's own: everything it writes is under ``workdir``, it reads only the
    ``daemon.json`` it is given, and it touches no network set-up of the machine."""

    name = "dockerd"
    package = "docker.io"
    private_dirs = ("/run", "/etc/docker")

    def __init__(self, workdir: Path, daemon_json: dict[str, object]) -> None:
        workdir.mkdir()
        self.data_root = workdir / "root"
        self.socket = workdir / "docker.sock"
        config = workdir / "daemon.json"
        config.write_text(json.dumps(daemon_json))
        args = ["--config-file", str(config), "--host", f"unix://{self.socket}"]
        args += ["--data-root", str(self.data_root), "--exec-root", str(workdir / "exec")]
        args += ["--pidfile", str(workdir / "docker.pid"), "--storage-driver", "vfs"]
        args += ["--iptables=false", "--ip6tables=false", "--ip-masq=false", "--bridge", "none"]
        # No "docker" group for the socket: in a user's namespace that group is not mapped.
        args += ["--group", ""]
        super().__init__(workdir, args)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if gone := self.exited():
                raise AssertionError(gone)
            if self.socket.exists():
                code, _, _ = await self.docker("version", "--format", "{{.Server.Version}}")
                if code == 0:
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"dockerd did not answer in {timeout}s: {self.log()}")

    async def docker(self, *args: str) -> tuple[int, str, str]:
        binary = shutil.which("docker")
        assert binary, "the docker CLI is not installed: apt-get install docker.io"
        env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(self.dir / "cli")}
        proc = await asyncio.create_subprocess_exec(
            binary,
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), _TIMEOUT)
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@pytest.fixture
def hub_image(registry_token: RegistryFixture) -> PushedImage:
    fx = registry_token
    return push_runnable_image(
        fx.url,
        "library/hello",
        context=fx.ssl_context(),
        username=fx.username,
        password=fx.password,
        files={"hello.txt": LAYER_FILE},
    )


@pytest.fixture
async def hub_proxy(settings: Settings, registry_token: RegistryFixture) -> AsyncIterator[TestServer]:
    """The proxy with the token registry standing in for Docker Hub, on a real loopback port."""
    fx = registry_token
    book = RegistryBook.for_settings(settings)
    book.add(
        Registry(id="", name="hub", registry=DOCKER_HUB, username=fx.username, ca_file=fx.ca_file),
        fx.password,
    )
    app = make_proxy_app(
        settings, book, LazyStore.for_settings(settings), options=ProxyOptions(docker_hub_url=fx.url)
    )
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server(access_log_class=AccessLogger, access_log=ACCESS_LOG)
    try:
        yield server
    finally:
        await server.close()


async def test_docker_engine_pulls_docker_hub_images_through_registry_mirrors(
    hub_proxy: TestServer,
    hub_image: PushedImage,
    registry_token: RegistryFixture,
    short_tmp: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOG.name)
    mirror = f"http://127.0.0.1:{hub_proxy.port}"
    # The README's daemon.json, as is.
    daemon = Dockerd(short_tmp / "dockerd", {"registry-mirrors": [mirror]})
    try:
        await daemon.wait_ready()
        code, out, err = await daemon.docker("pull", "hello:1.0")
        assert code == 0, f"docker pull: exit {code}\n{out}\n{err}\n{daemon.log()}"
        code, out, err = await daemon.docker("image", "inspect", "hello:1.0")
        assert code == 0, err
        inspected = json.loads(out)[0]
        assert inspected["RepoDigests"] == [f"hello@{hub_image.digest}"]
        # Unpacked by the vfs driver: the layer's file is in an image layer directory.
        layers = list((daemon.data_root / "vfs" / "dir").glob("*/hello.txt"))
        assert [p.read_bytes() for p in layers] == [LAYER_FILE]
    finally:
        daemon.stop()
    # Docker sent the mirror plain Docker Hub paths: no registry prefix, no ns, all answered by the proxy.
    access = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOG.name]
    pulled = [line for line in access if "/v2/library/hello/" in line]
    assert any("/manifests/1.0 " in line and " 200 " in line for line in pulled), access
    blobs = [line for line in pulled if "/blobs/" in line and " 200 " in line]
    assert {d for d in hub_image.blob_digests if any(d in line for line in blobs)} == set(
        hub_image.blob_digests
    )
    assert not any("ns=" in line for line in pulled)
    assert registry_token.password and not any(registry_token.password in line for line in access)
