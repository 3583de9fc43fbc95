"""Logging for regauth: stderr and an optional file, every record redacted and made printable.

A record can carry a registry's text (an error message, a challenge): ``printable`` escapes its
control characters so that it cannot forge a log line or drive the terminal.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from pathlib import Path
from typing import IO

from regauth.config import Settings
from regauth.fsutil import open_append
from regauth.printable import printable

_PATTERNS = [
    # Authorization / Proxy-Authorization header values, in any rendering of headers.
    (
        re.compile(r"(?i)((?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)(basic|bearer)?\s*[^\s'\",}]+"),
        r"\1\2 [REDACTED]",
    ),
    # userinfo in URLs: scheme://user:password@host
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1[REDACTED]@"),
    # token, password, secret and the like in query strings, forms and JSON.
    (
        re.compile(
            r"(?i)((?:access_|refresh_|id_)?token|password|secret|client_secret|assertion)"
            r"(['\"]?\s*[=:]\s*['\"]?)[^&\s'\",}]+"
        ),
        r"\1\2[REDACTED]",
    ),
    # Bare JWTs anywhere.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), "[REDACTED-JWT]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def log_safe(text: str) -> str:
    """``text`` as every log line shows it: no secret, no control character."""
    return printable(redact(text))


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = log_safe(record.getMessage())
        record.args = None
        return True


class _PrivateFileHandler(logging.FileHandler):
    """A FileHandler whose file is created 0600 and never opened through a symbolic link."""

    def _open(self) -> io.TextIOWrapper:
        return os.fdopen(
            open_append(Path(self.baseFilename)), "a", encoding=self.encoding, errors=self.errors
        )


def setup_logging(settings: Settings, *, stream: IO[str] | None = None, to_file: bool = False) -> None:
    logger = logging.getLogger("regauth")
    logger.setLevel(settings.log_level)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if to_file:
        handlers.append(_PrivateFileHandler(settings.log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RedactingFilter())
        logger.addHandler(handler)


def append_log_line(settings: Settings, line: str) -> None:
    """Append one line to the log file without importing the logging machinery (hot paths)."""
    import time

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with os.fdopen(open_append(settings.log_file), "a", encoding="utf-8") as handle:
        handle.write(f"{stamp} {log_safe(line)}\n")
