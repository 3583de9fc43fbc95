"""``regauth``: the command line. Parses arguments, runs one command, turns regauth errors into one line.

What each command does is in ``regauth.commands``; this module is the edge: argv, exit codes, errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from regauth import __version__, argtypes
from regauth.argtypes import amount
from regauth.commands import (
    cmd_add,
    cmd_cache_clear,
    cmd_disable,
    cmd_enable,
    cmd_list,
    cmd_proxy,
    cmd_remove,
    cmd_show,
    cmd_update,
    cmd_validate,
    cmd_which,
)
from regauth.config import Settings, load_settings
from regauth.coredump import disable_core_dumps
from regauth.errors import RegauthError
from regauth.printable import printable
from regauth.providers.table import NAMES as PROVIDERS
from regauth.registries import RegistryBook
from regauth.store.base import SecretStore

PROG = "regauth"


EXIT_CODES = """\
exit status:
  0    done: for `registry validate`, every registry checked is valid; for `registry which`,
       something answers for the host
  1    an error, said in one line on stderr (bad input, a failed check), a registry that did not
       validate, or `registry which` finding no record or provider for the host
  2    the command line could not be parsed
  130  interrupted
"""


class _Formatter(argparse.HelpFormatter):
    """Keeps the examples as written, and shows each option's default where there is one to show."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        # An epilog (examples, exit codes) is laid out by hand in lines; a description is a paragraph.
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = default not in (None, False, [], argparse.SUPPRESS) and not isinstance(default, bool)
        if shown and "default" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage block; a one-line error with a pointer reads better.
        self.exit(2, f"{PROG}: error: {message} (see `{self.prog} --help`)\n")


def _examples(*lines: str) -> str:
    return "examples:\n" + "".join(f"  {line}\n" for line in lines) + "\n" + EXIT_CODES


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="One credential tool for every container registry.",
        epilog=_examples(
            "regauth registry add ghcr --url ghcr.io --username bob --password-stdin < token.txt",
            "regauth registry which ghcr.io/org/app:1.0",
            "regauth proxy --cache-dir ~/.cache/regauth-blobs",
        ),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _add_registry_parser(commands)
    cache = commands.add_parser(
        "cache",
        help="the token cache of the cloud providers",
        description="The token cache of the cloud providers (ECR, ACR, Artifact Registry).",
        epilog=_examples("regauth cache clear"),
    )
    cache_commands = cache.add_subparsers(dest="action", required=True, metavar="ACTION")
    cache_commands.add_parser(
        "clear",
        help="forget every cached token",
        description="Forget every cached provider token; the next pull mints a fresh one.",
        epilog=_examples("regauth cache clear"),
    ).set_defaults(func=cmd_cache_clear)
    _add_proxy_parser(commands)
    # configure CLIENT, import docker|podman, doctor: the clients' own files (regauth/configure).
    from regauth.configure.cli import add_parsers

    add_parsers(commands, _examples)
    # serve (the API and console) and token (its API tokens): regauth/api.
    from regauth.api.cli import add_parsers as add_api_parsers

    add_api_parsers(commands, _examples)
    return parser


