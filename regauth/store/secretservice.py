"""A Secret Service client for one thing: the helper's fast ``get`` of a secret the keyring store holds.

The keyring store goes through ``keyring``, whose import and backend choice cost a ``get`` over 100 ms
on Linux (``keyring`` 36 ms, ``get_keyring()`` 36 ms, ``secretstorage`` and ``jeepney`` 19 ms). What a
``get`` needs of the Secret Service is five messages on the user's session bus, so this module speaks
them itself with ``_socket`` and ``struct`` (both built in: ``socket`` would import ``enum``):

    AUTH EXTERNAL (the bus checks our uid with SO_PEERCRED), Hello,
    OpenSession("plain"), Get(default collection, "Locked"),
    SearchItems(default collection, {"service": "regauth", "username": KEY}),
    Get(item, "Locked"), GetSecret(item, session)

It reads exactly what ``keyring``'s SecretService backend reads: the first item of the default
collection (the ``aliases/default`` object) with the attributes that backend writes (``service`` and
``username``). It never writes, never unlocks and never prompts: a locked collection or item, a bus
that answers anything unexpected (an error, a reply it does not parse) or does not answer within
``TIMEOUT``, and no session bus at all, are ``Unavailable``, and the caller leaves the ``get`` to the
general path, which uses ``keyring`` and may prompt.

``plain`` sends the secret unencrypted over the connection to the bus daemon, as the specification
allows. ``keyring`` (through ``secretstorage``) negotiates ``dh-ietf1024-sha256-aes128-cbc-pkcs7``
instead, which hides the secret from a process that eavesdrops on the bus; on the session bus only
processes of the same user can, and those can ask the Secret Service for the secret themselves.

``general_path_uses_secret_service`` says whether ``keyring`` would choose the SecretService backend
with its default settings; when it would not (another platform, a keyring configuration, another
backend that may win), the fast ``get`` does not use this client. The macOS Keychain and Windows
paths are always ``keyring``'s.
"""

from __future__ import annotations

import _socket
import os
import struct
import sys
import time

# Not typing.TYPE_CHECKING: importing typing costs the fast get 4 ms; mypy honours the name alone.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

# keyring's SecretService backend: the service name regauth uses (store.keyring.SERVICE) and the
# attribute names of keyring's "default" scheme.
ATTRIBUTE_SERVICE = "service"
ATTRIBUTE_USERNAME = "username"
# How long the whole conversation may take: a bus that accepts and never answers must not stall a pull.
TIMEOUT = 1.0

_BUS = "org.freedesktop.DBus"
_SECRETS = "org.freedesktop.secrets"
_SECRETS_PATH = "/org/freedesktop/secrets"
_DEFAULT_COLLECTION = "/org/freedesktop/secrets/aliases/default"
_SERVICE_IFACE = "org.freedesktop.Secret.Service"
_COLLECTION_IFACE = "org.freedesktop.Secret.Collection"
_ITEM_IFACE = "org.freedesktop.Secret.Item"
_PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"
_MAX_MESSAGE = 1 << 20
# Modules that make one of keyring's other Linux backends viable (KWallet, libsecret).
_OTHER_BACKEND_MODULES = ("dbus", "gi", "_dbus_bindings")


class Unavailable(Exception):
    """The Secret Service cannot answer this way: leave the ``get`` to ``keyring``."""


def general_path_uses_secret_service(environ: Mapping[str, str]) -> bool:
    """Whether ``keyring.get_keyring()`` would be the SecretService backend with default settings.

    Not when: not Linux; ``PYTHON_KEYRING_BACKEND`` or a ``keyringrc.cfg`` chooses a backend;
    ``KEYRING_PROPERTY_*`` variables change the backend's collection or scheme; a KDE session (KWallet
    ranks above it there); the interpreter's site-packages lack keyring or secretstorage, or hold
    another backend (an entry point of another distribution, or the modules KWallet and libsecret
    need), which could rank above it or be chained after it.
    """
    if not sys.platform.startswith("linux") or "PYTHON_KEYRING_BACKEND" in environ:
        return False
    if any(name.startswith("KEYRING_PROPERTY_") for name in environ):
        return False
    if "KDE" in environ.get("XDG_CURRENT_DESKTOP", "").split(":"):
        return False
    home = environ.get("HOME") or os.path.expanduser("~")
    roots = (
        environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"),
        environ.get("XDG_DATA_HOME") or os.path.join(home, ".local/share"),
    )
    if any(os.path.lexists(os.path.join(root, "python_keyring", "keyringrc.cfg")) for root in roots):
        return False
    found: set[str] = set()
    for directory in sys.path:
        if directory.endswith("-packages") and not _scan(directory, found):
            return False
    # Without keyring and secretstorage, the general path has no Secret Service backend at all.
    return found >= {"keyring", "secretstorage"}


