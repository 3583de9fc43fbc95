"""``regauth configure containerd``: containerd's ``ctr`` (its own daemon) pulls from the token registry
through ``regauth proxy`` with the ``hosts.toml`` files it writes, holding no credential; CRI's
``config_path`` lands under the 1.x or the 2.x key with the user's comments kept, and containerd itself
reads the result; ``--undo`` puts back what was there, byte for byte."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import tomlkit
import trustme
from support.image import PushedImage, push_runnable_image
from support.proxy import ProxyProcess, caching_proxy_before
from support.registry import RegistryFixture, free_port
from test_proxy_clients import Containerd, _ctr_digest

from regauth.config import Settings

TIMEOUT = 60
USER_CONFIG_V2 = """\
version = 2
# The node's containerd: keep this comment.
root = "/var/lib/containerd"

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = ""   # set by the platform team

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
"""
USER_CONFIG_V3 = """\
version = 3
# containerd 2.x
[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
"""


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(argv[0])
    assert exe, f"{argv[0]} is not installed; these tests need it (never skipped)"
    return subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=TIMEOUT, check=False)


def ok(argv: list[str]) -> str:
    proc = run(argv)
    assert proc.returncode == 0, f"{argv}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def _toml(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = tomlkit.parse(text).unwrap()
    return parsed


@pytest.fixture
def containerd(short_tmp: Path) -> Iterator[Containerd]:
    daemon = Containerd(short_tmp / "containerd")
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def proxy(
    regauth_exe: str, settings: Settings, tmp_path: Path, registry_token: RegistryFixture
) -> Iterator[ProxyProcess]:
    with caching_proxy_before(regauth_exe, settings, tmp_path, {"tok": registry_token}) as proc:
        yield proc


def test_ctr_pulls_through_the_proxy_after_configure(
    containerd: Containerd, proxy: ProxyProcess, registry_token: RegistryFixture, tmp_path: Path
) -> None:
    fx = registry_token
    image: PushedImage = push_runnable_image(
        fx.url, context=fx.ssl_context(), username=fx.username, password=fx.password, files={"a.txt": b"a\n"}
    )
    ref = f"{fx.host}/{image.repository}:{image.tag}"
    certs = tmp_path / "certs.d"
    config = tmp_path / "config.toml"
    config.write_text(USER_CONFIG_V2)
    pull = [*containerd.ctr("images", "pull", "--snapshotter", "native", "--hosts-dir", str(certs), ref)]
    assert run(pull).returncode != 0

    out = ok(
        [
            "regauth",
            "configure",
            "containerd",
            "--proxy",
            proxy.url,
            "--certs-dir",
            str(certs),
            "--config",
            str(config),
        ]
    )
    assert "restart containerd" in out
    hosts = certs / fx.host / "hosts.toml"
    assert _toml(hosts.read_text()) == {
        "server": f"https://{fx.host}",
        "host": {proxy.url: {"capabilities": ["pull", "resolve"]}},
    }
    ok(pull)
    assert _ctr_digest(ok(containerd.ctr("images", "ls")), ref) == image.digest
    assert f"?ns={fx.host} 200 " in proxy.log()

    # Only config_path changed, the comment beside it kept; containerd itself reads the file.
    assert config.read_text() == USER_CONFIG_V2.replace('config_path = ""', f'config_path = "{certs}"')
    dumped = ok(["containerd", "--config", str(config), "config", "dump"])
    assert f'config_path = "{certs}"' in dumped

    again = ["regauth", "configure", "containerd", "--proxy", proxy.url, "--config", str(config)]
    # A second run finds the certs.d directory from config_path, and nothing to change.
    assert "already configured, nothing to change" in ok(again)
    ok(["regauth", "configure", "containerd", "--undo"])
    assert config.read_text() == USER_CONFIG_V2 and not certs.exists()


def test_containerd_2_key_and_replaced_hosts_files(
    isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    certs = tmp_path / "certs.d"
    # containerd reads host_port_ before host:port: that is the file to replace, and it comes back.
    mine = certs / "lab.example_5000_" / "hosts.toml"
    mine.parent.mkdir(parents=True)
    mine.write_text('server = "https://lab.example:5000"  # the old mirror\n')
    os.chmod(mine, 0o640)
    # config.toml a link into a checkout of the node's files: the link stays, the target changes.
    target = tmp_path / "node-files" / "containerd.toml"
    target.parent.mkdir()
    target.write_text(USER_CONFIG_V3)
    config = tmp_path / "config.toml"
    config.symlink_to(target)
    argv = [
        "regauth",
        "configure",
        "containerd",
        "--proxy",
        "http://127.0.0.1:5000",
        "--certs-dir",
        str(certs),
    ]
    argv += ["--config", str(config), "--registries", "lab.example:5000,docker.io"]
    ok(argv)
    parsed = _toml(config.read_text())
    assert parsed["plugins"]["io.containerd.cri.v1.images"]["registry"]["config_path"] == str(certs)
    assert config.read_text().startswith(USER_CONFIG_V3)
    assert "http://127.0.0.1:5000" in mine.read_text() and (mine.stat().st_mode & 0o777) == 0o640
    assert not (certs / "lab.example:5000").exists()
    hub = _toml((certs / "docker.io" / "hosts.toml").read_text())
    assert hub["server"] == "https://registry-1.docker.io"

    assert config.is_symlink()
    ok(["regauth", "configure", "containerd", "--undo"])
    assert config.is_symlink() and target.read_text() == USER_CONFIG_V3
    assert mine.read_text() == 'server = "https://lab.example:5000"  # the old mirror\n'
    assert sorted(p.name for p in certs.iterdir()) == ["lab.example_5000_"]


def test_a_new_config_and_refusals(isolated_env: Path, regauth_exe: str, tmp_path: Path) -> None:
    config = tmp_path / "etc" / "config.toml"
    certs = tmp_path / "certs.d"
    base = ["regauth", "configure", "containerd", "--certs-dir", str(certs), "--registries", "ghcr.io"]
    ok([*base, "--proxy", "http://127.0.0.1:5000", "--config", str(config)])
    assert _toml(config.read_text()) == {
        "version": 2,
        "plugins": {"io.containerd.grpc.v1.cri": {"registry": {"config_path": str(certs)}}},
    }
    ok(["containerd", "--config", str(config), "config", "dump"])

    certs = tmp_path / "other-certs.d"
    base[4] = str(certs)
    mirrors = tmp_path / "mirrors.toml"
    mirrors.write_text(
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n'
        '  endpoint = ["https://mirror.example"]\n'
    )
    refused = run([*base, "--proxy", "http://127.0.0.1:5000", "--config", str(mirrors)])
    assert refused.returncode == 1 and "mirrors" in refused.stderr and "nothing was changed" in refused.stderr
    no_proxy = run([*base, "--no-config"])
    assert no_proxy.returncode == 1 and "--proxy URL is needed" in no_proxy.stderr
    bad = run([*base, "--no-config", "--proxy", "ftp://x"])
    assert bad.returncode == 1 and "http://HOST:PORT" in bad.stderr
    assert not certs.exists()


def test_an_existing_host_port_directory_is_the_one_written(
    containerd: Containerd, proxy: ProxyProcess, registry_token: RegistryFixture, tmp_path: Path
) -> None:
    fx = registry_token
    assert fx.ca_file
    image = push_runnable_image(
        fx.url, context=fx.ssl_context(), username=fx.username, password=fx.password, files={"b.txt": b"b\n"}
    )
    ref = f"{fx.host}/{image.repository}:{image.tag}"
    certs = tmp_path / "certs.d"
    # A docker-style certs.d directory in containerd's own spelling, its CA and no hosts.toml yet:
    # containerd picks the directory (not a file in it) before host:port.
    name, port = fx.host.rsplit(":", 1)
    underscored = certs / f"{name}_{port}_"
    underscored.mkdir(parents=True)
    shutil.copyfile(fx.ca_file, underscored / "ca.crt")
    argv = ["regauth", "configure", "containerd", "--proxy", proxy.url, "--certs-dir", str(certs)]
    ok([*argv, "--no-config"])
    assert (underscored / "hosts.toml").is_file() and not (certs / fx.host).exists()
    pull = containerd.ctr("images", "pull", "--snapshotter", "native", "--hosts-dir", str(certs), ref)
    ok(pull)
    assert _ctr_digest(ok(containerd.ctr("images", "ls")), ref) == image.digest
    ok(["regauth", "configure", "containerd", "--undo"])
    assert sorted(p.name for p in underscored.iterdir()) == ["ca.crt"]


def test_a_config_path_list_keeps_every_directory(
    isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    # config_path is a list (filepath.SplitList: ':'), each host looked up in the first root that has it.
    first, second, mine = tmp_path / "a", tmp_path / "b", tmp_path / "mine"
    config = tmp_path / "config.toml"
    text = (
        f'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "{first}:{second}"\n'
    )
    config.write_text(text)
    base = [
        "regauth",
        "configure",
        "containerd",
        "--proxy",
        "http://127.0.0.1:5000",
        "--registries",
        "ghcr.io",
    ]
    out = ok([*base, "--config", str(config)])
    assert config.read_text() == text, out  # the directories already named: nothing to change in it
    assert (first / "ghcr.io" / "hosts.toml").is_file() and not second.exists()
    ok(["regauth", "configure", "containerd", "--undo"])

    # Another directory given: it goes first, and the user's stay after it.
    ok([*base, "--config", str(config), "--certs-dir", str(mine)])
    path = _toml(config.read_text())["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["config_path"]
    assert path == f"{mine}:{first}:{second}"
    assert f'config_path = "{mine}:{first}:{second}"' in ok(
        ["containerd", "--config", str(config), "config", "dump"]
    )


def test_doctor_names_a_mirror_containerd_would_not_pull_through(
    containerd: Containerd, proxy: ProxyProcess, registry_token: RegistryFixture, tmp_path: Path
) -> None:
    fx = registry_token
    image = push_runnable_image(
        fx.url, context=fx.ssl_context(), username=fx.username, password=fx.password, files={"c.txt": b"c\n"}
    )
    ref = f"{fx.host}/{image.repository}:{image.tag}"
    certs = tmp_path / "certs.d"
    ok(["regauth", "configure", "containerd", "--proxy", proxy.url, "--certs-dir", str(certs), "--no-config"])
    doctor = ["regauth", "doctor", "--containerd-certs-dir", str(certs)]
    assert f"ok     containerd: {certs}: a hosts.toml mirror" in run(doctor).stdout
    hosts = certs / fx.host / "hosts.toml"
    pull = containerd.ctr("images", "pull", "--snapshotter", "native", "--hosts-dir", str(certs), ref)
    for broken in (
        # Hand edits containerd reads as no mirror: push only; a file that does not parse (it falls
        # back to the directory's certificates alone).
        hosts.read_text().replace('["pull", "resolve"]', '["push"]'),
        hosts.read_text().replace("capabilities = [", "capabilities = [["),
    ):
        hosts.write_text(broken)
        assert run(pull).returncode != 0  # straight to the registry, with no credential
        out = run(doctor)
        assert out.returncode == 1 and f"ACTION containerd: {certs}: no mirror for {fx.host}" in out.stdout


NAME = "registry.test"  # not loopback by name, so ctr uses TLS (and its HTTPS_PROXY) for it


class _Connect(socketserver.ThreadingTCPServer):
    """An HTTPS_PROXY for ctr: every CONNECT goes to the one registry on 127.0.0.1, nothing else."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int) -> None:
        self.target = port
        self.asked: list[str] = []
        super().__init__(("127.0.0.1", 0), _Tunnel)


class _Tunnel(socketserver.StreamRequestHandler):
    server: _Connect
    rbufsize = 0  # the request head read a byte at a time: nothing of the TLS stream behind it

    def handle(self) -> None:
        head = self.rfile.readline(4096).decode("latin-1").split()
        while self.rfile.readline(4096) not in (b"\r\n", b"\n", b""):
            pass
        self.server.asked.append(" ".join(head[:2]))
        with socket.create_connection(("127.0.0.1", self.server.target), timeout=TIMEOUT) as up:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            pipe = threading.Thread(target=_copy, args=(up, self.connection), daemon=True)
            pipe.start()
            _copy(self.connection, up)
            pipe.join(TIMEOUT)


def _copy(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class MTLSRegistry(NamedTuple):
    host: str  # NAME:port
    ca: trustme.CA
    context: ssl.SSLContext  # trusts the CA, shows a client certificate
    env: dict[str, str]  # ctr's environment: HTTPS_PROXY to reach NAME
    connect: _Connect


@pytest.fixture
def mtls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MTLSRegistry]:
    """An anonymous registry on TLS from a CA of its own that asks for a client certificate from it:
    only the certificate files in a certs.d directory let containerd in."""
    from support import registry as reg

    workdir = tmp_path_factory.mktemp("registry-mtls")
    ca = trustme.CA(organization_name="regauth legacy certs.d")
    server = ca.issue_cert(NAME, "127.0.0.1")
    (workdir / "ca.pem").write_bytes(ca.cert_pem.bytes())
    (workdir / "server.pem").write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    (workdir / "server-key.pem").write_bytes(server.private_key_pem.bytes())
    port = reg.free_port()
    config = reg._base_config(workdir, port)
    config["http"]["tls"] = {
        "certificate": str(workdir / "server.pem"),
        "key": str(workdir / "server-key.pem"),
        "clientcas": [str(workdir / "ca.pem")],
    }
    (workdir / "config.yml").write_text(json.dumps(config))
    with open(workdir / "registry.log", "wb") as log:
        proc = subprocess.Popen(
            [reg.registry_binary(), "serve", str(workdir / "config.yml")], stdout=log, stderr=log
        )
    context = ssl.create_default_context(cafile=str(workdir / "ca.pem"))
    ca.issue_cert("regauth-test-client").configure_cert(context)
    connect = _Connect(port)
    threading.Thread(target=connect.serve_forever, daemon=True).start()
    env = {**os.environ, "HTTPS_PROXY": f"http://127.0.0.1:{connect.server_address[1]}", "NO_PROXY": ""}
    try:
        for _ in range(400):
            assert proc.poll() is None, (workdir / "registry.log").read_text()
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/v2/", timeout=2, context=context):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError(
                f"the mTLS registry did not answer: {(workdir / 'registry.log').read_text()}"
            )
        yield MTLSRegistry(f"{NAME}:{port}", ca, context, env, connect)
    finally:
        connect.shutdown()
        connect.server_close()
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.parametrize("spelling", ["host_port_", "host:port", "_default"])
def test_certificates_of_an_existing_host_directory_stay_in_use(
    containerd: Containerd, isolated_env: Path, mtls_registry: MTLSRegistry, tmp_path: Path, spelling: str
) -> None:
    fx = mtls_registry
    port = fx.host.rsplit(":", 1)[1]
    image = push_runnable_image(f"https://127.0.0.1:{port}", context=fx.context, files={"c.txt": b"c\n"})
    ref = f"{fx.host}/{image.repository}:{image.tag}"
    copy = f"{fx.host}/{image.repository}:copy"
    certs = tmp_path / "certs.d"
    hostdir = certs / {"host_port_": f"{NAME}_{port}_", "host:port": fx.host}.get(spelling, spelling)
    # containerd reads _default for a host without a directory of its own: regauth makes one.
    written_in, prefix = (certs / fx.host, "../_default/") if spelling == "_default" else (hostdir, "")
    hostdir.mkdir(parents=True)
    # docker's certs.d layout: the CA, a client pair, and a .cert holding its own key.
    client = fx.ca.issue_cert("regauth-test-client")
    files = {
        "ca.crt": fx.ca.cert_pem.bytes(),
        "client.cert": b"".join(blob.bytes() for blob in client.cert_chain_pems),
        "client.key": client.private_key_pem.bytes(),
        "other.cert": client.private_key_and_cert_chain_pem.bytes(),
    }
    for file, data in files.items():
        (hostdir / file).write_bytes(data)

    def ctr(*args: str) -> str:
        argv = containerd.ctr(*args)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False, env=fx.env)
        assert proc.returncode == 0, f"{argv}: {proc.stdout}{proc.stderr}"
        return proc.stdout

    pull = ("images", "pull", "--snapshotter", "native", "--hosts-dir", str(certs), ref)
    ctr(*pull)
    ctr("images", "tag", ref, copy)
    ctr("images", "rm", ref)
    # A mirror that refuses connections: containerd goes on to the server, as when the proxy is down.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        mirror = f"http://127.0.0.1:{closed.getsockname()[1]}"
        argv = [
            "regauth",
            "configure",
            "containerd",
            "--proxy",
            mirror,
            "--certs-dir",
            str(certs),
            "--no-config",
        ]
        ok([*argv, "--registries", fx.host])
        written = _toml((written_in / "hosts.toml").read_text())
        assert written["ca"] == [f"{prefix}ca.crt"]
        pairs = [["client.cert", "client.key"], ["other.cert", "other.cert"]]
        assert written["client"] == [[prefix + name for name in pair] for pair in pairs]
        ctr(*pull)
        assert _ctr_digest(ctr("images", "ls"), ref) == image.digest
        # A push goes to the server alone (the mirror is for pull and resolve).
        ctr("images", "push", "--hosts-dir", str(certs), copy)
    assert fx.connect.asked and set(fx.connect.asked) == {f"CONNECT {fx.host}"}
    assert "already configured, nothing to change" in ok([*argv, "--registries", fx.host])

    ok(["regauth", "configure", "containerd", "--undo"])
    assert {p.name: p.read_bytes() for p in hostdir.iterdir()} == files
    assert sorted(p.name for p in certs.iterdir()) == [hostdir.name]


