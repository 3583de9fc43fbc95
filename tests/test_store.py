"""The secret store: one contract every backend passes, then the file backend's and ``auto``'s specifics,
then concurrency across processes."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.backends.fail
import keyring.backends.null
import keyring.errors
import pytest

import regauth.store.file as file_module
import regauth.store.keyring as keyring_module
from regauth.config import Settings, load_settings
from regauth.errors import StoreError
from regauth.helper.backend import RegauthBackend
from regauth.helper.protocol import serve
from regauth.registries import RegistryBook
from regauth.store import open_store, resolve_backend
from regauth.store.base import SecretStore
from regauth.store.file import FileStore
from regauth.store.keyring import KeyringStore
from regauth.store.sealed import MAGIC

TIMEOUT = 120
PASSPHRASE = "correct horse battery staple"


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A real keyring backend (priority > 0) that keeps its secrets in a dict."""

    priority = 5  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.passwords.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError("not found")


@pytest.fixture
def use_keyring() -> Iterator[object]:
    """Install keyrings for one test and put back whatever was there before."""
    previous = keyring.get_keyring()
    yield keyring.set_keyring
    keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring(use_keyring: object) -> MemoryKeyring:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    return backend


# --- the contract ---------------------------------------------------------------------------------

BACKENDS = ["file-keyfile", "file-passphrase", "keyring"]


@pytest.fixture(params=BACKENDS)
def make_store(
    request: pytest.FixtureRequest, settings: Settings, monkeypatch: pytest.MonkeyPatch, use_keyring: object
) -> Iterator[object]:
    """A factory of fresh store objects over the same storage (a new process would make a new one)."""
    kind = request.param
    if kind == "keyring":
        keyring.set_keyring(MemoryKeyring())
        yield lambda: KeyringStore(settings._replace(store="keyring"))
    elif kind == "file-passphrase":
        # A cheaper scrypt keeps the contract fast; the real parameters are used in the tests below.
        monkeypatch.setattr(file_module, "_SCRYPT", {**file_module._SCRYPT, "n": 2**10})
        env = dict(os.environ, REGAUTH_PASSPHRASE=PASSPHRASE)
        yield lambda: FileStore(load_settings(env))
    else:
        yield lambda: FileStore(settings)


@pytest.fixture
def store(make_store: object) -> SecretStore:
    return make_store()  # type: ignore[operator, no-any-return]


class TestSecretStoreContract:
    def test_empty(self, store: SecretStore) -> None:
        assert store.get("registry/absent") is None
        assert store.keys() == []

    def test_set_get(self, store: SecretStore) -> None:
        store.set("registry/a", "secret-a")
        assert store.get("registry/a") == "secret-a"
        assert store.keys() == ["registry/a"]

    def test_overwrite(self, store: SecretStore) -> None:
        store.set("registry/a", "one")
        store.set("registry/a", "two")
        assert store.get("registry/a") == "two"
        assert store.keys() == ["registry/a"]

    def test_delete(self, store: SecretStore) -> None:
        store.set("registry/a", "one")
        store.set("registry/b", "two")
        assert store.delete("registry/a") is True
        assert store.get("registry/a") is None
        assert store.get("registry/b") == "two"
        assert store.keys() == ["registry/b"]
        assert store.delete("registry/a") is False

    def test_delete_absent_returns_false(self, store: SecretStore) -> None:
        assert store.delete("registry/never") is False
        store.set("registry/x", "x")
        assert store.delete("registry/never") is False
        assert store.keys() == ["registry/x"]

    def test_unicode_and_awkward_values(self, store: SecretStore) -> None:
        values = {
            "registry/ünïcödé-キー": "pässwörd-秘密-🔑",
            "registry/quotes": "\"'\\{}[],:",
            "registry/lines": "line1\nline2\r\n\t\u2028\u2029\x00",
            "registry/empty": "",
            "registry/long": "x" * 20000,
        }
        for key, value in values.items():
            store.set(key, value)
        for key, value in values.items():
            assert store.get(key) == value, key
        assert sorted(store.keys()) == sorted(values)

    def test_many_keys(self, store: SecretStore) -> None:
        expected = {f"registry/{i:03d}": f"secret-{i}-" + "s" * i for i in range(30)}
        for key, value in expected.items():
            store.set(key, value)
        assert sorted(store.keys()) == sorted(expected)
        assert len(store.keys()) == len(set(store.keys()))
        for key, value in expected.items():
            assert store.get(key) == value
        for key in list(expected)[::2]:
            assert store.delete(key) is True
        assert sorted(store.keys()) == sorted(list(expected)[1::2])

    def test_persists_across_instances(self, make_store: object) -> None:
        first: SecretStore = make_store()  # type: ignore[operator]
        first.set("registry/a", "persisted")
        second: SecretStore = make_store()  # type: ignore[operator]
        assert second.get("registry/a") == "persisted"
        assert second.keys() == ["registry/a"]
        assert second.delete("registry/a") is True
        assert first.get("registry/a") is None


