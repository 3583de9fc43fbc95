"""The keyring backend against a real Secret Service: gnome-keyring on a private D-Bus session bus."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

CANARY = "canary-secret-service-7f3a"


@pytest.fixture(scope="module")
def secret_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start a session bus and an unlocked gnome-keyring on it; yield the environment to reach them."""
    home = tmp_path_factory.mktemp("keyring-home")
    for sub in (".cache", ".local/share", "run"):
        (home / sub).mkdir(parents=True)
    (home / "run").chmod(0o700)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run")}
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
    try:
        yield {"DBUS_SESSION_BUS_ADDRESS": address, "keyring_home": str(home)}
    finally:
        for p in (daemon_pid, pid):
            if p:
                try:
                    os.kill(int(p), signal.SIGTERM)
                except ProcessLookupError:
                    pass


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
