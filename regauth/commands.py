"""What each ``regauth`` command does, given its parsed arguments, the settings, the registry book and
the secret store (opened by the CLI, lazily: a command that reads no secret never opens it).

Secrets are never taken from argv: only from standard input (``--password-stdin``) or a prompt with no
echo, so they never show in ``ps`` or a shell history.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from regauth import audit, registry_ops
from regauth.config import Settings
from regauth.errors import NotFoundError, ProviderError, UsageError, ValidationError
from regauth.printable import printable
from regauth.reference import check_repository
from regauth.registries import ORIGIN_CLI, Registry, RegistryBook, check_record, stored_secret
from regauth.registry_ops import check_option_keys, check_scheme, forget_tokens, url_prefix
from regauth.registry_ops import known_option_keys as known_option_keys  # the rule is registry_ops'
from regauth.servers import normalize_registry
from regauth.store.base import SecretStore

if TYPE_CHECKING:
    # Only for the annotation: importing it loads aiohttp, which no command but a validation needs.
    from regauth.distribution.validate import ValidationResult

MAX_SECRET_BYTES = 64 * 1024


def cmd_add(args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore) -> int:
    provider = args.provider or "static"
    check_scheme(args.url, bool(args.insecure))
    record = Registry(
        id="",
        name=args.name,
        registry=normalize_registry(args.url),
        prefix=url_prefix(args.url),
        username=args.username,
        provider=provider,
        options=_parse_options(args.option),
        ca_file=_ca_file(args.ca_file),
        insecure=bool(args.insecure),
        repository=args.repository,
    )
    # Before anything is read or sent: a bad username or repository must not reach the registry.
    check_record(record)
    check_option_keys(record)
    _check_secret_wanted(args, record)
    secret = _read_secret(args, needed=provider == "static" and args.username is not None)
    access = ""
    if not args.no_validate:
        result = _validate_or_raise(settings, store, record, secret, args.repository)
        record = record._replace(last_validation=registry_ops.last_validation(result))
        access = registry_ops.access_note(result)
    saved = book.add(record, secret)
    _audit(settings, audit.CREATED, saved, secret_set=secret is not None)
    print(f"added registry {saved.name!r} ({saved.location}, {_who(saved)}{access})")
    return 0


def cmd_update(args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore) -> int:
    old = book.get(args.name)
    # Changed with `regauth registry`, the record is the user's own: a logout keeps its settings.
    changes: dict[str, Any] = {"origin": ORIGIN_CLI}
    if args.url is not None:
        check_scheme(args.url, old.insecure if args.insecure is None else args.insecure)
        changes["registry"] = normalize_registry(args.url)
        changes["prefix"] = url_prefix(args.url)
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
        merged = {**old.options, **_parse_options(args.option)}
        # `--option KEY=` takes the option away (it is the same as unset to every provider).
        changes["options"] = {key: value for key, value in merged.items() if value}
    if args.ca_file is not None:
        changes["ca_file"] = _ca_file(args.ca_file) if args.ca_file else None
    if args.insecure is not None:
        changes["insecure"] = args.insecure
    if args.repository is not None:
        changes["repository"] = args.repository or None
    new = check_record(old._replace(**changes))
    if args.option or args.provider is not None:
        check_option_keys(new)
    _check_secret_wanted(args, new)
    secret = _read_secret(args, needed=registry_ops.needs_new_secret(old, new))
    if not args.no_validate:
        # With no new secret, the stored one (the record keeps its id, so its key) is checked, unless
        # the record moves to another host: that keeps no secret.
        checked = registry_ops.secret_for_check(old, new, secret)
        result = _validate_or_raise(settings, store, new, checked, new.repository)
        changes["last_validation"] = registry_ops.last_validation(result)
    saved = book.update(old.name, changes, secret, seen=old)
    forget_tokens(settings, store, old)
    dropped = registry_ops.moves_host(old, new) and secret is None and not old.anonymous
    _audit(settings, audit.UPDATED, saved, secret_set=secret is not None, dropped=dropped)
    print(f"updated registry {saved.name!r} ({saved.location}, {_who(saved)})")
    return 0


def cmd_remove(args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore) -> int:
    record = book.remove(args.name)
    registry_ops.forget_removed(settings, store, record)
    _audit(settings, audit.DELETED, record)
    print(f"removed registry {record.name!r} ({record.registry})")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore) -> int:
    records = book.all()
    if args.json:
        print(json.dumps([r.to_json() for r in records], indent=2))
        return 0
    if not records:
        print("no registries configured (add one with `regauth registry add NAME --url URL`)")
        return 0
    rows: list[tuple[str, ...]] = [("NAME", "REGISTRY", "USERNAME", "PROVIDER", "ACTIVE", "UPDATED")]
    rows += [
        tuple(
            printable(cell)
            for cell in (
                r.name,
                r.location,
                r.username or "-",
                r.provider,
                "yes" if r.active else "no (inactive)",
                r.updated_at,
            )
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
        print("  ".join(cells) + "  " + row[-1])
    return 0


def cmd_enable(args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore) -> int:
    return _set_active(args.name, settings, book, True)


def cmd_disable(args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore) -> int:
    return _set_active(args.name, settings, book, False)


def _set_active(name: str, settings: Settings, book: RegistryBook, active: bool) -> int:
    old = book.get(name)
    state = "enabled" if active else "disabled"
    if old.active is active:
        print(f"registry {old.name!r} is already {state}")
        return 0
    saved = book.update(old.name, {"active": active})
    _audit(settings, audit.ENABLED if active else audit.DISABLED, saved)
    what = "" if active else "; kept, but the helper answers not-found for it and the proxy refuses it"
    print(f"{state} registry {saved.name!r} ({saved.registry}){what}")
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore) -> int:
    record = book.get(args.name)
    data = record.to_json()
    data["secret"] = _secret_state(store, record)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for key, value in data.items():
        if key == "options":
            value = ", ".join(f"{k}={v}" for k, v in sorted(record.options.items())) or "-"
        print(f"{key + ':':<12} {'-' if value is None else printable(str(value))}")
    return 0


def cmd_validate(args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore) -> int:
    if args.repository:
        check_repository(args.repository)
    records = book.all() if args.all else [book.get(args.name)]
    if not records:
        raise UsageError("no registries configured")
    answers: list[dict[str, Any]] = []
    for record in records:
        try:
            result = _validate(settings, store, record, None, args.repository or record.repository)
        except (ProviderError, NotFoundError) as exc:
            # One record that cannot be checked (no secret stored, no cloud credentials) is a failed
            # check of that record; `--all` goes on to the others.
            if not args.all:
                raise
            answers.append(_unchecked(record, str(exc), args.json))
            continue
        book.note_validation(record.id, registry_ops.last_validation(result))
        advice = None if result.ok else _advice(result, record, f"regauth registry update {record.name}")
        if not args.json:
            # The message carries the registry's own text, which must not drive the terminal.
            line = result.message + (f"; {advice}" if advice else "")
            print(f"{'ok  ' if result.ok else 'FAIL'} {printable(line)}")
        answers.append(
            {
                "name": record.name,
                "registry": record.registry,
                "ok": result.ok,
                "outcome": str(result.outcome),
                "access": result.access,
                "message": result.message,
                "advice": advice,
            }
        )
    if args.json:
        print(json.dumps(answers, indent=2))
    return 1 if any(not answer["ok"] for answer in answers) else 0


def _unchecked(record: Registry, message: str, as_json: bool) -> dict[str, Any]:
    # The message names the record already (its provider's failure, or its missing secret).
    if not as_json:
        print(f"FAIL {printable(message)}")
    return {
        "name": record.name,
        "registry": record.registry,
        "ok": False,
        "outcome": None,
        "access": "unknown",
        "message": message,
        "advice": None,
    }


def cmd_which(args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore) -> int:
    from regauth.which import answer_for

    answer = answer_for(settings, book, store, args.target)
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        width = max(len(key) for key in answer) + 2
        for key, value in answer.items():
            if value is not None:
                print(f"{key + ':':<{width}}{printable(str(value))}")
    return 0 if answer["answered_by"] != "nothing" else 1


def cmd_cache_clear(
    args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore
) -> int:
    from regauth.providers.cache import clear

    print(f"cleared {clear(settings, store)} cached token(s)")
    return 0


def cmd_proxy(args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore) -> int:
    from regauth.proxy.main import run_proxy

    return run_proxy(args, settings, book, store)


# --- helpers --------------------------------------------------------------------------------------


def _validate(
    settings: Settings, store: SecretStore, record: Registry, secret: str | None, repository: str | None
) -> ValidationResult:
    """Check ``record`` against its registry; ``secret`` is one not saved yet, if any."""
    return registry_ops.check(settings, store, record, secret, repository)


def _validate_or_raise(
    settings: Settings, store: SecretStore, record: Registry, secret: str | None, repository: str | None
) -> ValidationResult:
    result = _validate(settings, store, record, secret, repository)
    if not result.ok:
        advice = _advice(result, record, "") or "--no-validate skips the check"
        raise ValidationError(f"{result.message}; nothing was saved ({advice})", outcome=result.outcome)
    return result


def _advice(result: ValidationResult, record: Registry, command: str) -> str | None:
    """Which flag fixes a failed check, if one does; ``command`` is what to run it with (none: this one).

    The transport says what happened in its own terms; the remedy is named here, in the flags of the
    command line, which the proxy and the credential helper do not have.
    """
    from regauth.distribution.errors import Outcome

    if result.outcome is not Outcome.TLS_ERROR or record.insecure:
        return None
    run = f"`{command} --ca-file PEM`" if command else "`--ca-file PEM`"
    if record.ca_file:
        return f"check that {record.ca_file} holds the CA that signed its certificate, or name it with {run}"
    plain = f"`{command} --insecure`" if command else "`--insecure`"
    return f"a registry with a private CA: name the CA with {run}; a plain-HTTP registry: {plain}"


def _check_secret_wanted(args: argparse.Namespace, record: Registry) -> None:
    registry_ops.check_secret_wanted(record, bool(args.password_stdin))


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

    shown = printable(path if len(path) <= 200 else path[:200] + "...")
    try:
        resolved = Path(path).expanduser().resolve()
        found = resolved.is_file()
    except (OSError, RuntimeError) as exc:
        # A name the system will not look up (too long, a symbolic-link loop) is bad input too.
        raise UsageError(f"--ca-file {shown}: {getattr(exc, 'strerror', None) or exc}") from None
    if not found:
        raise UsageError(f"--ca-file {shown}: no such file")
    return str(resolved)


def _who(record: Registry) -> str:
    if record.provider != "static":
        return f"provider {record.provider}"
    return f"user {record.username}" if record.username else "anonymous"


def _secret_state(store: SecretStore, record: Registry) -> str:
    if record.anonymous:
        return "none (anonymous)"
    return "stored" if stored_secret(store, record) is not None else "missing"


def _audit(
    settings: Settings, action: str, record: Registry, *, secret_set: bool = False, dropped: bool = False
) -> None:
    secret = "set" if secret_set else ("dropped" if dropped else None)
    audit.AuditLog.for_settings(settings).append(ORIGIN_CLI, action, record.id, record.name, secret=secret)
