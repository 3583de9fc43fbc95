"""The keyring backend against a real Secret Service: gnome-keyring on a private D-Bus session bus."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import pytest
from support.session_bus import start_bus_and_keyring

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
    address, pids = start_bus_and_keyring(env, "test-login-password")
    return SecretService(address, home, tuple(str(p) for p in reversed(pids)))


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


# --- the fast get over the Secret Service (store/secretservice.py) -----------------------------------


def keyring_env(secret_service: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "REGAUTH_STORE": "keyring",
        "DBUS_SESSION_BUS_ADDRESS": secret_service["DBUS_SESSION_BUS_ADDRESS"],
        **extra,
    }


def general_get_in_a_process(helper_exe: str, server: str, env: dict[str, str]) -> str:
    """The general path's answer: debug logging makes the fast path decline and changes no output."""
    got = helper(helper_exe, "get", server, {**env, "REGAUTH_LOG_LEVEL": "DEBUG"})
    assert got.returncode == 0, got.stdout + got.stderr
    return got.stdout


@pytest.mark.parametrize("secret", [CANARY, '<&>\u2028 "quoted" \\ tab\t nl\n é 😀', ""])
def test_fast_keyring_get_gives_the_general_paths_bytes(
    secret_service: dict[str, str], helper_exe: str, isolated_env: Path, secret: str
) -> None:
    from regauth.helper.fastget import answer

    env = keyring_env(secret_service)
    server = "fast-keyring.example:5000"
    payload = json.dumps({"ServerURL": server, "Username": "bob", "Secret": secret})
    assert helper(helper_exe, "store", payload, env).returncode == 0
    fast = answer(server.encode(), env)
    assert fast is not None
    assert fast == general_get_in_a_process(helper_exe, server, env)
    assert json.loads(fast)["Secret"] == secret


def test_fast_keyring_get_imports_no_keyring(secret_service: dict[str, str], helper_exe: str) -> None:
    import sys

    env = keyring_env(secret_service)
    payload = json.dumps({"ServerURL": "imports.example", "Username": "bob", "Secret": CANARY})
    assert helper(helper_exe, "store", payload, env).returncode == 0
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", helper_exe, "get"],
        input=b"imports.example",
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)["Secret"] == CANARY
    names: set[str] = set()
    for line in proc.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            # What site and its .pth hooks import is the interpreter's, not the helper's.
            names = set() if name == "site" else names | {name}
    assert "regauth.store.secretservice" in names
    # (Not "socket": the tests' network guard, a sitecustomize audit hook, imports it on every connect.)
    never = ("keyring", "secretstorage", "jeepney", "typing", "re", "json", "regauth.config")
    assert sorted(n for n in names if n.split(".")[0] in never) == []