def _add_registry_parser(commands: Any) -> None:
    registry = commands.add_parser(
        "registry",
        help="add, list, show, update, remove, validate registries; which one answers for a host",
        description="Registry records: where each registry is and where its credentials come from.",
        epilog=_examples("regauth registry list", "regauth registry add --help"),
    )
    actions = registry.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser(
        "add",
        help="add a registry (validated against it before it is saved)",
        description="Add a registry. It is checked against the registry (reachable, Registry V2, the "
        "credentials accepted) before it is saved; nothing is saved if the check fails.",
        epilog=_examples(
            'printf %s "$TOKEN" | regauth registry add ghcr --url ghcr.io --username bob --password-stdin',
            "regauth registry add hub --url docker.io                    # anonymous",
            "regauth registry add corp --url registry.corp:5000 --ca-file corp-ca.pem --username ci "
            "--password-stdin",
            "regauth registry add dev --url http://127.0.0.1:5000 --insecure",
            "regauth registry add prod-ecr --url 123456789012.dkr.ecr.eu-west-1.amazonaws.com "
            "--provider ecr --option profile=prod",
        ),
    )
    add.add_argument("name", help="a name for it: lower-case letters, digits, '.', '_', '-'")
    add.add_argument("--url", required=True, help="the registry, e.g. ghcr.io or https://host:5000")
    _add_record_flags(add)
    add.set_defaults(func=cmd_add)

    lst = actions.add_parser(
        "list",
        help="list registries (never their secrets)",
        description="List the registries (never their secrets).",
        epilog=_examples("regauth registry list", "regauth registry list --json"),
    )
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(func=cmd_list)

    show = actions.add_parser(
        "show",
        help="show one registry (never its secret)",
        description="Show one registry's settings and whether its secret is stored (never the secret).",
        epilog=_examples("regauth registry show ghcr", "regauth registry show ghcr --json"),
    )
    show.add_argument("name", help="the registry's name (see `regauth registry list`)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_show)

    update = actions.add_parser(
        "update",
        help="change a registry (validated again before it is saved)",
        description="Change a registry; what is not named stays as it is. The result is checked "
        "against the registry before it is saved. A new username asks for its secret again.",
        epilog=_examples(
            "regauth registry update ghcr --username alice --password-stdin < token.txt",
            "regauth registry update corp --ca-file new-ca.pem",
            "regauth registry update prod-ecr --option profile=         # takes the option away",
        ),
    )
    update.add_argument("name", help="the registry's name (see `regauth registry list`)")
    update.add_argument("--url", help="a new registry address")
    update.add_argument("--rename", metavar="NEW_NAME", help="a new name")
    update.add_argument("--anonymous", action="store_true", help="drop the username and secret")
    _add_record_flags(update)
    update.set_defaults(func=cmd_update)

    remove = actions.add_parser(
        "remove",
        help="remove a registry and its secret",
        description="Remove a registry, its secret and its cached tokens.",
        epilog=_examples("regauth registry remove ghcr"),
    )
    remove.add_argument("name", help="the registry's name (see `regauth registry list`)")
    remove.set_defaults(func=cmd_remove)

    for verb, func, what in (
        ("enable", cmd_enable, "put a disabled registry back in use"),
        (
            "disable",
            cmd_disable,
            "take a registry out of use, keeping it (helper: not found; proxy: refused)",
        ),
    ):
        toggle = actions.add_parser(
            verb,
            help=what,
            description=what[0].upper() + what[1:] + ".",
            epilog=_examples(f"regauth registry {verb} ghcr"),
        )
        toggle.add_argument("name", help="the registry's name (see `regauth registry list`)")
        toggle.set_defaults(func=func)

    validate = actions.add_parser(
        "validate",
        help="check saved registries against the registries",
        description="Check saved registries against the registries, as `docker login` would; "
        "exit status 1 if any does not validate.",
        epilog=_examples(
            "regauth registry validate ghcr",
            "regauth registry validate --all --json",
            "regauth registry validate corp --repository team/app",
        ),
    )
    which = validate.add_mutually_exclusive_group(required=True)
    which.add_argument("name", nargs="?", help="the registry to check")
    which.add_argument("--all", action="store_true", help="check every registry")
    validate.add_argument("--repository", help="also check pull permission on this repository")
    validate.add_argument("--no-cache", action="store_true", help="mint fresh provider tokens")
    validate.add_argument(
        "--json",
        action="store_true",
        help="machine-readable output: one object per registry, with its outcome",
    )
    validate.set_defaults(func=cmd_validate)

    who = actions.add_parser(
        "which",
        help="which record or provider answers for a host or an image (never the secret)",
        description="Say which record or provider answers a credential request for a host or an image "
        "reference, and where its credential comes from, without printing it or asking any server. "
        "A name with no '/' that ends in a :PORT, or has a '.' and no ':', or is localhost, is a host; "
        "anything else an image (ubuntu:22.04 is docker.io/library/ubuntu:22.04). "
        "Exit status 1 when nothing answers.",
        epilog=_examples(
            "regauth registry which ghcr.io",
            "regauth registry which ubuntu:22.04",
            "regauth registry which 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1.0 --json",
        ),
    )
    who.add_argument(
        "target", metavar="HOST|IMAGE", help="a registry host, a server URL or an image reference"
    )
    who.add_argument("--json", action="store_true", help="machine-readable output")
    who.set_defaults(func=cmd_which)


def _add_record_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--username", help="the user name; without it a static registry is anonymous")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password or token from standard input (needs --username for a static registry)",
    )
    parser.add_argument(
        "--provider",
        choices=PROVIDERS,
        help="where credentials come from: static (a stored secret; the default for add), ecr, acr, gcp "
        "(minted from cloud credentials), env (CI variables)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a provider option (repeatable), e.g. profile=prod for ecr; unknown keys are refused with "
        "the provider's list; realm_hosts=HOST allows a token server on another host",
    )
    parser.add_argument(
        "--ca-file", type=argtypes.path, metavar="PEM", help="CA bundle to trust for this registry"
    )
    parser.add_argument(
        "--insecure",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="allow plain HTTP to this registry (named explicitly; never for others; default: HTTPS only)",
    )
    parser.add_argument(
        "--repository", help="a repository to check pull permission on (at add and update, and validate)"
    )
    parser.add_argument("--no-validate", action="store_true", help="save without checking the registry")
    parser.add_argument("--no-cache", action="store_true", help="mint fresh provider tokens for the check")


