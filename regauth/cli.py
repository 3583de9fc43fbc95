"""``regauth``: the command line. Parses arguments, runs one command, turns regauth errors into one line.

What each command does is in ``regauth.commands``; this module is the edge: argv, exit codes, errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from regauth import __version__
from regauth.commands import (
    cmd_add,
    cmd_cache_clear,
    cmd_list,
    cmd_proxy,
    cmd_remove,
    cmd_show,
    cmd_update,
    cmd_validate,
)
from regauth.config import Settings, load_settings
from regauth.coredump import disable_core_dumps
from regauth.errors import RegauthError
from regauth.printable import printable
from regauth.registries import PROVIDERS, RegistryBook

PROG = "regauth"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage block; a one-line error with a pointer reads better.
        self.exit(2, f"{PROG}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="One credential tool for every container registry.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _add_registry_parser(commands)
    cache = commands.add_parser("cache", help="the token cache of the cloud providers")
    cache_commands = cache.add_subparsers(dest="action", required=True, metavar="ACTION")
    cache_commands.add_parser("clear", help="forget every cached token").set_defaults(func=cmd_cache_clear)
    _add_proxy_parser(commands)
    return parser


def _add_registry_parser(commands: Any) -> None:
    registry = commands.add_parser("registry", help="add, list, show, update, remove, validate registries")
    actions = registry.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="add a registry (validated against it before it is saved)")
    add.add_argument("name", help="a name for it: lower-case letters, digits, '.', '_', '-'")
    add.add_argument("--url", required=True, help="the registry, e.g. ghcr.io or https://host:5000")
    _add_record_flags(add)
    add.set_defaults(func=cmd_add)

    lst = actions.add_parser("list", help="list registries (never their secrets)")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(func=cmd_list)

    show = actions.add_parser("show", help="show one registry (never its secret)")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_show)

    update = actions.add_parser("update", help="change a registry (validated again before it is saved)")
    update.add_argument("name")
    update.add_argument("--url", help="a new registry address")
    update.add_argument("--rename", metavar="NEW_NAME", help="a new name")
    update.add_argument("--anonymous", action="store_true", help="drop the username and secret")
    _add_record_flags(update)
    update.set_defaults(func=cmd_update)

    remove = actions.add_parser("remove", help="remove a registry and its secret")
    remove.add_argument("name")
    remove.set_defaults(func=cmd_remove)

    validate = actions.add_parser("validate", help="check saved registries against the registries")
    which = validate.add_mutually_exclusive_group(required=True)
    which.add_argument("name", nargs="?", help="the registry to check")
    which.add_argument("--all", action="store_true", help="check every registry")
    validate.add_argument("--repository", help="also check pull permission on this repository")
    validate.add_argument("--no-cache", action="store_true", help="mint fresh provider tokens")
    validate.set_defaults(func=cmd_validate)


def _add_record_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--username", help="the user name; without it the registry is anonymous")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password or token from standard input"
    )
    parser.add_argument("--provider", choices=PROVIDERS, help="where credentials come from (default static)")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a provider option (repeatable), e.g. region=eu-west-1",
    )
    parser.add_argument("--ca-file", metavar="PEM", help="CA bundle to trust for this registry")
    parser.add_argument(
        "--insecure",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="allow plain HTTP to this registry (named explicitly; never for others)",
    )
    parser.add_argument("--repository", help="repository used to check pull permission")
    parser.add_argument("--no-validate", action="store_true", help="save without checking the registry")
    parser.add_argument("--no-cache", action="store_true", help="mint fresh provider tokens for the check")


def _add_proxy_parser(commands: Any) -> None:
    proxy = commands.add_parser("proxy", help="run the pull-through proxy")
    proxy.add_argument("--listen", default="127.0.0.1:5000", help="address to listen on")
    proxy.add_argument("--cache-dir", help="cache blobs by digest in this directory")
    proxy.add_argument("--cache-max-size", help="cap the blob cache, e.g. 10GiB")
    proxy.add_argument(
        "--manifest-ttl",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="serve manifests fetched by tag from the cache this long (with --cache-dir; 0: never)",
    )
    proxy.add_argument(
        "--docker-hub",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="forward requests with no registry prefix to Docker Hub (default: if a docker.io record exists)",
    )
    proxy.add_argument(
        "--client-token-file",
        metavar="FILE",
        help="require this token from clients (Bearer, or as the Basic password)",
    )
    proxy.add_argument("--htpasswd", metavar="FILE", help="require a user of this bcrypt htpasswd file")
    proxy.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (chain)")
    proxy.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
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
        help="open client connections at most; idle ones are closed for room, then 503 (default 1024)",
    )
    proxy.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    proxy.add_argument(
        "--read-timeout", type=float, default=60.0, metavar="SECONDS", help="longest wait between two reads"
    )
    proxy.add_argument(
        "--shutdown-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="on SIGTERM, how long in-flight pulls may take to finish",
    )
    proxy.add_argument("--quiet", action="store_true", help="no access log")
    proxy.set_defaults(func=cmd_proxy)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace, Settings, RegistryBook], int] = args.func
    # Every command may hold a secret (a password on stdin, the store's key, the proxy's tokens).
    disable_core_dumps()
    try:
        settings = load_settings()
        if getattr(args, "no_cache", False):
            settings = settings._replace(no_cache=True)
        from regauth.logs import setup_logging

        setup_logging(settings)
        book = RegistryBook.for_settings(settings)
        return func(args, settings, book)
    except RegauthError as exc:
        # A message can quote a registry's text: escaped, it cannot clear the screen or fake a line.
        sys.stderr.write(f"{PROG}: error: {printable(str(exc))}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
