"""The state digest v2 (MuHash3072, docs/state-digest.md).

The implementation in muxernode/state.py is checked three ways: against Bitcoin Core's
own MuHash3072 test vector, against an independent reference written here from the spec
(a pure-Python ChaCha20 block function checked on RFC 8439's vector, Python ints, the
general modular inverse), and by property: the incremental digest after any sequence of
blocks equals the digest recomputed from scratch over the store, whatever the order.
"""

from __future__ import annotations

import hashlib
import random
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import encode
from muxernode import state as state_module
from muxernode.state import (
    DIGEST_KEY,
    MODULUS,
    STATE_PREFIX,
    MuHash3072,
    State,
    StateDigestError,
    digest_bytes,
    element,
    entry_bytes,
    recompute_digest,
)
from storage.kv import MemoryKV
from storage.leveldb import LevelDBStore

# the MUXER vector published in docs/state-digest.md
VECTOR_ENTRIES = [(b"a\x01", b"\x93\x01\x02\x03"), (b"g", b"\x94\x00\x01\xce\x69\x55\xb5\x80\x00")]
VECTOR_DIGEST = "33174befe480c99e27b50259e8f4da8ceadb4f70be80ae6159a8f086601df734"


# --- an independent reference (RFC 8439 ChaCha20, Python ints) ------------------------------


def _rotl(v: int, n: int) -> int:
    return ((v << n) & 0xFFFFFFFF) | (v >> (32 - n))


def _chacha20_block(key: bytes, counter: int, nonce: bytes) -> bytes:
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574, *struct.unpack("<8I", key), counter,
         *struct.unpack("<3I", nonce)]
    x = list(s)

    def qr(a: int, b: int, c: int, d: int) -> None:
        x[a] = (x[a] + x[b]) & 0xFFFFFFFF
        x[d] = _rotl(x[d] ^ x[a], 16)
        x[c] = (x[c] + x[d]) & 0xFFFFFFFF
        x[b] = _rotl(x[b] ^ x[c], 12)
        x[a] = (x[a] + x[b]) & 0xFFFFFFFF
        x[d] = _rotl(x[d] ^ x[a], 8)
        x[c] = (x[c] + x[d]) & 0xFFFFFFFF
        x[b] = _rotl(x[b] ^ x[c], 7)

    rounds = [(0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15),  # columns
              (0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14)]  # diagonals
    for _ in range(10):
        for a, b, c, d in rounds:
            qr(a, b, c, d)
    return struct.pack("<16I", *((a + b) & 0xFFFFFFFF for a, b in zip(x, s, strict=True)))


def _ref_element(data: bytes) -> int:
    key = hashlib.sha256(data).digest()
    stream = b"".join(_chacha20_block(key, i, bytes(12)) for i in range(6))
    return int.from_bytes(stream, "little")


def _ref_digest(entries: list[tuple[bytes, bytes]]) -> bytes:
    p = 2**3072 - 1103717
    acc = 1
    for k, v in entries:
        acc = acc * _ref_element(len(k).to_bytes(4, "big") + k + v) % p
    inner = hashlib.sha256(acc.to_bytes(384, "little")).digest()
    return hashlib.sha256(b"MUXER/state/v2" + inner).digest()


def test_reference_chacha20_is_rfc8439() -> None:
    # RFC 8439 section 2.3.2's block function vector
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a00000000")
    block = _chacha20_block(key, 1, nonce)
    assert block.hex() == (
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
        "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e")


def test_bitcoin_core_muhash_vector() -> None:
    # src/test/crypto_tests.cpp (muhash_tests): FromInt(0) * FromInt(1) / FromInt(2);
    # Bitcoin prints a uint256 byte-reversed
    m = MuHash3072()
    m.insert(bytes(32))
    m.insert(b"\x01" + bytes(31))
    m.remove(b"\x02" + bytes(31))
    assert m.finalize()[::-1].hex() == (
        "10d312b100cbd32ada024a6646e40d3482fcff103668d2625f10002a607d5863")


def test_modulus_and_element_match_the_reference() -> None:
    assert MODULUS == 2**3072 - 1103717
    rng = random.Random(5)
    for n in (0, 1, 31, 32, 33, 200):
        data = rng.randbytes(n)
        assert int(element(data)) == _ref_element(data)


