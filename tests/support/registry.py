"""Run the real `docker-registry` binary (distribution 2.8) on 127.0.0.1 for tests.

Three set-ups: anonymous over plain HTTP, htpasswd (bcrypt) over TLS, and token auth over TLS with the
in-process token server of ``tests.support.tokenserver``. Each one writes its config and storage under
a directory the caller owns, waits until ``/v2/`` answers, and fails loudly (never skips) when the
binary is missing or does not come up.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from .image import PushedImage, push_test_image
from .tls import PKI
from .tokenserver import TokenServer

REGISTRY_BINARY = "docker-registry"
_START_TIMEOUT = 20.0


class RegistryStartError(RuntimeError):
    pass


@dataclass
class RegistryProcess:
    """A running registry; ``stop()`` kills it."""

    host: str
    url: str
    ca_file: Path | None
    workdir: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()


def registry_binary() -> str:
    path = shutil.which(REGISTRY_BINARY)
    if path is None and os.path.exists(f"/usr/bin/{REGISTRY_BINARY}"):
        path = f"/usr/bin/{REGISTRY_BINARY}"
    if path is None:
        raise RegistryStartError(
            f"{REGISTRY_BINARY} not found on PATH: install it (apt-get install docker-registry); "
            "the registry tests must not be skipped"
        )
    return path


def _die_with_parent(argv: list[str]) -> list[str]:
    # If pytest is killed (a CI timeout) the registry must not live on holding its port. setpriv
    # (util-linux) sets the parent-death signal without a preexec_fn, which is unsafe with threads.
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _base_config(workdir: Path, port: int) -> dict[str, Any]:
    return {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "storage")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "regauth-tests-secret"},
        "health": {"storagedriver": {"enabled": False}},
    }


def _with_tls(config: dict[str, Any], pki: PKI) -> dict[str, Any]:
    config["http"]["tls"] = {"certificate": str(pki.cert_file), "key": str(pki.key_file)}
    return config


def write_htpasswd(path: Path, users: dict[str, str]) -> None:
    # The registry accepts bcrypt hashes only; cost 4 (the minimum) keeps every request fast.
    salt = bcrypt.gensalt(rounds=4)
    lines = [f"{user}:{bcrypt.hashpw(pw.encode(), salt).decode()}" for user, pw in users.items()]
    path.write_text("\n".join(lines) + "\n")


def start_anonymous(workdir: Path) -> RegistryProcess:
    return _start(workdir, lambda port: _base_config(workdir, port), None)


def start_htpasswd(workdir: Path, pki: PKI, users: dict[str, str]) -> RegistryProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    htpasswd = workdir / "htpasswd"
    write_htpasswd(htpasswd, users)

    def config(port: int) -> dict[str, Any]:
        conf = _with_tls(_base_config(workdir, port), pki)
        conf["auth"] = {"htpasswd": {"realm": "regauth-test", "path": str(htpasswd)}}
        return conf

    return _start(workdir, config, pki.ca_file)


def start_token(workdir: Path, pki: PKI, token_server: TokenServer) -> RegistryProcess:
    def config(port: int) -> dict[str, Any]:
        conf = _with_tls(_base_config(workdir, port), pki)
        conf["auth"] = {
            "token": {
                "realm": token_server.realm,
                "service": token_server.service,
                "issuer": token_server.issuer,
                "rootcertbundle": str(pki.ca_file),
            }
        }
        return conf

    return _start(workdir, config, pki.ca_file)


def _start(
    workdir: Path, make_config: Callable[[int], dict[str, Any]], ca_file: Path | None, attempts: int = 3
) -> RegistryProcess:
    binary = registry_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    last = ""
    # A port picked free can be taken before the registry binds it; another port fixes that.
    for _ in range(attempts):
        port = free_port()
        config_file = workdir / "config.yml"
        # JSON is YAML: no YAML library is needed to write the config.
        config_file.write_text(json.dumps(make_config(port), indent=2))
        log = open(workdir / "registry.log", "wb")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(
            _die_with_parent([binary, "serve", str(config_file)]),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        scheme = "https" if ca_file else "http"
        reg = RegistryProcess(f"127.0.0.1:{port}", f"{scheme}://127.0.0.1:{port}", ca_file, workdir, proc)
        try:
            _wait_ready(reg)
            return reg
        except RegistryStartError as exc:
            reg.stop()
            last = f"{exc}; log: {(workdir / 'registry.log').read_text(errors='replace')[-2000:]}"
    raise RegistryStartError(f"docker-registry did not start in {workdir}: {last}")


def _wait_ready(reg: RegistryProcess) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    context = reg.ssl_context()
    while time.monotonic() < deadline:
        if reg.process.poll() is not None:
            raise RegistryStartError(f"exited with status {reg.process.returncode}")
        try:
            with urllib.request.urlopen(f"{reg.url}/v2/", timeout=2, context=context):
                return
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 401:
                return
            raise RegistryStartError(f"/v2/ answered {exc.code}") from exc
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise RegistryStartError(f"/v2/ did not answer within {_START_TIMEOUT:.0f}s")


@dataclass
class RegistryFixture:
    """What a test gets from ``registry_anon`` / ``registry_htpasswd`` / ``registry_token``."""

    kind: str
    host: str
    url: str
    ca_file: str | None
    username: str | None
    password: str | None
    image: PushedImage
    process: RegistryProcess = field(repr=False)
    token_server: TokenServer | None = None

    @property
    def repository(self) -> str:
        return self.image.repository

    @property
    def tag(self) -> str:
        return self.image.tag

    @property
    def digest(self) -> str:
        return self.image.digest

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None


def make_fixture(
    kind: str, proc: RegistryProcess, users: dict[str, str] | None, token_server: TokenServer | None = None
) -> RegistryFixture:
    username, password = next(iter(users.items())) if users else (None, None)
    image = push_test_image(proc.url, context=proc.ssl_context(), username=username, password=password)
    ca_file = str(proc.ca_file) if proc.ca_file else None
    return RegistryFixture(kind, proc.host, proc.url, ca_file, username, password, image, proc, token_server)
