"""The env provider's values as CI hands them: a username Basic auth cannot carry, a multi-line
secret (a ``_json_key``), a variable named but empty. Through the installed helper."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from regauth.helper.texts import NOT_FOUND

SECRET = '{\n  "type": "service_account",\n  "private_key": "-----BEGIN KEY-----\\nabc\\n"\n}\n'
HOST = "ci.example.test"


def run(exe: str, *argv: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [exe, *argv], input=stdin, capture_output=True, text=True, env={**os.environ, **env}, check=False
    )


@pytest.fixture
def env_record(regauth_exe: str) -> None:
    add = ["registry", "add", "ci", "--url", HOST, "--provider", "env", "--no-validate"]
    done = run(regauth_exe, *add, "--option", "secret_env=CI_PASS", "--option", "username_env=CI_USER")
    assert done.returncode == 0, done.stderr


@pytest.mark.usefixtures("env_record")
def test_a_multi_line_secret_is_given_as_it_is(helper_exe: str) -> None:
    got = run(helper_exe, "get", stdin=HOST, CI_PASS=SECRET, CI_USER="_json_key")
    assert got.returncode == 0, got.stdout + got.stderr
    assert json.loads(got.stdout) == {"ServerURL": HOST, "Username": "_json_key", "Secret": SECRET}


@pytest.mark.usefixtures("env_record")
@pytest.mark.parametrize("username", ["robot:extra", "robot\nX-Injected: 1", "robot\x1b[2J"])
def test_a_username_basic_auth_cannot_carry_is_one_line_not_a_credential(
    helper_exe: str, username: str
) -> None:
    # user:password: a ':' in the name moves part of it into the password, as for a stored record.
    got = run(helper_exe, "get", stdin=HOST, CI_PASS="s3cret-env", CI_USER=username)
    assert (got.returncode, got.stdout) == (1, NOT_FOUND + "\n")
    (line,) = got.stderr.splitlines()
    assert "env provider for registry 'ci'" in line and "$CI_USER" in line and "invalid username" in line
    assert "s3cret-env" not in got.stderr and "\x1b" not in got.stderr


@pytest.mark.usefixtures("env_record")
def test_a_variable_named_but_empty_says_which(helper_exe: str) -> None:
    got = run(helper_exe, "get", stdin=HOST, CI_PASS="", CI_USER="robot")
    assert (got.returncode, got.stdout) == (1, NOT_FOUND + "\n")
    assert "$CI_PASS is not set or empty; export CI_PASS" in got.stderr


def test_a_literal_username_option_with_a_colon_is_one_line(regauth_exe: str, helper_exe: str) -> None:
    add = ["registry", "add", "lit", "--url", HOST, "--provider", "env", "--no-validate"]
    assert (
        run(regauth_exe, *add, "--option", "secret_env=CI_PASS", "--option", "username=a:b").returncode == 0
    )
    got = run(helper_exe, "get", stdin=HOST, CI_PASS="s3cret-env")
    assert (got.returncode, got.stdout) == (1, NOT_FOUND + "\n")
    assert "the username option: invalid username 'a:b'" in got.stderr and "s3cret-env" not in got.stderr
