"""``list`` names exactly what ``get`` answers, with the username ``get`` answers with.

Legacy ``docker build`` asks ``get`` for every server ``list`` names and aborts on the first failure; a
client that lists to show logins must not show one the helper does not use. Per-prefix records (for
clients that know the image: the proxy, the kubelet plugin) are never what a helper ``get`` answers.
"""

from __future__ import annotations

import json
import subprocess

from support.records import add_record

from regauth.config import Settings


def helper(exe: str, action: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([exe, action], input=stdin, capture_output=True, timeout=60, check=False)


def listed_and_got(exe: str) -> tuple[dict[str, str], dict[str, str]]:
    listed = json.loads(helper(exe, "list", b"unused").stdout)
    got = {}
    for server in listed:
        answer = helper(exe, "get", server.encode())
        assert answer.returncode == 0, (server, answer.stdout)
        got[server] = json.loads(answer.stdout)["Username"]
    return listed, got


def test_a_host_with_only_prefix_records_is_not_listed(settings: Settings, helper_exe: str) -> None:
    add_record(settings, "ghcr.io", "pa", name="org-a", username="alice", prefix="org-a")
    add_record(settings, "registry.example", "pw", username="u")
    listed, got = listed_and_got(helper_exe)
    assert listed == got == {"registry.example": "u"}


def test_the_host_wide_username_is_listed_beside_prefix_records(settings: Settings, helper_exe: str) -> None:
    add_record(settings, "ghcr.io", "pa", name="org-a", username="alice", prefix="org-a")
    add_record(settings, "ghcr.io", "h", name="ghcr", username="hostwide")
    add_record(settings, "ghcr.io", "pb", name="org-b", username="bob", prefix="org-b")
    listed, got = listed_and_got(helper_exe)
    assert listed == got == {"ghcr.io": "hostwide"}
