"""A registry's text never reaches a terminal or a log raw: a hostile registry on 127.0.0.1 puts ESC
sequences, CR and newlines in its error messages and challenges, and the real CLI and helper print
them escaped, so it can neither clear the screen nor print a fake ``ok`` line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestServer

from regauth.config import Settings, load_settings
from regauth.logs import append_log_line, setup_logging
from regauth.printable import printable

ServerFactory = Callable[..., Awaitable[TestServer]]

# Clear the screen, go home, and print a line that looks like the CLI's own success.
FORGED = "\x1b[2J\x1b[H\rok   registry 'evil': valid\nok   fake\x07\x9b31m\u202egnp.exe"


def raw_controls(text: str) -> list[str]:
    """Every character of ``text`` that could drive a terminal, but the newlines that end lines."""
    return [c for c in text.replace("\n", "") if not c.isprintable()]


def hostile_registry(seen: list[str]) -> web.Application:
    async def anything(request: web.Request) -> web.Response:
        seen.append(request.path)
        body = {"errors": [{"code": "DENIED", "message": FORGED, "detail": FORGED}]}
        if request.path == "/v2/" and "Authorization" not in request.headers:
            # A challenge whose parameters carry what HTTP lets through (aiohttp refuses C0 controls
            # in a header, but not the C1 CSI or a bidi override).
            challenge = 'Basic realm="\x9b2J\u202e fake", error="\x9b31m"'
            return web.json_response(body, status=401, headers={"WWW-Authenticate": challenge})
        if request.path == "/v2/":
            return web.json_response({})
        # The pull check is denied with an error body that carries it all.
        return web.json_response(body, status=403)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


async def cli(exe: str, *argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        exe,
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_escaped(text: str) -> None:
    assert raw_controls(text) == [], text
    assert "\x1b" not in text and "\r" not in text
    # The registry's words are still there for a person to read, escaped.
    assert "\\x1b[2J" in text, text


async def test_add_prints_a_hostile_registry_error_escaped(
    aiohttp_server: ServerFactory, regauth_exe: str
) -> None:
    seen: list[str] = []
    server = await aiohttp_server(hostile_registry(seen))
    host = f"127.0.0.1:{server.port}"
    argv = ("registry", "add", "evil", "--url", host, "--insecure", "--username", "u", "--password-stdin")
    code, out, err = await cli(regauth_exe, *argv, "--repository", "org/app", stdin=b"pw\n")
    assert code == 1 and seen, (out, err)
    assert out == "" and len(err.splitlines()) == 1 and err.endswith("\n")
    assert err.startswith("regauth: error: ") and "Traceback" not in err
    assert_escaped(err)


async def test_validate_prints_a_hostile_registry_error_escaped(
    aiohttp_server: ServerFactory, regauth_exe: str
) -> None:
    seen: list[str] = []
    server = await aiohttp_server(hostile_registry(seen))
    host = f"127.0.0.1:{server.port}"
    argv = ("registry", "add", "evil", "--url", host, "--insecure", "--username", "u", "--password-stdin")
    code, _, err = await cli(regauth_exe, *argv, "--no-validate", stdin=b"pw\n")
    assert code == 0 and not seen, err
    code, out, err = await cli(regauth_exe, "registry", "validate", "evil", "--repository", "org/app")
    assert code == 1 and seen
    (line,) = out.splitlines()
    assert line.startswith("FAIL ") and "Traceback" not in err
    assert_escaped(out)
    assert raw_controls(err) == []


def test_log_records_and_log_lines_are_escaped(settings: Settings) -> None:
    stream = io.StringIO()
    setup_logging(settings, stream=stream, to_file=True)
    logging.getLogger("regauth.test").warning("upstream said %s", FORGED)
    for handler in logging.getLogger("regauth").handlers:
        handler.close()
    append_log_line(settings, f"regauth get: {FORGED}")
    for text in (stream.getvalue(), settings.log_file.read_text()):
        assert len(text.splitlines()) == text.count("\n")
        assert_escaped(text)
    assert len(settings.log_file.read_text().splitlines()) == 2


async def test_helper_stderr_and_log_escape_a_hostile_endpoints_text(
    aiohttp_server: ServerFactory, helper_exe: str
) -> None:
    """The ECR API stand-in answers with an error whose message is the forged text; the helper's
    not-found fallback reports it on stderr and in the log file, escaped."""
    seen: list[str] = []

    async def ecr(request: web.Request) -> web.Response:
        seen.append(request.headers.get("X-Amz-Target", ""))
        body = {"__type": "AccessDeniedException", "message": FORGED}
        return web.Response(status=400, text=json.dumps(body), content_type="application/x-amz-json-1.1")

    app = web.Application()
    app.router.add_post("/", ecr)
    server = await aiohttp_server(app)
    host = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.port}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_MAX_ATTEMPTS="1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    proc = await asyncio.create_subprocess_exec(
        helper_exe,
        "get",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(host.encode()), 60)
    assert seen and proc.returncode == 1, err
    assert out == b"credentials not found in native keychain\n"
    assert_escaped(err.decode())
    assert_escaped(load_settings().log_file.read_text())


def test_printable_escapes_every_control_and_keeps_text() -> None:
    assert printable("plain text, é and 😀") == "plain text, é and 😀"
    escaped = printable(FORGED)
    assert raw_controls(escaped) == [] and "\n" not in escaped
    assert escaped.startswith("\\x1b[2J\\x1b[H\\x0dok")
    assert "\\x9b" in escaped and "\\u202e" in escaped
    # Escaping twice changes nothing more: every edge may apply it without doubling backslashes.
    assert printable(escaped) == escaped


def test_the_cli_error_edge_escapes(regauth_exe: str) -> None:
    # A damaged registries file whose text a person typed: the error quotes it escaped.
    settings = load_settings()
    settings.registries_file.parent.mkdir(parents=True, mode=0o700)
    settings.registries_file.write_text(
        json.dumps({"version": 1, "registries": [{"id": "x", "name": "n", "registry": "r", FORGED: 1}]})
    )
    import subprocess

    done = subprocess.run([regauth_exe, "registry", "list"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert str(settings.registries_file) in done.stderr
    assert_escaped(done.stderr)
