"""Parse ``WWW-Authenticate`` headers (RFC 9110 section 11.6.1) into challenges. Pure functions.

A header may hold several challenges, and a response several headers::

    Basic realm="x", Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"

Scheme and parameter names are case-insensitive (kept lower-cased); values are tokens or quoted strings
with backslash escapes, which may contain commas. A scheme may carry a token68 instead of parameters.
The parser is lenient: an unparsable piece is skipped up to the next comma rather than failing the whole
header, because a registry that sends one odd challenge usually sends a usable one beside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# RFC 9110 tchar; token68 adds "/" and trailing "=".
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68 = frozenset("-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t"


@dataclass(frozen=True)
class Challenge:
    """One challenge: ``scheme`` lower-cased, ``params`` with lower-cased names."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    token68: str | None = None

    def get(self, name: str) -> str | None:
        return self.params.get(name.lower())

    @property
    def realm(self) -> str | None:
        return self.get("realm")

    @property
    def service(self) -> str | None:
        return self.get("service")

    @property
    def scope(self) -> str | None:
        return self.get("scope")

    @property
    def error(self) -> str | None:
        return self.get("error")

    @property
    def error_description(self) -> str | None:
        return self.get("error_description")


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge in one header value, in order."""
    return _Parser(header).parse()


def parse_headers(values: Iterable[str]) -> list[Challenge]:
    """Every challenge in several ``WWW-Authenticate`` header values, in order."""
    return [challenge for value in values for challenge in parse_challenges(value)]


def find(challenges: Iterable[Challenge], scheme: str) -> Challenge | None:
    """The first challenge of ``scheme`` (case-insensitive)."""
    scheme = scheme.lower()
    return next((c for c in challenges if c.scheme == scheme), None)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.out: list[Challenge] = []
        self.scheme: str | None = None
        self.params: dict[str, str] = {}
        self.token68: str | None = None

    def parse(self) -> list[Challenge]:
        while True:
            self._skip(_WS + ",")
            if self.pos >= len(self.text):
                break
            if not self._element():
                self._skip_to_comma()
        self._flush()
        return self.out

    def _element(self) -> bool:
        """One comma-separated element: a param of the current challenge, or a new challenge."""
        name = self._token()
        if not name:
            return False
        after_name = self.pos
        self._skip(_WS)
        if self._peek() == "=":
            self.pos += 1
            return self._param(name)
        self.pos = after_name
        self._flush()
        self.scheme, self.params, self.token68 = name.lower(), {}, None
        return self._after_scheme()

    def _after_scheme(self) -> bool:
        if not self._peek() or self._peek() not in _WS:
            return self._at_separator()
        self._skip(_WS)
        start = self.pos
        while self._peek() and self._peek() in _TOKEN68:
            self.pos += 1
        while self._peek() == "=":
            self.pos += 1
        candidate = self.text[start : self.pos]
        self._skip(_WS)
        if candidate and self._at_separator():
            self.token68 = candidate
            return True
        # Not a token68: the first auth-param follows; parse it as an element of its own.
        self.pos = start
        return True

    def _param(self, name: str) -> bool:
        if self.scheme is None:
            return False
        self._skip(_WS)
        value = self._quoted() if self._peek() == '"' else self._bare()
        # RFC 9110: a parameter name occurs once per challenge; the first wins.
        self.params.setdefault(name.lower(), value)
        self._skip(_WS)
        return self._at_separator()

    def _quoted(self) -> str:
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == '"':
                return "".join(chars)
            if char == "\\" and self.pos < len(self.text):
                char = self.text[self.pos]
                self.pos += 1
            chars.append(char)
        # Unterminated: keep what is there rather than lose the challenge.
        return "".join(chars)

    def _bare(self) -> str:
        # RFC 9110 wants a token here, but some servers send a URL unquoted: read to the delimiter.
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _WS + ',"':
            self.pos += 1
        return self.text[start : self.pos]

    def _token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHAR:
            self.pos += 1
        return self.text[start : self.pos]

    def _flush(self) -> None:
        if self.scheme is not None:
            self.out.append(Challenge(self.scheme, MappingProxyType(dict(self.params)), self.token68))
        self.scheme = None

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _at_separator(self) -> bool:
        return self._peek() in ("", ",")

    def _skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def _skip_to_comma(self) -> None:
        # A quoted string may hide a comma: skip it whole.
        while self.pos < len(self.text) and self.text[self.pos] != ",":
            if self.text[self.pos] == '"':
                self._quoted()
            else:
                self.pos += 1