# --- the file backend -----------------------------------------------------------------------------


def passphrase_settings(passphrase: str = PASSPHRASE) -> Settings:
    return load_settings(dict(os.environ, REGAUTH_PASSPHRASE=passphrase))


def test_file_modes_and_key_apart_from_data(settings: Settings) -> None:
    FileStore(settings).set("registry/a", "secret")
    assert settings.secrets_file.stat().st_mode & 0o777 == 0o600
    assert settings.key_file.stat().st_mode & 0o777 == 0o600
    assert settings.key_file.parent != settings.secrets_file.parent
    assert settings.secrets_file.parent not in settings.key_file.parents
    assert settings.key_file.parent not in settings.secrets_file.parents
    assert settings.secrets_file.parent.stat().st_mode & 0o077 == 0
    assert len(settings.key_file.read_bytes()) == 32


def test_file_with_passphrase_writes_no_key_file(settings: Settings) -> None:
    pset = passphrase_settings()
    FileStore(pset).set("registry/a", "secret")
    assert pset.secrets_file.stat().st_mode & 0o777 == 0o600
    assert not pset.key_file.exists()
    assert FileStore(pset).get("registry/a") == "secret"


@pytest.mark.parametrize("with_passphrase", [False, True])
def test_fresh_nonce_per_write(settings: Settings, with_passphrase: bool) -> None:
    use = passphrase_settings() if with_passphrase else settings
    store = FileStore(use)
    store.set("registry/a", "same")
    first = use.secrets_file.read_bytes()
    store.set("registry/a", "same")
    second = use.secrets_file.read_bytes()
    assert first != second
    header = len(MAGIC) + 1 + 16
    assert first[header : header + 12] != second[header : header + 12]
    assert len(first) == len(second)


def test_ciphertext_holds_no_plaintext(settings: Settings) -> None:
    secret = "plain-secret-value-7c1d"
    FileStore(settings).set("registry/key-name-42", secret)
    blob = settings.secrets_file.read_bytes()
    for needle in (secret, "key-name-42", "registry/", "plain"):
        assert needle.encode() not in blob
    assert secret.encode() not in settings.key_file.read_bytes()


def _flip(blob: bytes, index: int) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 0x01]) + blob[index + 1 :]


