"""AES-256-GCM for the file store: OpenSSL's libcrypto through ctypes, else the cryptography package.

Opening the store is on the credential helper's hot path, and importing ``cryptography``'s AEAD costs
about 14 ms, a third of a whole ``get``. The interpreter's own ``_hashlib`` is linked against
libcrypto, so its EVP interface is already mapped into the process: reaching it through ctypes costs
about 5 ms. Sealing (a write, off the hot path) always uses ``cryptography``; opening uses libcrypto
when ``_hashlib`` exposes it and falls back to ``cryptography`` otherwise (a static OpenSSL, another
Python implementation). Both are the same OpenSSL AES-GCM, and the tests check each against the other.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: this module is on the fast get, which imports no typing; mypy honours it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes

KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
_EVP_CTRL_GCM_SET_TAG = 0x11

# None: not probed yet; False: libcrypto is not reachable, use cryptography.
_libcrypto: ctypes.CDLL | bool | None = None


class InvalidTag(Exception):
    """The key, nonce, associated data or ciphertext is not the one that was sealed."""


def seal(key: bytes, nonce: bytes, plain: bytes, aad: bytes) -> bytes:
    """Ciphertext followed by the 16-byte tag."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key).encrypt(nonce, plain, aad)


def open_sealed(key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    """The plaintext of ``sealed`` (ciphertext then tag); raises ``InvalidTag`` unless it is authentic."""
    if len(key) != KEY_LEN or len(nonce) != NONCE_LEN or len(sealed) < TAG_LEN:
        raise InvalidTag
    lib = _load()
    if lib is None:
        return _open_with_cryptography(key, nonce, sealed, aad)
    return _open_with_libcrypto(lib, key, nonce, sealed, aad)


def _open_with_cryptography(key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag as CryptographyInvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(key).decrypt(nonce, sealed, aad)
    except CryptographyInvalidTag:
        raise InvalidTag from None


def _open_with_libcrypto(lib: ctypes.CDLL, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    import ctypes

    body, tag = sealed[:-TAG_LEN], sealed[-TAG_LEN:]
    out = ctypes.create_string_buffer(len(body) + TAG_LEN)
    out_len = ctypes.c_int(0)
    ctx = lib.EVP_CIPHER_CTX_new()
    if not ctx:
        raise MemoryError("EVP_CIPHER_CTX_new failed")
    try:
        ok = lib.EVP_DecryptInit_ex(ctx, lib.EVP_aes_256_gcm(), None, key, nonce) == 1
        # The associated data goes in with no output buffer, as OpenSSL's GCM interface wants.
        ok = ok and (not aad or lib.EVP_DecryptUpdate(ctx, None, ctypes.byref(out_len), aad, len(aad)) == 1)
        address = ctypes.addressof(out)
        ok = ok and lib.EVP_DecryptUpdate(ctx, address, ctypes.byref(out_len), body, len(body)) == 1
        written = out_len.value
        ok = ok and lib.EVP_CIPHER_CTX_ctrl(ctx, _EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1
        # Final checks the tag: only its success makes the plaintext authentic.
        ok = ok and lib.EVP_DecryptFinal_ex(ctx, address + written, ctypes.byref(out_len)) == 1
        if not ok:
            raise InvalidTag
        return out.raw[: written + out_len.value]
    finally:
        lib.EVP_CIPHER_CTX_free(ctx)
        ctypes.memset(out, 0, len(out))


def _load() -> ctypes.CDLL | None:
    global _libcrypto
    if _libcrypto is None:
        _libcrypto = _bind() or False
    return _libcrypto if not isinstance(_libcrypto, bool) else None


def _bind() -> ctypes.CDLL | None:
    try:
        import _hashlib
        import ctypes

        lib = ctypes.CDLL(_hashlib.__file__)
        ptr, int_p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)
        # Every signature is declared: a default int return would truncate pointers on 64-bit.
        signatures = {
            "EVP_CIPHER_CTX_new": (ptr, []),
            "EVP_CIPHER_CTX_free": (None, [ptr]),
            "EVP_aes_256_gcm": (ptr, []),
            "EVP_DecryptInit_ex": (ctypes.c_int, [ptr, ptr, ptr, ctypes.c_char_p, ctypes.c_char_p]),
            "EVP_DecryptUpdate": (ctypes.c_int, [ptr, ptr, int_p, ctypes.c_char_p, ctypes.c_int]),
            "EVP_CIPHER_CTX_ctrl": (ctypes.c_int, [ptr, ctypes.c_int, ctypes.c_int, ctypes.c_char_p]),
            "EVP_DecryptFinal_ex": (ctypes.c_int, [ptr, ptr, int_p]),
        }
        for name, (restype, argtypes) in signatures.items():
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = argtypes
        return lib
    except (ImportError, OSError, AttributeError):
        # No dynamic libcrypto behind _hashlib (or no ctypes): cryptography serves instead.
        return None
