"""A canary secret goes in through stdin and may come out in one place only: the stdout of ``get``.

Every helper verb and every ``regauth registry`` command runs with REGAUTH_LOG_LEVEL=DEBUG; after each
one the canary is looked for in its stdout and stderr, in the command line, and in every file under
HOME (the log file included) except the encrypted store, which must not hold it in plaintext either.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from regauth.config import Settings

TIMEOUT = 60


@dataclass
class Witness:
    """Runs commands and records every place the canary was seen."""

    home: Path
    settings: Settings
    canaries: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def forms(self) -> list[bytes]:
        found: list[bytes] = []
        for canary in self.canaries:
            raw = canary.encode()
            found += [raw, base64.b64encode(raw), json.dumps(canary).encode()]
            # docker's config.json keeps "user:secret" in base64.
            found += [base64.b64encode(f"{user}:{canary}".encode()) for user in ("u", "u2", "canary-user")]
        return found

    def run(self, argv: list[str], stdin: bytes = b"", *, may_print_secret: bool = False) -> tuple[int, str]:
        for arg in argv:
            assert not any(c in arg for c in self.canaries), f"a secret on the command line: {argv}"
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, timeout=TIMEOUT, env=self.env, check=False
        )
        for canary in self.canaries:
            assert canary not in proc.stderr.decode(errors="replace"), f"canary on stderr of {argv}"
            if not may_print_secret:
                assert canary not in proc.stdout.decode(errors="replace"), f"canary on stdout of {argv}"
        self.check_files(argv)
        return proc.returncode, proc.stdout.decode()

    def check_files(self, argv: list[str]) -> None:
        forms = self.forms()
        for path in sorted(p for p in self.home.rglob("*") if p.is_file()):
            data = path.read_bytes()
            for form in forms:
                assert form not in data, f"canary in {path} after {argv}"


@pytest.fixture
def witness(isolated_env: Path, settings: Settings) -> Witness:
    env = dict(os.environ, REGAUTH_LOG_LEVEL="DEBUG")
    # The same secret is never used twice: a fresh canary per run.
    canaries = [f"CANARY-{os.urandom(8).hex()}", f"CANARY2-{os.urandom(8).hex()}"]
    return Witness(home=isolated_env, settings=settings, canaries=canaries, env=env)


def test_helper_verbs_never_leak(witness: Witness, helper_exe: str) -> None:
    canary = witness.canaries[0]
    h = helper_exe
    payload = json.dumps({"ServerURL": "https://registry.example:5000", "Username": "u", "Secret": canary})
    assert witness.run([h, "store"], payload.encode()) == (0, "")

    code, out = witness.run([h, "get"], b"registry.example:5000", may_print_secret=True)
    assert code == 0 and json.loads(out)["Secret"] == canary
    code, out = witness.run([h, "list"], b"unused")
    assert (code, json.loads(out)) == (0, {"registry.example:5000": "u"})
    assert witness.run([h, "version"])[0] == 0
    assert witness.run([h, "get"], b"other.example")[0] == 1

    # Failed stores that carry the canary: the error line must not echo it.
    bad_payloads = [
        payload[:-5].encode(),
        json.dumps({"ServerURL": "registry.example:5000", "Secret": canary}).encode(),
        json.dumps({"Username": "u", "Secret": canary}).encode(),
        json.dumps({"ServerURL": "registry.example:5000", "Username": "u", "Secret": [canary]}).encode(),
        json.dumps({"ServerURL": "registry.example:5000", "Username": 1, "Secret": canary}).encode(),
        json.dumps({"ServerURL": "ftp://registry.example", "Username": "u", "Secret": canary}).encode(),
        json.dumps([canary]).encode(),
        json.dumps(canary).encode(),
        payload.encode() + b"\xff",
        payload.encode() + b" " * (2 * 1024 * 1024),
    ]
    for bad in bad_payloads:
        code, out = witness.run([h, "store"], bad)
        assert code == 1 and out.count("\n") == 1

    assert witness.run([h, "frobnicate"], payload.encode())[0] == 1
    assert witness.run([h], payload.encode())[0] == 1
    # Still the original secret after all the failed stores.
    code, out = witness.run([h, "get"], b"https://registry.example:5000/v2/", may_print_secret=True)
    assert code == 0 and json.loads(out)["Secret"] == canary

    assert witness.run([h, "erase"], b"registry.example:5000") == (0, "")
    assert witness.run([h, "get"], b"registry.example:5000")[0] == 1
    assert witness.run([h, "list"], b"unused") == (0, "{}\n")

    log = witness.settings.log_file
    if log.exists():
        assert canary not in log.read_text(errors="replace")


def test_identity_token_never_leaks(witness: Witness, helper_exe: str) -> None:
    canary = witness.canaries[0]
    payload = json.dumps({"ServerURL": "registry.example", "Username": "<token>", "Secret": canary})
    assert witness.run([helper_exe, "store"], payload.encode()) == (0, "")
    code, out = witness.run([helper_exe, "get"], b"registry.example", may_print_secret=True)
    assert code == 0 and json.loads(out) == {
        "ServerURL": "registry.example",
        "Username": "<token>",
        "Secret": canary,
    }
    assert witness.run([helper_exe, "list"], b"unused")[0] == 0
    assert witness.run([helper_exe, "erase"], b"registry.example") == (0, "")


def test_regauth_cli_never_leaks(witness: Witness, regauth_exe: str, helper_exe: str) -> None:
    first, second = witness.canaries
    r = regauth_exe
    add = [r, "registry", "add", "canary-reg", "--url", "registry.example:5000", "--username", "u"]
    code, _ = witness.run([*add, "--password-stdin", "--no-validate"], first.encode() + b"\n")
    assert code == 0

    code, out = witness.run([helper_exe, "get"], b"registry.example:5000", may_print_secret=True)
    assert code == 0 and json.loads(out)["Secret"] == first

    assert witness.run([r, "registry", "list"])[0] == 0
    code, out = witness.run([r, "registry", "list", "--json"])
    assert code == 0 and json.loads(out)[0]["name"] == "canary-reg"
    assert witness.run([r, "registry", "show", "canary-reg"])[0] == 0
    code, out = witness.run([r, "registry", "show", "canary-reg", "--json"])
    assert code == 0 and json.loads(out)["secret"] == "stored"

    update = [r, "registry", "update", "canary-reg", "--username", "u2", "--password-stdin", "--no-validate"]
    assert witness.run(update, second.encode())[0] == 0
    code, out = witness.run([helper_exe, "get"], b"registry.example:5000", may_print_secret=True)
    assert code == 0 and json.loads(out) == {
        "ServerURL": "registry.example:5000",
        "Username": "u2",
        "Secret": second,
    }
    assert witness.run([r, "registry", "show", "canary-reg", "--json"])[0] == 0
    assert witness.run([helper_exe, "list"], b"unused")[0] == 0

    # A validation that fails (nothing listens there) must not echo the secret it tried.
    failing = [r, "registry", "update", "canary-reg", "--url", "127.0.0.1:9", "--password-stdin"]
    assert witness.run(failing, first.encode())[0] != 0
    # Bad input to the CLI with the secret on stdin.
    assert (
        witness.run(
            [r, "registry", "add", "Bad Name", "--url", "x.example", "--username", "u", "--password-stdin"],
            first.encode(),
        )[0]
        != 0
    )
    assert (
        witness.run(
            [
                r,
                "registry",
                "add",
                "dup",
                "--url",
                "registry.example:5000",
                "--username",
                "u",
                "--password-stdin",
                "--no-validate",
            ],
            first.encode(),
        )[0]
        != 0
    )

    # A provider that cannot answer makes `get` write its cause to the log file: that file is scanned too.
    env_reg = [r, "registry", "add", "envreg", "--url", "env.example", "--provider", "env"]
    assert witness.run([*env_reg, "--option", "secret_env=REGAUTH_TEST_UNSET", "--no-validate"])[0] == 0
    assert witness.run([helper_exe, "get"], b"env.example")[0] == 1
    assert witness.settings.log_file.is_file()

    assert witness.run([r, "registry", "remove", "canary-reg"])[0] == 0
    assert witness.run([helper_exe, "get"], b"registry.example:5000")[0] == 1
    code, out = witness.run([r, "registry", "list", "--json"])
    assert code == 0 and [rec["name"] for rec in json.loads(out)] == ["envreg"]