def _scan(directory: str, found: set[str]) -> bool:
    """Add the keyring and secretstorage distributions in ``directory`` to ``found``; False when it
    holds another keyring backend."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return True
    for name in entries:
        stem = name.partition(".")[0]
        if stem in _OTHER_BACKEND_MODULES:
            return False
        if not name.endswith(".dist-info"):
            continue
        project = name.partition("-")[0].lower()
        if project in ("keyring", "secretstorage"):
            found.add(project)
            continue
        try:
            with open(os.path.join(directory, name, "entry_points.txt"), "rb") as handle:
                if b"[keyring.backends]" in handle.read():
                    return False
        except FileNotFoundError:
            continue
    return True


def bus_path(environ: Mapping[str, str]) -> tuple[str | bytes, int]:
    """The session bus's unix socket (a path, or an abstract name as bytes) from
    ``DBUS_SESSION_BUS_ADDRESS``; ``Unavailable`` for any other kind of address."""
    address = environ.get("DBUS_SESSION_BUS_ADDRESS", "")
    for entry in address.split(";"):
        kind, _, params = entry.partition(":")
        if kind != "unix":
            continue
        values = dict(part.partition("=")[::2] for part in params.split(","))
        for key in ("path", "abstract"):
            value = values.get(key)
            # An escaped byte (%xx) is legal in an address; this client declines the rare case.
            if value and "%" not in value:
                return (value if key == "path" else b"\0" + value.encode()), _socket.AF_UNIX
        break
    raise Unavailable("no unix session bus address")


class SecretServiceGet:
    """One connection to the Secret Service, opened on the first ``get`` and closed by ``close``."""

    def __init__(self, environ: Mapping[str, str], service: str, *, timeout: float = TIMEOUT) -> None:
        self._environ = environ
        self._service = service
        self._deadline = time.monotonic() + timeout
        self._sock: _socket.socket | None = None
        self._serial = 0
        self._buffer = b""
        self._session = ""

    def get(self, key: str) -> str | None:
        """The secret of ``key`` as ``keyring.get_password(service, key)`` gives it; None if none."""
        try:
            if self._sock is None:
                self._open()
            found = self._call(
                _DEFAULT_COLLECTION,
                _COLLECTION_IFACE,
                "SearchItems",
                "a{ss}",
                [{ATTRIBUTE_SERVICE: self._service, ATTRIBUTE_USERNAME: key}],
            )
            items = found[0]
            if not isinstance(items, list) or not items:
                return None
            item = items[0]
            if not isinstance(item, str):
                # Not the object path the reply's "ao" holds: asked of the bus, it fails our own marshal.
                raise Unavailable("an unexpected search result")
            if self._locked(item):
                raise Unavailable("the item is locked")
            (secret,) = self._call(item, _ITEM_IFACE, "GetSecret", "o", [self._session])
            if not isinstance(secret, list) or len(secret) != 4 or secret[0] != self._session:
                raise Unavailable("an unexpected secret")
            value = secret[2]
            if not isinstance(value, bytes):
                raise Unavailable("an unexpected secret")
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise Unavailable("a secret that is not UTF-8") from None
        # RecursionError: values nested past Python's stack, which no bus daemon passes (D-Bus stops
        # at 64) but a socket at the bus address may send.
        except (OSError, struct.error, ValueError, IndexError, KeyError, RecursionError) as exc:
            raise Unavailable(f"the session bus: {type(exc).__name__}") from None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _open(self) -> None:
        path, family = bus_path(self._environ)
        sock = _socket.socket(family, _socket.SOCK_STREAM)
        self._sock = sock
        sock.settimeout(self._left())
        sock.connect(path)
        uid = str(os.geteuid()).encode().hex()
        self._send(b"\0AUTH EXTERNAL " + uid.encode() + b"\r\n")
        if not self._line().startswith(b"OK "):
            raise Unavailable("the bus refused EXTERNAL authentication")
        self._send(b"BEGIN\r\n")
        self._call("/org/freedesktop/DBus", _BUS, "Hello", "", [], destination=_BUS)
        output, session = self._call(_SECRETS_PATH, _SERVICE_IFACE, "OpenSession", "sv", ["plain", ("s", "")])
        if not isinstance(session, str) or not session.startswith("/"):
            raise Unavailable("no session")
        self._session = session
        if self._locked(_DEFAULT_COLLECTION):
            raise Unavailable("the default collection is locked")

    def _locked(self, path: str) -> bool:
        iface = _COLLECTION_IFACE if path == _DEFAULT_COLLECTION else _ITEM_IFACE
        (value,) = self._call(path, _PROPERTIES_IFACE, "Get", "ss", [iface, "Locked"])
        if not isinstance(value, bool):
            raise Unavailable("an unexpected Locked property")
        return value

    def _left(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise Unavailable("the session bus did not answer in time")
        return left

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.settimeout(self._left())
        self._sock.sendall(data)

    def _more(self) -> None:
        assert self._sock is not None
        self._sock.settimeout(self._left())
        chunk = self._sock.recv(65536)
        if not chunk:
            raise Unavailable("the session bus closed the connection")
        self._buffer += chunk
        if len(self._buffer) > _MAX_MESSAGE:
            raise Unavailable("a message too large")

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            self._more()
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def _call(
        self,
        path: str,
        iface: str,
        member: str,
        signature: str,
        args: list[object],
        *,
        destination: str = _SECRETS,
    ) -> list[object]:
        """The reply's values; ``Unavailable`` for an error reply."""
        self._serial += 1
        serial = self._serial
        self._send(method_call(serial, path, iface, member, destination, signature, args))
        while True:
            kind, fields, body_signature, body, endian = self._message()
            if fields.get(5) != serial:
                # A signal (NameAcquired) or anything else not ours.
                continue
            if kind == 3:
                raise Unavailable(f"{member}: the service answered {fields.get(4)!r}")
            if kind != 2:
                raise Unavailable("an unexpected reply")
            values, _ = unmarshal(body_signature, body, 0, endian)
            return values

    def _message(self) -> tuple[int, dict[int, object], str, bytes, str]:
        while len(self._buffer) < 16:
            self._more()
        endian = {ord("l"): "<", ord("B"): ">"}.get(self._buffer[0])
        if endian is None:
            raise Unavailable("not a D-Bus message")
        body_length, _, fields_length = struct.unpack_from(endian + "III", self._buffer, 4)
        header_end = _align(16 + fields_length, 8)
        total = header_end + body_length
        if total > _MAX_MESSAGE:
            raise Unavailable("a message too large")
        while len(self._buffer) < total:
            self._more()
        message, self._buffer = self._buffer[:total], self._buffer[total:]
        (header_fields,), _ = unmarshal("a(yv)", message, 12, endian)
        assert isinstance(header_fields, list)
        fields: dict[int, object] = {}
        for field in header_fields:
            assert isinstance(field, list)
            code, value = field
            fields[code] = value
        signature = fields.get(8, "")
        if not isinstance(signature, str):
            raise Unavailable("a bad signature field")
        return message[1], fields, signature, message[header_end:], endian


