"""``regauth``: the command line. Parses arguments, runs one command, turns regauth errors into one line.

Secrets are never taken from argv: only from standard input (``--password-stdin``) or a prompt with no
echo, so they never show in ``ps`` or a shell history.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from regauth import __version__
from regauth.config import Settings, load_settings
from regauth.errors import RegauthError, UsageError, ValidationError
from regauth.providers.base import Credential
from regauth.reference import normalize_registry
from regauth.registries import PROVIDERS, Registry, RegistryBook

PROG = "regauth"
MAX_SECRET_BYTES = 64 * 1024


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


# --- commands -------------------------------------------------------------------------------------


def cmd_add(args: argparse.Namespace, settings: Settings, book: RegistryBook) -> int:
    provider = args.provider or "static"
    record = Registry(
        id="",
        name=args.name,
        registry=normalize_registry(args.url),
        username=args.username,
        provider=provider,
        options=_parse_options(args.option),
        ca_file=_ca_file(args.ca_file),
        insecure=bool(args.insecure),
        repository=args.repository,
    )
    secret = _read_secret(args, needed=provider == "static" and args.username is not None)
    if not args.no_validate:
        _validate_or_raise(settings, book, record, secret, args.repository)
    saved = book.add(record, secret)
    print(f"added registry {saved.name!r} ({saved.registry}, {_who(saved)})")
    return 0


def cmd_update(args: argparse.Namespace, settings: Settings, book: RegistryBook) -> int:
    old = book.get(args.name)
    changes: dict[str, Any] = {}
    if args.url is not None:
        changes["registry"] = normalize_registry(args.url)
    if args.rename is not None:
        changes["name"] = args.rename
    if args.anonymous:
        if args.username or args.password_stdin:
            raise UsageError("--anonymous cannot go with --username or --password-stdin")
        changes["username"] = None
    elif args.username is not None:
        changes["username"] = args.username
    if args.provider is not None:
        changes["provider"] = args.provider
    if args.option:
        changes["options"] = {**old.options, **_parse_options(args.option)}
    if args.ca_file is not None:
        changes["ca_file"] = _ca_file(args.ca_file) if args.ca_file else None
    if args.insecure is not None:
        changes["insecure"] = args.insecure
    if args.repository is not None:
        changes["repository"] = args.repository or None
    new = old._replace(**changes)
    # A new username with the old password is almost never right: ask for the secret again.
    needs_secret = (
        new.provider == "static"
        and new.username is not None
        and (old.username != new.username or old.anonymous)
    )
    secret = _read_secret(args, needed=needs_secret)
    if not args.no_validate:
        current = secret if secret is not None or new.anonymous else book.secret(old)
        _validate_or_raise(settings, book, new, current, new.repository)
    saved = book.update(old.name, changes, secret)
    _forget_tokens(settings, book, old)
    print(f"updated registry {saved.name!r} ({saved.registry}, {_who(saved)})")
    return 0


def cmd_remove(args: argparse.Namespace, settings: Settings, book: RegistryBook) -> int:
    record = book.remove(args.name)
    _forget_tokens(settings, book, record)
    print(f"removed registry {record.name!r} ({record.registry})")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings, book: RegistryBook) -> int:
    records = book.all()
    if args.json:
        print(json.dumps([_public(r) for r in records], indent=2))
        return 0
    if not records:
        print("no registries configured (add one with `regauth registry add NAME --url URL`)")
        return 0
    rows = [("NAME", "REGISTRY", "USERNAME", "PROVIDER", "UPDATED")]
    rows += [(r.name, r.registry, r.username or "-", r.provider, r.updated_at) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
        print("  ".join(cells) + "  " + row[-1])
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings, book: RegistryBook) -> int:
    record = book.get(args.name)
    data = _public(record)
    data["secret"] = _secret_state(book, record)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for key, value in data.items():
        if key == "options":
            value = ", ".join(f"{k}={v}" for k, v in sorted(record.options.items())) or "-"
        print(f"{key + ':':<12} {'-' if value is None else value}")
    return 0


def cmd_validate(args: argparse.Namespace, settings: Settings, book: RegistryBook) -> int:
    records = book.all() if args.all else [book.get(args.name)]
    if not records:
        raise UsageError("no registries configured")
    failed = 0
    for record in records:
        result = _validate(settings, book, record, None, args.repository or record.repository)
        print(f"{'ok  ' if result.ok else 'FAIL'} {result.message}")
        failed += not result.ok
    return 1 if failed else 0


def cmd_cache_clear(args: argparse.Namespace, settings: Settings, book: RegistryBook) -> int:
    from regauth.providers.cache import clear

    print(f"cleared {clear(settings)} cached token(s)")
    return 0


def cmd_proxy(args: argparse.Namespace, settings: Settings, book: RegistryBook) -> int:
    from regauth.proxy.main import run_proxy

    return run_proxy(args, settings, book)


# --- helpers --------------------------------------------------------------------------------------


def _validate(
    settings: Settings, book: RegistryBook, record: Registry, secret: str | None, repository: str | None
):  # type: ignore[no-untyped-def]
    from regauth.distribution.validate import validate_sync

    credential = _credential(settings, book, record, secret)
    return validate_sync(record, credential, repository)


def _validate_or_raise(
    settings: Settings, book: RegistryBook, record: Registry, secret: str | None, repository: str | None
) -> None:
    result = _validate(settings, book, record, secret, repository)
    if not result.ok:
        raise ValidationError(
            f"{result.message}; nothing was saved (--no-validate skips the check)", outcome=result.outcome
        )


def _credential(
    settings: Settings, book: RegistryBook, record: Registry, secret: str | None
) -> Credential | None:
    """The credential to validate ``record`` with; ``secret`` is the one not yet saved, if any."""
    if record.provider == "static":
        if record.anonymous:
            return None
        if secret is None:
            secret = book.secret(record)
        return Credential(username=record.username or "", secret=secret or "")
    from regauth.providers.routing import record_credential

    # Always a fresh mint: a cached token would prove nothing about a changed secret or option.
    with book.pending_secret(record, secret):
        return record_credential(settings, book, record, use_cache=False)


def _forget_tokens(settings: Settings, book: RegistryBook, record: Registry) -> None:
    """Drop the host's cached provider tokens: they were minted for the record as it was."""
    if record.provider in ("static", "env"):
        return
    from regauth.providers.cache import clear

    clear(settings, book.store, host=record.registry)


