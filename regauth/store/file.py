"""An AES-GCM encrypted file of secrets, for headless machines with no keyring.

The file's layout is in ``sealed``. The key is a random 32-byte key file kept apart from the data
(kdf 0), or is derived from ``REGAUTH_PASSPHRASE`` with scrypt (kdf 1), which is memory-hard.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from regauth import layout
from regauth.config import Settings
from regauth.errors import StoreError
from regauth.fsutil import atomic_write, ensure_private_dir, file_lock, read_private
from regauth.store import aesgcm, sealed
from regauth.store.sealed import KDF_KEYFILE, KDF_SCRYPT

# scrypt N=2^15, r=8: 32 MiB and tens of ms per derivation, OWASP's floor for interactive use.
_SCRYPT = {"n": 2**15, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024}


class FileStore:
    name = "file"

    def __init__(self, settings: Settings) -> None:
        self.path = settings.secrets_file
        self.key_path = settings.key_file
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._passphrase = settings.passphrase

    def get(self, key: str) -> str | None:
        return self._read().get(key)

    def keys(self) -> list[str]:
        return sorted(self._read())

    def set(self, key: str, value: str) -> None:
        with file_lock(self.lock_path):
            entries = self._read()
            entries[key] = value
            self._write(entries)

    def delete(self, key: str) -> bool:
        with file_lock(self.lock_path):
            entries = self._read()
            if key not in entries:
                return False
            del entries[key]
            self._write(entries)
            return True

    def _read(self) -> dict[str, str]:
        blob = read_private(self.path, limit=layout.SECRETS_MAX_BYTES)
        if blob is None:
            return {}
        try:
            kdf, salt, header, nonce, body = sealed.split(blob)
        except sealed.NotSealed as exc:
            raise self._damaged(str(exc)) from None
        key = self._key(kdf, salt, create=False)
        try:
            plain = aesgcm.open_sealed(key, nonce, body, header)
        except aesgcm.InvalidTag:
            hint = "wrong REGAUTH_PASSPHRASE or " if kdf == KDF_SCRYPT else "wrong key file or "
            raise self._damaged(f"cannot decrypt ({hint}damaged file)") from None
        try:
            entries = json.loads(plain)
        except ValueError:
            raise self._damaged("decrypted content is not JSON") from None
        if not isinstance(entries, dict) or not all(isinstance(v, str) for v in entries.values()):
            raise self._damaged("decrypted content is not a map of secrets")
        return entries

    def _write(self, entries: dict[str, str]) -> None:
        if self._passphrase:
            kdf, salt = KDF_SCRYPT, os.urandom(sealed.SALT_LEN)
        else:
            kdf, salt = KDF_KEYFILE, bytes(sealed.SALT_LEN)
        header = sealed.header(kdf, salt)
        nonce = os.urandom(aesgcm.NONCE_LEN)
        plain = json.dumps(entries, separators=(",", ":")).encode()
        body = aesgcm.seal(self._key(kdf, salt, create=True), nonce, plain, header)
        atomic_write(self.path, header + nonce + body)

    def _key(self, kdf: int, salt: bytes, *, create: bool) -> bytes:
        if kdf == KDF_SCRYPT:
            if not self._passphrase:
                raise StoreError(
                    f"the secret store {self.path} is encrypted with a passphrase: set REGAUTH_PASSPHRASE"
                )
            import hashlib

            return hashlib.scrypt(self._passphrase.encode(), salt=salt, dklen=32, **_SCRYPT)
        if kdf != KDF_KEYFILE:
            raise self._damaged(f"unknown key derivation {kdf}")
        if self._passphrase and not create:
            raise StoreError(
                f"REGAUTH_PASSPHRASE is set but the secret store {self.path} is encrypted with the "
                f"key file {self.key_path}; unset REGAUTH_PASSPHRASE to use it"
            )
        return self._key_file(create=create)

    def _key_file(self, *, create: bool) -> bytes:
        key = _read_key(self.key_path)
        if key is not None:
            return key
        if not create:
            raise StoreError(
                f"the secret store {self.path} exists but its key file {self.key_path} is "
                "missing; restore the key file or remove the store"
            )
        return _create_key(self.key_path)

    def _damaged(self, why: str) -> StoreError:
        return StoreError(f"the secret store {self.path} is damaged: {why}; it was left untouched")


def _read_key(path: Path) -> bytes | None:
    """The key file's 32 bytes, None if there is none; refused unless only we can read it."""
    key = read_private(path, secret=True, limit=aesgcm.KEY_LEN)
    if key is not None and len(key) != aesgcm.KEY_LEN:
        raise StoreError(f"the key file {path} is damaged (expected 32 bytes)")
    return key


def _create_key(path: Path) -> bytes:
    ensure_private_dir(path.parent)
    key = os.urandom(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        # Another process made it first (we hold the data lock, not the key's): use theirs.
        theirs = _read_key(path)
        if theirs is None:
            raise StoreError(f"the key file {path} vanished while it was being created") from None
        return theirs
    except OSError as exc:
        raise StoreError(f"cannot create the key file {path}: {exc.strerror or exc}") from exc
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        # A part-written key would make the store unreadable later: remove it now.
        path.unlink(missing_ok=True)
        raise StoreError(f"cannot write the key file {path}: {exc.strerror or exc}") from exc
    return key
