"""Reading and writing a client's configuration file in place, as its owner left it.

Unlike regauth's own files (``fsutil``), these belong to the user or to the system: their mode and
owner are kept, and a symbolic link (a dotfiles checkout, say) is followed so the link stays a link and
its target gets the new content, as the Docker CLI's own save does.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import NamedTuple

from regauth.errors import ConfigError

MAX_BYTES = 16 * 1024 * 1024  # a client's config is a few KiB; anything far larger is not one


class FileState(NamedTuple):
    """A file as found: ``data`` None when it does not exist."""

    path: Path  # as the client names it (may be a link)
    target: Path  # where the bytes are: the link followed
    data: bytes | None
    mode: int | None
    uid: int | None
    gid: int | None


def read_state(path: Path) -> FileState:
    target = Path(os.path.realpath(path))
    try:
        # O_NONBLOCK: a FIFO in a file's place must not wait for a writer (regular files ignore it).
        with open(os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
            st = os.fstat(handle.fileno())
            if os.path.isdir(target):  # os.open opens a directory too; open() said IsADirectoryError
                raise IsADirectoryError(target)
            if not _is_regular(st.st_mode):
                raise ConfigError(f"{path} is not a regular file")
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return FileState(path, target, None, None, None, None)
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_BYTES} bytes: not a client configuration")
    return FileState(path, target, data, st.st_mode & 0o7777, st.st_uid, st.st_gid)


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


def write_in_place(state: FileState, data: bytes, new_mode: int, dir_mode: int = 0o755) -> list[Path]:
    """Replace ``state.target`` with ``data`` atomically (a temporary beside it, then a rename), with
    the old file's mode and owner, or ``new_mode`` and our own for a new file. Returns the directories
    it had to create, outermost first (an undo removes them again)."""
    target = state.target
    created = make_parents(target.parent, dir_mode)
    mode = new_mode if state.mode is None else state.mode
    tmp = target.with_name(f".{target.name}.{os.urandom(6).hex()}.regauth-tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if state.uid is not None and state.gid is not None:
                _keep_owner(fd, state, target)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        # The new bytes were made from the file as read: a client that rewrote it since (a `docker
        # login`, an editor) would lose its change under them. The clients take no lock to wait on.
        if _current(target) != state.data:
            os.unlink(tmp)
            raise ConfigError(
                f"{target} changed while regauth was editing it (another program wrote it); "
                "it was left as that program wrote it: run the command again"
            )
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}; it was left as it was") from exc
    _sync_dir(target.parent)
    return created


def _current(target: Path) -> bytes | None:
    try:
        with open(target, "rb") as handle:
            return handle.read(MAX_BYTES + 1)
    except (FileNotFoundError, IsADirectoryError):
        return None


def _keep_owner(fd: int, state: FileState, target: Path) -> None:
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) == (state.uid, state.gid):
        return
    try:
        os.fchown(fd, state.uid if state.uid is not None else -1, state.gid if state.gid is not None else -1)
    except PermissionError:
        # Replacing it would hand another user's file to us: say so rather than change its owner.
        raise ConfigError(
            f"{target} belongs to uid {state.uid}: run this as that user (or root) so it keeps its owner"
        ) from None


def remove_file(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot remove {path}: {exc.strerror or exc}") from exc
    _sync_dir(path.parent)


def make_parents(directory: Path, mode: int = 0o755) -> list[Path]:
    """Create ``directory`` and its missing parents with ``mode`` (0700 for a directory of auth
    files, as the clients make theirs); return those made, outermost first."""
    missing = [p for p in (directory, *directory.parents) if not p.exists()]
    made: list[Path] = []
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
            os.chmod(path, mode)  # exactly, whatever the umask
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigError(f"cannot create the directory {path}: {exc.strerror or exc}") from exc
        made.append(path)
    return made


def _sync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
