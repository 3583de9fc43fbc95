"""A newcomer's mistakes get an answer that says what to do, through the installed ``regauth`` script.

Plain HTTP without ``--insecure``, a private CA without ``--ca-file``, a misspelt ``--option``, a secret
with no username to go with it: each is one line naming the flag that fixes it, exit status 1, and
nothing saved.
"""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
from pathlib import Path

import pytest
from support.registry import RegistryFixture
from support.tls import make_pki

from regauth import commands
from regauth.distribution.realms import REALM_HOSTS_OPTION
from regauth.registries import PROVIDERS

ECR_HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def run(exe: str, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, *argv], input=stdin, capture_output=True, text=True, timeout=60)


def files(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("regauth: error: "), done.stderr
    return lines[0]


# --- plain HTTP and private CAs ---------------------------------------------------------------------


def test_a_plain_http_url_without_insecure_says_add_insecure(
    regauth_exe: str, registry_anon: RegistryFixture, isolated_env: Path
) -> None:
    before = files(isolated_env)
    done = run(regauth_exe, "registry", "add", "dev", "--url", f"http://{registry_anon.host}")
    line = one_line_error(done)
    assert "plain HTTP: add `--insecure` to allow it" in line
    assert files(isolated_env) == before
    # With it, the same command works against the same registry.
    ok = run(regauth_exe, "registry", "add", "dev", "--url", f"http://{registry_anon.host}", "--insecure")
    assert ok.returncode == 0, ok.stderr


def test_update_to_a_plain_http_url_needs_insecure_too(regauth_exe: str, isolated_env: Path) -> None:
    assert run(regauth_exe, "registry", "add", "dev", "--url", "reg.example", "--no-validate").returncode == 0
    before = files(isolated_env)
    line = one_line_error(run(regauth_exe, "registry", "update", "dev", "--url", "http://reg.example:5000"))
    assert "plain HTTP: add `--insecure`" in line
    assert files(isolated_env) == before


def test_a_plain_http_registry_named_without_a_scheme_names_insecure(
    regauth_exe: str, registry_anon: RegistryFixture, isolated_env: Path
) -> None:
    before = files(isolated_env)
    line = one_line_error(run(regauth_exe, "registry", "add", "dev", "--url", registry_anon.host))
    assert "TLS error" in line and "`--insecure`" in line
    assert "--no-validate" not in line  # saving it unchecked would only save a record that cannot connect
    assert files(isolated_env) == before


def test_a_private_ca_names_ca_file_not_no_validate(
    regauth_exe: str, registry_htpasswd: RegistryFixture, isolated_env: Path
) -> None:
    fx = registry_htpasswd
    assert fx.username and fx.password
    argv = ["registry", "add", "ht", "--url", fx.host, "--username", fx.username, "--password-stdin"]
    before = files(isolated_env)
    line = one_line_error(run(regauth_exe, *argv, stdin=fx.password + "\n"))
    assert "unable to get local issuer certificate" in line
    assert "name the CA with `--ca-file PEM`" in line and "--no-validate" not in line
    assert fx.password not in line
    assert files(isolated_env) == before
    # Following the advice works.
    assert fx.ca_file
    ok = run(regauth_exe, *argv, "--ca-file", fx.ca_file, stdin=fx.password + "\n")
    assert ok.returncode == 0, ok.stderr


def test_a_ca_file_that_did_not_sign_it_is_named(
    regauth_exe: str, registry_htpasswd: RegistryFixture, tmp_path: Path
) -> None:
    other = make_pki(tmp_path / "other-pki").ca_file
    argv = ["registry", "add", "ht", "--url", registry_htpasswd.host, "--ca-file", str(other)]
    line = one_line_error(run(regauth_exe, *argv))
    assert f"check that {other} holds the CA that signed its certificate" in line


def test_validate_names_the_update_command_and_has_json(
    regauth_exe: str, registry_htpasswd: RegistryFixture, registry_anon: RegistryFixture
) -> None:
    fx = registry_htpasswd
    assert fx.username and fx.password
    add_ht = ["registry", "add", "ht", "--url", fx.host, "--username", fx.username, "--password-stdin"]
    assert run(regauth_exe, *add_ht, "--no-validate", stdin=fx.password).returncode == 0
    add_anon = ["registry", "add", "anon", "--url", registry_anon.host, "--insecure"]
    assert run(regauth_exe, *add_anon).returncode == 0

    text = run(regauth_exe, "registry", "validate", "--all")
    assert text.returncode == 1
    lines = {line[:4]: line[5:] for line in text.stdout.splitlines()}
    assert (
        lines["FAIL"].startswith("registry 'ht'")
        and "`regauth registry update ht --ca-file PEM`" in lines["FAIL"]
    )
    assert lines["ok  "].startswith("registry 'anon'")

    done = run(regauth_exe, "registry", "validate", "--all", "--json")
    assert done.returncode == 1 and done.stderr == ""
    results = {item["name"]: item for item in json.loads(done.stdout)}
    assert results["ht"]["ok"] is False and results["ht"]["outcome"] == "tls_error"
    assert results["ht"]["registry"] == fx.host and "--ca-file" in results["ht"]["advice"]
    assert results["anon"] == {
        "name": "anon",
        "registry": registry_anon.host,
        "ok": True,
        "outcome": "valid",
        "access": "unknown",
        "message": results["anon"]["message"],
        "advice": None,
    }
    assert fx.password not in done.stdout

    fixed = run(regauth_exe, "registry", "update", "ht", "--ca-file", str(fx.ca_file))
    assert fixed.returncode == 0, fixed.stderr
    again = run(regauth_exe, "registry", "validate", "ht", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)[0]["ok"] is True


# --- options and secrets ----------------------------------------------------------------------------


def test_a_misspelt_option_is_refused_with_the_known_keys(regauth_exe: str, isolated_env: Path) -> None:
    before = files(isolated_env)
    argv = ["registry", "add", "prod", "--url", ECR_HOST, "--provider", "ecr", "--option", "profle=prod"]
    line = one_line_error(run(regauth_exe, *argv, "--no-validate"))
    assert "unknown option 'profle' for the ecr provider (did you mean profile?)" in line
    known = line.split("it knows: ", 1)[1].split(", ")
    assert (
        known == sorted(known) and "profile" in known and "role_arn" in known and REALM_HOSTS_OPTION in known
    )
    assert files(isolated_env) == before

    # On a static record, the only option is the one every record takes.
    static = ["registry", "add", "s", "--url", "reg.example", "--option", "region=eu-west-1", "--no-validate"]
    line = one_line_error(run(regauth_exe, *static))
    assert line.endswith(f"it knows: {REALM_HOSTS_OPTION}")
    ok = [
        "registry",
        "add",
        "s",
        "--url",
        "reg.example",
        "--option",
        "realm_hosts=auth.example",
        "--no-validate",
    ]
    assert run(regauth_exe, *ok).returncode == 0


def test_update_checks_options_and_an_empty_value_takes_one_away(
    regauth_exe: str, isolated_env: Path
) -> None:
    argv = ["registry", "add", "prod", "--url", ECR_HOST, "--provider", "ecr", "--option", "profile=prod"]
    assert run(regauth_exe, *argv, "--no-validate").returncode == 0
    line = one_line_error(
        run(regauth_exe, "registry", "update", "prod", "--option", "rol_arn=x", "--no-validate")
    )
    assert "unknown option 'rol_arn' for the ecr provider (did you mean role_arn?)" in line
    # A provider change checks the options the record keeps against the new provider.
    line = one_line_error(
        run(regauth_exe, "registry", "update", "prod", "--provider", "gcp", "--no-validate")
    )
    assert "unknown option 'profile' for the gcp provider" in line

    # A key saved before keys were checked (here written by hand) can be taken away.
    registries = isolated_env / ".config/regauth/registries.json"
    data = json.loads(registries.read_text())
    data["registries"][0]["options"]["profle"] = "old"
    registries.write_text(json.dumps(data))
    done = run(regauth_exe, "registry", "update", "prod", "--option", "profle=", "--no-validate")
    assert done.returncode == 0, done.stderr
    shown = json.loads(run(regauth_exe, "registry", "show", "prod", "--json").stdout)
    assert shown["options"] == {"profile": "prod"}


def test_every_provider_declares_the_options_it_reads() -> None:
    """Each provider's ``OPTION_KEYS`` holds every key its code reads with ``option(record, KEY)``."""
    import importlib

    for provider in PROVIDERS:
        module = importlib.import_module(f"regauth.providers.{provider}")
        read = {
            node.args[1].value
            for node in ast.walk(ast.parse(inspect.getsource(module)))
            if isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "option"
            and isinstance(node.args[1], ast.Constant)
        }
        assert read <= module.OPTION_KEYS, provider
        assert commands.known_option_keys(provider) == module.OPTION_KEYS | {REALM_HOSTS_OPTION}


def test_password_stdin_without_username_on_a_static_record_is_refused(
    regauth_exe: str, isolated_env: Path
) -> None:
    before = files(isolated_env)
    secret = "never-dropped-silently-7"
    argv = ["registry", "add", "s", "--url", "reg.example", "--password-stdin", "--no-validate"]
    line = one_line_error(run(regauth_exe, *argv, stdin=secret))
    assert "--password-stdin needs --username" in line and secret not in line
    assert files(isolated_env) == before

    assert run(regauth_exe, "registry", "add", "s", "--url", "reg.example", "--no-validate").returncode == 0
    before = files(isolated_env)
    update = ["registry", "update", "s", "--password-stdin", "--no-validate"]
    assert "--password-stdin needs --username" in one_line_error(run(regauth_exe, *update, stdin=secret))
    assert files(isolated_env) == before

    # A provider that takes a secret with no username (ACR's client secret) still does.
    acr = ["registry", "add", "a", "--url", "corp.azurecr.io", "--provider", "acr", "--password-stdin"]
    done = run(regauth_exe, *acr, "--option", "credential=secret", "--no-validate", stdin=secret)
    assert done.returncode == 0, done.stderr
    assert json.loads(run(regauth_exe, "registry", "show", "a", "--json").stdout)["secret"] == "stored"


# --- help -------------------------------------------------------------------------------------------


def _parsers(parser: object, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    found: list[tuple[tuple[str, ...], object]] = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, (*path, name))
    return found


def test_every_command_has_examples_exit_codes_and_help_for_each_option() -> None:
    import argparse

    from regauth.cli import build_parser

    for path, parser in _parsers(build_parser()):
        assert isinstance(parser, argparse.ArgumentParser)
        text = parser.format_help()
        examples = text.split("examples:\n", 1)[1].split("\n\n", 1)[0]
        assert examples and all("regauth " in line for line in examples.splitlines()), path
        assert "exit status:" in text and "2    the command line could not be parsed" in text, path
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, (path, action.dest)


def test_help_shows_defaults(regauth_exe: str) -> None:
    proxy = run(regauth_exe, "proxy", "--help")
    assert proxy.returncode == 0
    flat = " ".join(proxy.stdout.split())
    assert "address to listen on (default: 127.0.0.1:5000)" in flat
    assert "(default: 1024)" in flat and "(default: 60.0)" in flat
    add = " ".join(run(regauth_exe, "registry", "add", "--help").stdout.split())
    assert "the default for add" in add and "default: HTTPS only" in add
    assert "regauth registry add dev --url http://127.0.0.1:5000 --insecure" in add


@pytest.mark.parametrize("argv", [(), ("registry",), ("registry", "add")])
def test_a_command_line_that_does_not_parse_exits_2_in_one_line(
    regauth_exe: str, argv: tuple[str, ...]
) -> None:
    done = run(regauth_exe, *argv)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1 and "--help" in done.stderr