# --- the wire format (little-endian out; either in) -----------------------------------------------------


def _align(offset: int, to: int) -> int:
    return (offset + to - 1) // to * to


_ALIGNMENT = {"y": 1, "b": 4, "u": 4, "i": 4, "s": 4, "o": 4, "g": 1, "v": 1, "a": 4, "(": 8, "{": 8}


def _single(signature: str, at: int) -> int:
    """Where the complete type starting at ``at`` in ``signature`` ends."""
    char = signature[at]
    if char == "a":
        return _single(signature, at + 1)
    if char in "({":
        close = ")" if char == "(" else "}"
        at += 1
        # As D-Bus says: a dict's key is a basic type (a container would be no dict key here), and a
        # struct is never empty (an array of elements of no size would be read without end).
        if char == "{" and signature[at : at + 1] not in tuple("ybusog"):
            raise Unavailable("a dict entry whose key is not a basic type")
        if signature[at : at + 1] == close:
            raise Unavailable("an empty struct")
        while signature[at] != close:
            at = _single(signature, at)
        return at + 1
    if char not in _ALIGNMENT:
        raise Unavailable(f"an unsupported type {char!r}")
    return at + 1


def _types(signature: str) -> list[str]:
    types, at = [], 0
    while at < len(signature):
        end = _single(signature, at)
        types.append(signature[at:end])
        at = end
    return types


def marshal(signature: str, values: list[object], out: bytearray) -> None:
    for kind, value in zip(_types(signature), values, strict=True):
        _put(kind, value, out)


