"""Another local user against regauth's files, each attack played for real in the test's tmp dir.

* directories regauth creates are 0700 whatever the umask;
* a directory or key file another user owns, or that group or others can write, is refused in one
  line naming it, by the CLI and by the helper (whose fast ``get`` declines, leaving the error to
  the general path);
* a symbolic link planted at a temporary's, the lock's or the log's path is never written through;
* a killed writer's temporary (it holds secrets) is removed by the next write, a live one's is not.

"Another user": as root the test chowns to an unused uid; as anyone else it points the path at a
directory or file that root owns, which is another user's to them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support.records import add_record

from regauth import fsutil
from regauth.config import Settings
from regauth.errors import StoreError
from regauth.helper.fastget import answer
from regauth.logs import append_log_line, setup_logging
from regauth.registries import RegistryBook

OTHER_UID = 54321
HOST = "registry.example"
SECRET = "local-attacker-SECRET-42"
TIMEOUT = 60


def run(exe: str, *argv: str, stdin: str = "", umask: int | None = None) -> subprocess.CompletedProcess[str]:
    preexec: Callable[[], object] | None = None if umask is None else (lambda: os.umask(umask))
    return subprocess.run(
        [exe, *argv], input=stdin, capture_output=True, text=True, timeout=TIMEOUT, preexec_fn=preexec
    )


def assert_refused(done: subprocess.CompletedProcess[str], path: Path, channel: str = "stderr") -> None:
    text = getattr(done, channel)
    assert done.returncode == 1, done
    assert len(text.splitlines()) == 1 and f"refusing to use {path}" in text, text
    assert "Traceback" not in done.stdout + done.stderr and SECRET not in done.stdout + done.stderr


def make_foreign(path: Path) -> Path:
    """Make ``path`` (an existing file or directory) another user's; return what is checked."""
    if os.geteuid() == 0:
        os.chown(path, OTHER_UID, OTHER_UID)
        return path
    # Not root: swap in a link to root's own file or directory of the same kind.
    target = Path("/") if path.is_dir() else Path("/etc/hostname")
    if path.is_dir():
        os.rename(path, path.with_name(path.name + ".moved"))
    else:
        path.unlink()
    path.symlink_to(target)
    return path


# --- directories are created private -------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_directories_are_0700_whatever_the_umask(regauth_exe: str, settings: Settings, umask: int) -> None:
    done = run(
        regauth_exe,
        *("registry", "add", "reg", "--url", HOST, "--username", "u", "--password-stdin", "--no-validate"),
        stdin=SECRET,
        umask=umask,
    )
    assert done.returncode == 0, done.stderr
    for directory in (settings.config_dir, settings.data_dir):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    for file in (settings.registries_file, settings.secrets_file, settings.key_file):
        assert file.stat().st_mode & 0o777 == 0o600, file


