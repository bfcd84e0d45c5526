"""Keys, signatures and addresses (protocol section 1)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import (
    TAG_BLOCK,
    TAG_SCHEDULE,
    TAG_TX,
    TAG_VOTE,
    AddressError,
    PrivateKey,
    address_from_text,
    address_of,
    address_to_text,
    sha256,
    verify,
)

# RFC 8032 section 7.1, TEST 1 (empty message)
RFC_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"  # R
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"  # S
)


def test_rfc8032_test1() -> None:
    key = PrivateKey(RFC_SECRET)
    assert key.public_key == RFC_PUBLIC
    assert key.sign(b"") == RFC_SIGNATURE
    assert verify(RFC_PUBLIC, RFC_SIGNATURE, b"")


def test_rfc8032_test1_rejections() -> None:
    assert not verify(RFC_PUBLIC, RFC_SIGNATURE, b"\x00")
    assert not verify(RFC_PUBLIC, RFC_SIGNATURE, b"x")
    other = PrivateKey(bytes(32)).public_key
    assert not verify(other, RFC_SIGNATURE, b"")
    for i in (0, 31, 32, 63):  # a flipped bit in R or in S
        sig = bytearray(RFC_SIGNATURE)
        sig[i] ^= 0x01
        assert not verify(RFC_PUBLIC, bytes(sig), b"")


def test_signatures_are_deterministic() -> None:
    key = PrivateKey(bytes([7]) * 32)
    assert key.sign(b"message") == key.sign(b"message")
    assert key.sign(b"message") != key.sign(b"messagf")
    assert verify(key.public_key, key.sign(b"message"), b"message")


def test_address_is_sha256_of_public_key_prefix() -> None:
    expected = hashlib.sha256(RFC_PUBLIC).digest()[:20]
    assert address_of(RFC_PUBLIC) == expected
    key = PrivateKey(RFC_SECRET)
    assert key.address == expected
    assert key.address_text == "mx" + expected.hex()
    assert len(key.address) == 20


def test_sha256() -> None:
    assert sha256(b"") == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert sha256(b"abc") == bytes.fromhex(
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_domain_tags_are_distinct_and_not_prefixes() -> None:
    tags = [TAG_TX, TAG_BLOCK, TAG_VOTE, TAG_SCHEDULE]
    assert TAG_TX == b"MUXER/tx/v1"
    for a in tags:
        for b in tags:
            if a is not b:
                assert not b.startswith(a)


@pytest.mark.parametrize("seed", [bytes(32), bytes([1]) * 32, RFC_SECRET, bytes(range(32))])
def test_address_text_round_trip(seed: bytes) -> None:
    address = PrivateKey(seed).address
    text = address_to_text(address)
    assert text.startswith("mx")
    assert len(text) == 42
    assert text == text.lower()
    assert address_from_text(text) == address


def test_address_text_known_value() -> None:
    assert address_to_text(bytes(range(20))) == "mx000102030405060708090a0b0c0d0e0f10111213"
    assert address_from_text("mx" + "ab" * 20) == b"\xab" * 20


@pytest.mark.parametrize("length", [0, 19, 21, 32])
def test_address_to_text_wrong_length(length: int) -> None:
    with pytest.raises(AddressError, match="20 bytes"):
        address_to_text(bytes(length))


GOOD = "mx" + "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("MX" + GOOD[2:], "must start with 'mx'"),
        ("0x" + GOOD[2:], "must start with 'mx'"),
        (GOOD[2:], "must start with 'mx'"),
        ("", "must start with 'mx'"),
        ("mx", "has 0"),
        (GOOD[:-1], "has 39"),
        (GOOD + "0", "has 41"),
        ("mx" + "AB" * 20, "lowercase hex"),
        (GOOD[:-1] + "F", "lowercase hex"),
        (GOOD[:-1] + "g", "lowercase hex"),
        (GOOD[:-1] + " ", "lowercase hex"),
        ("mx" + "é" * 40, "lowercase hex"),
        ("mx" + "+1" * 20, "lowercase hex"),
    ],
)
def test_address_from_text_errors(text: str, match: str) -> None:
    with pytest.raises(AddressError, match=match):
        address_from_text(text)


@pytest.mark.parametrize("value", [None, 5, b"mx" + b"00" * 20, ["mx"]])
def test_address_from_text_non_string(value: Any) -> None:
    with pytest.raises(AddressError, match="must be a string"):
        address_from_text(value)


def test_address_error_is_a_value_error() -> None:
    assert issubclass(AddressError, ValueError)


def test_verify_wrong_signature_key_or_message() -> None:
    alice = PrivateKey(bytes([10]) * 32)
    bob = PrivateKey(bytes([11]) * 32)
    sig = alice.sign(b"hello")
    assert verify(alice.public_key, sig, b"hello")
    assert not verify(bob.public_key, sig, b"hello")
    assert not verify(alice.public_key, bob.sign(b"hello"), b"hello")
    assert not verify(alice.public_key, sig, b"hellp")
    assert not verify(alice.public_key, sig, b"hello\x00")
    assert not verify(alice.public_key, bytes(64), b"hello")


@pytest.mark.parametrize(
    "public_key",
    [
        b"",
        bytes(31),
        bytes(33),
        RFC_PUBLIC + b"\x00",
        RFC_PUBLIC[:31],
        b"\xff" * 32,  # not a point encoding (y >= p)
        bytes(32),  # a small-order point
    ],
)
def test_verify_false_for_malformed_keys(public_key: bytes) -> None:
    assert verify(public_key, RFC_SIGNATURE, b"") is False


@pytest.mark.parametrize("signature", [b"", RFC_SIGNATURE[:63], RFC_SIGNATURE + b"\x00"])
def test_verify_false_for_malformed_signatures(signature: bytes) -> None:
    assert verify(RFC_PUBLIC, signature, b"") is False


def test_verify_rejects_non_canonical_s() -> None:
    # S + L (the group order) is the classic malleability: it must not verify
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(RFC_SIGNATURE[32:], "little")
    malleated = RFC_SIGNATURE[:32] + (s + order).to_bytes(32, "little")
    assert verify(RFC_PUBLIC, malleated, b"") is False


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33)])
def test_private_key_seed_length(seed: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PrivateKey(seed)


def test_private_key_repr_hides_seed() -> None:
    key = PrivateKey(RFC_SECRET)
    assert RFC_SECRET.hex() not in repr(key)
    assert key.address_text in repr(key)


def test_generate_makes_distinct_working_keys() -> None:
    a, b = PrivateKey.generate(), PrivateKey.generate()
    assert a.public_key != b.public_key
    assert verify(a.public_key, a.sign(b"m"), b"m")


# --- verification rules: libsodium, checked against OpenSSL --------------------------------

L = 2**252 + 27742317777372353535851937790883648493  # the order of the base point


def _openssl_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300),
       flip=st.one_of(st.none(), st.integers(0, 64 * 8 - 1)))
def test_verify_agrees_with_openssl_on_honest_and_mutated_signatures(
        seed: bytes, message: bytes, flip: int | None) -> None:
    key = PrivateKey(seed)
    sig = bytearray(key.sign(message))
    if flip is not None:
        sig[flip // 8] ^= 1 << (flip % 8)
    ours = verify(key.public_key, bytes(sig), message)
    assert ours == _openssl_verify(key.public_key, bytes(sig), message)
    assert ours == (flip is None)


def test_verify_refuses_a_non_canonical_s() -> None:
    """S + L verifies the same equation; both libraries refuse it (malleability)."""
    key = PrivateKey(bytes([3]) * 32)
    sig = key.sign(b"m")
    s = int.from_bytes(sig[32:], "little") + L
    assert s < 2**256
    malleated = sig[:32] + s.to_bytes(32, "little")
    assert not verify(key.public_key, malleated, b"m")
    assert not _openssl_verify(key.public_key, malleated, b"m")


def test_verify_refuses_small_order_public_keys() -> None:
    """The identity point as a public key: with R = identity and S = 0 the cofactorless
    equation [S]B = R + [k]A holds for every message. OpenSSL does not check for it;
    libsodium (our rule) refuses small-order keys and R, so no such "key" can sign."""
    identity = (1).to_bytes(32, "little")
    forged = identity + bytes(32)
    assert not verify(identity, forged, b"anything")
    assert _openssl_verify(identity, forged, b"anything")  # where the rule sets differ


def _open_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """The former path: PyNaCl's crypto_sign_open on signature + message."""
    from nacl.bindings import crypto_sign_open
    from nacl.exceptions import BadSignatureError

    try:
        crypto_sign_open(signature + message, public_key)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300),
       flip=st.one_of(st.none(), st.integers(0, 96 * 8 - 1)))
