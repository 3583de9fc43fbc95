"""What the API does with registry records: list, find, create, update, delete and check them.

Every rule is the CLI's (``registries`` for the records, ``registry_ops`` for adding and changing
them); this module only orders them for a request and keeps the audit log. Book and store calls take
file locks and may block, so they run on worker threads: many concurrent requests, one event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from regauth import audit, registry_ops
from regauth.api.errors import FieldError
from regauth.api.records import Body
from regauth.audit import AuditLog
from regauth.config import Settings
from regauth.distribution.validate import ValidationResult
from regauth.errors import NotFoundError, UsageError, ValidationError
from regauth.fsutil import atomic_write, ensure_private_dir
from regauth.registries import Registry, RegistryBook, check_record
from regauth.store.base import SecretStore

CA_DIR = "api-ca"  # in the config dir: CA certificates given as text (``ca_pem``), by content
_PLAIN_HTTP_FIX = 'set "insecure": true to allow it'
# Fields whose change can change what the registry is asked with or where: a PATCH of one validates.
_CHECKED_FIELDS = frozenset(
    {"url", "username", "password", "token", "provider", "options", "ca_pem", "insecure", "repository"}
)
_NOT_FIELDS = frozenset({"password", "token", "validate"})


@dataclass(frozen=True)
class Page:
    records: list[Registry]
    total: int


class RegistryService:
    def __init__(
        self,
        settings: Settings,
        book: RegistryBook,
        store: SecretStore,
        audit_log: AuditLog,
        *,
        server_credentials: bool = False,
    ) -> None:
        self.settings = settings
        # ``--allow-server-credentials``: records may spend the server's own credentials (registry_ops).
        self.server_credentials = server_credentials
        self.book = book
        self.store = store
        self.audit = audit_log
        self._ca_dir = settings.config_dir / CA_DIR

    # --- reading ----------------------------------------------------------------------------------

    async def page(self, provider: str | None, q: str | None, page: int, page_size: int) -> Page:
        records = await asyncio.to_thread(self.book.all)
        if provider:
            records = [r for r in records if r.provider == provider]
        if q:
            needle = q.lower()
            records = [r for r in records if needle in r.name or needle in r.registry]
        start = (page - 1) * page_size
        return Page(records[start : start + page_size], len(records))

    async def find(self, key: str) -> Registry:
        """The record whose id, else whose name, is ``key``."""
        records = await asyncio.to_thread(self.book.all)
        for record in records:
            if record.id == key:
                return record
        for record in records:
            if record.name == key:
                return record
        raise NotFoundError(f"no registry with the id or name {key[:80]!r}")

    async def secret_keys(self) -> frozenset[str]:
        """The store's keys, so a listing tells ``has_secret`` without reading any secret."""
        return frozenset(await asyncio.to_thread(self.store.keys))

    # --- changing ---------------------------------------------------------------------------------

    async def create(self, body: Body, actor: str) -> Registry:
        record = await self._unsaved(body)
        # Before the check, so a taken name or host answers 409 without a round trip to the registry.
        await asyncio.to_thread(self.book.check_free, record)
        if body.validate:
            result = await self._check(record, body.secret)
            record = record._replace(last_validation=registry_ops.last_validation(result))
        saved = await asyncio.to_thread(self.book.add, record, body.secret, by=actor)
        fields = body.given - _NOT_FIELDS
        self.audit.append(
            actor, audit.CREATED, saved.id, saved.name, fields=fields, secret="set" if body.secret else None
        )
        return saved

    async def update(self, key: str, body: Body, actor: str) -> Registry:
        old = await self.find(key)
        changes = dict(body.fields)
        if body.ca_pem is not None:
            changes["ca_file"] = (
                await asyncio.to_thread(self._save_ca, body.ca_pem, self._ca_dir) if body.ca_pem else None
            )
        new = check_record(old._replace(**changes))
        if body.url is not None:
            registry_ops.check_scheme(body.url, new.insecure, fix=_PLAIN_HTTP_FIX)
        if "options" in changes or "provider" in changes:
            _check_option_keys(new)
        self._check_server_resources(new, old)
        registry_ops.check_secret_wanted(
            new, body.secret is not None, needs="a password or token needs a username"
        )
        if registry_ops.needs_new_secret(old, new) and body.secret is None:
            raise FieldError("password", "a new username (or a record that had none) needs its secret")
        moved = registry_ops.moves_host(old, new)
        if body.validate and body.given & _CHECKED_FIELDS:
            secret = registry_ops.secret_for_check(old, new, body.secret)
            result = await self._check(new, secret)
            changes["last_validation"] = registry_ops.last_validation(result)
        saved = await asyncio.to_thread(self.book.update, old.name, changes, body.secret, by=actor, seen=old)
        await asyncio.to_thread(registry_ops.forget_tokens, self.settings, self.store, old)
        action = audit.UPDATED
        if body.given == {"active"}:
            action = audit.ENABLED if saved.active else audit.DISABLED
        dropped = moved and body.secret is None and not old.anonymous
        secret_state = "set" if body.secret else ("dropped" if dropped else None)
        self.audit.append(
            actor, action, saved.id, saved.name, fields=body.given - _NOT_FIELDS, secret=secret_state
        )
        return saved

    async def delete(self, key: str, actor: str) -> Registry:
        record = await self.find(key)
        gone = await asyncio.to_thread(self.book.remove_id, record.id)
        await asyncio.to_thread(registry_ops.forget_removed, self.settings, self.store, gone)
        self.audit.append(actor, audit.DELETED, gone.id, gone.name)
        return gone

    # --- checking ---------------------------------------------------------------------------------

    async def check_saved(self, key: str, actor: str) -> ValidationResult:
        record = await self.find(key)
        result = await registry_ops.check_async(self.settings, self.store, record, None, record.repository)
        note = registry_ops.last_validation(result)
        await asyncio.to_thread(self.book.note_validation, record.id, note)
        self.audit.append(actor, audit.VALIDATED, record.id, record.name, outcome=note["outcome"])
        return result

    async def check_unsaved(self, body: Body) -> ValidationResult:
        # Nothing is saved, not even the CA: it is written for the check only.
        await asyncio.to_thread(ensure_private_dir, self.settings.cache_dir)
        with tempfile.TemporaryDirectory(prefix="check-", dir=self.settings.cache_dir) as scratch:
            record = await self._unsaved(body, ca_dir=Path(scratch))
            return await registry_ops.check_async(
                self.settings, self.store, record, body.secret, record.repository
            )

    # --- the parts ----------------------------------------------------------------------------------

    async def _unsaved(self, body: Body, *, ca_dir: Path | None = None) -> Registry:
        """The record a create (or an unsaved check) body describes, every rule checked; its CA is
        written to ``ca_dir`` (by default the records' own)."""
        fields = dict(body.fields)
        record = Registry(id="", **{"name": fields.pop("name", "unsaved"), **fields})
        record = check_record(record)
        registry_ops.check_scheme(body.url or "", record.insecure, fix=_PLAIN_HTTP_FIX)
        _check_option_keys(record)
        self._check_server_resources(record)
        registry_ops.check_secret_wanted(
            record, body.secret is not None, needs="a password or token needs a username"
        )
        if record.provider == "static" and not record.anonymous and body.secret is None:
            raise FieldError("password", "a static registry with a username needs its password or token")
        if body.ca_pem:
            path = await asyncio.to_thread(self._save_ca, body.ca_pem, ca_dir or self._ca_dir)
            record = record._replace(ca_file=path)
        return record

    def _check_server_resources(self, record: Registry, old: Registry | None = None) -> None:
        if self.server_credentials:
            return
        problem = registry_ops.server_resource_problem(record, old)
        if problem is not None:
            raise FieldError(*problem)

    async def _check(self, record: Registry, secret: str | None) -> ValidationResult:
        result = await registry_ops.check_async(self.settings, self.store, record, secret, record.repository)
        if not result.ok:
            raise ValidationError(f"{result.message}; nothing was saved", outcome=str(result.outcome))
        return result

    @staticmethod
    def _save_ca(pem: str, directory: Path) -> str:
        """``pem`` as a file the record can name (by its content: the same CA is one file)."""
        ensure_private_dir(directory)
        path: Path = directory / (hashlib.sha256(pem.encode()).hexdigest()[:32] + ".pem")
        if not path.exists():
            atomic_write(path, pem.encode(), mode=0o600)
        return str(path)


def _check_option_keys(record: Registry) -> None:
    try:
        registry_ops.check_option_keys(record)
    except UsageError as exc:
        raise FieldError("options", exc.message) from None
