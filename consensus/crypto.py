"""Hashes, Ed25519 keys and addresses (protocol section 1).

Address = H(public_key)[:20]; its text form is "mx" + 40 lowercase hex digits.
Every signed message starts with a domain tag and the chain id; the tags live here so
that no two kinds of message can ever share a signing payload.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

__all__ = [
    "TAG_BLOCK",
    "TAG_SCHEDULE",
    "TAG_TX",
    "TAG_VOTE",
    "AddressError",
    "PrivateKey",
    "address_from_text",
    "address_of",
    "address_to_text",
    "sha256",
    "verify",
]

TAG_TX = b"MUXER/tx/v1"
TAG_BLOCK = b"MUXER/block/v1"
TAG_VOTE = b"MUXER/vote/v1"
TAG_SCHEDULE = b"MUXER/schedule/v1"

ADDRESS_LEN = 20


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def address_of(public_key: bytes) -> bytes:
    return hashlib.sha256(public_key).digest()[:ADDRESS_LEN]


class AddressError(ValueError):
    """A text address that is not "mx" + 40 lowercase hex digits."""


_HEX = frozenset("0123456789abcdef")


def address_to_text(address: bytes) -> str:
    if len(address) != ADDRESS_LEN:
        raise AddressError(f"an address is {ADDRESS_LEN} bytes, got {len(address)}")
    return "mx" + address.hex()


def address_from_text(text: str) -> bytes:
    if not isinstance(text, str):
        raise AddressError("an address must be a string")
    if not text.startswith("mx"):
        raise AddressError(f"address {text[:50]!r} must start with 'mx'")
    body = text[2:]
    if len(body) != 2 * ADDRESS_LEN:
        raise AddressError(
            f"address {text[:50]!r} must have 40 hex digits after 'mx', has {len(body)}"
        )
    if not set(body) <= _HEX:
        raise AddressError(f"address {text[:50]!r} must use lowercase hex digits only")
    return bytes.fromhex(body)


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True iff signature is a valid Ed25519 signature of message by public_key.

    Verified by libsodium (PyNaCl), about twice as fast as OpenSSL's Ed25519 here, and
    it releases the GIL, so the node's verify threads run in parallel. Its rules are the
    strict ones (RFC 8032 section 5.1.7 with canonical S < L, canonical encodings of R and
    A, and small-order A and R refused); docs/protocol-notes.md states them, since every
    node of a network must accept exactly the same signatures. Honest signatures (any RFC
    8032 signer) pass under every rule set; tests/test_crypto.py checks agreement with
    OpenSSL on honest and mutated signatures and the cases where the rules differ."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    if (_VERIFY_DETACHED is not None and type(signature) is bytes
            and type(message) is bytes and type(public_key) is bytes):
        return _VERIFY_DETACHED(signature, message, _ulonglong(len(message)), public_key) == 0
    try:
        crypto_sign_open(signature + message, public_key)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def _sodium_verify_detached() -> Callable[..., int] | None:
    """libsodium's crypto_sign_ed25519_verify_detached, from the library PyNaCl bundles.

    Why: crypto_sign_open (the only verify PyNaCl binds) takes signature + message as one
    buffer and copies the message out again: two allocations and copies, ~3 of a verify's
    ~57 us here. Both run libsodium's one verification routine (open calls it on the
    buffer's two halves), so they accept exactly the same signatures; ctypes releases the
    GIL during the call as cffi does. Checked on a good and a bad signature before use."""
    try:
        import nacl._sodium  # the extension that carries libsodium's exported symbols

        fn = ctypes.CDLL(nacl._sodium.__file__ or "").crypto_sign_ed25519_verify_detached
    except (ImportError, OSError, AttributeError):  # pragma: no cover - PyNaCl without it
        return None
    fn.restype = ctypes.c_int
    key = PrivateKey(sha256(b"MUXER/verify probe"))
    msg = b"MUXER/verify probe message"
    sig = key.sign(msg)
    bad = bytes([sig[0] ^ 1]) + sig[1:]
    length = ctypes.c_ulonglong(len(msg))
    if fn(sig, msg, length, key.public_key) != 0 or fn(bad, msg, length, key.public_key) == 0:
        return None  # pragma: no cover - not the routine it should be
    return fn


_ulonglong = ctypes.c_ulonglong


class PrivateKey:
    """An Ed25519 signing key, made from a 32-byte seed (RFC 8032 private key)."""

    __slots__ = ("_key", "address", "public_key", "seed")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError(f"an Ed25519 seed is 32 bytes, got {len(seed)}")
        self.seed = bytes(seed)
        self._key = Ed25519PrivateKey.from_private_bytes(self.seed)
        self.public_key = self._key.public_key().public_bytes_raw()
        self.address = address_of(self.public_key)

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(os.urandom(32))

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    @property
    def address_text(self) -> str:
        return address_to_text(self.address)

    def __repr__(self) -> str:  # never show the seed
        return f"PrivateKey({self.address_text})"


# bound once at import (after PrivateKey, which the probe uses); None: crypto_sign_open
_VERIFY_DETACHED = _sodium_verify_detached()