def test_detached_verify_accepts_what_crypto_sign_open_accepts(
        seed: bytes, message: bytes, flip: int | None) -> None:
    """verify runs libsodium's crypto_sign_ed25519_verify_detached (no copies); the rule
    must stay crypto_sign_open's, bit flips in the signature and the key included."""
    from consensus import crypto

    assert crypto._VERIFY_DETACHED is not None  # the fast path is bound here
    key = PrivateKey(seed)
    blob = bytearray(key.sign(message) + key.public_key)
    if flip is not None:
        blob[flip // 8] ^= 1 << (flip % 8)
    sig, pub = bytes(blob[:64]), bytes(blob[64:])
    assert verify(pub, sig, message) == _open_verify(pub, sig, message)
    assert verify(pub, sig, message) == (flip is None)


def test_detached_verify_edge_cases_match_crypto_sign_open() -> None:
    key = PrivateKey(bytes([3]) * 32)
    sig = key.sign(b"m")
    s = int.from_bytes(sig[32:], "little") + L
    identity = (1).to_bytes(32, "little")
    cases = [
        (key.public_key, sig[:32] + s.to_bytes(32, "little"), b"m"),  # S + L
        (identity, identity + bytes(32), b"anything"),  # small-order key and R
        (key.public_key, sig, b""),  # another message (empty)
        (bytes(32), sig, b"m"),
        (key.public_key, bytes(64), b"m"),
    ]
    for pub, signature, message in cases:
        assert verify(pub, signature, message) is False
        assert _open_verify(pub, signature, message) is False
    assert verify(key.public_key, sig, b"m") is True
