"""Backup sets: what one ``regauth configure`` or ``import`` run replaced, so ``--undo`` can put it back.

A set is a directory ``ROOT/CLIENT/TIMESTAMP/`` (regauth's own, 0700, under its state directory by
default) holding the replaced files (0600: an auth file's backup can hold plaintext credentials) and a
``manifest.json`` naming, for each file, where it was, whether it existed, the directories the run
created for it and the digest of what the run wrote, and the records an ``import`` run added (their id
and a digest of the record as made, so an undo removes them only as they were made). ``--undo`` takes
the newest set, refuses a file changed since (unless forced), restores, and removes the set: each undo
goes one run back.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from regauth import fsutil
from regauth.errors import ConfigError

MANIFEST = "manifest.json"


class Entry(NamedTuple):
    path: str  # as the client names it
    target: str  # the file written (a link followed)
    existed: bool
    written_sha256: str
    created_dirs: tuple[str, ...] = ()
    written: bool = False  # set once the new content is in place

    @property
    def backup_name(self) -> str:
        return hashlib.sha256(self.target.encode()).hexdigest()[:16]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def timestamp() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S.%fZ")


def new_set(root: Path, client: str) -> Path:
    directory = root / client / timestamp()
    fsutil.ensure_private_dir(directory)
    return directory


def save_original(directory: Path, entry: Entry, data: bytes) -> None:
    fsutil.atomic_write(directory / entry.backup_name, data, mode=0o600)


def write_manifest(
    directory: Path, client: str, entries: list[Entry], records: Sequence[tuple[str, str]] = ()
) -> None:
    body: dict[str, Any] = {"client": client, "files": [e._asdict() for e in entries]}
    if records:
        body["records"] = [{"id": rid, "sha256": made} for rid, made in records]
    fsutil.atomic_write(directory / MANIFEST, (json.dumps(body, indent=2) + "\n").encode(), mode=0o600)


def latest_set(root: Path, client: str) -> Path | None:
    base = root / client
    try:
        names = sorted(p.name for p in base.iterdir() if (p / MANIFEST).is_file())
    except FileNotFoundError:
        return None
    return base / names[-1] if names else None


def read_manifest(directory: Path) -> list[Entry]:
    data = fsutil.read_private(directory / MANIFEST)
    try:
        body: Any = json.loads(data or b"")
        return [
            Entry(
                path=str(f["path"]),
                target=str(f["target"]),
                existed=bool(f["existed"]),
                written_sha256=str(f["written_sha256"]),
                created_dirs=tuple(str(d) for d in f.get("created_dirs", ())),
                written=bool(f.get("written", False)),
            )
            for f in body["files"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"the backup manifest {directory / MANIFEST} is damaged; nothing was restored"
        ) from exc


def read_records(directory: Path) -> list[tuple[str, str]]:
    """The records the run added: (id, digest of the record as made) each; none for a ``configure``."""
    data = fsutil.read_private(directory / MANIFEST)
    try:
        body: Any = json.loads(data or b"")
        return [(str(r["id"]), str(r["sha256"])) for r in body.get("records", ())]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"the backup manifest {directory / MANIFEST} is damaged; nothing was restored"
        ) from exc


def original(directory: Path, entry: Entry) -> bytes:
    data = fsutil.read_private(directory / entry.backup_name)
    if data is None:
        raise ConfigError(f"the backup of {entry.path} is missing from {directory}; nothing was restored")
    return data


def discard_set(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
