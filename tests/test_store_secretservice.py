"""The keyring backend against a real Secret Service: gnome-keyring on a private D-Bus session bus."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import pytest

CANARY = "canary-secret-service-7f3a"


# Where a keyring daemon and a session bus read and write: every one of them inside the daemon's home.
XDG_DIRS = {
    "XDG_CONFIG_HOME": ".config",
    "XDG_DATA_HOME": ".local/share",
    "XDG_CACHE_HOME": ".cache",
    "XDG_STATE_HOME": ".local/state",
    "XDG_RUNTIME_DIR": "run",
}


class SecretService(NamedTuple):
    address: str
    home: Path
    pids: tuple[str, ...]

    def stop(self) -> None:
        for pid in self.pids:
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


def start_secret_service(home: Path, base_env: Mapping[str, str]) -> SecretService:
    """A session bus and an unlocked gnome-keyring on it, whose files all live under ``home``.

    gnome-keyring writes ``keyrings/login.keyring`` under $XDG_DATA_HOME: the variables of whoever runs
    the tests (a module-scoped fixture starts before the autouse isolation) must not reach it.
    """
    env = {name: value for name, value in base_env.items() if not name.startswith("XDG_")}
    env["HOME"] = str(home)
    for var, sub in XDG_DIRS.items():
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    (home / "run").chmod(0o700)
    bus = subprocess.run(
        ["dbus-daemon", "--session", "--fork", "--print-address=1", "--print-pid=1"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=30,
    )
    address, pid = bus.stdout.split()[:2]
    env["DBUS_SESSION_BUS_ADDRESS"] = address
    keyring_daemon = subprocess.run(
        ["gnome-keyring-daemon", "--unlock", "--components=secrets"],
        input="test-login-password",
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=30,
    )
    daemon_pid = next(
        (
            line.split("=", 1)[1]
            for line in keyring_daemon.stdout.splitlines()
            if line.startswith("GNOME_KEYRING_PID=")
        ),
        None,
    )
    return SecretService(address, home, tuple(p for p in (daemon_pid, pid) if p))


@pytest.fixture(scope="module")
def secret_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start a session bus and an unlocked gnome-keyring on it; yield the environment to reach them."""
    service = start_secret_service(tmp_path_factory.mktemp("keyring-home"), os.environ)
    try:
        yield {"DBUS_SESSION_BUS_ADDRESS": service.address, "keyring_home": str(service.home)}
    finally:
        service.stop()


def test_the_keyring_daemon_writes_only_under_its_own_home(tmp_path: Path, helper_exe: str) -> None:
    """With the runner's XDG variables set (as on a desktop), the login keyring still lands in the
    daemon's temporary home and the runner's data directory stays untouched."""
    runner_data = tmp_path / "runner-data"
    runner_data.mkdir()
    base = {**os.environ, "XDG_DATA_HOME": str(runner_data), "XDG_CONFIG_HOME": str(runner_data)}
    service = start_secret_service(tmp_path / "keyring-home", base)
    try:
        env = {**os.environ, "REGAUTH_STORE": "keyring", "DBUS_SESSION_BUS_ADDRESS": service.address}
        payload = json.dumps({"ServerURL": "xdg.example", "Username": "bob", "Secret": CANARY})
        assert helper(helper_exe, "store", payload, env).returncode == 0
    finally:
        service.stop()
    assert list(runner_data.rglob("*")) == []
    assert list((service.home / ".local/share/keyrings").glob("*.keyring")) != []


def helper(exe: str, action: str, stdin: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, action], input=stdin, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("store", ["keyring", "auto"])
def test_helper_round_trip_through_a_real_secret_service(
    secret_service: dict[str, str], helper_exe: str, isolated_env: Path, store: str
) -> None:
    env = {
        **os.environ,
        "REGAUTH_STORE": store,
        "DBUS_SESSION_BUS_ADDRESS": secret_service["DBUS_SESSION_BUS_ADDRESS"],
    }
    server = f"registry-{store}.example:5000"
    stored = helper(
        helper_exe, "store", json.dumps({"ServerURL": server, "Username": "bob", "Secret": CANARY}), env
    )
    assert (stored.returncode, stored.stdout, stored.stderr) == (0, "", "")
    got = helper(helper_exe, "get", server, env)
    assert got.returncode == 0, got.stdout
    assert json.loads(got.stdout) == {"ServerURL": server, "Username": "bob", "Secret": CANARY}

    if store == "auto":
        # The probe found the real keyring and remembered it.
        choice = isolated_env / ".local/share/regauth/store-backend"
        assert choice.read_text().strip() == "keyring"
    # The secret is in the keyring, not in any file regauth wrote.
    for path in isolated_env.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    assert not (isolated_env / ".local/share/regauth/secrets.enc").exists()

    assert helper(helper_exe, "erase", server, env).returncode == 0
    gone = helper(helper_exe, "get", server, env)
    assert (gone.returncode, gone.stdout) == (1, "credentials not found in native keychain\n")


def test_keyring_store_contract_on_a_real_secret_service(
    secret_service: dict[str, str],
    settings,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    import keyring
    from keyring.backends import SecretService

    from regauth.store.keyring import KeyringStore, real_keyring_available

    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", secret_service["DBUS_SESSION_BUS_ADDRESS"])
    previous = keyring.get_keyring()
    keyring.set_keyring(SecretService.Keyring())
    try:
        assert real_keyring_available()
        store = KeyringStore(settings)
        assert store.get("registry/a") is None
        store.set("registry/a", "one")
        store.set("registry/b", "two ünïcode")
        store.set("registry/a", "uno")
        assert store.get("registry/a") == "uno" and store.get("registry/b") == "two ünïcode"
        assert store.keys() == ["registry/a", "registry/b"]
        assert store.delete("registry/a") is True and store.delete("registry/a") is False
        assert store.keys() == ["registry/b"]
        store.delete("registry/b")
    finally:
        keyring.set_keyring(previous)