class _Mirror(socketserver.ThreadingTCPServer):
    """A mirror that notes each request line and answers 404 (containerd then tries the next host)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.asked: list[str] = []
        super().__init__(("127.0.0.1", 0), _Answer404)


class _Answer404(socketserver.StreamRequestHandler):
    server: _Mirror

    def handle(self) -> None:
        while line := self.rfile.readline(4096):
            self.server.asked.append(line.decode("latin-1").strip())
            while self.rfile.readline(4096) not in (b"\r\n", b"\n", b""):
                pass
            self.wfile.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            self.wfile.flush()


def test_an_ipv6_host_port_directory_is_the_one_written(
    containerd: Containerd, isolated_env: Path, tmp_path: Path
) -> None:
    # containerd turns the last ":" of "[::1]:PORT" into "[::1]_PORT_", brackets or not.
    mirror = _Mirror()
    threading.Thread(target=mirror.serve_forever, daemon=True).start()
    try:
        port = str(free_port())
        host = f"[::1]:{port}"
        certs = tmp_path / "certs.d"
        underscored = certs / f"[::1]_{port}_"
        underscored.mkdir(parents=True)
        (underscored / "ca.crt").write_bytes(trustme.CA().cert_pem.bytes())
        url = f"http://127.0.0.1:{mirror.server_address[1]}"
        ok(
            [
                "regauth",
                "configure",
                "containerd",
                "--proxy",
                url,
                "--certs-dir",
                str(certs),
                "--no-config",
                "--registries",
                host,
            ]
        )
        assert sorted(p.name for p in certs.iterdir()) == [underscored.name]
        assert _toml((underscored / "hosts.toml").read_text())["ca"] == ["ca.crt"]
        pull = run(containerd.ctr("images", "pull", "--hosts-dir", str(certs), f"{host}/test/six:1"))
        assert pull.returncode != 0  # nothing serves it: the point is where containerd asked
        assert any(line.startswith("HEAD /v2/test/six/manifests/1?ns=") for line in mirror.asked), (
            mirror.asked,
            pull.stderr,
        )
        ok(["regauth", "configure", "containerd", "--undo"])
        assert sorted(p.name for p in underscored.iterdir()) == ["ca.crt"]
    finally:
        mirror.shutdown()
        mirror.server_close()
