"""The transaction envelope (protocol section 3): building, ids, and every stateless check."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import encode
from consensus.crypto import TAG_BLOCK, TAG_TX, PrivateKey, address_of, sha256, verify
from consensus.errors import Rejected
from consensus.tx import SignedTx, build_tx, decode_tx, tapos_of, tx_from_obj, verify_tx
from muxernode.ops import decode_op

CHAIN_ID = sha256(b"test_tx chain")
OTHER_CHAIN_ID = sha256(b"another chain")
KEY = PrivateKey(bytes([10]) * 32)
OTHER = PrivateKey(bytes([11]) * 32)
MAX = 8192
OP: list[Any] = [1, bytes(range(20)), 12345, "rent"]
FIELDS: dict[str, int] = {
    "ref_block_num": 7,
    "ref_block_prefix": 0xDEADBEEF,
    "expiration": 1_700_000_600,
    "fee": 1000,
}


def build(op: list[Any] | None = None, key: PrivateKey = KEY, **kw: int) -> SignedTx:
    fields = {**FIELDS, **kw}
    return build_tx(key, CHAIN_ID, OP if op is None else op, **fields)


def unsigned_of(tx: SignedTx) -> list[Any]:
    return [1, tx.ref_block_num, tx.ref_block_prefix, tx.expiration, tx.sender_pubkey, tx.fee,
            tx.op]


def check(raw: bytes, chain_id: bytes = CHAIN_ID, max_tx_bytes: int = MAX) -> SignedTx:
    """Every stateless check, in the node's order (muxernode.node.submit_txs)."""
    tx = decode_tx(raw, max_tx_bytes)
    decode_op(tx.op)
    if not verify_tx(tx, chain_id):
        raise Rejected("bad_signature")
    return tx


def reason(raw: bytes, chain_id: bytes = CHAIN_ID, max_tx_bytes: int = MAX) -> str:
    with pytest.raises(Rejected) as exc:
        check(raw, chain_id, max_tx_bytes)
    return exc.value.reason


# --- building and decoding -----------------------------------------------------------------


def test_build_layout_and_ids() -> None:
    tx = build()
    unsigned = [1, 7, 0xDEADBEEF, 1_700_000_600, KEY.public_key, 1000, OP]
    assert tx.unsigned() == unsigned
    assert tx.unsigned_bytes == encode(unsigned)
    assert tx.tx_id == sha256(encode(unsigned))
    assert tx.raw == encode([unsigned, tx.signature])
    assert tx.obj() == [unsigned, tx.signature]
    assert tx.sender == address_of(KEY.public_key) == KEY.address
    assert verify(KEY.public_key, tx.signature, TAG_TX + CHAIN_ID + encode(unsigned))
    assert tx.signature == KEY.sign(b"MUXER/tx/v1" + CHAIN_ID + encode(unsigned))


def test_decode_round_trip() -> None:
    tx = build()
    back = check(tx.raw)
    assert back.raw == tx.raw
    assert back.tx_id == tx.tx_id
    assert back.unsigned_bytes == tx.unsigned_bytes
    assert back.signature == tx.signature
    assert back.sender == KEY.address
    assert back.sender_pubkey == KEY.public_key
    assert (back.ref_block_num, back.ref_block_prefix, back.expiration, back.fee) == (
        7, 0xDEADBEEF, 1_700_000_600, 1000,
    )
    assert back.op == OP
    assert back.unsigned() == tx.unsigned()


@pytest.mark.parametrize("memo_len", [0, 200, 256])
def test_unsigned_bytes_slice_for_various_sizes(memo_len: int) -> None:
    # decode_tx slices unsigned_bytes out of raw; it must equal the direct encoding
    tx = build([1, bytes(20), 1, "m" * memo_len], fee=2**63 - 1, expiration=2**63 - 1)
    back = decode_tx(tx.raw, MAX)
    assert back.unsigned_bytes == encode(unsigned_of(tx))
    assert back.tx_id == sha256(encode(unsigned_of(tx)))
    assert verify_tx(back, CHAIN_ID)


def test_tx_id_excludes_signature_and_depends_on_every_field() -> None:
    base = build()
    assert base.tx_id == sha256(base.unsigned_bytes)
    variants = [
        build(ref_block_num=8),
        build(ref_block_prefix=1),
        build(expiration=1_700_000_601),
        build(fee=1001),
        build([1, bytes(range(20)), 12345, "rent!"]),
        build(key=OTHER),
    ]
    ids = {base.tx_id, *(v.tx_id for v in variants)}
    assert len(ids) == 1 + len(variants)


