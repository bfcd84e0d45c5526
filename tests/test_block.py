"""consensus/block.py: the block format of protocol section 6 and decode_block's checks."""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from consensus.block import Block, BlockError, decode_block, peek_block_id
from consensus.tx import SignedTx, build_tx, verify_tx
from consensus.vote import Vote
from tests.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    GENESIS_TIME,
    WITNESS,
    WITNESS2,
    make_genesis,
    op_join,
    op_transfer,
)

GEN = make_genesis()
CHAIN_ID = GEN.chain_id
MAX = GEN.params.max_block_bytes
PREV = hashlib.sha256(b"parent").digest()
DIGEST = hashlib.sha256(b"state").digest()
HEIGHT = 7
TS = GENESIS_TIME + 9


def H(x: bytes) -> bytes:
    return hashlib.sha256(x).digest()


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def make_tx(signer: Any = ALICE, amount: int = 5, op: list[Any] | None = None) -> SignedTx:
    return build_tx(
        signer,
        CHAIN_ID,
        op if op is not None else op_transfer(BOB.address, amount, "m"),
        ref_block_num=0,
        ref_block_prefix=int.from_bytes(CHAIN_ID[:4], "big"),
        expiration=TS + 100,
        fee=10,
    )


def make_vote(target_slot: int = 9) -> Vote:
    return Vote.sign(WITNESS, CHAIN_ID, CHAIN_ID, 0, PREV, target_slot)


TXS = [make_tx(ALICE, 5), make_tx(CAROL, op=op_join("soc", "carol"))]
VOTES = [make_vote(8), make_vote(9)]


def sample_block(txs: list[SignedTx] | None = None, votes: list[Vote] | None = None) -> Block:
    return Block.build(
        WITNESS, CHAIN_ID, HEIGHT, PREV, TS,
        TXS if txs is None else txs, VOTES if votes is None else votes, DIGEST,
    )