def test_libsodium_and_cryptography_elements_agree() -> None:
    # the fast path (libsodium's raw ChaCha20) is the one in use where PyNaCl is installed,
    # as it is here; the fallback through `cryptography` must give the same numbers
    assert state_module._STREAM is not None
    assert element is state_module._element_sodium
    rng = random.Random(9)
    for n in (0, 1, 55, 56, 64, 300):
        data = rng.randbytes(n)
        fast = state_module._element_sodium(data)
        assert fast == state_module._element_cryptography(data)
        assert int(fast) == _ref_element(data)


def test_published_vector() -> None:
    kv = MemoryKV({STATE_PREFIX + k: v for k, v in VECTOR_ENTRIES})
    digest = recompute_digest(kv)
    assert digest == _ref_digest(VECTOR_ENTRIES)
    assert digest.hex() == VECTOR_DIGEST
    # the empty state: the product over no entries is 1
    empty = recompute_digest(MemoryKV())
    assert empty == _ref_digest([])
    assert empty.hex() == "68e1e74fc8d697cae8cc62e2374f741eb4beb41580e321b1e258c7546f1fc735"


# --- incremental = from scratch -------------------------------------------------------------

KEYS = [b"a" + bytes([i]) for i in range(12)] + [b"g", b"w\x00\x01"]
values = st.one_of(st.none(), st.integers(0, 2**40),
                   st.lists(st.integers(0, 300), max_size=4))
blocks = st.lists(st.dictionaries(st.sampled_from(KEYS), values, max_size=6),
                  min_size=1, max_size=8)


def _apply(state: State, kv: MemoryKV | LevelDBStore, changes: dict[bytes, Any]) -> bytes:
    for k, v in changes.items():
        state.put(k, v)
    digest, store_changes, _ = state.commit()
    kv.write(store_changes)
    return digest


@settings(max_examples=60, deadline=None)
@given(blocks)
def test_incremental_equals_from_scratch(seq: list[dict[bytes, Any]]) -> None:
    kv = MemoryKV()
    state = State(kv)
    for changes in seq:
        digest = _apply(state, kv, changes)
        assert digest == recompute_digest(kv) == state.digest()
        # a view that reloads the accumulator from the store agrees
        assert State(kv).digest() == digest


records = st.recursive(
    st.one_of(st.integers(-(2**63), 2**64 - 1), st.binary(max_size=40), st.text(max_size=40),
              st.booleans()),
    lambda inner: st.lists(inner, max_size=5), max_leaves=12)


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), records, min_size=1, max_size=6))
def test_commit_writes_the_canonical_encoding(block: dict[bytes, Any]) -> None:
    """State.commit encodes with a Packer of its own: the bytes must be codec.encode's."""
    state = State(MemoryKV())
    for k, v in block.items():
        state.put(k, v)
    _, changes, _ = state.commit()
    for k, v in block.items():
        assert changes[STATE_PREFIX + k] == encode(v)


def test_trim_keeps_the_recently_changed_records_and_their_elements() -> None:
    kv = MemoryKV()
    state = State(kv)
    _apply(state, kv, {b"a\x00": [1], b"a\x01": [2], b"a\x02": [3], b"a\x03": [4]})
    _apply(state, kv, {b"a\x00": [5]})  # the first loaded, changed again: now the newest
    assert state.get(b"a\x04") is None  # read only: stays where it was loaded (last)
    state.trim_cache(4)  # five cached: trimmed to 80 % of 4, the two least recent go
    assert set(state._cache) == {b"a\x03", b"a\x00", b"a\x04"}
    assert state._cache[b"a\x00"][2] == element(entry_bytes(b"a\x00", encode([5])))
    # the element kept is the one the next change removes: the digest stays exact
    assert _apply(state, kv, {b"a\x00": [6], b"a\x01": None}) == recompute_digest(kv)


@settings(max_examples=30, deadline=None)
@given(blocks, st.randoms(use_true_random=False))
def test_order_independent(seq: list[dict[bytes, Any]], rnd: random.Random) -> None:
    """The final state reached block by block, or written at once in another order, has
    one digest."""
    kv = MemoryKV()
    state = State(kv)
    for changes in seq:
        digest = _apply(state, kv, changes)
    final = [(k, v) for k, v in kv.iterate(STATE_PREFIX) if k != STATE_PREFIX + DIGEST_KEY]
    rnd.shuffle(final)
    kv2 = MemoryKV()
    state2 = State(kv2)
    for k, raw in final:
        from consensus.codec import decode

        state2.put(k[len(STATE_PREFIX):], decode(raw))
    assert state2.commit()[0] == digest


