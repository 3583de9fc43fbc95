"""The secret store an edge opens once, on first use: ``store.lazy.LazyStore``.

Opening a store can cost (the ``auto`` choice probes the keyring, then writes down what it found) or
fail (a damaged store). The CLI, the helper and the proxy each make one ``LazyStore`` and hand it to
the book, the token cache and the routing; a command that reads no secret must open nothing, which
shows here as the ``auto`` choice never being made.
"""

from __future__ import annotations

import io
import threading

import pytest

from regauth import cli
from regauth.config import Settings, load_settings
from regauth.helper import texts
from regauth.helper.backend import RegauthBackend
from regauth.helper.protocol import serve
from regauth.registries import Registry, RegistryBook
from regauth.store.base import SecretStore
from regauth.store.file import FileStore
from regauth.store.lazy import LazyStore


class Opener:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.opened = 0
        self.lock = threading.Lock()

    def __call__(self) -> SecretStore:
        with self.lock:
            self.opened += 1
        return FileStore(self.settings)


def test_it_opens_on_first_use_and_once(settings: Settings) -> None:
    opener = Opener(settings)
    store = LazyStore(opener)
    assert opener.opened == 0
    gate = threading.Barrier(8)

    def use() -> None:
        gate.wait()
        store.set("registry/a", "secret")

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (store.get("registry/a"), store.keys(), store.name) == ("secret", ["registry/a"], "file")
    assert store.delete("registry/a") and opener.opened == 1


@pytest.fixture
def auto(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """An anonymous and a static record saved with the file store, then the ``auto`` choice, not made."""
    book = RegistryBook.for_settings(settings)
    book.add(Registry(id="", name="anon", registry="r.example.com"), None)
    book.add(Registry(id="", name="reg", registry="s.example.com", username="u"), "secret")
    monkeypatch.setenv("REGAUTH_STORE", "auto")
    assert not settings.store_choice_file.exists()
    return load_settings()


def test_registry_list_opens_no_store(auto: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["registry", "list"]) == 0
    assert "r.example.com" in capsys.readouterr().out
    assert not auto.store_choice_file.exists()
    # A command that reads a secret's state does open it, through the same handle.
    assert cli.main(["registry", "show", "reg"]) == 0
    assert auto.store_choice_file.exists()


def test_the_helpers_list_opens_no_store(auto: Settings) -> None:
    out = io.StringIO()
    assert serve("list", b"", out, RegauthBackend.for_settings(auto, stderr=io.StringIO())) == 0
    assert not auto.store_choice_file.exists()


def test_an_anonymous_get_opens_no_store(auto: Settings) -> None:
    out = io.StringIO()
    backend = RegauthBackend.for_settings(auto, stderr=io.StringIO())
    assert serve("get", b"r.example.com", out, backend) == 1
    assert out.getvalue() == texts.NOT_FOUND + "\n"
    assert not auto.store_choice_file.exists()