def rfc6962(items: list[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash, written recursively (independent of consensus.merkle)."""
    if not items:
        return H(b"")
    if len(items) == 1:
        return H(b"\x00" + items[0])
    k = 1
    while k * 2 < len(items):
        k *= 2
    return H(b"\x01" + rfc6962(items[:k]) + rfc6962(items[k:]))


def parts(block: Block) -> list[Any]:
    """The block as the plain array [header, signature, txs, votes] (mutable)."""
    return [list(block.header()), block.signature, [t.obj() for t in block.txs],
            [v.obj() for v in block.votes]]


def reject(raw: bytes, reason: str, max_bytes: int = MAX) -> BlockError:
    with pytest.raises(BlockError) as info:
        decode_block(raw, max_bytes)
    assert info.value.reason == reason, str(info.value)
    return info.value


# --- format -------------------------------------------------------------------------------


def test_build_encode_decode_round_trip() -> None:
    block = sample_block()
    raw = block.encode()
    back = decode_block(raw, MAX)
    assert back.id == block.id
    assert back.encode() == raw
    assert back.header() == block.header()
    assert (back.height, back.previous_id, back.timestamp, back.witness) == (
        HEIGHT, PREV, TS, WITNESS.address)
    assert back.state_digest == DIGEST
    assert back.signature == block.signature
    assert [t.tx_id for t in back.txs] == [t.tx_id for t in TXS]
    assert [t.raw for t in back.txs] == [t.raw for t in TXS]
    assert [t.unsigned_bytes for t in back.txs] == [t.unsigned_bytes for t in TXS]
    assert back.votes == VOTES
    assert [v.hash for v in back.votes] == [v.hash for v in VOTES]
    # a decoded tx is exactly the submitted one: its signature still verifies
    assert all(verify_tx(t, CHAIN_ID) for t in back.txs)
    assert back.verify_signature(CHAIN_ID, WITNESS.public_key)


def test_encoding_layout_id_and_roots_follow_the_protocol() -> None:
    block = sample_block()
    tx_root = rfc6962([t.tx_id for t in TXS])
    votes_root = rfc6962([H(packb(v.obj())) for v in VOTES])
    header = [1, HEIGHT, PREV, TS, WITNESS.address, tx_root, votes_root, DIGEST]
    assert block.header() == header
    assert block.tx_root == tx_root and block.votes_root == votes_root
    assert block.id == H(packb(header))
    assert block.encode() == packb(
        [header, block.signature, [[t.unsigned(), t.signature] for t in TXS],
         [v.obj() for v in VOTES]]
    )
    assert msgpack.unpackb(block.encode(), raw=False)[0] == header


def test_empty_block_roots_are_hash_of_empty_string() -> None:
    block = sample_block([], [])
    assert block.tx_root == H(b"") and block.votes_root == H(b"")
    back = decode_block(block.encode(), MAX)
    assert back.txs == [] and back.votes == [] and back.id == block.id


@pytest.mark.parametrize("n", [1, 3, 5, 8])
def test_tx_root_matches_rfc6962_for_several_sizes(n: int) -> None:
    txs = [make_tx(ALICE, amount=i + 1) for i in range(n)]
    block = sample_block(txs, [])
    assert block.tx_root == rfc6962([t.tx_id for t in txs])
    assert decode_block(block.encode(), MAX).id == block.id


def test_signature_is_over_tag_chain_id_and_block_id() -> None:
    block = sample_block()
    pub = Ed25519PublicKey.from_public_bytes(WITNESS.public_key)
    pub.verify(block.signature, b"MUXER/block/v1" + CHAIN_ID + block.id)  # raises if not
    with pytest.raises(InvalidSignature):
        pub.verify(block.signature, CHAIN_ID + block.id)
    assert block.verify_signature(CHAIN_ID, WITNESS.public_key)
    assert not block.verify_signature(H(b"another chain"), WITNESS.public_key)
    assert not block.verify_signature(CHAIN_ID, WITNESS2.public_key)


def test_block_id_covers_every_header_field() -> None:
    base = sample_block()
    variants = [
        Block.build(WITNESS, CHAIN_ID, HEIGHT + 1, PREV, TS, TXS, VOTES, DIGEST),
        Block.build(WITNESS, CHAIN_ID, HEIGHT, H(b"other"), TS, TXS, VOTES, DIGEST),
        Block.build(WITNESS, CHAIN_ID, HEIGHT, PREV, TS + 1, TXS, VOTES, DIGEST),
        Block.build(WITNESS2, CHAIN_ID, HEIGHT, PREV, TS, TXS, VOTES, DIGEST),
        Block.build(WITNESS, CHAIN_ID, HEIGHT, PREV, TS, TXS[:1], VOTES, DIGEST),
        Block.build(WITNESS, CHAIN_ID, HEIGHT, PREV, TS, TXS, VOTES[:1], DIGEST),
        Block.build(WITNESS, CHAIN_ID, HEIGHT, PREV, TS, TXS, VOTES, H(b"other state")),
    ]
    ids = {b.id for b in variants}
    assert len(ids) == len(variants) and base.id not in ids
    # the tx order is part of the id
    swapped = Block.build(WITNESS, CHAIN_ID, HEIGHT, PREV, TS, TXS[::-1], VOTES, DIGEST)
    assert swapped.id != base.id


# --- decode_block rejections ---------------------------------------------------------------


def test_rejects_oversize_block() -> None:
    raw = sample_block().encode()
    assert decode_block(raw, len(raw)).id == sample_block().id  # exactly at the limit: fine
    err = reject(raw, "too_large", max_bytes=len(raw) - 1)
    assert str(len(raw)) in str(err)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda raw: raw + b"\x00", id="trailing-byte"),
        pytest.param(lambda raw: raw[:-1], id="truncated"),
        pytest.param(lambda raw: b"\xdc\x00\x04" + raw[1:], id="array16-for-fixarray"),
        # header starts at raw[1] (0x98 = fixarray 8), version 1 at raw[2]
        pytest.param(lambda raw: raw[:2] + b"\xcc\x01" + raw[3:], id="uint8-for-fixint"),
        pytest.param(lambda raw: raw[:2] + b"\xd0\x01" + raw[3:], id="int8-for-fixint"),
        pytest.param(lambda raw: b"", id="empty"),
    ],
)
def test_rejects_non_canonical_encodings(mangle: Any) -> None:
    raw = sample_block().encode()
    mangled = mangle(raw)
    assert mangled != raw
    reject(mangled, "bad_encoding")


def test_rejects_str_where_bin_expected_and_maps() -> None:
    p = parts(sample_block())
    # previous_id sent as a str of 32 chars: canonical msgpack, wrong type
    p[0][2] = "x" * 32
    reject(packb(p), "bad_encoding")
    reject(packb({"header": 1}), "bad_encoding")
    p = parts(sample_block())
    p[0][1] = {"height": HEIGHT}
    reject(packb(p), "bad_encoding")


def _with_header(i: int, value: Any) -> bytes:
    p = parts(sample_block())
    p[0][i] = value
    return packb(p)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(packb(5), id="not-an-array"),
        pytest.param(packb([]), id="empty-array"),
        pytest.param(packb(parts(sample_block())[:3]), id="three-items"),
        pytest.param(packb([*parts(sample_block()), []]), id="five-items"),
        pytest.param(packb([sample_block().header()[:7], bytes(64), [], []]), id="header-7"),
        pytest.param(packb([[*sample_block().header(), 0], bytes(64), [], []]), id="header-9"),
        pytest.param(packb([b"header", bytes(64), [], []]), id="header-bin"),
        pytest.param(_with_header(1, 0), id="height-0"),
        pytest.param(_with_header(1, -1), id="height-negative"),
        pytest.param(_with_header(1, True), id="height-bool"),
        pytest.param(_with_header(1, 1.0), id="height-float"),
        pytest.param(_with_header(1, "7"), id="height-str"),
        pytest.param(_with_header(1, None), id="height-nil"),
        pytest.param(_with_header(1, 2**63), id="height-too-big"),
        pytest.param(_with_header(2, PREV[:31]), id="previous-31-bytes"),
        pytest.param(_with_header(3, -5), id="timestamp-negative"),
        pytest.param(_with_header(3, "t"), id="timestamp-str"),
        pytest.param(_with_header(4, WITNESS.address + b"\x00"), id="witness-21-bytes"),
        pytest.param(_with_header(4, WITNESS.address_text), id="witness-text"),
        pytest.param(_with_header(5, [1]), id="tx-root-array"),
        pytest.param(_with_header(6, b""), id="votes-root-empty"),
        pytest.param(_with_header(7, DIGEST * 2), id="digest-64-bytes"),
    ],
)
def test_rejects_wrong_shapes_and_types(raw: bytes) -> None:
    reject(raw, "bad_encoding")


@pytest.mark.parametrize(
    "i, value",
    [(2, bytes(63)), (2, "s" * 64), (2, None), (3, {}), (3, b"txs"), (3, "votes")],
    ids=["sig-63", "sig-str", "sig-nil", "txs-map", "txs-bin", "votes-str"],
)
def test_rejects_bad_signature_or_body_types(i: int, value: Any) -> None:
    p = parts(sample_block())
    if i == 2:
        p[1] = value
    elif isinstance(value, str):
        p[3] = value
    else:
        p[2] = value
    reject(packb(p), "bad_encoding")


@pytest.mark.parametrize("version", [0, 2, 255])
def test_rejects_wrong_version(version: int) -> None:
    err = reject(_with_header(0, version), "bad_encoding")
    assert "version" in str(err)


def test_rejects_bad_tx_root() -> None:
    p = parts(sample_block())
    p[2] = p[2][:1]  # drop a tx, keep the root
    reject(packb(p), "bad_tx_root")
    p = parts(sample_block())
    p[2] = p[2][::-1]  # same txs, other order
    reject(packb(p), "bad_tx_root")
    reject(_with_header(5, H(b"wrong")), "bad_tx_root")


def test_rejects_bad_votes_root() -> None:
    p = parts(sample_block())
    p[3] = p[3][1:]
    reject(packb(p), "bad_votes_root")
    reject(_with_header(6, H(b"wrong")), "bad_votes_root")
    # a vote's signature is part of its hash, hence of votes_root
    p = parts(sample_block())
    p[3][0][5] = bytes(64)
    reject(packb(p), "bad_votes_root")


def test_rejects_duplicate_tx_even_with_matching_root() -> None:
    tx = TXS[0]
    block = sample_block([tx, TXS[1], tx], [])
    assert block.tx_root == rfc6962([tx.tx_id, TXS[1].tx_id, tx.tx_id])
    err = reject(block.encode(), "bad_tx")
    assert "twice" in str(err)


def _with_tx(obj: Any) -> bytes:
    p = parts(sample_block())
    p[2][1] = obj
    return packb(p)


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(5, id="not-an-array"),
        pytest.param([TXS[0].unsigned()], id="one-item"),
        pytest.param([TXS[0].unsigned(), TXS[0].signature, b""], id="three-items"),
        pytest.param([TXS[0].unsigned()[:6], TXS[0].signature], id="unsigned-6"),
        pytest.param([[2, *TXS[0].unsigned()[1:]], TXS[0].signature], id="tx-version-2"),
        pytest.param([[1, 70000, *TXS[0].unsigned()[2:]], TXS[0].signature], id="ref-num"),
        pytest.param([TXS[0].unsigned(), TXS[0].signature[:63]], id="sig-63"),
        pytest.param([[*TXS[0].unsigned()[:4], bytes(31), *TXS[0].unsigned()[5:]],
                      TXS[0].signature], id="pubkey-31"),
        pytest.param([[*TXS[0].unsigned()[:6], "op"], TXS[0].signature], id="op-str"),
        pytest.param([[*TXS[0].unsigned()[:6], []], TXS[0].signature], id="op-empty"),
    ],
)
def test_rejects_malformed_tx_inside(obj: Any) -> None:
    reject(_with_tx(obj), "bad_tx")


def _with_vote(obj: Any) -> bytes:
    p = parts(sample_block())
    p[3][0] = obj
    return packb(p)


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(b"vote", id="bin"),
        pytest.param(VOTES[0].obj()[:5], id="five-items"),
        pytest.param([*VOTES[0].obj(), 0], id="seven-items"),
        pytest.param([PREV[:31], *VOTES[0].obj()[1:]], id="source-31"),
        pytest.param([*VOTES[0].obj()[:3], -1, *VOTES[0].obj()[4:]], id="slot-negative"),
        pytest.param([*VOTES[0].obj()[:4], bytes(19), VOTES[0].signature], id="witness-19"),
        pytest.param([*VOTES[0].obj()[:5], bytes(65)], id="sig-65"),
        # source slot not below target slot
        pytest.param([CHAIN_ID, 8, PREV, 8, WITNESS.address, bytes(64)], id="bad-span"),
    ],
)
def test_rejects_malformed_vote_inside(obj: Any) -> None:
    reject(_with_vote(obj), "bad_vote")


# --- tamper evidence ------------------------------------------------------------------------


RAW = sample_block().encode()
ORIGINAL_ID = sample_block().id


def _mutation_detected(mutated: bytes) -> str:
    """How a mutated block is caught: rejected by decode, or it decodes but no longer
    carries a valid witness signature, or one of its txs no longer verifies (a tx's
    signature is outside tx_id, hence outside tx_root and the block id)."""
    try:
        block = decode_block(mutated, MAX)
    except BlockError as exc:
        return exc.reason
    if not block.verify_signature(CHAIN_ID, WITNESS.public_key):
        # either the header changed (a new id the signature does not cover) or the
        # signature bytes themselves did
        return "block_id" if block.id != ORIGINAL_ID else "block_signature"
    bad = [t for t in block.txs if not verify_tx(t, CHAIN_ID)]
    assert bad, "a mutated block decoded with a valid signature and valid txs"
    assert block.id == ORIGINAL_ID
    return "tx_signature"


def test_every_position_flipped_is_detected() -> None:
    seen: set[str] = set()
    for i in range(len(RAW)):
        for flip in (0x01, 0x80):
            mutated = RAW[:i] + bytes([RAW[i] ^ flip]) + RAW[i + 1:]
            seen.add(_mutation_detected(mutated))
    # every layer of the defence is exercised by some position
    assert {"bad_encoding", "bad_tx", "bad_tx_root", "bad_votes_root", "block_id",
            "block_signature", "tx_signature"} <= seen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pos=st.integers(0, len(RAW) - 1), delta=st.integers(1, 255))
def test_any_single_byte_mutation_is_detected(pos: int, delta: int) -> None:
    mutated = RAW[:pos] + bytes([(RAW[pos] + delta) % 256]) + RAW[pos + 1:]
    event(_mutation_detected(mutated))


# --- header peek and reuse of decoded txs ----------------------------------------------------


def test_peek_block_id_names_the_block_from_its_header_alone() -> None:
    block = sample_block()
    raw = block.encode()
    assert peek_block_id(raw) == block.id
    # the txs are not looked at: a body changed after the header still peeks the same id
    assert peek_block_id(raw[:-1] + bytes([raw[-1] ^ 1])) == block.id
    for junk in (b"", b"\x00", b"\x93\x01\x02\x03", b"\x94", b"\xc1" * 10):
        assert peek_block_id(junk) is None


def test_decode_block_reuses_a_known_tx_only_when_its_bytes_are_identical() -> None:
    block = sample_block()
    known = {t.tx_id: t for t in TXS}
    back = decode_block(block.encode(), MAX, known.get)
    assert all(a is b for a, b in zip(back.txs, TXS, strict=True))
    # same tx_id, another signature: the block's own bytes are decoded, not the known tx
    t = TXS[0]
    forged = SignedTx(t.ref_block_num, t.ref_block_prefix, t.expiration, t.sender_pubkey,
                      t.fee, t.op, bytes(64), t.raw[:-64] + bytes(64), t.unsigned_bytes)
    assert forged.tx_id == TXS[0].tx_id and forged.raw != TXS[0].raw
    again = decode_block(block.encode(), MAX, {forged.tx_id: forged}.get)
    assert again.txs[0] is not forged and again.txs[0].raw == TXS[0].raw


def test_decode_block_refuses_trailing_bytes_and_non_canonical_parts() -> None:
    raw = sample_block().encode()
    with pytest.raises(BlockError) as info:
        decode_block(raw + b"\x00", MAX)
    assert info.value.reason == "bad_encoding"
    # the block's header count as a non-minimal int: 0xcc 0x07 instead of 0x07
    obj = msgpack.unpackb(raw)
    body = packb(obj)
    assert body == raw
    pos = raw.index(bytes([0x98, 0x01, HEIGHT]))
    bad = raw[:pos + 2] + b"\xcc" + raw[pos + 2:]
    with pytest.raises(BlockError) as info:
        decode_block(bad, MAX)
    assert info.value.reason == "bad_encoding"


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17])
def test_built_block_bytes_are_the_canonical_encoding_of_its_parts(n: int) -> None:
    # a built block's bytes are assembled from its txs' own bytes; around 16 items the
    # array header changes form (fixarray -> array16)
    txs = [make_tx(ALICE, 1 + i) for i in range(n)]
    votes = [make_vote(1 + i) for i in range(n)]
    block = sample_block(txs, votes)
    assert block.encode() == packb(parts(block))
    assert decode_block(block.encode(), MAX).id == block.id


def _array16(n: int) -> bytes:
    return b"\xdc" + n.to_bytes(2, "big")


@pytest.mark.parametrize("known", [False, True])
def test_non_canonical_array_headers_are_refused_with_or_without_known_txs(
        known: bool) -> None:
    # with the mempool's txs known the tx parts are skipped, not decoded: the framing
    # around them must still be canonical
    block = sample_block()
    raw = block.encode()
    lookup = {t.tx_id: t for t in TXS}.get if known else None
    assert raw[0] == 0x94
    with pytest.raises(BlockError) as info:
        decode_block(_array16(4) + raw[1:], MAX, lookup)
    assert info.value.reason == "bad_encoding"
    head = packb([block.header(), block.signature])[1:]  # the parts before the txs
    assert raw[1:1 + len(head)] == head and raw[1 + len(head)] == 0x90 + len(TXS)
    pos = 1 + len(head)
    with pytest.raises(BlockError) as info:
        decode_block(raw[:pos] + _array16(len(TXS)) + raw[pos + 1:], MAX, lookup)
    assert info.value.reason == "bad_encoding"


def test_known_and_unknown_txs_keep_their_order_and_unknown_ones_are_checked() -> None:
    txs = [make_tx(ALICE, 1 + i) for i in range(6)]
    block = sample_block(txs)
    known = {t.tx_id: t for t in txs[::2]}  # every other tx is in the mempool
    back = decode_block(block.encode(), MAX, known.get)
    assert [t.tx_id for t in back.txs] == [t.tx_id for t in txs]
    assert all(back.txs[i] is txs[i] for i in range(0, 6, 2))
    assert all(back.txs[i] is not txs[i] and back.txs[i].raw == txs[i].raw
               for i in range(1, 6, 2))
    # an unknown tx whose fee is a non-minimal int (0xcc 0x0a for 10): the block's bytes
    # are no canonical encoding, whatever the other txs are
    raw = block.encode()
    t = txs[3].raw
    fee = packb(10) + packb(txs[3].op)
    assert t.count(fee) == 1
    # (array headers count items, not bytes: the block still parses; without the check
    # it would fail later, on its tx_root, as another tx)
    bad = raw.replace(t, t.replace(fee, b"\xcc" + fee))
    with pytest.raises(BlockError) as info:
        decode_block(bad, MAX, known.get)
    assert info.value.reason == "bad_encoding"
