"""Several proxies over one read-only set of records and secrets, as a fleet mounts it from a Secret.

The set is laid out as the kubelet writes a Secret volume: a 1777 directory holding ``..data`` (a link to
a timestamped directory with the files) and a link per file into it, the records file and a
``REGAUTH_PASSPHRASE``-sealed file store beside the registry's CA. Each process sees it through a
read-only bind mount in a mount namespace of its own (``unshare -m``; as a user, in a user namespace
too), because chmod alone does not stop root, nor an owner of the 1777 directory. As root the
processes run as another uid (65534) over root's files, as in a pod with ``runAsUser``: the ownership
rule for read-only mounts is what lets them in, and without the mount the same set is refused.

Two ``regauth proxy`` instances, each with its own cache and state dirs, pull from the real
htpasswd-TLS and token registries; the set is byte for byte what it was, nothing was added to it,
and the token cache, which cannot write the store, keeps its tokens in memory with one warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.image import PushedImage
from support.network_guard import site_dir
from support.proxy import ProxyProcess
from support.records import add_record
from support.registry import RegistryFixture

from regauth.config import load_settings
from regauth.registries import RegistryBook

PASSPHRASE = "fleet-PASSPHRASE-not-for-logs-7f3a"
AS_ROOT = os.geteuid() == 0
# Who the proxies run as when the test is root: no user of the machine, as a pod's runAsUser.
POD_UID = 65534
TIMEOUT = 120


@dataclass
class ReadOnlySet:
    base: Path  # XDG_CONFIG_HOME and XDG_DATA_HOME of every instance
    volume: Path  # base/regauth: the mounted volume (config dir and data dir in one)
    wrapper: Path  # runs a command with the volume mounted read-only (and as POD_UID, as root)
    regauth: Path  # runs regauth so (what ProxyProcess starts)
    root: Path  # everything of the test: under the test's tmp dir, or a 0755 temporary one as root

    def snapshot(self) -> dict[str, str]:
        """Every name under the volume, with its kind and content (a link's target)."""
        found: dict[str, str] = {}
        for path in sorted(self.volume.rglob("*")):
            rel = str(path.relative_to(self.volume))
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                found[rel] = f"dir {path.stat().st_mode & 0o7777:o}"
            else:
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        return found


def _wrapper(path: Path, volume: Path) -> Path:
    if AS_ROOT:
        inner = f'exec setpriv --reuid={POD_UID} --regid={POD_UID} --clear-groups "$@"'
        outer = "unshare -m --propagation private"
    else:
        inner, outer = 'exec "$@"', "unshare -U -r -m --propagation private"
    path.write_text(
        "#!/bin/sh\n# The volume read-only for this process alone, then the command.\n"
        f'exec {outer} sh -c \'mount --bind -o ro "$0" "$0" && {inner}\' {volume} "$@"\n'
    )
    path.chmod(0o755)
    return path


@pytest.fixture
def ro_set(
    tmp_path: Path, registry_htpasswd: RegistryFixture, registry_token: RegistryFixture, regauth_exe: str
) -> Iterator[ReadOnlySet]:
    # As root, the pod's uid must reach the set: pytest's tmp dirs are 0700, so a 0755 one of our own.
    root = Path(tempfile.mkdtemp(prefix="regauth-ro-")) if AS_ROOT else tmp_path / "fleet"
    root.mkdir(exist_ok=True)
    root.chmod(0o755)
    try:
        base = root / "set"
        volume = base / "regauth"
        stamp = "..2026_12_01_10_00_00.123456789"
        staged = volume / stamp
        # Written by regauth itself, as an operator would before turning the files into a Secret.
        env = {
            "HOME": str(root / "operator"),
            "XDG_CONFIG_HOME": str(root / "operator-set"),
            "XDG_DATA_HOME": str(root / "operator-set"),
            "XDG_CACHE_HOME": str(root / "operator" / "cache"),
            "XDG_STATE_HOME": str(root / "operator" / "state"),
            "REGAUTH_STORE": "file",
            "REGAUTH_PASSPHRASE": PASSPHRASE,
        }
        operator = load_settings(env)
        book = RegistryBook.for_settings(operator)
        for name, fx in (("htp", registry_htpasswd), ("tok", registry_token)):
            add_record(
                book, fx.host, fx.password, name=name, username=fx.username, ca_file=str(volume / "ca.crt")
            )
        staged.mkdir(parents=True)
        shutil.copyfile(operator.registries_file, staged / "registries.json")
        shutil.copyfile(operator.secrets_file, staged / "secrets.enc")
        assert registry_htpasswd.ca_file is not None
        shutil.copyfile(registry_htpasswd.ca_file, staged / "ca.crt")
        (volume / "..data").symlink_to(stamp)
        for name in ("registries.json", "secrets.enc", "ca.crt"):
            (volume / name).symlink_to(f"..data/{name}")
            (staged / name).chmod(0o644)
        staged.chmod(0o755)
        # The Secret volume's own directory: root's tmpfs, 1777.
        volume.chmod(0o1777)
        base.chmod(0o755)
        wrapper = _wrapper(root / "ro-run", volume)
        regauth = root / "ro-regauth"
        regauth.write_text(f'#!/bin/sh\nexec {wrapper} {regauth_exe} "$@"\n')
        regauth.chmod(0o755)
        yield ReadOnlySet(base, volume, wrapper, regauth, root)
    finally:
        if AS_ROOT:
            shutil.rmtree(root, ignore_errors=True)


def _instance_env(monkeypatch: pytest.MonkeyPatch, ro: ReadOnlySet, name: str) -> Path:
    """Set this process's environment for the next child: the shared set, private writable dirs."""
    own = ro.root / name
    for sub in ("home", "cache", "state", "proxy-cache"):
        (own / sub).mkdir(parents=True)
    if AS_ROOT:
        for path in [own, *own.iterdir()]:
            os.chown(path, POD_UID, POD_UID)
        # The network guard's sitecustomize, where the pod's uid can read it, and its log, writable.
        guard = site_dir(ro.root / "guard-site")
        log = ro.root / "guard.log"
        log.touch()
        log.chmod(0o666)
        guard.chmod(0o755)
        monkeypatch.setenv("PYTHONPATH", str(guard))
        monkeypatch.setenv("NETWORK_GUARD_LOG", str(log))
    monkeypatch.setenv("HOME", str(own / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(ro.base))
    monkeypatch.setenv("XDG_DATA_HOME", str(ro.base))
    monkeypatch.setenv("XDG_CACHE_HOME", str(own / "cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(own / "state"))
    monkeypatch.setenv("REGAUTH_STORE", "file")
    monkeypatch.setenv("REGAUTH_PASSPHRASE", PASSPHRASE)
    return own


def _run(argv: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def _skopeo(source: str, dest: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("skopeo")
    assert exe is not None, "skopeo is not installed; these tests need it (never skipped)"
    auth = workdir / "empty-auth.json"
    auth.write_text("{}")
    shutil.rmtree(dest, ignore_errors=True)
    argv = [exe, "copy", "--src-tls-verify=false", "--authfile", str(auth), source, f"dir:{dest}"]
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(auth)}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def _pulled(dest: Path, image: PushedImage) -> bool:
    manifest = (dest / "manifest.json").read_bytes()
    blobs = all(
        hashlib.sha256((dest / d.split(":")[1]).read_bytes()).hexdigest() == d.split(":")[1]
        for d in image.blob_digests
    )
    return "sha256:" + hashlib.sha256(manifest).hexdigest() == image.digest and blobs


def test_two_proxies_pull_over_one_read_only_set(
    ro_set: ReadOnlySet,
    registry_htpasswd: RegistryFixture,
    registry_token: RegistryFixture,
    regauth_exe: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = ro_set.snapshot()
    proxies: list[ProxyProcess] = []
    owns: list[Path] = []
    try:
        for name in ("a", "b"):
            own = _instance_env(monkeypatch, ro_set, name)
            owns.append(own)
            proc = ProxyProcess(str(ro_set.regauth), own, "--cache-dir", str(own / "proxy-cache"))
            proxies.append(proc)
        for proc in proxies:
            proc.wait_ready()
            # What each instance is: the pod's uid (as root), with the volume read-only in its view.
            status = Path(f"/proc/{proc.process.pid}/status").read_text()
            uid = next(line.split()[2] for line in status.splitlines() if line.startswith("Uid:"))
            assert int(uid) == (POD_UID if AS_ROOT else os.geteuid())
            mounts = Path(f"/proc/{proc.process.pid}/mountinfo").read_text().splitlines()
            [mount] = [line.split() for line in mounts if line.split()[4] == str(ro_set.volume)]
            assert "ro" in mount[5].split(",")
        for proc in proxies:
            for name, fx in (("htp", registry_htpasswd), ("tok", registry_token)):
                for ref in (f":{fx.tag}", f"@{fx.digest}"):
                    dest = tmp_path / "image"
                    copied = _skopeo(f"docker://{proc.host}/{name}/{fx.repository}{ref}", dest, tmp_path)
                    assert copied.returncode == 0, copied.stderr + proc.log()
                    assert _pulled(dest, fx.image), (name, ref)
    finally:
        codes = [proc.stop() for proc in proxies]
    for proc, code in zip(proxies, codes, strict=True):
        log = proc.log()
        assert code == 0, log
        assert "Traceback" not in log and PASSPHRASE not in log and "refusing" not in log, log
    # Each kept its cache in its own dir; the set is as it was, with nothing added (no store choice,
    # no lock, no temporary).
    for own in owns:
        assert any((own / "proxy-cache").rglob("*"))
    assert ro_set.snapshot() == before
    if AS_ROOT:
        assert (ro_set.root / "guard.log").read_text() == ""


_TOKEN_CACHE = """
import json, os, sys, time
from regauth.config import load_settings
from regauth.providers.base import Credential
from regauth.providers.routing import token_cache
from regauth.store.lazy import LazyStore

settings = load_settings()
store = LazyStore.for_settings(settings)
mints = []

def mint():
    mints.append(1)
    return Credential(username="AWS", secret=f"minted-{len(mints)}", expires_at=time.time() + 3600)

key = "token/ecr/123456789012.dkr.ecr.eu-west-1.amazonaws.com/0123456789abcdef"
got = [token_cache(settings, store).get_or_mint(key, mint).secret for _ in range(3)]
print(json.dumps({
    "got": got,
    "mints": len(mints),
    "stored": store.get(key),
    "records": len(store.keys()),
    "passphrase_dropped": "REGAUTH_PASSPHRASE" not in os.environ,
}))
"""


def test_the_token_cache_keeps_tokens_in_memory_over_a_read_only_store(
    ro_set: ReadOnlySet, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = ro_set.snapshot()
    own = _instance_env(monkeypatch, ro_set, "script")
    done = _run([str(ro_set.wrapper), sys.executable, "-c", _TOKEN_CACHE])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    # Minted once, served from memory after; the store, sealed with the passphrase, still opens
    # (its two record secrets), and the passphrase is gone from what children would inherit.
    assert result == {
        "got": ["minted-1"] * 3,
        "mints": 1,
        "stored": None,
        "records": 2,
        "passphrase_dropped": True,
    }
    [warning] = done.stderr.splitlines()
    assert "cannot keep minted tokens in the secret store" in warning
    assert "Read-only file system" in warning and "memory" in warning
    assert "minted-1" not in done.stderr and PASSPHRASE not in done.stderr
    assert "keeping them in this process's memory" in (own / "state" / "regauth" / "regauth.log").read_text()
    assert ro_set.snapshot() == before


def test_the_set_is_trusted_only_through_the_read_only_mount(
    ro_set: ReadOnlySet, regauth_exe: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _instance_env(monkeypatch, ro_set, "cli")
    listed = _run([str(ro_set.wrapper), regauth_exe, "registry", "list"])
    assert listed.returncode == 0, listed.stderr
    assert "htp" in listed.stdout and "tok" in listed.stdout
    # REGAUTH_STORE=auto too: the choice it probes cannot be remembered in the set, and need not be.
    monkeypatch.setenv("REGAUTH_STORE", "auto")
    shown = _run([str(ro_set.wrapper), regauth_exe, "registry", "show", "htp"])
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    monkeypatch.setenv("REGAUTH_STORE", "file")
    # A change is refused in one line, and nothing is lost.
    before = ro_set.snapshot()
    added = _run(
        [
            str(ro_set.wrapper),
            regauth_exe,
            "registry",
            "add",
            "x",
            "--url",
            "registry.example",
            "--username",
            "u",
            "--password-stdin",
            "--no-validate",
        ],
        stdin="pw-SECRET-x",
    )
    assert added.returncode != 0 and added.stderr.count("\n") == 1, added.stderr
    assert "Read-only file system" in added.stderr and "pw-SECRET-x" not in added.stderr
    assert ro_set.snapshot() == before
    # The same files with no read-only mount: root's files to another uid, or a 1777 directory, are
    # what the rule refuses on a mount others could write.
    if AS_ROOT:
        argv = ["setpriv", f"--reuid={POD_UID}", f"--regid={POD_UID}", "--clear-groups", regauth_exe]
        why = "owned by uid 0"
    else:
        argv, why = [regauth_exe], "group or others can write it"
    refused = _run([*argv, "registry", "list"])
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"refusing to use {ro_set.volume}" in refused.stderr and why in refused.stderr


def test_a_file_others_can_write_is_refused_even_read_only(
    ro_set: ReadOnlySet, regauth_exe: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mount stops writes through this path only: where the file's own bits let others change
    # it elsewhere, nothing else would notice, so those still count (a directory's do not: each name
    # in it is a file checked on its own).
    _instance_env(monkeypatch, ro_set, "cli")
    records = (ro_set.volume / "registries.json").resolve()
    records.chmod(0o666)
    refused = _run([str(ro_set.wrapper), regauth_exe, "registry", "list"])
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "refusing to use" in refused.stderr and "group or others can write it" in refused.stderr


def test_an_instance_without_the_passphrase_says_what_to_do(
    ro_set: ReadOnlySet, registry_htpasswd: RegistryFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.error
    import urllib.request

    own = _instance_env(monkeypatch, ro_set, "forgot")
    monkeypatch.delenv("REGAUTH_PASSPHRASE")
    proc = ProxyProcess(str(ro_set.regauth), own)
    try:
        proc.wait_ready()
        fx = registry_htpasswd
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{proc.url}/v2/htp/{fx.repository}/manifests/{fx.tag}", timeout=30)
        with caught.value as answer:
            [error] = json.loads(answer.read())["errors"]
        assert answer.code == 500
        assert error["message"].endswith("is encrypted with a passphrase: set REGAUTH_PASSPHRASE")
    finally:
        assert proc.stop() == 0, proc.log()
    assert "Traceback" not in proc.log()
