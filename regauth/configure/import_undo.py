"""``regauth import docker|podman --undo``: the plaintext back in the file, the records it made gone.

An import moved credentials from the file into records; its undo puts the file back byte for byte (the
backup set, as ``configure --undo`` does) and removes the records that run added, so no credential is
kept twice and the store holds nothing the user has put back in plaintext. A record changed since the
import (renamed, updated, enabled or disabled: its fields but the last validation differ from the
digest ``made`` kept in the backup manifest) is the user's now: the undo refuses, before anything is
restored, unless ``--force`` (which restores the file and keeps such a record). A record already
removed is said so. (A new secret alone changes ``updated_at``, which has whole seconds: one given in
the same second as the import goes unseen.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from regauth import audit, registry_ops
from regauth.config import Settings
from regauth.configure import backup, core
from regauth.configure.core import Say
from regauth.configure.files import FileState
from regauth.errors import ConfigError
from regauth.registries import ORIGIN_CLI, Registry, RegistryBook
from regauth.store.base import SecretStore


def undo_import(
    client: str,
    settings: Settings,
    book: RegistryBook,
    store: SecretStore,
    *,
    backup_root: Path,
    force: bool,
    dry_run: bool,
    say: Say,
) -> int:
    name = f"import-{client}"
    command = f"regauth import {client}"
    directory = backup.latest_set(backup_root, name)
    if directory is None:
        # core.undo says it, in the same words as for a configure.
        return core.undo(
            name, backup_root=backup_root, force=force, dry_run=dry_run, say=say, command=command
        )
    current = {record.id: record for record in book.all()}
    added = backup.read_records(directory)
    changed = [current[rid] for rid, digest in added if rid in current and made(current[rid]) != digest]
    if changed and not force:
        names = ", ".join(repr(record.name) for record in changed)
        raise ConfigError(
            f"registry {names} changed since `{command}` made it; nothing was restored "
            "(--force restores the file and keeps it)"
        )
    secrets = _secrets(directory)
    core.undo(
        name, backup_root=backup_root, force=force, dry_run=dry_run, say=say, command=command, secrets=secrets
    )
    kept = {record.id for record in changed}
    for rid, _ in added:
        record = current.get(rid)
        if record is None:
            say(f"registry {rid} made by the import is already gone")
        elif rid in kept:
            say(f"kept registry {record.name!r}: changed since the import")
        elif dry_run:
            say(f"would remove registry {record.name!r} ({record.registry}), made by the import")
        else:
            _remove(settings, book, store, record)
            say(f"removed registry {record.name!r} ({record.registry}), made by the import")
    return 0


def made(record: Registry) -> str:
    """A digest of ``record`` as it is, but for its last validation (a check is not a change)."""
    fields = {key: value for key, value in record.to_json().items() if key != "last_validation"}
    return backup.digest(json.dumps(fields, sort_keys=True).encode())


def remove_added(
    settings: Settings, book: RegistryBook, store: SecretStore, added: Sequence[tuple[str, str]]
) -> None:
    """Take back the records an import run added, when its file could not be written."""
    current = {record.id: record for record in book.all()}
    for rid, _ in added:
        if rid in current:
            _remove(settings, book, store, current[rid])


def _remove(settings: Settings, book: RegistryBook, store: SecretStore, record: Registry) -> None:
    gone = book.remove(record.name)
    registry_ops.forget_removed(settings, store, gone)
    audit.AuditLog.for_settings(settings).append(ORIGIN_CLI, audit.DELETED, gone.id, gone.name)


def _secrets(directory: Path) -> Sequence[str]:
    """The credentials in the set's originals, which a dry run's diff must not show."""
    from regauth.configure import importer, jsonfile

    found: list[str] = []
    for entry in backup.read_manifest(directory):
        if not entry.existed:
            continue
        data = backup.original(directory, entry)
        state = FileState(Path(entry.path), Path(entry.target), data, None, None, None)
        try:
            config = jsonfile.load_object(state)
        except ConfigError:
            continue
        found += importer.plaintext(state, config)[2]
    return found
