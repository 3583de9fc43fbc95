"""Fixtures shared by every test: an isolated HOME and environment, and the installed scripts."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from support.metadata_stand_in import MetadataStandIn, nothing_here
from support.network_guard import install, site_dir

from regauth.config import Settings, load_settings

# Variables that would make a test read or write the real credentials of whoever runs it.
_STRIP_PREFIXES = (
    "AWS_",
    "AZURE_",
    "GOOGLE_",
    "GCE_",
    "REGAUTH_",
    "DOCKER_",
    "CLOUDSDK_",
    "MSI_",
    "IDENTITY_",
    "IMDS_",
)
_STRIP = {
    "NO_GCE_CHECK",
    "REGISTRY_AUTH_FILE",
    "XDG_RUNTIME_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GITHUB_TOKEN",
    "CI_JOB_TOKEN",
    "CI_REGISTRY",
    "CI_REGISTRY_USER",
    "CI_REGISTRY_PASSWORD",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
}
# The interpreter's own scripts dir: console scripts there skip the pyenv shim's start-up cost.
SCRIPTS_DIR = Path(sysconfig.get_path("scripts"))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A CA for a module's HTTPS stand-ins (cloud token endpoints): the SDKs trust it through their own
    settings (REQUESTS_CA_BUNDLE, a CA file), never through a patch."""
    return trustme.CA()


@pytest.fixture(scope="session")
def network_guard_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No test sends a packet outside the loopback range: stopped and recorded in this process and in
    every Python child that inherits PYTHONPATH (tests/support/network_guard.py)."""
    root = tmp_path_factory.mktemp("network-guard")
    log = root / "stopped.log"
    log.touch()
    install(log)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NETWORK_GUARD_LOG", str(log))
        patch.setenv(
            "PYTHONPATH",
            os.pathsep.join(filter(None, [str(site_dir(root / "site")), os.environ.get("PYTHONPATH")])),
        )
        yield log


@pytest.fixture(autouse=True)
def no_packet_leaves_loopback(network_guard_log: Path) -> Iterator[None]:
    before = network_guard_log.stat().st_size
    yield
    with network_guard_log.open() as log:
        log.seek(before)
        stopped = log.read()
    if stopped:
        pytest.fail(f"this test tried to reach beyond the loopback range:\n{stopped}", pytrace=False)


@pytest.fixture(scope="session")
def metadata_service() -> Iterator[MetadataStandIn]:
    """The loopback stand-in every test's cloud SDKs ask instead of 169.254.169.254 and friends."""
    with nothing_here() as site:
        yield site


@pytest.fixture(autouse=True)
def isolated_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metadata_service: MetadataStandIn
) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith(_STRIP_PREFIXES) or name in _STRIP:
            monkeypatch.delenv(name, raising=False)
    # No packet leaves the loopback range: a credential search with no credentials asks the stand-in,
    # which says at once that this is no cloud machine (tests/support/metadata_stand_in.py).
    for name, value in metadata_service.environ().items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_STATE_HOME", ".local/state"),
    ):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / ".docker"))
    monkeypatch.setenv("REGAUTH_STORE", "file")
    # The clients' CA directories (/etc/docker/certs.d, ...) are the machine's: a test names its own.
    monkeypatch.setenv("REGAUTH_CERTS_DIRS", str(home / "certs.d"))
    monkeypatch.setenv("PATH", f"{SCRIPTS_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
    yield home


@pytest.fixture(autouse=True)
def restore_regauth_logger() -> Iterator[None]:
    """In-process CLI runs configure the ``regauth`` logger; undo it so caplog works in later tests."""
    logger = logging.getLogger("regauth")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


@pytest.fixture
def settings(isolated_env: Path) -> Settings:
    return load_settings()


@pytest.fixture
def helper_exe() -> str:
    return str(SCRIPTS_DIR / "docker-credential-regauth")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory for daemons: a unix socket path has a 108-byte limit, podman's runroot 50."""
    path = Path(tempfile.mkdtemp(prefix="regauth-"))
    try:
        yield path
    finally:
        # Run as a user, podman leaves the layer directories it unpacks read-only (0555): only
        # root removes what is in them as they are.
        for parent, dirs, _ in os.walk(path):
            for name in dirs:
                if not os.path.islink(os.path.join(parent, name)):
                    os.chmod(os.path.join(parent, name), 0o700)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def regauth_exe() -> str:
    return str(SCRIPTS_DIR / "regauth")


@pytest.fixture
def python_exe() -> str:
    return sys.executable


# ---- Real registries (docker-registry 2.8) for the distribution, CLI and proxy tests -------------------
# Session-scoped: each set-up starts one registry process (and the token server) for the whole run and
# pushes the image test/app:1.0 into it. Files live under tmp_path_factory, not HOME (which the autouse
# fixture above changes per test). A missing binary fails the tests; it never skips them.
import secrets as _secrets  # noqa: E402

from support.registry import (  # noqa: E402
    RegistryFixture,
    make_fixture,
    start_anonymous,
    start_htpasswd,
    start_token,
)
from support.tls import PKI, make_pki  # noqa: E402
from support.tokenserver import TokenServer, start_token_server  # noqa: E402


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """The test CA (``ca_file``) and a server certificate for 127.0.0.1 and localhost."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def registry_anon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryFixture]:
    proc = start_anonymous(tmp_path_factory.mktemp("registry-anon"))
    try:
        yield make_fixture("anonymous", proc, None)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def registry_htpasswd(tmp_path_factory: pytest.TempPathFactory, test_pki: PKI) -> Iterator[RegistryFixture]:
    users = {"alice": _secrets.token_urlsafe(12), "carol": _secrets.token_urlsafe(12)}
    proc = start_htpasswd(tmp_path_factory.mktemp("registry-htpasswd"), test_pki, users)
    try:
        yield make_fixture("htpasswd", proc, users)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def token_server(test_pki: PKI) -> Iterator[TokenServer]:
    users = {"bob": _secrets.token_urlsafe(12), "dave": _secrets.token_urlsafe(12)}
    server = start_token_server(test_pki.ca, test_pki.server_context(), users)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def registry_token(
    tmp_path_factory: pytest.TempPathFactory, test_pki: PKI, token_server: TokenServer
) -> Iterator[RegistryFixture]:
    proc = start_token(tmp_path_factory.mktemp("registry-token"), test_pki, token_server)
    try:
        yield make_fixture("token", proc, token_server.users, token_server)
    finally:
        proc.stop()


# ---- end of real registries ----------------------------------------------------------------------------
