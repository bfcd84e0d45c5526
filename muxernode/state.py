"""The ledger's state overlay: decoded records cached over a KVReader, with the digest.

Records are msgpack arrays kept decoded (mutable lists or ints) in a cache, next to the
encoding last committed to the store. The ledger mutates records in place after calling
``touch`` (first touch in a block remembers the committed encoding). ``end_block`` encodes
each touched record once, returns the changes and the undo record, and updates the state
digest incrementally. The digest (version 2, docs/state-digest.md) is Bitcoin Core's
MuHash3072 over the entries' encodings:

    element(k, v) = ChaCha20 keystream (key SHA256(u32(len(k)) + k + v), nonce 0) of
                    384 bytes, read as a little-endian integer
    acc           = product of element(k, v) over every entry, mod p = 2**3072 - 1103717
    state_digest  = H(b"MUXER/state/v2" + H(acc as 384 bytes little-endian))

A product over entries depends only on the state, not on the order it was reached in, and
unlike the additive sum of v1 no sub-exponential collision search is known for it (finding
a forged entry set means solving discrete-log-like problems in a 3072-bit group), so a
snapshot from an untrusted peer can be checked against it. A block multiplies its inserted
elements into a numerator and its removed ones into a denominator, and pays one modular
inverse at its end. ``acc`` is stored under DIGEST_KEY as a versioned record (one version
byte, then acc), itself outside the product. Keys in the store carry the ledger's one-byte
prefix.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import msgpack
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from gmpy2 import invert, mpz

from consensus.codec import decode_trusted
from storage.kv import KVReader, StorageError

__all__ = [
    "DIGEST_KEY",
    "DIGEST_VERSION",
    "MODULUS",
    "STATE_PREFIX",
    "MuHash3072",
    "State",
    "StateDigestError",
    "digest_bytes",
    "element",
    "entry_bytes",
    "recompute_digest",
]

# gmpy2's GMP numbers: a 3072-bit multiply and reduce costs 1.7 us against Python int's
# 7.5 us, and an inverse 15 us against 570 us (bench.ledger prints the digest's share)
Num = Any  # gmpy2.mpz (gmpy2 ships no type information)

STATE_PREFIX = b"S"
DIGEST_KEY = b"#"
DIGEST_VERSION = 2
_BITS = 3072
_C = 1103717
MODULUS = (1 << _BITS) - _C  # the largest 3072-bit safe prime (Bitcoin Core's choice)
_P = mpz(MODULUS)
_MASK = mpz((1 << _BITS) - 1)
_ONE = mpz(1)
_SIZE = _BITS // 8
_ZEROS = bytes(_SIZE)
_NONCE = bytes(16)  # cryptography's ChaCha20 nonce: 32-bit block counter 0, 96-bit nonce 0
_MISSING = object()


class StateDigestError(StorageError):
    """The stored digest record is not one this version reads (a v1 data directory); a
    StorageError, so the daemon says it in one line and exits 2."""


def entry_bytes(key: bytes, value: bytes) -> bytes:
    """The bytes an entry contributes: u32(len(key)) big-endian + key + value."""
    return len(key).to_bytes(4, "big") + key + value


def _keystream_cryptography(key: bytes) -> bytes:
    """384 bytes of RFC 8439 ChaCha20 keystream (counter 0, nonce 0) by `cryptography`."""
    stream: bytes = Cipher(algorithms.ChaCha20(key, _NONCE), mode=None).encryptor().update(
        _ZEROS)
    return stream


_Buffer = ctypes.c_char * _SIZE
_NONCE12 = bytes(12)
# the arguments are passed as ready C values (no argtypes to convert through: 0.3 us less
# a call): the output array, the length as the C unsigned long long it is declared, and
# bytes objects as the const pointers the nonce and key are
_LENGTH = ctypes.c_ulonglong(_SIZE)


def _sodium_stream() -> Callable[..., int] | None:
    """libsodium's crypto_stream_chacha20_ietf (RFC 8439: 96-bit nonce, counter from 0),
    from the libsodium PyNaCl bundles (a dependency already) or else the system's.

    Why: creating a `cryptography` cipher context costs ~3.6 us of an element's ~4.7 us,
    one plain C call ~1 us. The same bytes either way (checked below and by the tests)."""
    paths: list[str] = []
    try:
        import nacl._sodium  # the extension that carries libsodium's exported symbols

        if nacl._sodium.__file__:
            paths.append(nacl._sodium.__file__)
    except ImportError:  # pragma: no cover - PyNaCl is a dependency
        pass
    system = ctypes.util.find_library("sodium")
    if system:  # pragma: no cover - only without PyNaCl's own
        paths.append(system)
    for path in paths:
        try:
            fn = ctypes.CDLL(path).crypto_stream_chacha20_ietf
        except (OSError, AttributeError):  # pragma: no cover - a PyNaCl built without it
            continue
        fn.restype = ctypes.c_int
        probe = hashlib.sha256(b"MUXER/state/v2 keystream probe").digest()
        buf = _Buffer()
        if fn(buf, _LENGTH, _NONCE12, probe) == 0 and buf.raw == _keystream_cryptography(probe):
            return fn
    return None  # pragma: no cover - no usable libsodium: the cryptography path


_STREAM = _sodium_stream()


_sha256 = hashlib.sha256
_from_bytes = mpz.from_bytes


def _element_sodium(data: bytes) -> Num:
    """``element`` through libsodium (the fast path)."""
    # a buffer per call (~0.1 us): the C call releases the GIL, so a shared one could be
    # overwritten by another thread's element between the call and the read
    buf = _Buffer()
    _STREAM(buf, _LENGTH, _NONCE12, _sha256(data).digest())  # type: ignore[misc]
    return _from_bytes(buf, "little")


def _element_cryptography(data: bytes) -> Num:
    """``element`` through `cryptography` (where no libsodium is found)."""
    return mpz.from_bytes(_keystream_cryptography(hashlib.sha256(data).digest()), "little")


# MuHash3072's element of data: a 3072-bit number from SHA256(data) by ChaCha20
# (docs/state-digest.md); bound to one implementation once, no dispatch per call
element: Callable[[bytes], Num] = (
    _element_cryptography if _STREAM is None else _element_sodium)


def _mulmod(a: Num, b: Num) -> Num:
    # p = 2**3072 - c, so 2**3072 = c (mod p): fold the high half down twice instead of
    # a general division (1.7x slower at this size); the result is fully reduced
    x = a * b
    x = (x & _MASK) + (x >> _BITS) * _C
    x = (x & _MASK) + (x >> _BITS) * _C
    return x - _P if x >= _P else x


def _normalize(numerator: Num, denominator: Num) -> Num:
    if denominator == 1:
        return numerator
    return _mulmod(numerator, invert(denominator, _P))


def _finalize(acc: Num) -> bytes:
    raw: bytes = acc.to_bytes(_SIZE, "little")
    return hashlib.sha256(raw).digest()


def digest_bytes(acc: Num) -> bytes:
    """The state digest of a normalized accumulator."""
    return hashlib.sha256(b"MUXER/state/v2" + _finalize(acc)).digest()


class MuHash3072:
    """Bitcoin Core's MuHash3072 (src/crypto/muhash.cpp): a set hash over byte strings,
    insert and remove in any order; ``finalize`` is byte for byte Bitcoin's."""

    __slots__ = ("denominator", "numerator")

    def __init__(self, acc: Num = _ONE) -> None:
        self.numerator = mpz(acc)
        self.denominator = _ONE

    def insert(self, data: bytes) -> None:
        self.numerator = _mulmod(self.numerator, element(data))

    def remove(self, data: bytes) -> None:
        self.denominator = _mulmod(self.denominator, element(data))

    def insert_element(self, e: Num) -> None:
        """Insert by an element already computed (``element(data)``)."""
        self.numerator = _mulmod(self.numerator, e)

    def remove_element(self, e: Num) -> None:
        self.denominator = _mulmod(self.denominator, e)

    def value(self) -> Num:
        """The accumulator as one number mod p (one modular inverse)."""
        acc = _normalize(self.numerator, self.denominator)
        self.numerator, self.denominator = acc, _ONE
        return acc

    def finalize(self) -> bytes:
        return _finalize(self.value())