def test_fast_keyring_get_of_a_cached_token(
    secret_service: dict[str, str],
    helper_exe: str,
    settings,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    import time

    import keyring
    from keyring.backends import SecretService as KeyringSecretService

    from regauth.helper.fastget import answer
    from regauth.providers.base import Credential
    from regauth.providers.cache import TokenCache, cache_key
    from regauth.providers.routing import make_provider
    from regauth.store.keyring import KeyringStore

    host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", secret_service["DBUS_SESSION_BUS_ADDRESS"])
    previous = keyring.get_keyring()
    keyring.set_keyring(KeyringSecretService.Keyring())
    try:
        identity = make_provider("ecr", settings).identity(host, None)  # type: ignore[attr-defined]
        credential = Credential(username="AWS", secret="keyring-token", expires_at=time.time() + 12 * 3600)
        TokenCache(settings, KeyringStore(settings)).put(
            cache_key("ecr", host, identity), credential, time.time()
        )
    finally:
        keyring.set_keyring(previous)
    env = keyring_env(secret_service)
    fast = answer(host.encode(), env)
    assert fast is not None and json.loads(fast)["Secret"] == "keyring-token"
    assert fast == general_get_in_a_process(helper_exe, host, env)


@pytest.mark.parametrize(
    "extra",
    [
        {"PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring"},
        {"KEYRING_PROPERTY_PREFERRED_COLLECTION": "/org/freedesktop/secrets/collection/session"},
        {"XDG_CURRENT_DESKTOP": "KDE"},
        {"DBUS_SESSION_BUS_ADDRESS": ""},
        {"DBUS_SESSION_BUS_ADDRESS": "tcp:host=127.0.0.1,port=1"},
    ],
)
def test_fast_keyring_get_declines_what_keyring_decides(
    secret_service: dict[str, str], helper_exe: str, extra: dict[str, str]
) -> None:
    from regauth.helper.fastget import answer

    env = keyring_env(secret_service)
    payload = json.dumps({"ServerURL": "declined.example", "Username": "bob", "Secret": CANARY})
    assert helper(helper_exe, "store", payload, env).returncode == 0
    assert answer(b"declined.example", env) is not None
    assert answer(b"declined.example", {**env, **extra}) is None


def test_fast_keyring_get_declines_with_a_keyring_config_file(
    secret_service: dict[str, str], helper_exe: str, isolated_env: Path
) -> None:
    from regauth.helper.fastget import answer

    env = keyring_env(secret_service)
    payload = json.dumps({"ServerURL": "config.example", "Username": "bob", "Secret": CANARY})
    assert helper(helper_exe, "store", payload, env).returncode == 0
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "python_keyring" / "keyringrc.cfg"
    config.parent.mkdir(parents=True)
    config.write_text("[backend]\ndefault-keyring=keyring.backends.SecretService.Keyring\n")
    assert answer(b"config.example", env) is None


def test_a_locked_collection_is_left_to_the_general_path(
    tmp_path: Path, helper_exe: str, isolated_env: Path
) -> None:
    """Locked (as after a screen lock): the fast path declines without a prompt; keyring's path would
    ask to unlock, so it is not run here (no prompter in a test)."""
    import secretstorage

    from regauth.helper.fastget import answer

    service = start_secret_service(tmp_path / "locked-home", os.environ)
    try:
        env = {**os.environ, "REGAUTH_STORE": "keyring", "DBUS_SESSION_BUS_ADDRESS": service.address}
        payload = json.dumps({"ServerURL": "locked.example", "Username": "bob", "Secret": CANARY})
        assert helper(helper_exe, "store", payload, env).returncode == 0
        assert answer(b"locked.example", env) is not None
        from jeepney.io.blocking import open_dbus_connection

        connection = open_dbus_connection(bus=service.address)
        try:
            collection = secretstorage.get_default_collection(connection)
            collection.lock()
            assert collection.is_locked()
        finally:
            connection.close()
        assert answer(b"locked.example", env) is None
    finally:
        service.stop()


class HostileBus:
    """A unix socket playing the session bus: ``mode`` "silent" accepts and never answers, "garbage"
    answers the authentication and then bytes that are no D-Bus message, and each of
    ``_HOSTILE_REPLIES`` answers Hello with that malformed reply; "search-not-paths" answers
    SearchItems with numbers. Records what it was sent."""

    def __init__(self, path: Path, mode: str) -> None:
        import socket
        import threading

        self.path = path
        self.mode = mode
        self.received = b""
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            conn.settimeout(0.2)
            with conn:
                while not self._stop.is_set():
                    try:
                        data = conn.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    self.received += data
                    if self.mode == "garbage" and b"AUTH" in data:
                        conn.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
                    elif self.mode == "garbage" and b"BEGIN" in data:
                        conn.sendall(b"X" * 64)
                    elif self.mode != "silent" and b"AUTH" in data:
                        conn.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
                    elif self.mode in _HOSTILE_REPLIES and b"Hello" in data:
                        conn.sendall(_hostile_reply(self.mode, serial=1))
                    elif self.mode == "search-not-paths":
                        # A well-formed conversation up to SearchItems, whose answer is no object paths.
                        for serial, (member, signature, body) in enumerate(_CONVERSATION, start=1):
                            if member in data:
                                conn.sendall(_reply(signature, body, serial))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()


# Replies to Hello (serial 1) that no bus daemon passes, but a socket at the bus address may send.
_HOSTILE_REPLIES = {
    # A variant in a variant ... 200,000 deep, under 1 MiB (D-Bus allows 64 levels).
    "deep": ("v", b"\x01v\x00" * 200_000 + b"\x01y\x00\x07"),
    # A dict whose key is a variant holding a struct (D-Bus keys are basic types).
    "unhashable": ("a{vy}", struct.pack("<I", 10) + bytes(4) + b"\x03(y)\x00" + bytes(3) + b"\x07\x05"),
    # An array of empty structs (D-Bus has none): elements of no size, read without end.
    "empty-struct": ("a()", struct.pack("<I", 8) + bytes(4) + bytes(8)),
}


# Replies in the order the client asks (serials 1, 2, ...): Hello, OpenSession ("plain"), the default
# collection's Locked (false), then SearchItems answered with an array of numbers, not object paths.
_CONVERSATION = [
    (b"Hello", "s", struct.pack("<I", 4) + b":1.1\x00"),
    (
        b"OpenSession",
        "vo",
        b"\x01s\x00\x00" + bytes(4) + b"\x00" + bytes(3) + struct.pack("<I", 4) + b"/s/1\x00",
    ),
    (b"Locked", "v", b"\x01b\x00\x00" + bytes(4)),
    (b"SearchItems", "au", struct.pack("<II", 4, 5)),
]


def _hostile_reply(mode: str, serial: int) -> bytes:
    return _reply(*_HOSTILE_REPLIES[mode], serial)


def _reply(signature: str, body: bytes, serial: int) -> bytes:
    # Header fields: REPLY_SERIAL (5) as "u", SIGNATURE (8); padded to 8 before the body.
    fields = b"\x05\x01u\x00" + struct.pack("<I", serial)
    fields += b"\x08\x01g\x00" + bytes([len(signature)]) + signature.encode() + b"\x00"
    header = b"l\x02\x00\x01" + struct.pack("<III", len(body), 99, len(fields)) + fields
    return header + bytes(-len(header) % 8) + body


@pytest.mark.parametrize("mode", ["silent", "garbage", *_HOSTILE_REPLIES, "search-not-paths"])
def test_a_bus_that_never_answers_or_answers_garbage_is_a_bounded_decline(
    short_tmp: Path,
    settings,
    mode: str,  # type: ignore[no-untyped-def]
) -> None:
    import sys

    from support.records import add_record

    add_record(settings, "hostile-bus.example", "pw", username="u")  # (in the file store: no secret sent)
    bus = HostileBus(short_tmp / "bus", mode)
    try:
        env = {**os.environ, "REGAUTH_STORE": "keyring", "DBUS_SESSION_BUS_ADDRESS": f"unix:path={bus.path}"}
        # In a process of its own, bounded: a reply read without end must fail the test, not hang it.
        ask = "import os, sys; from regauth.helper.fastget import answer; "
        ask += "sys.stdout.write(repr(answer(b'hostile-bus.example', os.environ)))"
        asked = subprocess.run([sys.executable, "-c", ask], env=env, capture_output=True, timeout=30)
        assert (asked.returncode, asked.stdout) == (0, b"None"), asked.stderr[-300:]
    finally:
        bus.close()
    # It was asked to authenticate as this user and, for garbage, told BEGIN; never anything more.
    assert bus.received.startswith(b"\0AUTH EXTERNAL " + str(os.geteuid()).encode().hex().encode() + b"\r\n")
    assert b"GetSecret" not in bus.received
    assert (b"SearchItems" in bus.received) == (mode == "search-not-paths")


@pytest.mark.parametrize(
    ("entries", "uses"),
    [
        ({"keyring-25.7.0.dist-info": "", "SecretStorage-3.5.0.dist-info": ""}, True),
        ({"keyring-25.7.0.dist-info": ""}, False),  # no secretstorage: keyring has no Secret Service
        ({}, False),  # no keyring: the general path says to install it
        (
            {
                "keyring-25.7.0.dist-info": "",
                "secretstorage-3.5.0.dist-info": "",
                "keyrings.alt-5.0.dist-info": "[keyring.backends]\nfile = keyrings.alt.file\n",
            },
            False,
        ),
        ({"keyring-25.7.0.dist-info": "", "secretstorage-3.dist-info": "", "gi": None}, False),
        ({"keyring-25.7.0.dist-info": "", "secretstorage-3.dist-info": "", "dbus": None}, False),
    ],
)
def test_which_site_packages_leave_keyring_on_the_secret_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: dict[str, str | None], uses: bool
) -> None:
    import sys

    from regauth.store.secretservice import general_path_uses_secret_service

    site = tmp_path / "site-packages"
    site.mkdir()
    for name, entry_points in entries.items():
        (site / name).mkdir()
        if entry_points:
            (site / name / "entry_points.txt").write_text(entry_points)
    monkeypatch.setattr(sys, "path", [str(tmp_path / "lib"), str(site)])
    assert general_path_uses_secret_service({"HOME": str(tmp_path)}) is uses


