"""The ``regauth import docker|podman`` command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regauth import argtypes
from regauth.config import Settings
from regauth.configure.cli import backup_root, one_at_a_time, store_of
from regauth.errors import ConfigError, UsageError
from regauth.registries import RegistryBook
from regauth.store.base import SecretStore

if TYPE_CHECKING:
    from regauth.configure import importer


def add_parser(commands: Any, examples: Any) -> None:
    imp = commands.add_parser(
        "import",
        help="move plaintext credentials from docker's or podman's auth file into regauth",
        description="Move the plaintext credentials (auths entries with auth or identitytoken) of the "
        "docker config or the containers auth file into regauth's store as static records, each "
        "validated first unless --no-validate; point those hosts at the helper and remove the "
        "plaintext from the file (the original kept in a 0600 backup). Exit status 1 when something "
        "was left in place.",
        epilog=examples(
            "regauth import docker --dry-run",
            "regauth import podman --auth-file ~/auth.json",
            "regauth import docker --undo",
        ),
    )
    imp.add_argument("client", choices=("docker", "podman"), help="whose file to import from")
    imp.add_argument(
        "--config",
        type=argtypes.path,
        metavar="DIR",
        help="docker: the config directory (default: $DOCKER_CONFIG)",
    )
    imp.add_argument(
        "--auth-file",
        type=argtypes.path,
        metavar="PATH",
        help="podman: the auth file (default: $REGISTRY_AUTH_FILE)",
    )
    imp.add_argument("--no-validate", action="store_true", help="save without checking each registry")
    imp.add_argument("--dry-run", action="store_true", help="check and show; save and write nothing")
    imp.add_argument("--backup-dir", type=argtypes.path, metavar="DIR", help="keep the backup here")
    imp.add_argument(
        "--undo",
        action="store_true",
        help="put back the file the last import changed and remove the registries it added",
    )
    imp.add_argument(
        "--force", action="store_true", help="with --undo: restore over later changes (changed records kept)"
    )
    imp.set_defaults(func=cmd_import)


def cmd_import(
    args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore | None = None
) -> int:
    from regauth.configure import core, docker, importer

    if args.client == "docker":
        if args.auth_file:
            raise UsageError("--auth-file is podman's; docker takes --config DIR")
        path = docker.config_file(settings.environ, args.config)
    else:
        if args.config:
            raise UsageError("--config is docker's; podman takes --auth-file PATH")
        path = _podman_auth_file(settings, args.auth_file)
    root = backup_root(args, settings)
    if args.force and not args.undo:
        raise UsageError("--force goes with --undo only")
    with one_at_a_time(root, f"import-{args.client}", args.dry_run):
        if args.undo:
            from regauth.configure.import_undo import undo_import

            return undo_import(
                args.client,
                settings,
                book,
                store_of(settings, store),
                backup_root=root,
                force=args.force,
                dry_run=args.dry_run,
                say=print,
            )
        plan, outcome = importer.run_import(
            args.client,
            path,
            settings,
            book,
            store_of(settings, store),
            validate=not args.no_validate,
            dry_run=args.dry_run,
        )
        _report(outcome, path, args.dry_run)
        if any(change.changes for change in plan.changes):
            try:
                core.apply(plan, dry_run=args.dry_run, backup_root=root, say=print)
            except ConfigError as exc:
                # The file kept its plaintext and no backup set names the records: kept, they would
                # hold the credential a second time with no --undo to take them back.
                from regauth.configure.import_undo import remove_added

                remove_added(settings, book, store_of(settings, store), plan.records)
                raise ConfigError(f"{exc}; nothing was imported") from exc
    # What regauth already had stays in the file as plaintext too: left in place, as the README says.
    return 1 if outcome.failed or outcome.skipped or outcome.already else 0


def _report(outcome: importer.Outcome, path: Path, dry_run: bool) -> None:
    for line in outcome.moved:
        print(f"{'would move' if dry_run else 'moved'} {line}")
    for line in outcome.already:
        print(f"already there: {line}")
    for line in outcome.failed:
        print(f"did not validate: {line}")
    for line in outcome.skipped:
        print(f"left in place: {line}")
    if not (outcome.moved or outcome.already or outcome.failed or outcome.skipped):
        print(f"no plaintext credentials in {path}")


def _podman_auth_file(settings: Settings, flag: str | None) -> Path:
    from regauth.configure import podman

    return podman.login_auth_file(settings.environ, flag)