def encode_acc(acc: Num) -> bytes:
    """The stored digest record: the version byte, then acc (384 bytes little-endian)."""
    raw: bytes = acc.to_bytes(_SIZE, "little")
    return bytes([DIGEST_VERSION]) + raw


def decode_acc(raw: bytes | None) -> Num:
    if raw is None:
        return _ONE  # the empty set
    if len(raw) != _SIZE + 1 or raw[0] != DIGEST_VERSION:
        raise StateDigestError(
            f"the state digest record is not version {DIGEST_VERSION} (MuHash3072): this "
            "data directory was made by an older muxernode with the additive digest; "
            "make a new one with `muxernode init`"
        )
    acc = mpz.from_bytes(raw[1:], "little")
    if not 0 < acc < MODULUS:
        raise StateDigestError("the state digest record holds no number in 1..p-1")
    return acc


class State:
    __slots__ = ("_acc", "_cache", "_kv", "_pack", "_prefix", "_undo")

    def __init__(self, kv: KVReader, prefix: bytes = STATE_PREFIX) -> None:
        self._kv = kv
        self._prefix = prefix
        # key -> [decoded value or None, committed encoding or None, element of the
        # committed entry or None (not computed yet, or no entry)]: an account changes in
        # most blocks, and its old entry's element is then the one its last commit computed
        # (384 bytes a cached record: the cache is bounded by trim_cache)
        self._cache: dict[bytes, list[Any]] = {}
        # keys touched since the block began -> committed encoding before the block
        self._undo: dict[bytes, bytes | None] = {}
        self._acc = _load_acc(kv, prefix)
        # the canonical encoding (consensus.codec.encode's packb options) by one Packer
        # kept per State, which one thread uses: packb builds a Packer per call, 0.6 us of
        # its 1.0 us for an account, paid for every record a block changes
        self._pack = msgpack.Packer(use_bin_type=True).pack

    # --- reads --------------------------------------------------------------------------

    def _entry(self, key: bytes) -> list[Any]:
        entry = self._cache.get(key)
        if entry is None:
            raw = self._kv.get(self._prefix + key)
            entry = [None if raw is None else decode_trusted(raw), raw, None]
            self._cache[key] = entry
        return entry

    def get(self, key: bytes) -> Any:
        """The decoded record (a list or int), or None. Mutate only after ``touch``."""
        entry = self._cache.get(key)
        if entry is None:
            entry = self._entry(key)
        return entry[0]

    def iterate_committed(self, prefix: bytes) -> Iterator[tuple[bytes, Any]]:
        """Committed records under prefix (for read-only views; ignores the overlay)."""
        n = len(self._prefix)
        for k, v in self._kv.iterate(self._prefix + prefix):
            yield k[n:], decode_trusted(v)

    def iterate_store(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Raw committed store entries under a full store prefix, outside the state (the
        node's indexes that views read beside it, such as the comment index)."""
        return self._kv.iterate(prefix)

    # --- writes -------------------------------------------------------------------------

    def touch(self, key: bytes) -> Any:
        """Mark key as changing in this block and return its current (mutable) record."""
        entry = self._cache.get(key)
        if entry is None:
            entry = self._entry(key)
        if key not in self._undo:
            self._undo[key] = entry[1]
        return entry[0]

    def put(self, key: bytes, value: Any) -> None:
        entry = self._cache.get(key)
        if entry is None:
            entry = self._entry(key)
        if key not in self._undo:
            self._undo[key] = entry[1]
        entry[0] = value

    def delete(self, key: bytes) -> None:
        self.put(key, None)

    # --- block boundaries ---------------------------------------------------------------

    def commit(self) -> tuple[bytes, dict[bytes, bytes | None], dict[bytes, bytes | None]]:
        """Close the block: (state_digest, changes, undo), keys carrying the store prefix."""
        changes: dict[bytes, bytes | None] = {}
        undo: dict[bytes, bytes | None] = {}
        numerator = self._acc
        denominator = _ONE
        prefix = self._prefix
        cache = self._cache
        pack = self._pack
        for key, old in self._undo.items():
            entry = cache[key]
            value = entry[0]
            new = None if value is None else pack(value)
            if new == old:
                continue
            if old is not None:
                old_element = entry[2]
                if old_element is None:
                    old_element = element(entry_bytes(key, old))
                denominator = _mulmod(denominator, old_element)
            new_element = None
            if new is not None:
                new_element = element(entry_bytes(key, new))
                numerator = _mulmod(numerator, new_element)
            entry[1] = new
            entry[2] = new_element
            # to the end of the cache's order, which trim_cache drops from the front: a
            # record changed in most blocks stays cached with its element
            del cache[key]
            cache[key] = entry
            skey = prefix + key
            changes[skey] = new
            undo[skey] = old
        self._undo = {}
        acc = _normalize(numerator, denominator)
        dkey = prefix + DIGEST_KEY
        if acc != self._acc:
            undo[dkey] = encode_acc(self._acc)  # acc 1 (no entries) restores as 1
            changes[dkey] = encode_acc(acc)
            self._acc = acc
        return digest_bytes(acc), changes, undo

    def rollback(self) -> None:
        """Forget everything since the block began (the store was not written)."""
        for key in self._undo:
            self._cache.pop(key, None)
        self._undo = {}

    def reset(self) -> None:
        """Drop the whole cache: the store changed under us (block popped, write failed)."""
        self._cache.clear()
        self._undo = {}
        self._acc = _load_acc(self._kv, self._prefix)

    def forget(self, store_keys: Iterable[bytes]) -> None:
        """The store committed changes to these keys (store prefix included) under us.

        Cheaper than ``reset`` for a view that follows the chain (the mempool's): only the
        changed records are dropped from the cache, the rest stay warm."""
        self.rollback()
        n = len(self._prefix)
        cache = self._cache
        for k in store_keys:
            if k.startswith(self._prefix):
                cache.pop(k[n:], None)
        self._acc = _load_acc(self._kv, self._prefix)

    def absorb(self, changes: Mapping[bytes, bytes | None]) -> None:
        """Like ``forget``, but take the committed values from ``changes`` (store keys and
        their new encodings) for the records already cached, instead of re-reading them."""
        self.rollback()
        n = len(self._prefix)
        cache = self._cache
        prefix = self._prefix
        for k, raw in changes.items():
            if k.startswith(prefix):
                key = k[n:]
                if key in cache:
                    cache[key] = [None if raw is None else decode_trusted(raw), raw, None]
        self._acc = _load_acc(self._kv, self._prefix)

    def digest(self) -> bytes:
        return digest_bytes(self._acc)

    @property
    def in_block(self) -> bool:
        return bool(self._undo)

    def cache_size(self) -> int:
        return len(self._cache)

    def trim_cache(self, max_entries: int) -> None:
        """Bound memory: drop committed records when the cache grows past max_entries."""
        cache = self._cache
        if len(cache) <= max_entries or self._undo:
            return
        # least recently changed first (commit moves each changed record to the end of the
        # dict's order; one only read stays where it was loaded), and trimming to 80 %
        # keeps this from running on every block
        drop = len(cache) - max_entries * 4 // 5
        for key in list(itertools.islice(cache, drop)):
            del cache[key]


def _load_acc(kv: KVReader, prefix: bytes) -> Num:
    return decode_acc(kv.get(prefix + DIGEST_KEY))


def recompute_digest(kv: KVReader, prefix: bytes = STATE_PREFIX) -> bytes:
    """The digest from scratch over every stored state entry (for checks and tests)."""
    acc = _ONE
    n = len(prefix)
    for k, v in kv.iterate(prefix):
        key = k[n:]
        if key != DIGEST_KEY:
            acc = _mulmod(acc, element(entry_bytes(key, v)))
    return digest_bytes(acc)