def test_a_damaged_keyring_index_is_one_line_not_a_traceback(
    secret_service: dict[str, str], helper_exe: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index entry is any text another program of the user's wrote into the keyring: nested past
    json's stack, it is damaged like any other that is no list of names."""
    from keyring.backends import SecretService

    from regauth.store.keyring import INDEX_KEY, SERVICE

    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", secret_service["DBUS_SESSION_BUS_ADDRESS"])
    backend = SecretService.Keyring()
    backend.set_password(SERVICE, INDEX_KEY, "[" * 100_000 + "]" * 100_000)
    try:
        login = json.dumps({"ServerURL": "index.example", "Username": "u", "Secret": "s"})
        stored = helper(helper_exe, "store", login, keyring_env(secret_service))
        assert (stored.returncode, stored.stderr) == (1, ""), stored.stderr[-300:]
        assert stored.stdout.count("\n") == 1 and "index in the OS keyring" in stored.stdout
    finally:
        backend.delete_password(SERVICE, INDEX_KEY)


def test_a_keyring_secret_that_is_not_utf8_is_one_line_not_a_traceback(
    secret_service: dict[str, str], helper_exe: str, settings
) -> None:  # type: ignore[no-untyped-def]
    """Another program of the user's may hold bytes that are no text under regauth's item: the fast
    get declines it, and the general path (keyring decodes it as UTF-8) says so in one line."""
    import secretstorage
    from jeepney.io.blocking import open_dbus_connection

    from regauth.helper.fastget import answer
    from regauth.registries import RegistryBook
    from regauth.store.keyring import SERVICE

    env = keyring_env(secret_service)
    login = json.dumps({"ServerURL": "bytes.example", "Username": "u", "Secret": "text"})
    assert helper(helper_exe, "store", login, env).returncode == 0
    (record,) = RegistryBook.for_settings(settings).all()
    connection = open_dbus_connection(bus=secret_service["DBUS_SESSION_BUS_ADDRESS"])
    try:
        collection = secretstorage.get_default_collection(connection)
        attributes = {"service": SERVICE, "username": record.secret_key}
        collection.create_item("regauth", attributes, b"\xff\xfe not text", replace=True)
    finally:
        connection.close()
    assert answer(b"bytes.example", env) is None
    got = helper(helper_exe, "get", "bytes.example", env)
    assert (got.returncode, got.stderr) == (1, ""), got.stderr[-300:]
    assert got.stdout.count("\n") == 1 and "UTF-8" in got.stdout
