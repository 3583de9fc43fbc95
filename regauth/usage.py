"""When each record was last used: a file per record under the state dir, whose mtime is the mark.

``regauth doctor`` reports records that nothing has used for a long time. The helper's ``get`` runs on
every pull, so marking must cost it almost nothing: after a record's first use the mark is one
``utime`` on an existing empty file (one metadata update), never a rewrite of the records or the store,
and this module imports only ``os``. A mark that cannot be written (a read-only state dir on a fleet
instance, a full disk) is skipped: a pull must not fail, or slow down, for want of a timestamp.
"""

from __future__ import annotations

import os

USED_DIR = "used"  # in the state dir: one empty file per record id


def mark_used(state_dir: str, record_id: str) -> None:
    """Record that ``record_id`` answered just now."""
    path = _path(state_dir, record_id)
    if path is None:
        return
    try:
        # Not through a link planted in the mark's place.
        os.utime(path, follow_symlinks=False)
    except FileNotFoundError:
        _create(state_dir, path)
    except OSError:
        # Not writable here (see the module's docstring): the mark is best effort by design.
        return


def last_used(state_dir: str, record_id: str) -> float | None:
    """When ``record_id`` was last marked (seconds since the epoch), or None if never."""
    path = _path(state_dir, record_id)
    if path is None:
        return None
    try:
        return os.stat(path, follow_symlinks=False).st_mtime
    except OSError:
        return None


def forget(state_dir: str, record_id: str) -> None:
    """Drop a removed record's mark, so a new record can never inherit it."""
    path = _path(state_dir, record_id)
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _path(state_dir: str, record_id: str) -> str | None:
    # Ids are regauth's own hex, but the records file is the user's: never a path out of used/.
    if not record_id or record_id.startswith(".") or os.sep in record_id or "\0" in record_id:
        return None
    return os.path.join(state_dir, USED_DIR, record_id)


def _create(state_dir: str, path: str) -> None:
    try:
        os.makedirs(os.path.join(state_dir, USED_DIR), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        # Another get made it first: its mark is as good as ours.
        return
    except OSError:
        return
    os.close(fd)