def _read_secret(args: argparse.Namespace, *, needed: bool) -> str | None:
    if args.password_stdin:
        raw = sys.stdin.buffer.read(MAX_SECRET_BYTES + 1)
        if len(raw) > MAX_SECRET_BYTES:
            raise UsageError(f"the secret on standard input is larger than {MAX_SECRET_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError("the secret on standard input is not valid UTF-8") from None
        # As `docker login --password-stdin`: one trailing newline is the shell's, not the secret's.
        secret = text.removesuffix("\n").removesuffix("\r")
        if not secret:
            raise UsageError("the secret on standard input is empty")
        return secret
    if not needed:
        return None
    if not sys.stdin.isatty():
        raise UsageError("a password is needed: pass it on standard input with --password-stdin")
    import getpass

    secret = getpass.getpass("Password: ")
    if not secret:
        raise UsageError("no password given")
    return secret


def _parse_options(items: Sequence[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option wants KEY=VALUE, got {item!r}")
        options[key.strip()] = value.strip()
    return options


def _ca_file(path: str | None) -> str | None:
    if path is None:
        return None
    from pathlib import Path

    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise UsageError(f"--ca-file {path}: no such file")
    return str(resolved)


def _who(record: Registry) -> str:
    if record.provider != "static":
        return f"provider {record.provider}"
    return f"user {record.username}" if record.username else "anonymous"


def _public(record: Registry) -> dict[str, Any]:
    return record.to_json()


def _secret_state(book: RegistryBook, record: Registry) -> str:
    if record.anonymous:
        return "none (anonymous)"
    return "stored" if book.secret(record) is not None else "missing"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace, Settings, RegistryBook], int] = args.func
    try:
        settings = load_settings()
        if getattr(args, "no_cache", False):
            settings = settings._replace(no_cache=True)
        from regauth.logs import setup_logging
        from regauth.store import open_store

        setup_logging(settings)
        book = RegistryBook(settings, lambda: open_store(settings))
        return func(args, settings, book)
    except RegauthError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
