"""A damaged file in the cache dir costs the helper's get what an empty cache costs, never a traceback.

The cache dir holds regauth's remembered "no ambient credentials" (``providers.absent``): a disk full
mid-write elsewhere, a hand edit or another version may leave anything there. Here a real helper
process asks for an ECR host on a machine with no AWS credentials (the metadata stand-in says so at
once), so the search runs, fails, and is remembered; then the entry is damaged and asked again.
"""

from __future__ import annotations

import subprocess

import pytest

from regauth.config import Settings

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
NOT_FOUND = b"credentials not found in native keychain\n"


def get(helper_exe: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([helper_exe, "get"], input=ECR.encode(), capture_output=True, timeout=120)


@pytest.mark.parametrize(
    "damaged",
    [
        b'{"until": 1' + b"0" * 400 + b', "message": "m"}',  # no float holds it
        b"[" * 100_000 + b"]" * 100_000,  # nested past json's stack
        b'{"until": 9e9, "message": "m"',  # cut short
        b"",
    ],
)
def test_a_damaged_absence_entry_is_searched_again(
    settings: Settings, helper_exe: str, damaged: bytes
) -> None:
    first = get(helper_exe)
    assert (first.returncode, first.stdout) == (1, NOT_FOUND), first.stderr
    entries = list((settings.cache_dir / "absent").glob("*.json"))
    assert len(entries) == 1
    entries[0].write_bytes(damaged)
    again = get(helper_exe)
    assert (again.returncode, again.stdout) == (1, NOT_FOUND), again.stderr
    assert b"Traceback" not in again.stderr
    assert b"no AWS credentials" in again.stderr or b"ecr provider" in again.stderr, again.stderr