def _add_proxy_parser(commands: Any) -> None:
    proxy = commands.add_parser(
        "proxy",
        help="run the pull-through proxy",
        description="Run the pull-through proxy: clients pull PROXY/HOST/REPO or PROXY/NAME/REPO from it "
        "(HOST a configured registry, NAME a registry's name), and it adds that registry's credentials.",
        epilog=_examples(
            "regauth proxy",
            "regauth proxy --listen 127.0.0.1:5050 --cache-dir ~/.cache/regauth-blobs --cache-max-size 10GiB",
            "regauth proxy --listen 0.0.0.0:5000 --tls-cert proxy.pem --tls-key proxy.key "
            "--client-token-file token.txt",
        ),
    )
    proxy.add_argument("--listen", default="127.0.0.1:5000", metavar="HOST:PORT", help="address to listen on")
    proxy.add_argument(
        "--cache-dir",
        type=argtypes.path,
        metavar="DIR",
        help="cache blobs by digest in this directory (default: no cache)",
    )
    proxy.add_argument(
        "--cache-max-size",
        type=argtypes.nonempty,
        metavar="SIZE",
        help="cap the blob cache, e.g. 10GiB (default: no cap)",
    )
    proxy.add_argument(
        "--cache-url",
        type=argtypes.nonempty,
        metavar="s3://BUCKET/PREFIX",
        help="share cached blobs with other instances in this S3-compatible bucket (boto3's settings; "
        "AWS_ENDPOINT_URL_S3 for MinIO or Ceph)",
    )
    proxy.add_argument(
        "--cache-lease",
        type=amount,
        default=30.0,
        metavar="SECONDS",
        help="with --cache-url, how long an instance's claim to fetch a cold blob lives unrenewed",
    )
    proxy.add_argument(
        "--cache-redirect",
        type=amount,
        default=0.0,
        metavar="SECONDS",
        help="with --cache-url, send clients to a presigned URL of a cached blob valid this long "
        "(default 0: the proxy streams it)",
    )
    proxy.add_argument(
        "--manifest-ttl",
        type=amount,
        default=30.0,
        metavar="SECONDS",
        help="serve manifests fetched by tag from the cache this long (with --cache-dir; 0: never)",
    )
    proxy.add_argument(
        "--serve-stale",
        type=amount,
        default=0.0,
        metavar="SECONDS",
        help="while a registry is unreachable, serve a tag's last known manifest up to this old "
        "(with --cache-dir; default 0: never)",
    )
    proxy.add_argument(
        "--docker-hub",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="forward requests with no registry prefix to Docker Hub (default: if a docker.io record exists)",
    )
    proxy.add_argument(
        "--client-token-file",
        type=argtypes.path,
        metavar="FILE",
        help="require this token from clients (Bearer, or as the Basic password)",
    )
    proxy.add_argument(
        "--htpasswd", type=argtypes.path, metavar="FILE", help="require a user of this bcrypt htpasswd file"
    )
    proxy.add_argument(
        "--tls-cert", type=argtypes.path, metavar="PEM", help="serve HTTPS with this certificate (chain)"
    )
    proxy.add_argument("--tls-key", type=argtypes.path, metavar="PEM", help="the private key of --tls-cert")
    proxy.add_argument(
        "--accept-cleartext-credentials",
        action="store_true",
        help="allow a non-loopback --listen with client auth but no TLS (the token crosses in clear)",
    )
    proxy.add_argument(
        "--max-connections",
        type=int,
        default=1024,
        metavar="N",
        help="open client connections at most; idle ones are closed for room, then 503",
    )
    proxy.add_argument(
        "--connect-timeout",
        type=amount,
        default=10.0,
        metavar="SECONDS",
        help="longest wait for a connection to a registry",
    )
    proxy.add_argument(
        "--read-timeout", type=amount, default=60.0, metavar="SECONDS", help="longest wait between two reads"
    )
    proxy.add_argument(
        "--shutdown-timeout",
        type=amount,
        default=60.0,
        metavar="SECONDS",
        help="on SIGTERM, how long in-flight pulls may take to finish",
    )
    proxy.add_argument(
        "--api-listen",
        metavar="HOST:PORT",
        help="also serve `regauth serve`'s API and console there, from this process (loopback, or with "
        "--tls-cert; default: not served)",
    )
    proxy.add_argument("--quiet", action="store_true", help="no access log")
    proxy.set_defaults(func=cmd_proxy)


