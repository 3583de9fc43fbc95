"""The CLI's ``serve`` and ``token`` commands (``cli.py`` parses their arguments)."""

from __future__ import annotations

import argparse

from regauth.api.tokens import TokenBook
from regauth.config import Settings
from regauth.printable import printable
from regauth.registries import RegistryBook
from regauth.store.base import SecretStore


def cmd_serve(args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore) -> int:
    from regauth.api.main import run_serve

    return run_serve(args, settings, book, store)


def cmd_token_create(
    args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore
) -> int:
    record, token = TokenBook.for_settings(settings).create(args.name, args.scope)
    # The token itself on stdout, alone, for `$(regauth token create ...)`; it is never shown again.
    print(token)
    import sys

    sys.stderr.write(
        f"created token {record.name!r} with scope {record.scope}; it is shown only now, store it safely\n"
    )
    return 0


def cmd_token_list(
    args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore
) -> int:
    tokens = TokenBook.for_settings(settings).all()
    if args.json:
        import json

        print(json.dumps([t._asdict() for t in tokens], indent=2))
        return 0
    if not tokens:
        print("no API tokens (create one with `regauth token create NAME --scope read|write`)")
        return 0
    width = max(len("NAME"), *(len(t.name) for t in tokens))
    print(f"{'NAME':<{width}}  SCOPE  CREATED")
    for token in tokens:
        print(f"{printable(token.name):<{width}}  {token.scope:<5}  {token.created_at}")
    return 0


def cmd_token_revoke(
    args: argparse.Namespace, settings: Settings, book: RegistryBook, store: SecretStore
) -> int:
    gone = TokenBook.for_settings(settings).revoke(args.name)
    print(f"revoked token {gone.name!r}")
    return 0