def _put(kind: str, value: object, out: bytearray) -> None:
    out.extend(bytes(_align(len(out), _ALIGNMENT[kind[0]]) - len(out)))
    char = kind[0]
    if char == "y":
        assert isinstance(value, int)
        out.append(value)
    elif char in "bu":
        assert isinstance(value, int)
        out.extend(struct.pack("<I", int(value)))
    elif char in "so":
        assert isinstance(value, str)
        data = value.encode()
        out.extend(struct.pack("<I", len(data)) + data + b"\0")
    elif char == "g":
        assert isinstance(value, str)
        out.extend(bytes([len(value)]) + value.encode() + b"\0")
    elif char == "v":
        assert isinstance(value, tuple)
        inner, content = value
        _put("g", inner, out)
        _put(inner, content, out)
    elif char == "a":
        element = kind[1:]
        length_at = len(out)
        out.extend(b"\0\0\0\0")
        out.extend(bytes(_align(len(out), _ALIGNMENT[element[0]]) - len(out)))
        start = len(out)
        items = list(value.items()) if isinstance(value, dict) else value
        assert isinstance(items, (list, tuple))
        for item in items:
            _put(element, item, out)
        struct.pack_into("<I", out, length_at, len(out) - start)
    elif char in "({":
        assert isinstance(value, (list, tuple))
        for inner, item in zip(_types(kind[1:-1]), value, strict=True):
            _put(inner, item, out)
    else:
        raise Unavailable(f"an unsupported type {char!r}")


def unmarshal(signature: str, data: bytes, at: int, endian: str) -> tuple[list[object], int]:
    values = []
    for kind in _types(signature):
        value, at = _get(kind, data, at, endian)
        values.append(value)
    return values, at


def _get(kind: str, data: bytes, at: int, endian: str) -> tuple[object, int]:
    char = kind[0]
    at = _align(at, _ALIGNMENT[char])
    if char == "y":
        return data[at], at + 1
    if char in "bu":
        (number,) = struct.unpack_from(endian + "I", data, at)
        if char == "b":
            if number > 1:
                raise Unavailable("a bad boolean")
            return bool(number), at + 4
        return number, at + 4
    if char == "i":
        return struct.unpack_from(endian + "i", data, at)[0], at + 4
    if char in "so":
        (length,) = struct.unpack_from(endian + "I", data, at)
        end = at + 4 + length
        if end >= len(data) or data[end] != 0:
            raise Unavailable("a bad string")
        return data[at + 4 : end].decode("utf-8"), end + 1
    if char == "g":
        length = data[at]
        end = at + 1 + length
        if end >= len(data) or data[end] != 0:
            raise Unavailable("a bad signature")
        return data[at + 1 : end].decode("ascii"), end + 1
    if char == "v":
        inner, at = _get("g", data, at, endian)
        assert isinstance(inner, str)
        if len(_types(inner)) != 1:
            raise Unavailable("a bad variant")
        return _get(inner, data, at, endian)
    if char == "a":
        (length,) = struct.unpack_from(endian + "I", data, at)
        element = kind[1:]
        at = _align(at + 4, _ALIGNMENT[element[0]])
        end = at + length
        if end > len(data):
            raise Unavailable("a bad array")
        if element == "y":
            return bytes(data[at:end]), end
        items = []
        while at < end:
            item, at = _get(element, data, at, endian)
            items.append(item)
        if at != end:
            raise Unavailable("a bad array")
        if element[0] == "{":
            return dict(items), end  # type: ignore[arg-type]
        return items, end
    if char in "({":
        parts = []
        for inner in _types(kind[1:-1]):
            value, at = _get(inner, data, at, endian)
            parts.append(value)
        return parts, at
    raise Unavailable(f"an unsupported type {char!r}")


def method_call(
    serial: int, path: str, iface: str, member: str, destination: str, signature: str, args: list[object]
) -> bytes:
    body = bytearray()
    marshal(signature, args, body)
    fields: list[object] = [
        (1, ("o", path)),
        (2, ("s", iface)),
        (3, ("s", member)),
        (6, ("s", destination)),
    ]
    if signature:
        fields.append((8, ("g", signature)))
    header = bytearray(b"l\x01\x00\x01")
    header.extend(struct.pack("<II", len(body), serial))
    _put("a(yv)", fields, header)
    header.extend(bytes(_align(len(header), 8) - len(header)))
    return bytes(header + body)