def main(argv: Sequence[str] | None = None) -> int:
    if sys.stdin is None:
        # Started with stdin closed (`<&-`): --password-stdin then reads an empty secret, refused in a line.
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - the process's stdin
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except BrokenPipeError:
        return _reader_gone()
    func: Callable[[argparse.Namespace, Settings, RegistryBook, SecretStore], int] = args.func
    # Every command may hold a secret (a password on stdin, the store's key, the proxy's tokens).
    disable_core_dumps()
    try:
        settings = load_settings()
        if getattr(args, "no_cache", False):
            settings = settings._replace(no_cache=True)
        from regauth.logs import setup_logging

        setup_logging(settings)
        from regauth.store.lazy import LazyStore

        # Opened once, here, on first use: `registry list` never opens it.
        store = LazyStore.for_settings(settings)
        return func(args, settings, RegistryBook(settings, store), store)
    except RegauthError as exc:
        # A message can quote a registry's text: escaped, it cannot clear the screen or fake a line.
        sys.stderr.write(f"{PROG}: error: {printable(str(exc))}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        return _reader_gone()
    except OSError as exc:
        # What the system refuses of a path given on the command line (a name too long, a loop of
        # links) that no command checked for: still one line, naming the path.
        where = f": {exc.filename}" if exc.filename is not None else ""
        sys.stderr.write(f"{PROG}: error: {printable(f'{exc.strerror or exc}{where}')}\n")
        return 1


def _reader_gone() -> int:
    # `regauth ... | head`: nothing more to say, and the interpreter's last flush must not say it either.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1


if __name__ == "__main__":
    sys.exit(main())
