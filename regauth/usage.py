"""When each record was last used: a file per record under the state dir, whose mtime is the mark.

``regauth doctor`` reports records that nothing has used for a long time. The helper's ``get`` runs on
every pull, so marking must cost it almost nothing: after a record's first use the mark is one
``utime`` on an existing empty file (one metadata update), never a rewrite of the records or the store,
and this module imports only ``os`` and ``time`` (both built in). A mark that cannot be written (a
read-only state dir on a fleet instance, a full disk) is skipped: a pull must not fail, or slow down, for
want of a timestamp.

Marks are this machine's: a record used only by a proxy elsewhere is unused here. ``since`` says when
this machine began to keep marks, so that "never used" is not said of a record older than the marks.
"""

from __future__ import annotations

import os
import time

USED_DIR = "used"  # in the state dir: one empty file per record id
SINCE = ".since"  # in USED_DIR, made with it: when marks began here (not an id: ids never start with ".")


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


def since(state_dir: str) -> float | None:
    """When this machine began to keep marks (the first mark of any record), or None if it has not."""
    try:
        return os.stat(os.path.join(state_dir, USED_DIR, SINCE), follow_symlinks=False).st_mtime
    except OSError:
        return None


class Marks:
    """Marks for a long-running process (the proxy): at most one ``utime`` per record per ``every``
    seconds, however many pulls it answers; the last time is kept in memory."""

    def __init__(self, state_dir: str, *, every: float = 60.0) -> None:
        self._state_dir = state_dir
        self._every = every
        self._last: dict[str, float] = {}

    def mark(self, record_id: str) -> None:
        now = time.monotonic()
        last = self._last.get(record_id)
        if last is not None and now - last < self._every:
            return
        self._last[record_id] = now
        mark_used(self._state_dir, record_id)


def put_back(state_dir: str, record_id: str, when: float | None) -> None:
    """Set ``record_id``'s mark back to ``when`` (None: no mark) after a use that was no client's:
    ``regauth doctor --proxy`` asks every upstream through the proxy, which must not make a record
    nothing else uses look used. A client's use in between is lost: a minute at most, by ``Marks``."""
    path = _path(state_dir, record_id)
    if path is None:
        return
    if when is None:
        forget(state_dir, record_id)
        return
    try:
        os.utime(path, (when, when), follow_symlinks=False)
    except OSError:
        return


def forget(state_dir: str, record_id: str) -> None:
    """Drop a removed record's mark, so a new record can never inherit it."""
    path = _path(state_dir, record_id)
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            # Gone already, or not removable here (a read-only state dir): best effort, as marking
            # is; the record it was for is removed by then, and a new one has a new random id.
            pass


def _path(state_dir: str, record_id: str) -> str | None:
    # Ids are regauth's own hex, but the records file is the user's: never a path out of used/.
    if not record_id or record_id.startswith(".") or os.sep in record_id or "\0" in record_id:
        return None
    return os.path.join(state_dir, USED_DIR, record_id)


def _create(state_dir: str, path: str) -> None:
    directory = os.path.join(state_dir, USED_DIR)
    try:
        _make_private_dirs(directory)
    except OSError:
        return
    # A record's first mark only (rare), so the extra open costs no get: the first of all starts ``since``.
    _touch_new(os.path.join(directory, SINCE))
    _touch_new(path)


def _make_private_dirs(directory: str) -> None:
    """``directory`` and its missing parents, each 0700 as ``fsutil.ensure_private_dir`` makes them
    (not ``os.makedirs``, which makes the parents by the umask: the state dir 0775 under umask 002,
    which every later write of regauth's to it refuses as group-writable). ``fsutil`` itself imports
    ``pathlib``, which the fast get must not."""
    if os.path.isdir(directory):
        return
    parent = os.path.dirname(directory)
    if parent and parent != directory:
        _make_private_dirs(parent)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        # Made by another get meanwhile (or a file in its place, which the next open refuses).
        return
    # mkdir's mode is masked by the umask: set it exactly.
    os.chmod(directory, 0o700)


def _touch_new(path: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError:
        # FileExistsError: another get made it first, and its mark is as good as ours.
        return
    os.close(fd)
