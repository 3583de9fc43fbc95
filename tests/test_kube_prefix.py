"""Several identities for one registry: per-repository-prefix records, the longest prefix winning.

The kubelet plugin (which knows the image) uses them; the docker helper protocol only ever sends a host,
so the helper answers with the host-wide record, on its fast path and its general one alike.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from support.records import add_record

from regauth.config import Settings
from regauth.errors import ConflictError, UsageError
from regauth.registries import RegistryBook

HOST = "ghcr.io"


@pytest.fixture
def book(settings: Settings) -> RegistryBook:
    book = RegistryBook.for_settings(settings)
    # Prefix records first: a lookup by host must not take the first record it sees for the host.
    add_record(book, HOST, "pw-a", name="org-a", username="a", prefix="org-a")
    add_record(book, HOST, "pw-team", name="org-a-team", username="t", prefix="org-a/team")
    add_record(book, HOST, "pw-host", name="ghcr", username="h")
    return book


@pytest.mark.parametrize(
    ("repository", "name"),
    [
        ("org-a/team/app", "org-a-team"),
        ("org-a/team", "org-a-team"),
        ("org-a/app", "org-a"),
        ("org-a", "org-a"),
        # whole path components: org-ab is not below org-a
        ("org-ab/app", "ghcr"),
        ("org-a-team/app", "ghcr"),
        ("other/app", "ghcr"),
    ],
)
def test_the_longest_prefix_wins(book: RegistryBook, repository: str, name: str) -> None:
    record = book.for_image(HOST, repository)
    assert record is not None and record.name == name


def test_the_host_is_the_host_wide_record_and_without_one_nothing(book: RegistryBook) -> None:
    record = book.for_host(HOST)
    assert record is not None and record.name == "ghcr"
    book.remove("ghcr")
    assert book.for_host(HOST) is None
    assert book.for_image(HOST, "other/app") is None
    found = book.for_image(HOST, "org-a/x")
    assert found is not None and found.label == "registry 'org-a' (ghcr.io/org-a)"


def test_one_record_per_host_and_prefix(book: RegistryBook) -> None:
    with pytest.raises(ConflictError, match="ghcr.io/org-a is already configured as registry 'org-a'"):
        add_record(book, HOST, "x", name="again", username="x", prefix="org-a")
    with pytest.raises(ConflictError, match="ghcr.io is already configured"):
        add_record(book, HOST, "x", name="again", username="x")
    with pytest.raises(UsageError):
        add_record(book, HOST, "x", name="bad", username="x", prefix="Org/../x")


@pytest.mark.parametrize("fast", [True, False])
def test_the_helper_answers_with_the_host_wide_record(
    book: RegistryBook, helper_exe: str, fast: bool
) -> None:
    env = None
    if not fast:
        import os

        # Logging asked for: the fast path declines, the general one answers.
        env = dict(os.environ, REGAUTH_LOG_LEVEL="DEBUG")
    got = subprocess.run([helper_exe, "get"], input=HOST, capture_output=True, text=True, timeout=60, env=env)
    assert got.returncode == 0, got.stdout + got.stderr
    assert json.loads(got.stdout)["Username"] == "h"


def test_a_logout_takes_only_the_host_wide_login(book: RegistryBook, helper_exe: str) -> None:
    erased = subprocess.run([helper_exe, "erase"], input=HOST, capture_output=True, text=True, timeout=60)
    assert erased.returncode == 0, erased.stdout + erased.stderr
    names = {r.name: r.username for r in book.all()}
    assert names["org-a"] == "a" and names["org-a-team"] == "t"


def run_regauth(regauth_exe: str, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([regauth_exe, *argv], input=stdin, capture_output=True, text=True, timeout=60)


def test_registry_add_with_a_prefix_url_and_which_shows_the_choice(
    regauth_exe: str, settings: Settings
) -> None:
    add = ["registry", "add", "--no-validate", "--username"]
    assert (
        run_regauth(
            regauth_exe, *add, "h", "--password-stdin", "ghcr", "--url", "ghcr.io", stdin="pw-h"
        ).returncode
        == 0
    )
    added = run_regauth(
        regauth_exe, *add, "a", "--password-stdin", "org-a", "--url", "https://ghcr.io/org-a/", stdin="pw-a"
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("added registry 'org-a' (ghcr.io/org-a, ")
    # An API path is the host itself, as Docker clients take it: no prefix, so a conflict.
    again = run_regauth(
        regauth_exe, *add, "x", "--password-stdin", "x", "--url", "https://ghcr.io/v2/", stdin="p"
    )
    assert again.returncode != 0 and "ghcr.io is already configured as registry 'ghcr'" in again.stderr
    listed = run_regauth(regauth_exe, "registry", "list")
    assert "ghcr.io/org-a" in listed.stdout
    for target, name in (
        ("ghcr.io/org-a/app:1", "org-a"),
        ("ghcr.io/org-ab/app", "ghcr"),
        ("ghcr.io", "ghcr"),
    ):
        which = run_regauth(regauth_exe, "registry", "which", target, "--json")
        assert which.returncode == 0, which.stderr
        assert json.loads(which.stdout)["record"] == name, target
    moved = run_regauth(regauth_exe, "registry", "update", "org-a", "--no-validate", "--url", "ghcr.io/org-b")
    assert moved.returncode == 0, moved.stderr
    record = RegistryBook.for_settings(settings).get("org-a")
    assert (record.registry, record.prefix) == ("ghcr.io", "org-b")