def test_undo_restores_the_accumulator_on_leveldb(tmp_path: Path) -> None:
    kv = LevelDBStore(str(tmp_path / "db"))
    try:
        state = State(kv)
        first = _apply(state, kv, {b"a\x00": [1, 2], b"g": 7})
        state.put(b"a\x00", None)
        state.put(b"a\x01", 9)
        second, changes, undo = state.commit()
        kv.write(changes)
        assert second != first and recompute_digest(kv) == second
        kv.write(undo)  # the block popped
        state.reset()
        assert state.digest() == first == recompute_digest(kv)
    finally:
        kv.close()


def test_stored_record_is_versioned() -> None:
    kv = MemoryKV()
    state = State(kv)
    _apply(state, kv, {b"g": 1})
    raw = kv.get(STATE_PREFIX + DIGEST_KEY)
    assert raw is not None and len(raw) == 385 and raw[0] == 2
    # a v1 data directory: the additive sum's 32 bytes
    old = MemoryKV({STATE_PREFIX + DIGEST_KEY: bytes(31) + b"\x05"})
    with pytest.raises(StateDigestError, match="older muxernode with the additive digest"):
        State(old)
    with pytest.raises(StateDigestError, match="no number"):
        State(MemoryKV({STATE_PREFIX + DIGEST_KEY: b"\x02" + bytes(384)}))


# --- forgeries ------------------------------------------------------------------------------


def _digest_of(entries: list[tuple[bytes, bytes]]) -> bytes:
    return recompute_digest(MemoryKV({STATE_PREFIX + k: v for k, v in entries}))


def test_forged_entries_change_the_digest() -> None:
    rng = random.Random(11)
    entries = [(b"a" + rng.randbytes(20), rng.randbytes(30)) for _ in range(40)]
    honest = _digest_of(entries)
    forgeries = [
        entries[:-1],  # one dropped
        [*entries, (b"a" + rng.randbytes(20), b"\x00")],  # one added
        [(k, v + b"\x00") if i == 3 else (k, v) for i, (k, v) in enumerate(entries)],
        # two values swapped between keys: same multiset of values, same multiset of keys
        [(entries[0][0], entries[1][1]), (entries[1][0], entries[0][1]), *entries[2:]],
        # the key/value boundary moved: the same concatenated bytes
        [(entries[0][0] + entries[0][1][:1], entries[0][1][1:]), *entries[1:]],
    ]
    for forged in forgeries:
        assert _digest_of(forged) != honest


def test_additive_collision_does_not_carry_over() -> None:
    """The structure that made v1 forgeable: sums of entry hashes collide by birthday
    search over pairs (here on a 32-bit truncation, which 512 entries suffice for); the
    same two entry sets have different v2 digests."""
    rng = random.Random(3)
    pool = [(b"a" + rng.randbytes(8), rng.randbytes(8)) for _ in range(512)]
    hashes = [int.from_bytes(hashlib.sha256(entry_bytes(k, v)).digest(), "big") % 2**32
              for k, v in pool]
    seen: dict[int, tuple[int, int]] = {}
    pair: tuple[tuple[int, int], tuple[int, int]] | None = None
    for i in range(len(pool)):
        for j in range(i + 1, len(pool)):
            s = (hashes[i] + hashes[j]) % 2**32
            other = seen.get(s)
            if other is not None and not {i, j} & set(other):
                pair = (other, (i, j))
                break
            seen[s] = (i, j)
        if pair is not None:
            break
    assert pair is not None, "512 entries give 130k pair sums: a 32-bit collision exists"
    (a, b), (c, d) = pair
    base = [(b"w" + rng.randbytes(8), rng.randbytes(8)) for _ in range(5)]
    honest = [*base, pool[a], pool[b]]
    forged = [*base, pool[c], pool[d]]
    assert (hashes[a] + hashes[b]) % 2**32 == (hashes[c] + hashes[d]) % 2**32
    assert _digest_of(honest) != _digest_of(forged)
    assert digest_bytes(MuHash3072().value()) == _digest_of([])
