"""``regauth import docker|podman``: plaintext ``auths`` into regauth's store, the hosts onto the helper.

Each ``auths`` entry with an ``auth`` (base64 ``user:password``) or an ``identitytoken`` becomes a
static record, checked against its registry first (unless ``--no-validate``) by the same
``registry_ops.check`` as ``regauth registry add``, and saved by the same ``RegistryBook.add``, with
its last validation and an audit event. Only the entries that moved lose
their secret fields in the file, and get a ``credHelpers`` entry; the file is rewritten through
``core.apply``, so the original goes to a 0600 backup. Nothing secret is ever printed, not even in the
``--dry-run`` diff.
"""

from __future__ import annotations

import base64
import binascii
import copy
from pathlib import Path
from typing import Any, NamedTuple

from regauth import audit, registry_ops
from regauth.config import Settings
from regauth.configure import jsonfile
from regauth.configure.core import Change, Plan
from regauth.configure.docker import docker_key
from regauth.configure.files import FileState, read_state
from regauth.configure.hosts import HELPER
from regauth.configure.import_undo import made
from regauth.errors import RegauthError
from regauth.printable import printable
from regauth.registries import ORIGIN_CLI, Registry, RegistryBook, check_record, name_for_host
from regauth.servers import normalize_registry
from regauth.store.base import SecretStore

# What a docker or containers auth entry may hold that is a credential.
SECRET_FIELDS = ("auth", "identitytoken", "password", "registrytoken", "username")
TOKEN_USERNAME = "<token>"  # how docker stores an identity token (docker-credential-helpers)


class Found(NamedTuple):
    key: str  # the auths key as written
    host: str
    username: str
    secret: str


class Outcome(NamedTuple):
    moved: list[str]
    already: list[str]
    failed: list[str]
    skipped: list[str]


def plaintext(state: FileState, config: dict[str, Any]) -> tuple[list[Found], list[str], list[str]]:
    """The credentials in ``config``'s ``auths``, the entries that cannot be imported (with why), and
    every secret string seen (for redaction)."""
    found: list[Found] = []
    skipped: list[str] = []
    secrets: list[str] = []
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return found, skipped, secrets
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        secrets += [str(entry[f]) for f in SECRET_FIELDS[:-1] if entry.get(f)]
        credential = _credential(entry)
        if credential is None:
            if entry.get("auth") or entry.get("identitytoken"):
                skipped.append(f"{printable(key)}: its auth field is not base64 of user:password")
            continue
        username, secret = credential
        secrets.append(secret)
        try:
            host = normalize_registry(key)
        except RegauthError as exc:
            skipped.append(f"{printable(key)}: {exc}")
            continue
        # A key with a scheme is a legacy URL, its path cut off by every client (`https://host/v2/`);
        # only a bare `host/ns` key is containers' namespaced one.
        if "://" not in key and "/" in key.rstrip("/"):
            skipped.append(f"{printable(key)}: a namespaced entry (regauth keeps one credential per host)")
            continue
        found.append(Found(key, host, username, secret))
    return found, skipped, secrets


def _credential(entry: dict[str, Any]) -> tuple[str, str] | None:
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return TOKEN_USERNAME, token
    auth = entry.get("auth")
    if not isinstance(auth, str) or not auth:
        return None
    try:
        text = base64.b64decode(auth, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = text.partition(":")
    if not sep or not username or not password:
        return None
    return username, password


def run_import(
    client: str,
    path: Path,
    settings: Settings,
    book: RegistryBook,
    store: SecretStore,
    *,
    validate: bool,
    dry_run: bool,
) -> tuple[Plan, Outcome]:
    """Move what validates into the book (not on a dry run) and plan the file without it."""
    state = read_state(path)
    before = jsonfile.load_object(state)
    found, skipped, secrets = plaintext(state, before)
    after = copy.deepcopy(before)
    outcome = Outcome([], [], [], skipped)
    added: list[tuple[str, str]] = []  # (id, import_undo.made): what an undo of this run removes
    for item in found:
        helper = _answering_helper(before, item, client)
        if helper is not None and helper != HELPER:
            # The client never sends this plaintext: moving it would put a credential it does not
            # use (often a stale one) in the place of the helper that answers now.
            outcome.skipped.append(
                f"{printable(item.key)}: the {_CLIENT_NAMES[client]} asks the helper {printable(helper)!r} "
                "for it, not this plaintext (remove the plaintext by hand if it is stale)"
            )
            continue
        existing = book.for_host(item.host)
        if existing is not None:
            outcome.already.append(f"{item.host}: already in regauth as {existing.name!r}; left in place")
            continue
        try:
            # As `regauth registry add` does, before anything is sent.
            record = check_record(_record(settings, book, item))
        except RegauthError as exc:
            outcome.skipped.append(f"{printable(item.key)}: {exc}")
            continue
        if validate:
            result = registry_ops.check(settings, store, record, item.secret, None)
            if not result.ok:
                outcome.failed.append(f"{item.host}: {printable(result.message)}; left in place")
                continue
            record = record._replace(last_validation=registry_ops.last_validation(result))
        if not dry_run:
            record = book.add(record, item.secret)
            added.append((record.id, made(record)))
            audit.AuditLog.for_settings(settings).append(
                ORIGIN_CLI, audit.CREATED, record.id, record.name, secret="set"
            )
        outcome.moved.append(f"{item.host} (user {printable(item.username)}) -> registry {record.name!r}")
        _point_at_helper(after, item, client)
    data = jsonfile.rewrite(state, before, after)
    change = Change(state, data, new_mode=0o600, dir_mode=0o700)
    plan = Plan(f"import-{client}", [change], secrets=secrets, records=added)
    return plan, outcome


_CLIENT_NAMES = {"docker": "docker CLI", "podman": "containers clients (podman, skopeo)"}


def _answering_helper(config: dict[str, Any], item: Found, client: str) -> str | None:
    """The helper the client asks for ``item``'s host instead of reading the plaintext: its
    ``credHelpers`` entry, else (the docker CLI only; containers/image ignores it) ``credsStore``."""
    helpers = config.get("credHelpers")
    key = docker_key(item.host) if client == "docker" else item.host
    if isinstance(helpers, dict) and isinstance(helpers.get(key), str) and helpers[key]:
        return str(helpers[key])
    store = config.get("credsStore")
    return store if client == "docker" and isinstance(store, str) and store else None


def _record(settings: Settings, book: RegistryBook, item: Found) -> Registry:
    from regauth.clientcerts import client_ca

    taken = {r.name for r in book.all()}
    name = base = name_for_host(item.host)
    counter = 2
    while name in taken:
        name, counter = f"{base}-{counter}", counter + 1
    return Registry(
        id="",
        name=name,
        registry=item.host,
        username=item.username,
        # The CA the clients trust for the host, as a login through the helper takes it.
        ca_file=client_ca(settings.certs_dirs, item.host),
    )


def _point_at_helper(config: dict[str, Any], item: Found, client: str) -> None:
    auths = config["auths"]
    for field in SECRET_FIELDS:
        auths[item.key].pop(field, None)
    if not auths[item.key]:
        # The helper answers for the host now; an empty entry would only be noise.
        del auths[item.key]
    helpers = config.setdefault("credHelpers", {})
    if isinstance(helpers, dict):
        helpers[docker_key(item.host) if client == "docker" else item.host] = HELPER
