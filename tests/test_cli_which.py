"""``regauth registry which HOST|IMAGE``: who answers for a host, from which store, never the secret.

Through the installed script. Nothing is minted: a cloud host with no record names its provider
without a credential search (the autouse network guard would fail a test whose child left loopback).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from regauth.which import FIELDS, split_target

SECRET = "which-must-not-print-this-9"
GITHUB_TOKEN = "ghp_which-must-not-print-this-either"


def run(
    exe: str, *argv: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [exe, *argv], input=stdin, capture_output=True, text=True, timeout=60, env=env, check=False
    )


def which(exe: str, target: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    done = run(exe, "registry", "which", target, "--json", env=env)
    assert done.stderr == "", done.stderr
    assert SECRET not in done.stdout and GITHUB_TOKEN not in done.stdout
    answer = json.loads(done.stdout)
    assert tuple(answer) == FIELDS
    return done.returncode, answer


@pytest.mark.parametrize(
    ("text", "host", "image"),
    [
        ("ghcr.io", "ghcr.io", None),
        ("https://GHCR.io/v2/", "ghcr.io", None),
        ("localhost", "localhost", None),
        ("reg.example:5000", "reg.example:5000", None),
        ("[::1]:5000", "[::1]:5000", None),
        ("ubuntu", "docker.io", "docker.io/library/ubuntu:latest"),
        ("ubuntu:22.04", "docker.io", "docker.io/library/ubuntu:22.04"),
        ("ghcr.io/org/app", "ghcr.io", "ghcr.io/org/app:latest"),
        ("Reg.Example:5000/team/app:1.0", "reg.example:5000", "Reg.Example:5000/team/app:1.0"),
        ("index.docker.io/user/app", "docker.io", "docker.io/user/app:latest"),
    ],
)
def test_a_host_or_an_image(text: str, host: str, image: str | None) -> None:
    assert split_target(text) == (host, image)


def test_a_static_record_answers_from_the_store_without_the_secret(regauth_exe: str) -> None:
    add = [
        "registry",
        "add",
        "gh",
        "--url",
        "ghcr.io",
        "--username",
        "bob",
        "--password-stdin",
        "--no-validate",
    ]
    assert run(regauth_exe, *add, stdin=SECRET).returncode == 0
    for target in ("ghcr.io", "ghcr.io/org/app:1.0"):
        code, answer = which(regauth_exe, target)
        assert code == 0
        assert (
            answer["answered_by"] == "record" and answer["record"] == "gh" and answer["provider"] == "static"
        )
        assert (
            answer["username"] == "bob"
            and answer["credential"] == "its username and secret, kept in the file store"
        )
    assert which(regauth_exe, "ghcr.io/org/app:1.0")[1]["image"] == "ghcr.io/org/app:1.0"

    text = run(regauth_exe, "registry", "which", "ghcr.io/org/app")
    assert text.returncode == 0 and SECRET not in text.stdout
    assert "record:      gh\n" in text.stdout and "answered_by: record\n" in text.stdout


def test_an_anonymous_record_and_a_missing_secret(regauth_exe: str, isolated_env: Path) -> None:
    assert run(regauth_exe, "registry", "add", "hub", "--url", "docker.io", "--no-validate").returncode == 0
    code, answer = which(regauth_exe, "ubuntu")
    assert (code, answer["record"], answer["credential"]) == (0, "hub", "none: the record is anonymous")

    registries = isolated_env / ".config/regauth/registries.json"
    data = json.loads(registries.read_text())
    data["registries"].append({"id": "0123", "name": "lost", "registry": "reg.example", "username": "u"})
    registries.write_text(json.dumps(data))
    code, answer = which(regauth_exe, "reg.example/app")
    assert code == 0 and str(answer["credential"]).startswith("missing: the file store has no secret for it")


def test_a_cloud_host_with_no_record_names_its_provider(regauth_exe: str) -> None:
    code, answer = which(regauth_exe, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1.0")
    assert code == 0 and answer["answered_by"] == "provider" and answer["provider"] == "ecr"
    assert answer["record"] is None and "ambient AWS credentials" in str(answer["credential"])
    assert which(regauth_exe, "corp.azurecr.io")[1]["provider"] == "acr"
    assert which(regauth_exe, "europe-docker.pkg.dev/p/r/app")[1]["provider"] == "gcp"


def test_ci_variables_answer_without_showing_the_token(regauth_exe: str) -> None:
    env = dict(os.environ, GITHUB_TOKEN=GITHUB_TOKEN)
    code, answer = which(regauth_exe, "ghcr.io/org/app", env)
    assert (code, answer["answered_by"], answer["provider"]) == (0, "provider", "env")


def test_nothing_answers_exit_1(regauth_exe: str) -> None:
    code, answer = which(regauth_exe, "quay.io/org/app")
    assert (
        code == 1
        and answer["answered_by"] == "nothing"
        and "regauth registry add" in str(answer["credential"])
    )


def test_a_bad_reference_is_one_line(regauth_exe: str) -> None:
    done = run(regauth_exe, "registry", "which", "Bad Ref")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("regauth: error: invalid reference") and len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "target",
    ["http://reg.test:443", "http://reg.test:443/v2/", "reg.test:443", "reg.test", "https://reg.test"],
)
def test_which_answers_as_the_helper_does_for_a_server_url(
    regauth_exe: str, helper_exe: str, target: str
) -> None:
    # Not idempotent: "http://reg.test:443" is "reg.test:443" (a plain-HTTP port 443), whose own
    # canonical form is "reg.test". The helper looks the record up by the server as asked.
    add = ["registry", "add", "plain", "--url", "http://reg.test:443", "--insecure", "--username", "u"]
    assert run(regauth_exe, *add, "--password-stdin", "--no-validate", stdin=SECRET).returncode == 0
    got = run(helper_exe, "get", stdin=target)
    code, answer = which(regauth_exe, target)
    if got.returncode == 0:
        assert json.loads(got.stdout)["Secret"] == SECRET
        assert (code, answer["answered_by"], answer["record"]) == (0, "record", "plain")
    else:
        assert (code, answer["answered_by"]) == (1, "nothing")
