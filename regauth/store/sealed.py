"""The layout of the encrypted secrets file, shared by the file store and the helper's fast ``get``.

``MAGIC | kdf (1 byte) | salt (16) | nonce (12) | ciphertext | tag (16)``; the header (magic, kdf and
salt) is the AEAD's associated data, so a tampered header fails like a tampered body. The plaintext is
a JSON object of key to secret.
"""

from __future__ import annotations

from regauth.store.aesgcm import NONCE_LEN, TAG_LEN

MAGIC = b"RGAS1"
KDF_KEYFILE = 0
KDF_SCRYPT = 1
SALT_LEN = 16
HEADER_LEN = len(MAGIC) + 1 + SALT_LEN


class NotSealed(ValueError):
    """Not a regauth secrets file, or a truncated one."""


def header(kdf: int, salt: bytes) -> bytes:
    return MAGIC + bytes([kdf]) + salt


def split(blob: bytes) -> tuple[int, bytes, bytes, bytes, bytes]:
    """``(kdf, salt, header, nonce, sealed)`` of a secrets file's bytes."""
    if len(blob) < HEADER_LEN + NONCE_LEN + TAG_LEN or not blob.startswith(MAGIC):
        raise NotSealed("not a regauth secret file or truncated")
    head = blob[:HEADER_LEN]
    return (
        head[len(MAGIC)],
        head[len(MAGIC) + 1 :],
        head,
        blob[HEADER_LEN : HEADER_LEN + NONCE_LEN],
        blob[HEADER_LEN + NONCE_LEN :],
    )
