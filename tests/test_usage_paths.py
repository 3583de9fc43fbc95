"""Where the last-use marks are made and dropped: a pull through the real proxy (once a minute a record
at most), the kubelet plugin's answer, ``registry remove``; and ``since``, when marks began here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

from support.image import MANIFEST_V2
from support.kubelet import request, run_plugin
from support.proxy import caching_proxy_before
from support.records import add_record
from support.registry import RegistryFixture

from regauth import usage
from regauth.config import Settings
from regauth.registries import RegistryBook


def _pull_manifest(proxy_url: str, name: str, fx: RegistryFixture) -> None:
    url = f"{proxy_url}/v2/{name}/{fx.repository}/manifests/{fx.tag}"
    with urllib.request.urlopen(
        urllib.request.Request(url, headers={"Accept": MANIFEST_V2}), timeout=30
    ) as resp:
        assert resp.status == 200


def test_a_pull_through_the_proxy_marks_its_record_once_a_minute(
    regauth_exe: str, settings: Settings, tmp_path: Path, registry_token: RegistryFixture
) -> None:
    state = str(settings.state_dir)
    with caching_proxy_before(regauth_exe, settings, tmp_path, {"tok": registry_token}) as proxy:
        [record] = RegistryBook.for_settings(settings).all()
        assert usage.last_used(state, record.id) is None and usage.since(state) is None
        _pull_manifest(proxy.url, "tok", registry_token)
        first = usage.last_used(state, record.id)
        assert first is not None and usage.since(state) is not None
        # Set the mark back: within the minute, more pulls do not touch it again (one utime a minute).
        path = settings.state_dir / usage.USED_DIR / record.id
        os.utime(path, (first - 1000, first - 1000))
        for _ in range(3):
            _pull_manifest(proxy.url, "tok", registry_token)
        assert usage.last_used(state, record.id) == first - 1000


def test_the_marks_of_a_long_running_process_are_throttled(tmp_path: Path) -> None:
    marks = usage.Marks(str(tmp_path), every=3600.0)
    marks.mark("abc")
    first = usage.last_used(str(tmp_path), "abc")
    assert first is not None
    os.utime(tmp_path / usage.USED_DIR / "abc", (5.0, 5.0))
    marks.mark("abc")
    assert usage.last_used(str(tmp_path), "abc") == 5.0
    # Another record is its own: marked at once.
    marks.mark("def")
    assert usage.last_used(str(tmp_path), "def") is not None
    # A process that marks every time (every=0) touches it again.
    usage.Marks(str(tmp_path), every=0.0).mark("abc")
    assert usage.last_used(str(tmp_path), "abc") != 5.0


def test_the_kubelet_plugin_marks_the_record_that_answered(settings: Settings) -> None:
    record = add_record(settings, "registry.lab:5000", "s3cret-kube", username="ci")
    other = add_record(settings, "other.lab:5000", "s3cret-other", username="ci")
    done = run_plugin(request("registry.lab:5000/team/app:1.0"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["auth"]
    state = str(settings.state_dir)
    assert usage.last_used(state, record.id) is not None
    assert usage.last_used(state, other.id) is None


def test_registry_remove_forgets_the_mark(settings: Settings, regauth_exe: str) -> None:
    record = add_record(settings, "registry.lab:5000", None, name="lab")
    state = str(settings.state_dir)
    usage.mark_used(state, record.id)
    assert usage.last_used(state, record.id) is not None
    exe = shutil.which("regauth")
    assert exe
    done = subprocess.run(
        [exe, "registry", "remove", "lab"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert usage.last_used(state, record.id) is None
    # When marks began here stays: it is the machine's, not the record's.
    assert usage.since(state) is not None


def test_put_back(tmp_path: Path) -> None:
    state = str(tmp_path)
    usage.mark_used(state, "abc")
    usage.put_back(state, "abc", 1234.0)
    assert usage.last_used(state, "abc") == 1234.0
    usage.put_back(state, "abc", None)
    assert usage.last_used(state, "abc") is None
    usage.put_back(state, "../x", 1.0)  # no path out of the marks' directory
    assert not (tmp_path.parent / "x").exists()


def test_a_mark_that_cannot_be_removed_costs_registry_remove_nothing(
    settings: Settings, regauth_exe: str
) -> None:
    """Forgetting a mark is best effort like marking (a read-only state dir on a fleet instance; here a
    directory in the mark's place, which stops root too): the record is removed and says so, exit 0,
    no traceback after the record is already gone."""
    record = add_record(settings, "registry.lab:5000", None, name="lab")
    blocker = settings.state_dir / usage.USED_DIR / record.id
    blocker.mkdir(parents=True)
    done = subprocess.run(
        [regauth_exe, "registry", "remove", "lab"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr[-300:]
    assert "removed registry 'lab'" in done.stdout