def test_signature_binds_chain_id_and_tag() -> None:
    tx = build()
    assert verify_tx(tx, CHAIN_ID)
    assert not verify_tx(tx, OTHER_CHAIN_ID)
    assert reason(tx.raw, chain_id=OTHER_CHAIN_ID) == "bad_signature"
    # the same payload signed under another domain tag is not a tx signature
    wrong_tag = KEY.sign(TAG_BLOCK + CHAIN_ID + tx.unsigned_bytes)
    assert reason(encode([tx.unsigned(), wrong_tag])) == "bad_signature"
    # signed without the chain id
    no_chain = KEY.sign(TAG_TX + tx.unsigned_bytes)
    assert reason(encode([tx.unsigned(), no_chain])) == "bad_signature"


def test_bad_signature_cases() -> None:
    tx = build()
    assert reason(encode([tx.unsigned(), bytes(64)])) == "bad_signature"
    # signed by someone else, claiming KEY as sender
    forged = OTHER.sign(TAG_TX + CHAIN_ID + tx.unsigned_bytes)
    assert reason(encode([tx.unsigned(), forged])) == "bad_signature"
    # a valid signature moved onto a changed tx
    changed = tx.unsigned()
    changed[5] = 999_999
    assert reason(encode([changed, tx.signature])) == "bad_signature"
    # a public key that is not a curve point
    bogus = tx.unsigned()
    bogus[4] = b"\xff" * 32
    assert reason(encode([bogus, tx.signature])) == "bad_signature"


def test_tapos_of() -> None:
    block_id = bytes.fromhex("01020304") + bytes(28)
    assert tapos_of(5, block_id) == (5, 0x01020304)
    assert tapos_of(0x1_0005, block_id) == (5, 0x01020304)
    assert tapos_of(0xFFFF, b"\xff" * 32) == (0xFFFF, 0xFFFFFFFF)


# --- stateless rejections ------------------------------------------------------------------

GOOD_UNSIGNED: list[Any] = [1, 7, 0xDEADBEEF, 1_700_000_600, KEY.public_key, 1000, OP]
SIG = bytes(64)


