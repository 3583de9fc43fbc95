"""The behaviour every ``regauth configure`` shares: show, write with a backup, say when there is
nothing to do, and undo.

A client module builds a ``Plan`` (the files it wants, in full); ``apply`` compares, and only files whose
bytes would change are touched. Nothing is written before every new content is known, so a bad input
found while planning leaves every file as it was.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from regauth.configure import backup
from regauth.configure.files import FileState, read_state, remove_file, write_in_place
from regauth.errors import ConfigError
from regauth.printable import printable

Say = Callable[[str], None]
REDACTED = "<redacted>"
# A JSON string literal on one line (a raw line break is never inside one).
_JSON_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')


class Change(NamedTuple):
    state: FileState  # the file as it is now
    new: bytes  # what it should hold
    new_mode: int = 0o644  # for a file that does not exist yet
    dir_mode: int = 0o755  # for directories that must be made for it

    @property
    def changes(self) -> bool:
        return self.state.data != self.new


class Plan(NamedTuple):
    client: str
    changes: Sequence[Change]
    notes: Sequence[str] = ()  # said after a real run (what to restart, what else to know)
    # Strings that must never be printed, not even in a diff (plaintext credentials an import removes).
    secrets: Sequence[str] = ()
    # The records the run added (id, ``import_undo.made``): an import's, which its undo removes.
    records: Sequence[tuple[str, str]] = ()


def apply(plan: Plan, *, dry_run: bool, backup_root: Path, say: Say) -> int:
    pending = [change for change in plan.changes if change.changes]
    if not pending:
        names = ", ".join(str(change.state.path) for change in plan.changes)
        say(f"{plan.client}: already configured, nothing to change ({names})")
        return 0
    if dry_run:
        for change in pending:
            say(_redact(diff(change), plan.secrets))
        say(f"{plan.client}: dry run, nothing written ({len(pending)} file(s) would change)")
        return 0
    directory = backup.new_set(backup_root, plan.client)
    entries = [
        backup.Entry(
            path=str(change.state.path),
            target=str(change.state.target),
            existed=change.state.data is not None,
            written_sha256=backup.digest(change.new),
        )
        for change in pending
    ]
    # Every original is safe in the set before the first file is replaced.
    for change, entry in zip(pending, entries, strict=True):
        if change.state.data is not None:
            backup.save_original(directory, entry, change.state.data)
    backup.write_manifest(directory, plan.client, entries, plan.records)
    for index, change in enumerate(pending):
        try:
            created = write_in_place(change.state, change.new, change.new_mode, change.dir_mode)
        except ConfigError as exc:
            if index == 0:
                backup.discard_set(directory)
                raise
            raise ConfigError(f"{exc}; what was written before it can be undone with --undo") from exc
        entries[index] = entries[index]._replace(written=True, created_dirs=tuple(str(d) for d in created))
        backup.write_manifest(directory, plan.client, entries, plan.records)
        link = f" (through the link {change.state.path})" if change.state.target != change.state.path else ""
        say(f"{'updated' if change.state.data is not None else 'created'} {change.state.target}{link}")
    say(f"backup of what was replaced: {directory} (undo with --undo)")
    for note in plan.notes:
        say(note)
    return 0


def undo(
    client: str,
    *,
    backup_root: Path,
    force: bool,
    dry_run: bool,
    say: Say,
    command: str = "",
    secrets: Sequence[str] = (),
) -> int:
    """Restore the newest backup set of ``client``; ``command`` names the run in messages (default
    ``regauth configure CLIENT``); ``secrets`` are redacted from a dry run's diff."""
    directory = backup.latest_set(backup_root, client)
    if directory is None:
        raise ConfigError(
            f"no backup of a `{command or f'regauth configure {client}'}` run in {backup_root / client}: "
            "nothing to undo"
        )
    # A run stopped half-way wrote only some of its files: the others are as they were.
    entries = [entry for entry in backup.read_manifest(directory) if entry.written]
    # The file regauth wrote, not whatever a link named then points at now.
    restores = [(entry, read_state(Path(entry.target))) for entry in entries]
    changed = [
        entry.path
        for entry, state in restores
        if state.data is None or backup.digest(state.data) != entry.written_sha256
    ]
    if changed and not force:
        raise ConfigError(
            f"{', '.join(changed)} changed since regauth wrote it; nothing was restored "
            f"(--force restores the backup {directory} over the changes)"
        )
    if dry_run:
        for entry, state in restores:
            old = backup.original(directory, entry) if entry.existed else None
            say(_redact(diff(Change(state, old if old is not None else b""), removed=old is None), secrets))
        say(f"{client}: dry run, nothing restored (backup {directory})")
        return 0
    for entry, state in restores:
        if entry.existed:
            write_in_place(state, backup.original(directory, entry), 0o600)
            say(f"restored {entry.target}")
        else:
            remove_file(Path(entry.target))
            for made in reversed(entry.created_dirs):
                _remove_empty(Path(made))
            say(f"removed {entry.target} (regauth had created it)")
    backup.discard_set(directory)
    say(f"{client}: undone (the backup {directory} is used up)")
    return 0


def _remove_empty(directory: Path) -> None:
    try:
        os.rmdir(directory)
    except OSError:
        pass  # not empty: something else lives there now, which is not ours to remove


def diff(change: Change, *, removed: bool = False) -> str:
    label = str(change.state.path)
    old = _lines(change.state.data)
    new = [] if removed else _lines(change.new)
    name = label.lstrip("/")
    fromfile = "/dev/null" if change.state.data is None else f"a/{name}"
    lines = difflib.unified_diff(old, new, fromfile=fromfile, tofile="/dev/null" if removed else f"b/{name}")
    shown = []
    for line in lines:
        body = line.removesuffix("\n")
        # A file's bytes must not drive the terminal; a tab is how JSON and TOML indent, kept as it is.
        shown.append("\t".join(printable(part) for part in body.split("\t")))
        if not line.endswith("\n"):
            shown.append("\\ No newline at end of file")
    return "\n".join(shown)


def _lines(data: bytes | None) -> list[str]:
    if data is None:
        return []
    return data.decode("utf-8", errors="replace").splitlines(keepends=True)


def _redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` (the diff of an auth file) with each JSON string whose value is a secret redacted whole.
    Compared decoded, since the file spells a secret escaped (Go writes ``<`` as ``\\u003c``); and
    never a mere substring, which would mark where a short secret ("docker") stands in a path or key."""
    wanted = {secret for secret in secrets if secret}
    if not wanted:
        return text

    def one(match: re.Match[str]) -> str:
        try:
            value = json.loads(match.group())
        except ValueError:
            return match.group()
        return f'"{REDACTED}"' if value in wanted else match.group()

    return _JSON_STRING.sub(one, text)
