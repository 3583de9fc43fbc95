"""Defects found in a review of `regauth registry`: each test names the rule it holds."""

from __future__ import annotations

import json

import pytest

from regauth import cli
from regauth.config import load_settings
from regauth.registries import Registry, RegistryBook


def test_a_ca_file_name_too_long_for_the_system_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The system refuses to look the name up (ENAMETOOLONG): that is bad input, not a traceback.
    too_long = "a" * 5000
    for argv in (
        ["registry", "add", "lab", "--url", "127.0.0.1:2", "--insecure", "--no-validate"],
        ["registry", "update", "lab"],
    ):
        if argv[1] == "update":
            assert cli.main(["registry", "add", "lab", "--url", "127.0.0.1:2", "--no-validate"]) == 0
            capsys.readouterr()
        assert cli.main([*argv, "--ca-file", too_long]) == 1
        out, err = capsys.readouterr()
        assert err.startswith("regauth: error: --ca-file ") and err.count("\n") == 1, err
        assert "File name too long" in err and not out


def test_validate_all_checks_every_record_when_one_cannot_be_checked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `validate --all --json` is one object per registry: a record that cannot be checked (its secret
    # is missing, its provider has no credentials) is a failed one, not the end of the run.
    settings = load_settings()
    book = RegistryBook.for_settings(settings)
    book.add(Registry(id="", name="a-lost", registry="127.0.0.1:1", username="ci", insecure=True), None)
    book.add(
        Registry(
            id="", name="b-ecr", registry="127.0.0.1:2", provider="ecr", options={"region": "us-east-1"}
        ),
        None,
    )
    book.add(Registry(id="", name="c-anon", registry="127.0.0.1:3", insecure=True), None)
    assert cli.main(["registry", "validate", "--all", "--json"]) == 1
    out, err = capsys.readouterr()
    answers = {item["name"]: item for item in json.loads(out)}
    assert sorted(answers) == ["a-lost", "b-ecr", "c-anon"], (out, err)
    assert answers["c-anon"]["outcome"] == "unreachable"
    assert answers["a-lost"]["ok"] is False and "has no secret" in answers["a-lost"]["message"]
    assert answers["b-ecr"]["ok"] is False and "AWS" in answers["b-ecr"]["message"]
    assert cli.main(["registry", "validate", "--all"]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 3 and all(line.startswith("FAIL") for line in lines), (out, err)
    assert lines[0].startswith("FAIL registry 'a-lost' has no secret"), lines
