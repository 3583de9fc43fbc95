"""The token cache on its own: freshness margins, stale fallback, single mint, clear."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from regauth.config import Settings
from regauth.errors import ProviderError
from regauth.providers import cache
from regauth.providers.base import Credential
from regauth.providers.cache import CachedToken, TokenCache, cache_key
from regauth.store import open_store

KEY = cache_key("ecr", "123456789012.dkr.ecr.us-east-1.amazonaws.com", "identity")
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Minter:
    def __init__(self, life: float, clock: Clock) -> None:
        self.life, self.clock, self.calls, self.fail = life, clock, 0, False

    def __call__(self) -> Credential:
        if self.fail:
            raise ProviderError("ecr provider for h: AWS answered Throttling: slow down; retry later")
        self.calls += 1
        return Credential("AWS", f"token-{self.calls}", self.clock.now + self.life)


def make(settings: Settings, clock: Clock, warnings: list[str] | None = None) -> TokenCache:
    return TokenCache(
        settings, open_store(settings), clock=clock, on_stale=None if warnings is None else warnings.append
    )


def test_key_names_provider_host_and_hashed_identity() -> None:
    assert KEY.startswith("token/ecr/123456789012.dkr.ecr.us-east-1.amazonaws.com/")
    assert "identity" not in KEY and len(KEY.rsplit("/", 1)[1]) == 16
    assert cache_key("ecr", "h", "a") != cache_key("ecr", "h", "b")


@pytest.mark.parametrize(
    ("life", "fresh_for"),
    [(12 * 3600, 6 * 3600), (3600, 3600 - 300), (600, 540), (60, 54)],
)
def test_freshness_margin(life: float, fresh_for: float) -> None:
    token = CachedToken("u", "s", expires_at=T0 + life, minted_at=T0)
    assert token.fresh_until == T0 + fresh_for
    assert token.is_fresh(T0 + fresh_for - 1) and not token.is_fresh(T0 + fresh_for)


def test_hit_then_refresh_after_half_life(settings: Settings) -> None:
    clock = Clock()
    mint = Minter(12 * 3600, clock)
    tokens = make(settings, clock)
    assert tokens.get_or_mint(KEY, mint) == Credential("AWS", "token-1", T0 + 12 * 3600)
    clock.now += 6 * 3600 - 1
    assert tokens.get_or_mint(KEY, mint).secret == "token-1"  # type: ignore[union-attr]
    clock.now += 1
    assert tokens.get_or_mint(KEY, mint).secret == "token-2"  # type: ignore[union-attr]
    assert mint.calls == 2


def test_stale_token_served_when_mint_fails(settings: Settings) -> None:
    clock, warnings = Clock(), list[str]()
    mint = Minter(12 * 3600, clock)
    tokens = make(settings, clock, warnings)
    tokens.get_or_mint(KEY, mint)
    clock.now += 8 * 3600
    mint.fail = True
    assert tokens.get_or_mint(KEY, mint).secret == "token-1"  # type: ignore[union-attr]
    assert warnings == [
        "ecr provider for h: AWS answered Throttling: slow down; retry later; "
        "serving the cached token, which expires in 14400s"
    ]


def test_expired_token_is_never_served(settings: Settings) -> None:
    clock = Clock()
    mint = Minter(3600, clock)
    tokens = make(settings, clock)
    tokens.get_or_mint(KEY, mint)
    clock.now += 3600 - 10  # inside the floor: too close to expiry to hand out
    mint.fail = True
    with pytest.raises(ProviderError, match="Throttling"):
        tokens.get_or_mint(KEY, mint)


def test_bypass_mints_and_does_not_fall_back(settings: Settings) -> None:
    clock = Clock()
    mint = Minter(3600, clock)
    tokens = make(settings, clock)
    tokens.get_or_mint(KEY, mint)
    assert tokens.get_or_mint(KEY, mint, use_cache=False).secret == "token-2"  # type: ignore[union-attr]
    assert tokens.get_or_mint(KEY, mint).secret == "token-2"  # type: ignore[union-attr]
    mint.fail = True
    with pytest.raises(ProviderError):
        tokens.get_or_mint(KEY, mint, use_cache=False)


def test_tokens_without_a_future_expiry_are_not_cached(settings: Settings) -> None:
    clock = Clock()
    tokens = make(settings, clock)
    assert not tokens.put(KEY, Credential("u", "s", None), T0)
    assert not tokens.put(KEY, Credential("u", "s", T0 - 1), T0)
    assert tokens.get(KEY) is None


def test_unreadable_entry_is_minted_over(settings: Settings) -> None:
    clock = Clock()
    store = open_store(settings)
    store.set(KEY, "{not json")
    tokens = TokenCache(settings, store, clock=clock)
    assert tokens.get_or_mint(KEY, Minter(3600, clock)).secret == "token-1"  # type: ignore[union-attr]


def test_twenty_threads_one_mint(settings: Settings) -> None:
    clock = Clock()
    calls: list[int] = []
    gate = threading.Barrier(20)

    def slow_mint() -> Credential:
        calls.append(1)
        return Credential("AWS", "shared", clock.now + 3600)

    tokens = make(settings, clock)
    results: list[str] = []

    def run() -> None:
        gate.wait()
        results.append(tokens.get_or_mint(KEY, slow_mint).secret)  # type: ignore[union-attr]

    threads = [threading.Thread(target=run) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["shared"] * 20 and len(calls) == 1


def test_processes_mint_once(settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "mints.log"
    code = (
        "import time\n"
        "from regauth.config import load_settings\n"
        "from regauth.providers.base import Credential\n"
        "from regauth.providers.cache import TokenCache\n"
        "from regauth.store import open_store\n"
        "s = load_settings(); store = open_store(s)\n"
        "def mint():\n"
        f"    with open({str(log)!r}, 'a') as f: f.write('mint\\n')\n"
        "    time.sleep(0.2)\n"
        "    return Credential('AWS', 'from-one-process', time.time() + 3600)\n"
        f"print(TokenCache(s, store).get_or_mint({KEY!r}, mint).secret)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(6)
    ]
    outputs = [proc.communicate()[0].strip() for proc in procs]
    assert outputs == ["from-one-process"] * 6
    assert log.read_text() == "mint\n"


def test_clear_counts_and_keeps_other_secrets(settings: Settings) -> None:
    clock = Clock()
    store = open_store(settings)
    store.set("registry/abc", "pw")
    tokens = make(settings, clock)
    tokens.get_or_mint(KEY, Minter(3600, clock))
    tokens.get_or_mint(cache_key("gcp", "gcr.io", "x"), Minter(3600, clock))
    assert cache.clear(settings, store, host="gcr.io") == 1
    assert cache.clear(settings, store) == 1
    assert store.keys() == ["registry/abc"]
