"""The helper's view of regauth: registry records, the secret store and the providers."""

from __future__ import annotations

import sys
from typing import IO

from regauth import audit
from regauth.config import Settings
from regauth.errors import NotFoundError, ProviderError, StoreError
from regauth.helper.texts import PROGRAM
from regauth.providers.routing import cloud_for, credential_for
from regauth.registries import ORIGIN_HELPER, RegistryBook
from regauth.servers import server_url_for
from regauth.store.base import SecretStore
from regauth.usage import mark_used


class RegauthBackend:
    def __init__(
        self, settings: Settings, book: RegistryBook, store: SecretStore, *, stderr: IO[str] | None = None
    ) -> None:
        """``store`` is the one ``book`` keeps secrets in, opened lazily: a ``list`` never opens it."""
        self.settings = settings
        self.book = book
        self._secrets = store
        self._stderr = stderr or sys.stderr

    @classmethod
    def for_settings(cls, settings: Settings, *, stderr: IO[str] | None = None) -> RegauthBackend:
        """The helper's edge: one secret store, opened on first use (a ``list`` never opens it), for
        the book and the providers alike."""
        from regauth.store.lazy import LazyStore

        store = LazyStore.for_settings(settings)
        return cls(settings, RegistryBook(settings, store), store, stderr=stderr)

    def store(self, server_url: str, username: str, secret: str) -> None:
        new_host = self.book.for_host(server_url) is None
        record = self.book.upsert_static(server_url, username, secret)
        self._audit(audit.CREATED if new_host else audit.UPDATED, record.id, record.name, secret="set")
        if new_host:
            self._note_cloud_login(record.registry, record.name, username)

    def get(self, server_url: str) -> tuple[str, str]:
        try:
            credential = credential_for(self.settings, self.book, self._secrets, server_url)
        except ProviderError as exc:
            # As ecr-login does: answer "not found" so the client falls back to an anonymous pull,
            # and say why where a person will see it, so the failure is never silent.
            self._report(str(exc))
            raise NotFoundError(str(exc)) from exc
        if credential is None:
            raise NotFoundError(f"{server_url} is configured as an anonymous registry")
        record = self.book.for_host(server_url)
        if record is not None:
            # One utime, for `regauth doctor`, as the fast get marks (never fails the get: see usage).
            mark_used(str(self.settings.state_dir), record.id)
        return credential.username, credential.secret

    def erase(self, server_url: str) -> None:
        before = self.book.for_host(server_url)
        erased = self.book.erase_login(server_url)
        # None: docker logout erases several spellings of one server; absent ones are not an error.
        if erased is None:
            return
        record, kept = erased
        if not kept:
            self._audit(audit.DELETED, record.id, record.name)
        elif before is not None and before.username != record.username:
            self._audit(audit.UPDATED, record.id, record.name, secret="dropped")
        if record.provider != "static":
            self._stderr.write(
                f"{PROGRAM}: {record.registry} uses the {record.provider} provider (registry "
                f"{record.name!r}); left in place, remove it with `regauth registry remove {record.name}`\n"
            )
        elif kept:
            self._stderr.write(
                f"{PROGRAM}: logged out of {record.registry}: its username and secret are gone; registry "
                f"{record.name!r} keeps its settings (`regauth registry remove {record.name}` removes it)\n"
            )

    def list(self) -> dict[str, str]:
        # Only records that a `get` will answer: legacy `docker build` aborts on one failing get. A
        # get answers from the host-wide record alone (the protocol names no repository).
        return {
            server_url_for(r.registry): r.username
            for r in self.book.all()
            if r.provider == "static" and r.username is not None and r.active and r.prefix is None
        }

    def _audit(self, action: str, record_id: str, name: str, *, secret: str | None = None) -> None:
        audit.AuditLog.for_settings(self.settings).append(
            ORIGIN_HELPER, action, record_id, name, secret=secret
        )

    def _note_cloud_login(self, host: str, name: str, username: str) -> None:
        """A token login stored for a cloud registry works until it expires: say so, and what lasts.

        Only the username the cloud's short-lived tokens come with counts: another (GCP's _json_key,
        an ACR admin user) holds a lasting secret.
        """
        provider = cloud_for(self.settings, host)
        if provider is None or provider.token_username != username:
            return
        self._stderr.write(
            f"{PROGRAM}: note: stored the login for {host} as registry {name!r}; its token expires "
            f"(usually after {provider.token_lifetime}), and pulls then fail until you log in again. "
            f"To have regauth mint fresh tokens from your {provider.cloud} credentials instead, log out "
            f"(`docker logout {host}`) or `regauth registry remove {name}`\n"
        )

    def _report(self, message: str) -> None:
        from regauth.logs import append_log_line, log_safe

        # The message can carry a registry's or an SDK's text: redacted and escaped, as in the log.
        self._stderr.write(f"{PROGRAM}: {log_safe(message)}\n")
        try:
            append_log_line(self.settings, f"{PROGRAM} get: {message}")
        except (OSError, StoreError) as exc:
            # The cause is on stderr already; a log file we cannot write must not turn into a crash.
            self._stderr.write(f"{PROGRAM}: cannot write the log file {self.settings.log_file}: {exc}\n")
