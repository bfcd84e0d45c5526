"""Hashes, Ed25519 keys and addresses (protocol section 1).

Address = H(public_key)[:20]; its text form is "mx" + 40 lowercase hex digits.
Every signed message starts with a domain tag and the chain id; the tags live here so
that no two kinds of message can ever share a signing payload.
"""

from __future__ import annotations

import hashlib
import os

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
    try:
        crypto_sign_open(signature + message, public_key)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


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
