"""The files regauth owns: private directories, checked reads, atomic writes and inter-process locks.

Another local user must not be able to read a secret, plant a file regauth will trust, or make regauth
write through a symbolic link. So: directories are created 0700 whatever the umask; an existing
directory or file that another user owns or that group or others can write is refused with one line
naming it (``layout.unsafe_because`` holds the rule, shared with the helper's fast ``get``); temporary
files get unpredictable names and ``O_EXCL|O_NOFOLLOW``; lock and log files are opened without
following a symbolic link.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from regauth import layout
from regauth.errors import StoreError

LOCK_TIMEOUT = 30.0
_TEMP_SUFFIX = ".tmp"
# O_NOFOLLOW fails with ELOOP when the last component is a symbolic link.
_NO_FOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def check_private(
    path: Path, st: os.stat_result, *, secret: bool = False, directory: bool = False, fd: int | None = None
) -> None:
    """Refuse ``path`` (whose stat is ``st``, of the open ``fd`` if given) unless it is ours (or, on a
    read-only mount, root's), of its kind, and only we can change it (``layout.unsafe_because``).

    ``secret``: a key file, which also must not be readable by group or others (as ssh asks of a
    private key).
    """
    why = layout.unsafe_because(st, secret=secret, directory=directory)
    # The mount is asked only about what the strict rule refuses: the common case costs nothing.
    if why is not None and _on_read_only_mount(path, fd):
        why = layout.unsafe_because(st, secret=secret, directory=directory, read_only=True)
    if why is not None:
        raise StoreError(f"refusing to use {path}: {why}")


def _on_read_only_mount(path: Path, fd: int | None) -> bool:
    try:
        found = os.fstatvfs(fd) if fd is not None else os.statvfs(path)
    except OSError:
        return False
    return bool(found.f_flag & os.ST_RDONLY)


def ensure_private_dir(path: Path) -> None:
    """Make ``path`` (and any missing parent) 0700, or check that the existing one is private."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        _make_dirs(path)
        return
    except OSError as exc:
        raise StoreError(f"cannot use the directory {path}: {exc.strerror or exc}") from exc
    check_private(path, st, directory=True)


def _make_dirs(path: Path) -> None:
    missing = [p for p in path.parents if not p.exists()]
    for directory in [*reversed(missing), path]:
        try:
            os.mkdir(directory, 0o700)
            # mkdir's mode is masked by the umask (0o277 would leave it unwritable): set it exactly.
            os.chmod(directory, 0o700)
        except FileExistsError:
            if directory == path:
                # Made by another process meanwhile: it must pass the same check as any existing one.
                ensure_private_dir(path)
        except OSError as exc:
            raise StoreError(f"cannot create the directory {path}: {exc.strerror or exc}") from exc


def read_private(
    path: Path, *, secret: bool = False, limit: int = 64 * 1024 * 1024, tail: bool = False
) -> bytes | None:
    """The bytes of regauth's file ``path``, None if it does not exist; refused if it or its directory
    is not private (``check_private``). Larger than ``limit`` is an error: no file of ours is, but
    a log, for which ``tail`` gives its last ``limit`` bytes instead."""
    try:
        parent = os.stat(path.parent)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    check_private(path.parent, parent, directory=True)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        check_private(path, st, secret=secret, fd=fd)
        if tail:
            handle.seek(max(0, st.st_size - limit))
            return handle.read(limit)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise StoreError(f"cannot read {path}: it is larger than {limit} bytes")
    return data


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    ensure_private_dir(path.parent)
    remove_stale_temporaries(path)
    try:
        _atomic_write(path, data, mode)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}; it was left as it was") from exc


def _temp_name(path: Path) -> Path:
    # Unpredictable, so nobody can plant a link there in advance (O_EXCL refuses one anyway).
    return path.with_name(f".{path.name}.{os.urandom(8).hex()}{_TEMP_SUFFIX}")


def _open_temp(path: Path, mode: int) -> tuple[Path, int]:
    """A new temporary beside ``path``, created and locked by this process."""
    while True:
        tmp = _temp_name(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, mode)
        # Exactly ``mode``: a umask such as 0o277 would leave the file unreadable to its owner later.
        os.fchmod(fd, mode)
        # The lock tells `remove_stale_temporaries` in other processes that the writer is alive.
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:
            return tmp, fd
        # Removed as stale between our create and our lock: that name is gone, take another.
        os.close(fd)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    tmp, fd = _open_temp(path, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            # Renamed while still locked, so no other process takes it for a dead writer's.
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # Make the rename itself durable: without this a crash can bring back the old file.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temporaries(path: Path) -> int:
    """Remove the temporaries of writes to ``path`` whose writer died (they hold secrets); return how
    many. A live writer holds a lock on its temporary, so only the dead ones are taken."""
    prefix = f".{path.name}."
    removed = 0
    try:
        names = os.listdir(path.parent)
    except OSError:
        return 0
    for name in names:
        if name.startswith(prefix) and name.endswith(_TEMP_SUFFIX) and _remove_if_dead(path.parent / name):
            removed += 1
    return removed


def _remove_if_dead(tmp: Path) -> bool:
    try:
        fd = os.open(tmp, os.O_RDONLY | os.O_NONBLOCK | _NO_FOLLOW)
    except FileNotFoundError:
        return False
    except OSError:
        # A symbolic link or a FIFO under a temporary's name is nobody's write: remove the name.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # its writer is alive
        # Still the file we locked? A writer that finished renamed it away; never unlink another.
        try:
            same = os.path.samestat(os.fstat(fd), os.lstat(tmp))
        except FileNotFoundError:
            return False
        if same:
            os.unlink(tmp)
        return same
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block."""
    ensure_private_dir(path.parent)
    try:
        # Read-only is enough for flock, and still opens a lock file that a umask left 0400.
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | _NO_FOLLOW, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot open the lock file {path}: {_reason(exc)}") from exc
    try:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise StoreError(f"cannot lock {path}: {exc.strerror}") from exc
                if time.monotonic() >= deadline:
                    raise StoreError(f"timed out after {timeout:.0f}s waiting for the lock {path}") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        yield
    finally:
        os.close(fd)


def open_append(path: Path) -> int:
    """A descriptor appending to regauth's file ``path`` (a log), created 0600; never through a link."""
    ensure_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NO_FOLLOW, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot open {path}: {_reason(exc)}") from exc
    # Exactly 0600 whatever the umask (0o277 would make the next open fail) or an older mode.
    os.fchmod(fd, 0o600)
    return fd


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link, which regauth does not follow there"
    return str(exc.strerror or exc)
