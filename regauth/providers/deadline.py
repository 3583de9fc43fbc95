"""A deadline over a cloud SDK's search for credentials: its answer, or a one-line error when it is late.

The SDKs probe metadata endpoints with their own timeouts and retries: botocore's container endpoint
waits 2 s three times, azure-identity reads from an App Service endpoint for up to 300 s. Where an SDK
takes a transport or a setting, each probe is bounded there (``PROBE_TIMEOUT``); this is the bound
over all of them, whatever the SDK does inside.

The search runs in a daemon thread. On time-out it is abandoned, not interrupted (a Python thread
cannot be): it ends when the SDK's own timeouts end it, and a daemon thread never delays the
helper's exit. The caller gets ``NoAmbientCredentials``, which the routing remembers for a while, so
a black-holed endpoint costs one abandoned search per identity and minute, not one per pull.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from regauth.errors import ProviderError

T = TypeVar("T")


class _Outcome(Generic[T]):
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: T | None = None
        self.error: Exception | None = None


def within(seconds: float, search: Callable[[], T], late: Callable[[], ProviderError]) -> T:
    """``search()``'s result or exception if it ends within ``seconds``; else raise ``late()``."""
    outcome: _Outcome[T] = _Outcome()
    # The SDKs keep state in context variables (azure-identity marks "within a credential chain").
    context = contextvars.copy_context()

    def run() -> None:
        try:
            outcome.value = context.run(search)
        except Exception as exc:  # handed to the caller below, or dropped with an abandoned search
            outcome.error = exc
        finally:
            outcome.done.set()

    threading.Thread(target=run, name="regauth-credential-search", daemon=True).start()
    if not outcome.done.wait(seconds):
        raise late()
    if outcome.error is not None:
        raise outcome.error
    return outcome.value  # type: ignore[return-value]  # None only when search() returned None
