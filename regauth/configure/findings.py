"""What every ``regauth doctor`` check gives: a ``Finding`` with a verdict.

``ok``; ``action`` (something must be done: the exit status is 1); ``warn`` (worth changing, not
wrong: a credential that can push where pulling is all a platform needs); ``info``.
"""

from __future__ import annotations

from typing import NamedTuple

OK, ACTION, WARN, INFO = "ok", "action", "warn", "info"


class Finding(NamedTuple):
    check: str
    status: str
    message: str

    def to_json(self) -> dict[str, str]:
        return self._asdict()


def days_ago(seconds: float) -> str:
    """``just now``, ``5 minutes ago``, ``3 hours ago``, ``1 day ago``, ``40 days ago``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        count = int(seconds // size)
        if count >= 1:
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"
