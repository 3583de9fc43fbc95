"""``regauth configure containerd`` over a ``hosts.toml`` the user already has: it is merged (tomlkit),
never replaced. The user's server, server-level settings, mirrors and comments stay; regauth's proxy
entry is the first host containerd tries (the table order, getSortedHosts in hosts.go), marked so a
later ``--proxy`` replaces it alone; a re-run changes nothing; ``--undo`` restores the bytes."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

from support.image import push_runnable_image
from support.proxy import ProxyProcess
from support.registry import RegistryFixture, free_port
from test_configure_containerd import (
    MTLSRegistry,
    _Mirror,
    _toml,
    containerd,
    mtls_registry,
    ok,
    proxy,
    run,
)
from test_proxy_clients import Containerd, _ctr_digest

__all__ = ["containerd", "mtls_registry", "proxy"]  # the fixtures, imported for pytest


def _users_file(host: str, ca_file: str, mirror: str) -> str:
    return f"""\
# The platform team's file: keep this comment.
server = "https://{host}"  # the upstream itself
ca = "{ca_file}"
skip_verify = false

[header]
  x-team = ["infra"]

# The office mirror, tried first until now.
[host."{mirror}"]
  capabilities = ["pull", "resolve"]  # no pushes there
  skip_verify = true
"""


def test_a_users_hosts_toml_is_merged_with_regauths_proxy_first(
    containerd: Containerd, proxy: ProxyProcess, registry_token: RegistryFixture, tmp_path: Path
) -> None:
    fx = registry_token
    assert fx.ca_file
    image = push_runnable_image(
        fx.url, context=fx.ssl_context(), username=fx.username, password=fx.password, files={"m.txt": b"m\n"}
    )
    ref = f"{fx.host}/{image.repository}:{image.tag}"
    mirror = _Mirror()  # answers 404 to all: containerd then goes on to the next host
    threading.Thread(target=mirror.serve_forever, daemon=True).start()
    try:
        mirror_url = f"http://127.0.0.1:{mirror.server_address[1]}"
        certs = tmp_path / "certs.d"
        hosts = certs / fx.host / "hosts.toml"
        hosts.parent.mkdir(parents=True)
        # A docker-style CA beside a hosts.toml: containerd does not read it, and regauth must not name it.
        (hosts.parent / "extra.crt").write_text("not read by containerd while hosts.toml exists\n")
        users = _users_file(fx.host, fx.ca_file, mirror_url)
        hosts.write_text(users)
        argv = ["regauth", "configure", "containerd", "--certs-dir", str(certs), "--no-config"]
        ok([*argv, "--proxy", proxy.url])

        merged = hosts.read_text()
        for line in users.splitlines():
            assert line in merged, (line, merged)
        parsed, before = _toml(merged), _toml(users)
        assert list(parsed["host"]) == [proxy.url, mirror_url]
        assert parsed["host"][proxy.url] == {"capabilities": ["pull", "resolve"]}
        assert {k: v for k, v in parsed.items() if k != "host"} == {
            k: v for k, v in before.items() if k != "host"
        }
        assert parsed["host"][mirror_url] == before["host"][mirror_url]

        # containerd tries regauth's proxy first: the pull is served there, the user's mirror never asked.
        pull = containerd.ctr("images", "pull", "--snapshotter", "native", "--hosts-dir", str(certs), ref)
        ok(pull)
        assert _ctr_digest(ok(containerd.ctr("images", "ls")), ref) == image.digest
        assert f"?ns={fx.host} 200 " in proxy.log() and mirror.asked == []

        assert "already configured, nothing to change" in ok([*argv, "--proxy", proxy.url])
        assert hosts.read_text() == merged

        # Another proxy replaces regauth's entry, and only it.
        moved = f"http://127.0.0.1:{free_port()}"  # nothing listens: containerd goes on to the user's mirror
        ok([*argv, "--proxy", moved])
        again = hosts.read_text()
        assert proxy.url not in again
        for line in users.splitlines():
            assert line in again, (line, again)
        assert list(_toml(again)["host"]) == [moved, mirror_url]
        ok(containerd.ctr("images", "rm", ref))
        assert run(pull).returncode != 0  # the mirror has nothing, and the server wants a credential
        assert any(line.startswith("HEAD /v2/") for line in mirror.asked), mirror.asked

        ok(["regauth", "configure", "containerd", "--undo"])
        assert hosts.read_text() == merged
        ok(["regauth", "configure", "containerd", "--undo"])
        assert hosts.read_bytes() == users.encode()
    finally:
        mirror.shutdown()
        mirror.server_close()


def test_a_hosts_toml_without_mirrors_and_one_that_does_not_parse(
    isolated_env: Path, regauth_exe: str, tmp_path: Path
) -> None:
    certs = tmp_path / "certs.d"
    base = ["regauth", "configure", "containerd", "--certs-dir", str(certs), "--no-config"]
    base += ["--proxy", "http://127.0.0.1:5000"]
    # A file with a server of its own (another port) and nothing else: the server stays as the user set it.
    plain = certs / "plain.example" / "hosts.toml"
    plain.parent.mkdir(parents=True)
    plain.write_text('server = "https://plain.example:8443"\n')
    ok([*base, "--registries", "plain.example"])
    assert _toml(plain.read_text()) == {
        "server": "https://plain.example:8443",
        "host": {"http://127.0.0.1:5000": {"capabilities": ["pull", "resolve"]}},
    }
    assert plain.read_text().startswith('server = "https://plain.example:8443"\n')
    assert "already configured, nothing to change" in ok([*base, "--registries", "plain.example"])

    # The user's mirrors keep their order after regauth's entry; --proxy-ca lands in regauth's alone.
    two = certs / "two.example" / "hosts.toml"
    two.parent.mkdir()
    users = '[host."https://b.example"]\n  x = 1\n\n[host."https://a.example"]\n  ca = "a.pem"\n'
    two.write_text(users)
    ok([*base, "--registries", "two.example", "--proxy-ca", "/etc/regauth/proxy.pem"])
    parsed = _toml(two.read_text())
    assert list(parsed["host"]) == ["http://127.0.0.1:5000", "https://b.example", "https://a.example"]
    assert parsed["host"]["http://127.0.0.1:5000"]["ca"] == "/etc/regauth/proxy.pem"
    assert (
        parsed["host"]["https://a.example"] == {"ca": "a.pem"} and parsed["server"] == "https://two.example"
    )
    assert two.read_text().endswith(users)

    broken = certs / "broken.example" / "hosts.toml"
    broken.parent.mkdir(parents=True)
    text = '[host."https://m.example"\ncapabilities = ["pull"]\n'
    broken.write_text(text)
    proc = run([*base, "--registries", "broken.example"])
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "not valid TOML" in proc.stderr
    assert "Traceback" not in proc.stderr and broken.read_text() == text


def test_a_hosts_toml_without_host_tables_keeps_the_certificates_in_use(
    containerd: Containerd, isolated_env: Path, mtls_registry: MTLSRegistry, tmp_path: Path
) -> None:
    # containerd reads a hosts.toml without a [host] table as one it cannot use (getSortedHosts: "invalid
    # `host` tree") and falls back to the directory's certificate files; with regauth's mirror the file is
    # read, so it must name them, or the fallback to the server and pushes lose the CA and client pair.
    fx = mtls_registry
    port = fx.host.rsplit(":", 1)[1]
    image = push_runnable_image(f"https://127.0.0.1:{port}", context=fx.context, files={"n.txt": b"n\n"})
    ref = f"{fx.host}/{image.repository}:{image.tag}"
    certs = tmp_path / "certs.d"
    hostdir = certs / fx.host
    hostdir.mkdir(parents=True)
    client = fx.ca.issue_cert("regauth-test-client")
    (hostdir / "ca.crt").write_bytes(fx.ca.cert_pem.bytes())
    (hostdir / "client.cert").write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    (hostdir / "client.key").write_bytes(client.private_key_pem.bytes())
    users = f'server = "https://{fx.host}"  # the registry itself\n'
    (hostdir / "hosts.toml").write_text(users)

    def ctr(*args: str) -> subprocess.CompletedProcess[str]:
        argv = containerd.ctr(*args)
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=fx.env)

    pull = ("images", "pull", "--snapshotter", "native", "--hosts-dir", str(certs), ref)
    assert ctr(*pull).returncode == 0  # the certificate files are in use
    assert ctr("images", "rm", ref).returncode == 0
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        mirror = f"http://127.0.0.1:{closed.getsockname()[1]}"
        argv = ["regauth", "configure", "containerd", "--proxy", mirror, "--certs-dir", str(certs)]
        ok([*argv, "--no-config", "--registries", fx.host])
        written = (hostdir / "hosts.toml").read_text()
        assert written.startswith(users)
        parsed = _toml(written)
        assert parsed["ca"] == ["ca.crt"] and parsed["client"] == [["client.cert", "client.key"]]
        assert list(parsed["host"]) == [mirror]
        done = ctr(*pull)
        assert done.returncode == 0, done.stderr
        assert _ctr_digest(ctr("images", "ls").stdout, ref) == image.digest
    ok(["regauth", "configure", "containerd", "--undo"])
    assert (hostdir / "hosts.toml").read_bytes() == users.encode()


def test_an_existing_host_directory_hides_default_certificates(
    containerd: Containerd, isolated_env: Path, mtls_registry: MTLSRegistry, tmp_path: Path
) -> None:
    # containerd takes the first of host_port_, host:port and _default that exists: a host directory of
    # its own, even one without certificates, means _default's are not used for the host, so regauth must
    # not name them (that would trust _default's CAs and send its client certificate there).
    fx = mtls_registry
    port = fx.host.rsplit(":", 1)[1]
    image = push_runnable_image(f"https://127.0.0.1:{port}", context=fx.context, files={"d.txt": b"d\n"})
    ref = f"{fx.host}/{image.repository}:{image.tag}"
    certs = tmp_path / "certs.d"
    default = certs / "_default"
    default.mkdir(parents=True)
    client = fx.ca.issue_cert("regauth-test-client")
    (default / "ca.crt").write_bytes(fx.ca.cert_pem.bytes())
    (default / "client.cert").write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    (default / "client.key").write_bytes(client.private_key_pem.bytes())
    (certs / fx.host).mkdir()

    def ctr(*args: str) -> subprocess.CompletedProcess[str]:
        argv = containerd.ctr(*args)
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=fx.env)

    pull = ("images", "pull", "--snapshotter", "native", "--hosts-dir", str(certs), ref)
    refused = ctr(*pull)
    assert refused.returncode != 0 and "x509" in refused.stderr  # _default is not read for this host
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        mirror = f"http://127.0.0.1:{closed.getsockname()[1]}"
        argv = ["regauth", "configure", "containerd", "--proxy", mirror, "--certs-dir", str(certs)]
        ok([*argv, "--no-config", "--registries", fx.host])
        parsed = _toml((certs / fx.host / "hosts.toml").read_text())
        assert "ca" not in parsed and "client" not in parsed, parsed
        still = ctr(*pull)
        assert still.returncode != 0 and "x509" in still.stderr
