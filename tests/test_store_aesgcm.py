"""AES-GCM opening through libcrypto (ctypes) against the cryptography package, both ways."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from regauth.store import aesgcm

KEY = bytes(range(32))
NONCE = bytes(range(12))


@pytest.fixture(params=["libcrypto", "cryptography"])
def opener(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "cryptography":
        monkeypatch.setattr(aesgcm, "_libcrypto", False)
    else:
        monkeypatch.setattr(aesgcm, "_libcrypto", None)
        assert aesgcm._load() is not None, "libcrypto must be reachable through _hashlib on this machine"
    return str(request.param)


def test_nist_vector(opener: str) -> None:
    # NIST GCM test vector (gcmDecrypt256.rsp, Count 0 with a plaintext): key, IV, AAD, CT, tag, PT.
    key = bytes.fromhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
    iv = bytes.fromhex("cafebabefacedbaddecaf888")
    aad = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    plain = bytes.fromhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525"
        "b16aedf5aa0de657ba637b39"
    )
    sealed = bytes.fromhex(
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838"
        "c5f61e6393ba7a0abcc9f662"
        "76fc6ece0f4e1768cddf8853bb2d551b"
    )
    assert aesgcm.open_sealed(key, iv, sealed, aad) == plain


@settings(max_examples=60, deadline=None)
@given(plain=st.binary(max_size=300), aad=st.binary(max_size=40))
def test_opens_what_cryptography_seals(plain: bytes, aad: bytes) -> None:
    for forced in (None, False):
        aesgcm._libcrypto = forced
        try:
            sealed = AESGCM(KEY).encrypt(NONCE, plain, aad)
            assert aesgcm.open_sealed(KEY, NONCE, sealed, aad) == plain
            assert AESGCM(KEY).decrypt(NONCE, aesgcm.seal(KEY, NONCE, plain, aad), aad) == plain
        finally:
            aesgcm._libcrypto = None


def test_every_flipped_bit_is_refused(opener: str) -> None:
    aad, plain = b"header", b'{"registry/abc":"secret"}'
    sealed = AESGCM(KEY).encrypt(NONCE, plain, aad)
    for index in range(len(sealed)):
        for bit in (0, 7):
            damaged = bytearray(sealed)
            damaged[index] ^= 1 << bit
            with pytest.raises(aesgcm.InvalidTag):
                aesgcm.open_sealed(KEY, NONCE, bytes(damaged), aad)


@pytest.mark.parametrize(
    ("key", "nonce", "aad", "cut"),
    [
        (bytes(32), NONCE, b"header", 0),  # wrong key
        (KEY, bytes(12), b"header", 0),  # wrong nonce
        (KEY, NONCE, b"headeR", 0),  # other associated data
        (KEY, NONCE, b"", 0),  # associated data dropped
        (KEY, NONCE, b"header", 1),  # tag cut short
        (KEY[:16], NONCE, b"header", 0),  # not a 256-bit key
        (KEY, NONCE[:8], b"header", 0),  # not a 96-bit nonce
    ],
)
def test_anything_but_the_sealing_inputs_is_refused(
    opener: str, key: bytes, nonce: bytes, aad: bytes, cut: int
) -> None:
    sealed = AESGCM(KEY).encrypt(NONCE, b"plain text", b"header")
    with pytest.raises(aesgcm.InvalidTag):
        aesgcm.open_sealed(key, nonce, sealed[: len(sealed) - cut], aad)


def test_too_short_to_hold_a_tag_is_refused(opener: str) -> None:
    with pytest.raises(aesgcm.InvalidTag):
        aesgcm.open_sealed(KEY, NONCE, os.urandom(15), b"")


def test_binding_failure_falls_back_to_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    import _hashlib

    monkeypatch.setattr(aesgcm, "_libcrypto", None)
    monkeypatch.setattr(_hashlib, "__file__", "/nonexistent/_hashlib.so")
    sealed = AESGCM(KEY).encrypt(NONCE, b"x", b"")
    assert aesgcm.open_sealed(KEY, NONCE, sealed, b"") == b"x"
    assert aesgcm._libcrypto is False