def test_missing_parents_are_created_0700_too(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        fsutil.ensure_private_dir(tmp_path / "a" / "b" / "c")
    finally:
        os.umask(old)
    for path in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert path.stat().st_mode & 0o777 == 0o700, path


# --- another user's or a loose directory or file is refused ---------------------------------------


def _loosen(mode: int) -> Callable[[Path], Path]:
    def loosen(path: Path) -> Path:
        path.chmod(mode)
        return path

    return loosen


CASES = {
    "config dir owned by another user": (lambda s: s.config_dir, make_foreign),
    "config dir group-writable": (lambda s: s.config_dir, _loosen(0o770)),
    "config dir world-writable": (lambda s: s.config_dir, _loosen(0o757)),
    "data dir owned by another user": (lambda s: s.data_dir, make_foreign),
    "data dir group-writable": (lambda s: s.data_dir, _loosen(0o770)),
    "key file owned by another user": (lambda s: s.key_file, make_foreign),
    "key file group-writable": (lambda s: s.key_file, _loosen(0o620)),
    "key file group-readable": (lambda s: s.key_file, _loosen(0o640)),
    "registries file world-writable": (lambda s: s.registries_file, _loosen(0o602)),
    "secrets file group-writable": (lambda s: s.secrets_file, _loosen(0o660)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unsafe_files_and_dirs_are_refused_everywhere(
    case: str, settings: Settings, regauth_exe: str, helper_exe: str
) -> None:
    add_record(settings, HOST, SECRET, name="reg", username="u")
    assert answer(HOST.encode(), os.environ) is not None
    which, attack = CASES[case]
    path = attack(which(settings))
    # The fast get declines; the general path names the path in its one-line error.
    assert answer(HOST.encode(), os.environ) is None
    assert_refused(run(helper_exe, "get", stdin=HOST), path, channel="stdout")
    if path in (settings.config_dir, settings.registries_file):
        # list reads the records alone; show reads the secret store too.
        assert_refused(run(regauth_exe, "registry", "list"), path)
    assert_refused(run(regauth_exe, "registry", "show", "reg"), path)


def test_a_private_group_readable_directory_is_fine(settings: Settings, helper_exe: str) -> None:
    # Only write access lets another user change what regauth trusts; reading a directory does not.
    add_record(settings, HOST, SECRET, name="reg", username="u")
    settings.config_dir.chmod(0o750)
    done = run(helper_exe, "get", stdin=HOST)
    assert done.returncode == 0 and json.loads(done.stdout)["Secret"] == SECRET


def test_a_foreign_directory_is_refused_before_it_is_written(settings: Settings, regauth_exe: str) -> None:
    settings.config_dir.mkdir(parents=True, mode=0o700)
    path = make_foreign(settings.config_dir)
    done = run(regauth_exe, "registry", "add", "reg", "--url", HOST, "--no-validate")
    assert_refused(done, path)
    if os.geteuid() == 0:
        assert list(settings.config_dir.iterdir()) == []


# --- no write through a planted symbolic link -----------------------------------------------------


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of the user's that an attacker wants regauth to overwrite or append to."""
    path = tmp_path / "victim"
    path.write_text("precious\n")
    return path


def test_a_link_at_the_old_predictable_temporary_is_not_followed(settings: Settings, victim: Path) -> None:
    settings.config_dir.mkdir(parents=True, mode=0o700)
    # Where regauth used to write its temporary: a name anyone could compute from the PID.
    planted = settings.config_dir / f".registries.json.{os.getpid()}.tmp"
    planted.symlink_to(victim)
    add_record(settings, HOST, SECRET, name="reg", username="u")
    assert victim.read_text() == "precious\n"
    assert RegistryBook.for_settings(settings).get("reg").username == "u"


def test_a_link_raced_into_the_temporary_name_is_refused(
    settings: Settings, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attacker who guessed the random name and planted a link just before the create."""
    add_record(settings, HOST, SECRET, name="reg", username="u")
    before = settings.registries_file.read_bytes()
    guessed = settings.config_dir / ".registries.json.guessed.tmp"

    def attacker_wins_the_race(path: Path) -> Path:
        # The name is chosen, the link appears, then regauth creates the file.
        guessed.symlink_to(victim)
        return guessed

    monkeypatch.setattr(fsutil, "_temp_name", attacker_wins_the_race)
    with pytest.raises(StoreError, match="cannot write .*registries.json"):
        RegistryBook.for_settings(settings).update("reg", {"username": "v"})
    monkeypatch.undo()
    assert victim.read_text() == "precious\n"
    assert settings.registries_file.read_bytes() == before


def test_a_link_at_the_lock_file_is_refused(settings: Settings, victim: Path, regauth_exe: str) -> None:
    settings.config_dir.mkdir(parents=True, mode=0o700)
    lock = settings.config_dir / "registries.json.lock"
    lock.symlink_to(victim)
    done = run(regauth_exe, "registry", "add", "reg", "--url", HOST, "--no-validate")
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert f"cannot open the lock file {lock}" in done.stderr and "symbolic link" in done.stderr
    assert victim.read_text() == "precious\n"
    assert not settings.registries_file.exists()


def test_a_link_at_the_log_file_is_refused(settings: Settings, victim: Path, helper_exe: str) -> None:
    settings.state_dir.mkdir(parents=True, mode=0o700)
    settings.log_file.symlink_to(victim)
    with pytest.raises(StoreError, match="symbolic link"):
        append_log_line(settings, "a line")
    with pytest.raises(StoreError, match="symbolic link"):
        setup_logging(settings, to_file=True)
    # The helper's not-found fallback writes its cause to the log: refused, said on stderr, no crash.
    done = subprocess.run(
        [helper_exe, "get"],
        input="123456789012.dkr.ecr.us-east-1.amazonaws.com",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=dict(os.environ, AWS_EC2_METADATA_DISABLED="true"),
    )
    assert done.stdout == "credentials not found in native keychain\n"
    assert f"cannot write the log file {settings.log_file}" in done.stderr and "Traceback" not in done.stderr
    assert victim.read_text() == "precious\n"


# --- a killed writer's temporaries are removed by the next write ---------------------------------

_WRITER = """
import os, sys, time
from pathlib import Path
from regauth import fsutil
tmp, fd = fsutil._open_temp(Path(sys.argv[1]), 0o600)
os.write(fd, sys.argv[2].encode())
print(tmp, flush=True)
time.sleep(120)
"""


def start_writer(target: Path) -> tuple[subprocess.Popen[str], Path]:
    """A writer stopped half-way: its temporary is created, locked and holds a secret."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(target), SECRET], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_a_killed_writers_temporary_is_removed_by_the_next_write(settings: Settings) -> None:
    add_record(settings, HOST, SECRET, name="reg", username="u")
    proc, tmp = start_writer(settings.registries_file)
    try:
        assert tmp.read_text() == SECRET
        # While the writer lives, its temporary is its own.
        RegistryBook.for_settings(settings).update("reg", {"username": "v"})
        assert temporaries(settings.config_dir) == [tmp.name]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
        assert proc.stdout is not None
        proc.stdout.close()
    assert tmp.exists()
    RegistryBook.for_settings(settings).update("reg", {"username": "w"})
    assert temporaries(settings.config_dir) == []
    assert RegistryBook.for_settings(settings).get("reg").username == "w"


def test_leftovers_of_every_kind_go_with_the_next_write(settings: Settings, regauth_exe: str) -> None:
    """Leftovers as an older regauth (PID names) or a crash left them, beside both files with secrets."""
    add_record(settings, HOST, SECRET, name="reg", username="u")
    leftovers = [
        settings.config_dir / ".registries.json.12345.tmp",
        settings.config_dir / ".registries.json.0123456789abcdef.tmp",
        settings.data_dir / ".secrets.enc.12345.tmp",
    ]
    for path in leftovers:
        path.write_text(SECRET)
    unrelated = settings.config_dir / ".registries.json.bak"
    unrelated.write_text("mine")
    done = run(
        regauth_exe,
        "registry",
        "update",
        "reg",
        "--username",
        "v",
        "--password-stdin",
        "--no-validate",
        stdin="new-secret",
    )
    assert done.returncode == 0, done.stderr
    assert [p for p in leftovers if p.exists()] == []
    assert unrelated.read_text() == "mine"


def test_a_removed_temporary_is_never_mistaken_for_the_new_file(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's lock closes the race with a remover: a temporary removed between its create and
    its lock (the remover, another process, is played here inside the writer's own flock call) is
    given up for a new one, and the write still lands."""
    settings.config_dir.mkdir(parents=True, mode=0o700)
    target = settings.config_dir / "file"
    real_flock = fsutil.fcntl.flock
    removed: list[str] = []

    def remover_wins(fd: int, op: int) -> None:
        if not removed:
            name = next(n for n in os.listdir(settings.config_dir) if n.endswith(".tmp"))
            os.unlink(settings.config_dir / name)
            removed.append(name)
        real_flock(fd, op)

    monkeypatch.setattr(fsutil.fcntl, "flock", remover_wins)
    fsutil.atomic_write(target, b"content")
    monkeypatch.undo()
    assert removed and target.read_bytes() == b"content"
    assert temporaries(settings.config_dir) == []
