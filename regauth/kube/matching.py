"""The kubelet's rules for matching an image against a ``matchImages`` pattern or an ``auth`` key.

Both go through the same function in the kubelet (``URLsMatchStr`` in pkg/credentialprovider): each
side is parsed as the URL ``https://`` + text by Go's ``net/url``; then

- the ports must be equal (no port and ``:443`` differ);
- the hosts must have as many dot-separated labels, each label matched by Go's ``filepath.Match`` (``*``
  is one label or part of one: ``*.azurecr.io`` never matches ``a.b.azurecr.io`` nor ``azurecr.io``);
- the pattern's path must be a prefix of the image's, as raw text: no globs there (``host/*`` matches
  nothing real), and ``host/org`` also matches ``host/organisation/app``.

A pattern Go's URL parser refuses matches nothing (and in ``matchImages`` fails the kubelet's config
validation). Everything here mirrors that code's behaviour, so a test table can hold regauth to it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Characters Go's url.Parse accepts in a host besides letters, digits and "-._~" (shouldEscape with
# encodeHost); any other ASCII character in a host is a parse error.
_HOST_EXTRA = frozenset("!$&'()*+,;=:[]<>\"")
_HEX = frozenset("0123456789abcdefABCDEF")


class SchemelessURL(NamedTuple):
    host: str
    path: str


class NoURL(ValueError):
    """Go's url.Parse would refuse the text: the kubelet treats it as matching nothing."""


def parse_schemeless(text: str) -> SchemelessURL:
    """``url.Parse("https://" + text)``'s host and (unescaped) path, or ``NoURL``."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise NoURL("a control character")
    # The fragment and then the query are cut off before the authority is read: "registry?.io" is the
    # host "registry".
    rest = text.split("#", 1)[0].split("?", 1)[0]
    authority, slash, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    _check_host(host)
    return SchemelessURL(_unescape_host(host), _unescape_path(slash + path))


def split_host_port(host: str) -> tuple[list[str], str]:
    """The host's labels and its port, as the kubelet's ``splitURL`` (``net.SplitHostPort``, and on its
    error the whole host with no port)."""
    name, port = _go_split_host_port(host)
    if name is None:
        name, port = host, ""
    return name.split("."), port


def urls_match(pattern: str, image: str) -> bool:
    """Whether the kubelet takes ``pattern`` (a matchImages entry or an auth key) to cover ``image``."""
    try:
        glob, target = parse_schemeless(pattern), parse_schemeless(image)
    except NoURL:
        return False
    glob_labels, glob_port = split_host_port(glob.host)
    target_labels, target_port = split_host_port(target.host)
    if glob_port != target_port or len(glob_labels) != len(target_labels):
        return False
    if not target.path.startswith(glob.path):
        return False
    return all(label_match(g, t) for g, t in zip(glob_labels, target_labels, strict=True))


def label_match(glob: str, label: str) -> bool:
    """Go's ``filepath.Match(glob, label)`` for one host label; a malformed glob matches nothing."""
    regex = _glob_regex(glob)
    return regex is not None and regex.fullmatch(label) is not None


def _glob_regex(glob: str) -> re.Pattern[str] | None:
    out: list[str] = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            if i + 1 == len(glob):
                return None
            i += 1
            out.append(re.escape(glob[i]))
        elif c == "[":
            end = _class_end(glob, i)
            if end is None:
                return None
            cls = _class_regex(glob[i + 1 : end])
            if cls is None:
                return None
            out.append(cls)
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _class_end(glob: str, start: int) -> int | None:
    i = start + 1
    while i < len(glob):
        if glob[i] == "\\":
            i += 2
            continue
        if glob[i] == "]" and i > start + 1 + (glob[start + 1 : start + 2] == "^"):
            return i
        if glob[i] == "]":
            return None  # "[]" or "[^]": Go's ErrBadPattern
        i += 1
    return None


def _class_regex(body: str) -> str | None:
    """A Go character class body (``^``, ranges ``a-z``, ``\\`` escapes) as a regex class."""
    negate = body.startswith("^")
    chars = body[1:] if negate else body
    items: list[str] = []
    i = 0
    while i < len(chars):
        lo, i = _class_char(chars, i)
        if lo is None:
            return None
        if i < len(chars) and chars[i] == "-":
            hi, i = _class_char(chars, i + 1)
            if hi is None or hi < lo:
                return None
            items.append(f"{re.escape(lo)}-{re.escape(hi)}")
        else:
            items.append(re.escape(lo))
    if not items:
        return None
    # A negated class never matches the separator either.
    return f"[{'^/' if negate else ''}{''.join(items)}]"


def _class_char(chars: str, i: int) -> tuple[str | None, int]:
    if i >= len(chars) or chars[i] in "-]":
        return None, i
    if chars[i] == "\\":
        if i + 1 >= len(chars):
            return None, i
        return chars[i + 1], i + 2
    return chars[i], i + 1


def _check_host(host: str) -> None:
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise NoURL("an unterminated IPv6 address")
        port = host[end + 1 :]
    else:
        colon = host.rfind(":")
        port = host[colon:] if colon >= 0 else ""
    if port and not (port.startswith(":") and all(c in "0123456789" for c in port[1:])):
        raise NoURL(f"an invalid port {port!r}")
    for c in host:
        if c < "\x80" and not (c.isalnum() or c in "-._~%" or c in _HOST_EXTRA):
            raise NoURL(f"the character {c!r} in the host")


def _unescape_host(host: str) -> str:
    # In a host, Go allows %-escapes only for bytes >= 0x80 and %25 itself.
    if "%" not in host:
        return host
    raw = _percent_decode(host, host_rules=True)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoURL("an invalid escape in the host") from exc


def _unescape_path(path: str) -> str:
    if "%" not in path:
        return path
    return _percent_decode(path, host_rules=False).decode("utf-8", "replace")


def _percent_decode(text: str, *, host_rules: bool) -> bytes:
    out = bytearray()
    i = 0
    data = text.encode("utf-8")
    while i < len(data):
        if data[i] == 0x25:  # "%"
            pair = data[i + 1 : i + 3].decode("ascii", "replace")
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise NoURL("an invalid %-escape")
            value = int(pair, 16)
            if host_rules and value < 0x80 and pair != "25":
                raise NoURL("a %-escape of an ASCII character in the host")
            out.append(value)
            i += 3
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


def _go_split_host_port(host: str) -> tuple[str | None, str]:
    """``net.SplitHostPort``: (host, port), or (None, "") where Go returns an error."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0 or end + 1 >= len(host) or host[end + 1] != ":":
            return None, ""
        name, port = host[1:end], host[end + 2 :]
        if "[" in name or "]" in port or "[" in port:
            return None, ""
        return name, port
    colon = host.rfind(":")
    if colon < 0:
        return None, ""
    name, port = host[:colon], host[colon + 1 :]
    if ":" in name or "[" in name or "]" in name or "[" in port or "]" in port:
        return None, ""
    return name, port