DAMAGE = {
    "truncated": lambda b: b[: len(b) // 2],
    "truncated to the header": lambda b: b[:10],
    "empty": lambda b: b"",
    "random bytes": lambda b: os.urandom(len(b)),
    "wrong magic": lambda b: b"XXXXX" + b[5:],
    "flipped bit in ciphertext": lambda b: _flip(b, len(b) - 20),
    "flipped bit in tag": lambda b: _flip(b, len(b) - 1),
    "flipped bit in nonce": lambda b: _flip(b, len(MAGIC) + 1 + 16),
    "flipped bit in salt": lambda b: _flip(b, len(MAGIC) + 3),
    "unknown kdf": lambda b: b[: len(MAGIC)] + b"\x07" + b[len(MAGIC) + 1 :],
    "plain json": lambda b: b'{"registry/a":"secret"}',
}


def assert_refuses_and_keeps(store: FileStore, path: Path, *, names: Path | None = None) -> None:
    """Every operation raises a StoreError naming the file; the file stays byte for byte the same."""
    before = path.read_bytes()
    operations = [
        lambda: store.get("registry/a"),
        store.keys,
        lambda: store.set("registry/new", "new-secret"),
        lambda: store.set("registry/a", "overwrite"),
        lambda: store.delete("registry/a"),
    ]
    for operation in operations:
        with pytest.raises(StoreError) as info:
            operation()
        assert str(names or path) in str(info.value)
        assert "\n" not in str(info.value)
        assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_damaged_file_is_named_and_left_untouched(settings: Settings, damage: str) -> None:
    FileStore(settings).set("registry/a", "secret")
    path = settings.secrets_file
    path.write_bytes(DAMAGE[damage](path.read_bytes()))
    assert_refuses_and_keeps(FileStore(settings), path)


def test_wrong_passphrase(settings: Settings) -> None:
    FileStore(passphrase_settings()).set("registry/a", "secret")
    store = FileStore(passphrase_settings("not the passphrase"))
    assert_refuses_and_keeps(store, settings.secrets_file)
    with pytest.raises(StoreError, match="REGAUTH_PASSPHRASE"):
        store.get("registry/a")
    assert FileStore(passphrase_settings()).get("registry/a") == "secret"


def test_passphrase_file_without_passphrase(settings: Settings) -> None:
    FileStore(passphrase_settings()).set("registry/a", "secret")
    assert_refuses_and_keeps(FileStore(settings), settings.secrets_file)
    assert not settings.key_file.exists()


def test_key_file_store_with_passphrase_set(settings: Settings) -> None:
    FileStore(settings).set("registry/a", "secret")
    assert_refuses_and_keeps(FileStore(passphrase_settings()), settings.secrets_file)


def test_missing_key_file(settings: Settings) -> None:
    FileStore(settings).set("registry/a", "secret")
    settings.key_file.unlink()
    assert_refuses_and_keeps(FileStore(settings), settings.secrets_file)
    # A new key would make the old data unreadable for good: none is made.
    assert not settings.key_file.exists()


def test_replaced_key_file(settings: Settings) -> None:
    FileStore(settings).set("registry/a", "secret")
    settings.key_file.write_bytes(os.urandom(32))
    assert_refuses_and_keeps(FileStore(settings), settings.secrets_file)


def test_damaged_key_file_is_named(settings: Settings) -> None:
    FileStore(settings).set("registry/a", "secret")
    key = settings.key_file.read_bytes()
    settings.key_file.write_bytes(key[:16])
    before = settings.secrets_file.read_bytes()
    with pytest.raises(StoreError) as info:
        FileStore(settings).set("registry/b", "x")
    assert str(settings.key_file) in str(info.value)
    assert settings.secrets_file.read_bytes() == before
    assert settings.key_file.read_bytes() == key[:16]


# --- auto -----------------------------------------------------------------------------------------


def auto_settings(settings: Settings) -> Settings:
    return settings._replace(store="auto")


def test_auto_chooses_keyring_when_a_real_backend_is_set(
    settings: Settings, memory_keyring: MemoryKeyring
) -> None:
    auto = auto_settings(settings)
    store = open_store(auto)
    assert store.name == "keyring"
    store.set("registry/a", "in-the-keyring")
    assert memory_keyring.passwords[("regauth", "registry/a")] == "in-the-keyring"
    assert not settings.secrets_file.exists()
    assert settings.store_choice_file.read_text().strip() == "keyring"


@pytest.mark.parametrize("backend", [keyring.backends.fail.Keyring, keyring.backends.null.Keyring])
def test_auto_chooses_file_without_a_real_keyring(
    settings: Settings, use_keyring: object, backend: type
) -> None:
    keyring.set_keyring(backend())
    store = open_store(auto_settings(settings))
    assert store.name == "file"
    store.set("registry/a", "in-the-file")
    assert settings.secrets_file.exists()
    assert settings.store_choice_file.read_text().strip() == "file"


def test_auto_remembers_keyring(settings: Settings, memory_keyring: MemoryKeyring) -> None:
    auto = auto_settings(settings)
    assert resolve_backend(auto) == "keyring"
    keyring.set_keyring(keyring.backends.fail.Keyring())
    assert resolve_backend(auto) == "keyring"


def test_auto_remembers_file_and_does_not_probe_again(
    settings: Settings, use_keyring: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    auto = auto_settings(settings)
    keyring.set_keyring(keyring.backends.fail.Keyring())
    assert resolve_backend(auto) == "file"
    keyring.set_keyring(MemoryKeyring())
    assert resolve_backend(auto) == "file"

    def no_probe() -> bool:
        raise AssertionError("the keyring was probed again")

    monkeypatch.setattr(keyring_module, "real_keyring_available", no_probe)
    assert resolve_backend(auto) == "file"
    assert open_store(auto).name == "file"


def test_explicit_store_setting_wins_over_remembered_choice(
    settings: Settings, memory_keyring: MemoryKeyring
) -> None:
    assert resolve_backend(auto_settings(settings)) == "keyring"
    assert resolve_backend(settings._replace(store="file")) == "file"
    assert open_store(settings._replace(store="file")).name == "file"


# --- concurrency ----------------------------------------------------------------------------------

N = 32


def test_32_helper_processes_store_at_once(helper_exe: str, settings: Settings) -> None:
    servers = {f"reg{i:02d}.example:{5000 + i}": f"secret-{i}-{os.urandom(4).hex()}" for i in range(N)}
    procs = []
    for i, (server, secret) in enumerate(servers.items()):
        proc = subprocess.Popen(
            [helper_exe, "store"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        procs.append((proc, json.dumps({"ServerURL": server, "Username": f"user{i}", "Secret": secret})))
    # Every process is started before any gets its input, so they all race for the locks.
    for proc, payload in procs:
        assert proc.stdin is not None
        proc.stdin.write(payload.encode())
        proc.stdin.close()
    for proc, _ in procs:
        assert proc.wait(timeout=TIMEOUT) == 0, proc.communicate()
        assert proc.stdout is not None and proc.stdout.read() == b""
        proc.stdout.close()
        assert proc.stderr is not None
        proc.stderr.close()

    listed = subprocess.run(
        [helper_exe, "list"], input=b"unused", capture_output=True, timeout=TIMEOUT, check=True
    )
    assert json.loads(listed.stdout) == {server: f"user{i}" for i, server in enumerate(servers)}

    # Each server answers with its own secret (in-process, through the helper's real backend: 32 more
    # processes would only repeat the start-up).
    backend = RegauthBackend.for_settings(settings)
    for server, secret in servers.items():
        out = io.StringIO()
        assert serve("get", server.encode(), out, backend) == 0, out.getvalue()
        assert json.loads(out.getvalue())["Secret"] == secret


def test_32_processes_write_the_file_store_at_once(settings: Settings) -> None:
    expected = {f"registry/{i:02d}": f"value-{i}" for i in range(N)}
    # forkserver: one clean server process forks the writers (fast, and no fork of this threaded
    # process); the target is a regauth method, so the writers import nothing from the tests.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["regauth.store.file", "cryptography.hazmat.primitives.ciphers.aead"])
    store = FileStore(settings)
    procs = [context.Process(target=store.set, args=(k, v)) for k, v in expected.items()]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(TIMEOUT)
        assert proc.exitcode == 0
    assert store.keys() == sorted(expected)
    for key, value in expected.items():
        assert store.get(key) == value


# --- the records and the store stay in step when the store is damaged ------------------------------


@pytest.mark.parametrize("operation", ["remove", "make anonymous", "set new secret"])
def test_damaged_store_changes_no_record(settings: Settings, operation: str) -> None:
    book = RegistryBook.for_settings(settings)
    book.upsert_static("keep.example", "keeper", "kept-secret")
    name = book.for_host("keep.example").name  # type: ignore[union-attr]
    settings.secrets_file.write_bytes(settings.secrets_file.read_bytes()[:-3])
    before = (settings.registries_file.read_bytes(), settings.secrets_file.read_bytes())
    with pytest.raises(StoreError, match=str(settings.secrets_file)):
        if operation == "remove":
            book.remove(name)
        elif operation == "make anonymous":
            book.update(name, {"username": None})
        else:
            book.update(name, {"username": "other"}, "new-secret")
    assert (settings.registries_file.read_bytes(), settings.secrets_file.read_bytes()) == before
