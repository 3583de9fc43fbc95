"""Defects found in a review of `regauth registry`: each test names the rule it holds."""

from __future__ import annotations

import pytest

from regauth import cli


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
