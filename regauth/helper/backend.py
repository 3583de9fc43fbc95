"""The helper's view of regauth: registry records, the secret store and the providers."""

from __future__ import annotations

import sys
from typing import IO

from regauth.config import Settings
from regauth.errors import NotFoundError, ProviderError, StoreError
from regauth.helper.texts import PROGRAM
from regauth.providers.routing import credential_for
from regauth.registries import RegistryBook
from regauth.servers import server_url_for


class RegauthBackend:
    def __init__(self, settings: Settings, book: RegistryBook, *, stderr: IO[str] | None = None) -> None:
        self.settings = settings
        self.book = book
        self._stderr = stderr or sys.stderr

    def store(self, server_url: str, username: str, secret: str) -> None:
        self.book.upsert_static(server_url, username, secret)

    def get(self, server_url: str) -> tuple[str, str]:
        try:
            credential = credential_for(self.settings, self.book, server_url)
        except ProviderError as exc:
            # As ecr-login does: answer "not found" so the client falls back to an anonymous pull,
            # and say why where a person will see it, so the failure is never silent.
            self._report(str(exc))
            raise NotFoundError(str(exc)) from exc
        if credential is None:
            raise NotFoundError(f"{server_url} is configured as an anonymous registry")
        return credential.username, credential.secret

    def erase(self, server_url: str) -> None:
        record = self.book.for_host(server_url)
        if record is None:
            # docker logout erases several spellings of one server; absent ones are not an error.
            return
        if record.provider != "static":
            self._stderr.write(
                f"{PROGRAM}: {record.registry} uses the {record.provider} provider (registry "
                f"{record.name!r}); left in place, remove it with `regauth registry remove {record.name}`\n"
            )
            return
        self.book.remove(record.name)

    def list(self) -> dict[str, str]:
        # Only records that a `get` will answer: legacy `docker build` aborts on one failing get.
        return {
            server_url_for(r.registry): r.username
            for r in self.book.all()
            if r.provider == "static" and r.username is not None
        }

    def _report(self, message: str) -> None:
        from regauth.logs import append_log_line, log_safe

        # The message can carry a registry's or an SDK's text: redacted and escaped, as in the log.
        self._stderr.write(f"{PROGRAM}: {log_safe(message)}\n")
        try:
            append_log_line(self.settings, f"{PROGRAM} get: {message}")
        except (OSError, StoreError) as exc:
            # The cause is on stderr already; a log file we cannot write must not turn into a crash.
            self._stderr.write(f"{PROGRAM}: cannot write the log file {self.settings.log_file}: {exc}\n")
