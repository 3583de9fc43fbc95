"""The audit log: one JSON line per change of a registry record (who, what, when; never a secret).

Append-only: each event is one ``write`` to a file opened ``O_APPEND`` (``fsutil.open_append``), so
concurrent writers (the API, the CLI) interleave whole lines. An event names the record and the fields
that changed, and whether a secret was set or dropped; it never holds a field's value, so no secret can
reach it by way of a field the API did not foresee.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from regauth.config import Settings
from regauth.errors import StoreError
from regauth.fsutil import open_append, read_private
from regauth.printable import printable

EVENTS_FILE = "events.jsonl"  # in the state dir
# The log grows without bound by design; a read takes at most its newest this much.
_READ_MAX = 64 * 1024 * 1024

CREATED, UPDATED, DELETED, VALIDATED = "created", "updated", "deleted", "validated"
ENABLED, DISABLED = "enabled", "disabled"
ACTIONS = (CREATED, UPDATED, DELETED, VALIDATED, ENABLED, DISABLED)


def events_path(settings: Settings) -> Path:
    return settings.state_dir / EVENTS_FILE


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_settings(cls, settings: Settings) -> AuditLog:
        return cls(events_path(settings))

    def append(
        self,
        actor: str,
        action: str,
        record_id: str,
        name: str,
        *,
        fields: Iterable[str] = (),
        secret: str | None = None,
        outcome: str | None = None,
    ) -> dict[str, Any]:
        """Record one event; ``secret`` says what happened to the secret ("set", "dropped"), never it."""
        # Here, not at the top: the helper imports this module, and datetime costs it 10 ms.
        from datetime import datetime, timezone

        event: dict[str, Any] = {
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "actor": actor,
            "action": action,
            "registry_id": record_id,
            "registry_name": name,
            "fields": sorted(fields),
        }
        if secret is not None:
            event["secret"] = secret
        if outcome is not None:
            event["outcome"] = outcome
        line = (json.dumps(event, ensure_ascii=True) + "\n").encode()
        try:
            self._write(line)
        except (OSError, StoreError) as exc:
            # The change is saved by now: failing here would report a stored login or a made change
            # as not made (docker login: "Error saving credentials"), and a retry meets "already
            # exists". As docker-credential-helpers, the exit status says whether the change was made;
            # the lost event is said on stderr.
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            sys.stderr.write(
                f"regauth: warning: the change was made, but its audit event was not written to "
                f"{printable(str(self.path))}: {printable(reason)}\n"
            )
        return event

    def _write(self, line: bytes) -> None:
        fd = open_append(self.path)
        try:
            written = os.write(fd, line)
            if written < len(line):
                # A full disk took part of the line: end it, so the next event starts a line of its
                # own (a reader passes the torn one over).
                os.write(fd, b"\n")
                raise OSError(errno.ENOSPC, "the disk took only part of the event")
        finally:
            os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        """Every event, oldest first (of the newest ``_READ_MAX`` bytes: the line they start in is
        torn); a torn or foreign line is passed over, not fatal."""
        raw = read_private(self.path, limit=_READ_MAX, tail=True)
        if raw is None:
            return []
        events = []
        for line in raw.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events
