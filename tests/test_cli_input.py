"""Command-line input is checked before anything is read, sent or saved: ``--repository`` by the
distribution reference grammar, usernames, host length and option names. The registry (a server on
127.0.0.1 that records every request) sees nothing of a refused command."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from regauth.config import Settings
from regauth.errors import UsageError
from regauth.registries import Registry, RegistryBook

ServerFactory = Callable[..., Awaitable[TestServer]]
TIMEOUT = 60


def recording_registry(seen: list[str]) -> web.Application:
    async def anything(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


async def run(exe: str, *argv: str, stdin: bytes = b"pw\n") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        exe,
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def files(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


BAD_REPOSITORIES = [
    "a/../b",
    "..",
    "org/app?x=1",
    "org/app#frag",
    "org app",
    "Org/App",
    "org//app",
    "/org",
    "a" * 256,
]
BAD_ARGS = [
    *[(("--repository", repo), "invalid reference") for repo in BAD_REPOSITORIES],
    (("--username", "user:name"), "invalid username"),
    (("--username", "user\x1b[2Jname"), "invalid username"),
    (("--username", "line\nbreak"), "invalid username"),
    (("--option", "Region=eu-west-1"), "invalid option name"),
    (("--option", "re gion=eu-west-1"), "invalid option name"),
    (("--option", "1region=x"), "invalid option name"),
    (("--option", "region=eu\x07west"), "control characters"),
]


@pytest.mark.parametrize(("extra", "expected"), BAD_ARGS)
async def test_bad_input_is_refused_before_the_registry_hears_of_it(
    aiohttp_server: ServerFactory, regauth_exe: str, isolated_env: Path, extra: tuple[str, ...], expected: str
) -> None:
    seen: list[str] = []
    server = await aiohttp_server(recording_registry(seen))
    before = files(isolated_env)
    argv = ["registry", "add", "r", "--url", f"127.0.0.1:{server.port}", "--insecure"]
    if "--username" not in extra:
        argv += ["--username", "u"]
    code, out, err = await run(regauth_exe, *argv, "--password-stdin", *extra)
    assert code == 1 and out == "", err
    assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err
    assert "\x1b" not in err and "\x07" not in err
    assert seen == [] and files(isolated_env) == before


async def test_validate_checks_its_repository_first(
    aiohttp_server: ServerFactory, regauth_exe: str, settings: Settings
) -> None:
    seen: list[str] = []
    server = await aiohttp_server(recording_registry(seen))
    RegistryBook.for_settings(settings).add(
        Registry(id="", name="r", registry=f"127.0.0.1:{server.port}", insecure=True), None
    )
    for repository in ("a/../b", "org/app?n=1"):
        code, out, err = await run(regauth_exe, "registry", "validate", "r", "--repository", repository)
        assert code == 1 and out == "" and "invalid reference" in err and len(err.splitlines()) == 1
    assert seen == []
    code, out, _ = await run(regauth_exe, "registry", "validate", "r", "--repository", "org/app")
    assert code == 0 and out.startswith("ok ") and "/v2/org/app/tags/list" in "".join(seen)


async def test_update_checks_as_add_does(regauth_exe: str, settings: Settings) -> None:
    RegistryBook.for_settings(settings).add(Registry(id="", name="r", registry="registry.example"), None)
    before = settings.registries_file.read_bytes()
    for extra in (("--username", "a:b"), ("--repository", "x/../y"), ("--option", "Bad=1")):
        code, _, err = await run(
            regauth_exe, "registry", "update", "r", *extra, "--password-stdin", "--no-validate"
        )
        assert code == 1 and len(err.splitlines()) == 1, err
    assert settings.registries_file.read_bytes() == before


@pytest.mark.parametrize(
    "url",
    [
        "a" * 64 + ".example",  # a label of 64
        ".".join(["a" * 60] * 5),  # 304 characters
    ],
)
async def test_overlong_hosts_are_refused(regauth_exe: str, isolated_env: Path, url: str) -> None:
    before = files(isolated_env)
    code, _, err = await run(regauth_exe, "registry", "add", "r", "--url", url, "--no-validate")
    assert code == 1 and "a host name has at most 253 characters" in err and len(err.splitlines()) == 1
    assert files(isolated_env) == before


def test_good_input_still_passes(settings: Settings) -> None:
    book = RegistryBook.for_settings(settings)
    record = Registry(
        id="",
        name="ok",
        registry="a" * 63 + ".example:5000",
        username="<token>",
        options={"region": "eu-west-1", "role_arn": "arn:aws:iam::1:role/x y"},
        repository="library/ubuntu",
    )
    assert book.add(record, "s").username == "<token>"
    for username in ("", "user@example.com", "00000000-0000-0000-0000-000000000000", "jürgen"):
        book.update("ok", {"username": username}, "s")


def test_the_helper_store_refuses_a_username_with_a_colon(settings: Settings) -> None:
    with pytest.raises(UsageError, match="invalid username"):
        RegistryBook.for_settings(settings).upsert_static("registry.example", "a:b", "s")
    assert not settings.registries_file.exists()
