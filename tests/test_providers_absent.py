"""The remembered "no ambient credentials" (providers/absent.py) and the search deadline (deadline.py),
in-process with a fake clock: what is remembered, for how long, for whom, and what makes it forgotten."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from regauth.config import Settings
from regauth.errors import ProviderError
from regauth.providers.absent import DIRECTORY, AbsentCache, fingerprint
from regauth.providers.base import NoAmbientCredentials
from regauth.providers.cache import clear
from regauth.providers.deadline import within
from regauth.store import open_store

CAUSE = "ecr provider for x: no AWS credentials found; set AWS_PROFILE"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Search:
    """A provider's search that finds nothing (or raises ``error``) and counts its runs."""

    def __init__(self, error: ProviderError | None = None) -> None:
        self.runs = 0
        self.error = error or NoAmbientCredentials(CAUSE)

    def __call__(self) -> None:
        self.runs += 1
        raise self.error


def test_an_absence_is_remembered_for_the_ttl_then_searched_again(settings: Settings) -> None:
    clock, search = Clock(), Search()
    cache = AbsentCache(settings.cache_dir, 60.0, clock=clock)
    for _ in range(3):
        with pytest.raises(NoAmbientCredentials) as info:
            cache.guard("k", search)
    assert search.runs == 1
    assert str(info.value) == f"{CAUSE} (remembered for up to 60s; `regauth cache clear` forgets it)"
    clock.now += 61
    with pytest.raises(NoAmbientCredentials) as info:
        cache.guard("k", search)
    assert search.runs == 2 and str(info.value) == CAUSE


def test_other_failures_and_successes_are_not_remembered(settings: Settings) -> None:
    cache = AbsentCache(settings.cache_dir, 60.0)
    refused = Search(ProviderError("ecr provider for x: AWS answered AccessDenied"))
    for _ in range(2):
        with pytest.raises(ProviderError):
            cache.guard("k", refused)
    assert refused.runs == 2
    assert cache.guard("k", lambda: "token") == "token"
    assert not (settings.cache_dir / DIRECTORY).exists()


def test_ttl_zero_never_remembers(settings: Settings) -> None:
    cache, search = AbsentCache(settings.cache_dir, 0.0), Search()
    for _ in range(2):
        with pytest.raises(NoAmbientCredentials):
            cache.guard("k", search)
    assert search.runs == 2


def test_the_fingerprint_follows_identity_and_credential_files(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    base = fingerprint("ecr", "identity", [str(creds)])
    assert fingerprint("ecr", "identity", [str(creds)]) == base
    assert fingerprint("acr", "identity", [str(creds)]) != base
    assert fingerprint("ecr", "other identity", [str(creds)]) != base
    creds.write_text("[default]\n")
    assert fingerprint("ecr", "identity", [str(creds)]) != base


def test_a_damaged_entry_is_searched_again(settings: Settings) -> None:
    cache, search = AbsentCache(settings.cache_dir, 60.0), Search()
    with pytest.raises(NoAmbientCredentials):
        cache.guard("k", search)
    (settings.cache_dir / DIRECTORY / "k.json").write_text("{not json")
    with pytest.raises(NoAmbientCredentials):
        cache.guard("k", search)
    assert search.runs == 2


def test_cache_clear_forgets_every_absence(settings: Settings) -> None:
    cache, search = AbsentCache(settings.cache_dir, 60.0), Search()
    for key in ("a", "b"):
        with pytest.raises(NoAmbientCredentials):
            cache.guard(key, search)
    clear(settings, open_store(settings))
    assert list((settings.cache_dir / DIRECTORY).iterdir()) == []


def test_expired_entries_are_pruned_when_another_is_written(settings: Settings) -> None:
    import os

    cache, search = AbsentCache(settings.cache_dir, 60.0), Search()
    with pytest.raises(NoAmbientCredentials):
        cache.guard("old", search)
    old = settings.cache_dir / DIRECTORY / "old.json"
    os.utime(old, (1.0, 1.0))
    with pytest.raises(NoAmbientCredentials):
        cache.guard("new", search)
    assert sorted(p.name for p in (settings.cache_dir / DIRECTORY).iterdir()) == ["new.json"]


def test_within_gives_the_result_or_the_exception_of_a_prompt_search() -> None:
    assert within(30.0, lambda: "found", lambda: ProviderError("late")) == "found"
    with pytest.raises(KeyError):
        within(30.0, lambda: {}["missing"], lambda: ProviderError("late"))


def test_within_gives_up_on_a_search_that_does_not_end() -> None:
    release = threading.Event()
    try:
        with pytest.raises(NoAmbientCredentials, match="no answer"):
            within(0.05, release.wait, lambda: NoAmbientCredentials("no answer"))
    finally:
        release.set()