def with_field(i: int, value: Any) -> bytes:
    unsigned = list(GOOD_UNSIGNED)
    unsigned[i] = value
    return encode([unsigned, SIG])


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (encode(1), "not an array"),
        (encode(b"x" * 100), "bin"),
        (encode([GOOD_UNSIGNED]), "one item"),
        (encode([GOOD_UNSIGNED, SIG, SIG]), "three items"),
        (encode([GOOD_UNSIGNED[:6], SIG]), "unsigned of 6"),
        (encode([[*GOOD_UNSIGNED, 0], SIG]), "unsigned of 8"),
        (encode([encode(GOOD_UNSIGNED), SIG]), "unsigned as bin"),
        (encode([SIG, GOOD_UNSIGNED]), "swapped"),
        (with_field(0, 0), "version 0"),
        (with_field(0, 2), "version 2"),
        (with_field(0, True), "version true"),
        (with_field(0, "1"), "version str"),
        (with_field(0, -1), "version -1"),
        (with_field(1, -1), "ref_block_num -1"),
        (with_field(1, 65536), "ref_block_num 65536"),
        (with_field(1, "7"), "ref_block_num str"),
        (with_field(1, True), "ref_block_num bool"),
        (with_field(1, None), "ref_block_num nil"),
        (with_field(2, -1), "ref_block_prefix -1"),
        (with_field(2, 2**32), "ref_block_prefix 2**32"),
        (with_field(2, b"\xde\xad\xbe\xef"), "ref_block_prefix bin"),
        (with_field(3, -1), "expiration -1"),
        (with_field(3, 2**63), "expiration 2**63"),
        (with_field(3, 1.0), "expiration float"),
        (with_field(4, KEY.public_key[:31]), "pubkey 31"),
        (with_field(4, KEY.public_key + b"\x00"), "pubkey 33"),
        (with_field(4, "k" * 32), "pubkey str"),
        (with_field(4, list(KEY.public_key)), "pubkey array"),
        (with_field(5, -1), "fee -1"),
        (with_field(5, 2**63), "fee 2**63"),
        (with_field(5, b"\x00"), "fee bin"),
        (encode([GOOD_UNSIGNED, SIG[:63]]), "sig 63"),
        (encode([GOOD_UNSIGNED, SIG + b"\x00"]), "sig 65"),
        (encode([GOOD_UNSIGNED, "s" * 64]), "sig str"),
        (encode([GOOD_UNSIGNED, None]), "sig nil"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_bad_encoding_shapes(raw: bytes, what: str) -> None:
    assert reason(raw) == "bad_encoding", what


@pytest.mark.parametrize(
    "op", [5, b"\x01", [], ["1"], [True], [None], [1.0], [[1]]], ids=repr
)
def test_bad_op_shape_in_envelope(op: Any) -> None:
    assert reason(with_field(6, op)) == "bad_op"


def test_non_canonical_bytes_are_bad_encoding() -> None:
    tx = build()
    raw = tx.raw
    assert check(raw).tx_id == tx.tx_id
    assert reason(raw + b"\x00") == "bad_encoding"  # trailing byte
    assert reason(raw[:-1]) == "bad_encoding"  # truncated
    # ref_block_num 7 as uint16 instead of a fixint: the same tx, non-minimal bytes
    i = raw.index(bytes([0x97, 0x01, 0x07]))
    widened = raw[: i + 2] + b"\xcd\x00\x07" + raw[i + 3 :]
    assert reason(widened) == "bad_encoding"
    # the signature as bin16 instead of bin8
    assert raw[-66:-64] == b"\xc4\x40"
    assert reason(raw[:-66] + b"\xc5\x00\x40" + raw[-64:]) == "bad_encoding"
    # outer array as array16
    assert raw[0] == 0x92
    assert reason(b"\xdc\x00\x02" + raw[1:]) == "bad_encoding"
    # a map instead of an array
    assert reason(encode({"tx": 1})) == "bad_encoding"


def test_str_bin_confusion_is_bad_encoding() -> None:
    # a 32-byte public key whose bin8 header is rewritten as a str8 header decodes to a
    # str: same payload bytes, wrong type
    ascii_key = b"a" * 32
    raw = encode([[*GOOD_UNSIGNED[:4], ascii_key, *GOOD_UNSIGNED[5:]], SIG])
    j = raw.index(b"\xc4\x20" + ascii_key)
    as_str = raw[:j] + b"\xd9\x20" + raw[j + 2 :]
    assert reason(as_str) == "bad_encoding"
    assert reason(with_field(4, "a" * 32)) == "bad_encoding"
    # and a str field (the memo) sent as bin is refused by the op checks
    assert reason(with_field(6, [1, bytes(20), 5, b"memo"])) == "bad_op"


def test_too_large_boundary() -> None:
    tx = build([1, bytes(20), 1, "x" * 256])
    n = len(tx.raw)
    assert check(tx.raw, max_tx_bytes=n).tx_id == tx.tx_id
    assert reason(tx.raw, max_tx_bytes=n - 1) == "too_large"
    # the size check comes first, before any decoding
    assert reason(b"\xc1" * (MAX + 1)) == "too_large"
    assert reason(b"\xc1" * MAX) == "bad_encoding"


def test_tx_from_obj_matches_decode_tx() -> None:
    tx = build()
    back = tx_from_obj(tx.obj(), tx.raw)
    assert back.tx_id == tx.tx_id
    assert verify_tx(back, CHAIN_ID)


# --- properties ----------------------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u63 = st.integers(0, 2**63 - 1)
ops = st.one_of(
    st.builds(lambda to, a, m: [1, to, a, m], st.binary(min_size=20, max_size=20),
              st.integers(1, 2**63 - 1), st.text(max_size=20)),
    st.builds(lambda c, s: [6, c, s], st.binary(min_size=32, max_size=32),
              st.sampled_from([-1, 0, 1])),
    st.builds(lambda s, i: [3, s, i], st.text("abc-0", min_size=3, max_size=32),
              st.text(max_size=30)),
)
keys = st.sampled_from([KEY, OTHER, PrivateKey(bytes(32))])


@settings(max_examples=300, deadline=None)
@given(keys, ops, u16, u32, u63, u63)
def test_property_build_decode_round_trip(
    key: PrivateKey, op: list[Any], num: int, prefix: int, expiration: int, fee: int
) -> None:
    tx = build_tx(key, CHAIN_ID, op, ref_block_num=num, ref_block_prefix=prefix,
                  expiration=expiration, fee=fee)
    back = check(tx.raw)
    assert back.tx_id == sha256(encode([1, num, prefix, expiration, key.public_key, fee, op]))
    assert back.tx_id == tx.tx_id
    assert back.unsigned() == tx.unsigned()
    assert back.sender == key.address


@settings(max_examples=400, deadline=None)
@given(keys, ops, u16, u32, u63, u63, st.data())
def test_property_byte_mutation_never_accepted(
    key: PrivateKey,
    op: list[Any],
    num: int,
    prefix: int,
    expiration: int,
    fee: int,
    data: st.DataObject,
) -> None:
    tx = build_tx(key, CHAIN_ID, op, ref_block_num=num, ref_block_prefix=prefix,
                  expiration=expiration, fee=fee)
    raw = tx.raw
    pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]), label="byte")
    mutated = raw[:pos] + bytes([byte]) + raw[pos + 1 :]
    try:
        back = decode_tx(mutated, MAX)
    except Rejected as exc:
        # the envelope refuses it; bad_op when the opcode slot no longer holds an int
        assert exc.reason in ("bad_encoding", "bad_op")
        return
    # it decoded, so it is a different canonical tx; its signature cannot verify
    assert back.raw == mutated != raw
    assert (back.tx_id, back.signature) != (tx.tx_id, tx.signature)
    assert not verify_tx(back, CHAIN_ID)
