"""Frames and messages: sans-IO, no network."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import sha256
from p2p.frames import MAX_FRAME, FrameDecoder, FrameError, encode_frame, frame
from p2p.messages import (
    MAX_GET_BLOCKS,
    MAX_INV_IDS,
    MAX_PEER_ENTRIES,
    BlockRange,
    Blocks,
    Bye,
    GetBlocks,
    GetData,
    GetHeads,
    Heads,
    Hello,
    HelloAck,
    Inv,
    Kind,
    Message,
    MessageError,
    NotFound,
    Peers,
    PeersReq,
    Ping,
    Pong,
    Txs,
    Votes,
    decode_message,
    encode_message,
)
from p2p.network import FRAME_OVERHEAD, fit_items

ID = sha256(b"x")
ID2 = sha256(b"y")
SIG = bytes(64)

ALL_MESSAGES: list[Message] = [
    Hello(1, ID, ID2, ID, 8000, 12, ID2),
    HelloAck(SIG),
    Ping(2**64 - 1),
    Pong(0),
    Inv(Kind.TX, [ID, ID2]),
    GetData(Kind.BLOCK, [ID]),
    Txs([b"a", b"bc"]),
    Blocks([b"block"]),
    Votes([b"v1", b"v2"]),
    GetBlocks(5, MAX_GET_BLOCKS),
    GetHeads(),
    Heads(10, ID, 9),
    PeersReq(),
    Peers([("127.0.0.1", 1), ("node.example", 65535)]),
    Bye("shutdown"),
    NotFound(Kind.VOTE, [ID]),
    BlockRange(3, []),
    BlockRange(3, [b"b3", b"b4"]),
]


@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_a_frame(msg: Message) -> None:
    data = encode_frame(msg)
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    (body,) = FrameDecoder().feed(data)
    assert decode_message(body) == msg


def test_feeds_split_and_joined() -> None:
    stream = b"".join(encode_frame(m) for m in ALL_MESSAGES)
    # one byte at a time
    dec = FrameDecoder()
    got = [b for i in range(len(stream)) for b in dec.feed(stream[i : i + 1])]
    assert [decode_message(b) for b in got] == ALL_MESSAGES
    assert dec.buffered == 0
    # everything at once
    assert [decode_message(b) for b in FrameDecoder().feed(stream)] == ALL_MESSAGES
    # uneven chunks straddling frame boundaries
    dec = FrameDecoder()
    out: list[bytes] = []
    for i in range(0, len(stream), 7):
        out += dec.feed(stream[i : i + 7])
    assert len(out) == len(ALL_MESSAGES)


def test_next_frame_pulls_one_at_a_time() -> None:
    dec = FrameDecoder()
    dec.add(encode_frame(Ping(1)) + encode_frame(Ping(2))[:3])
    assert decode_message(dec.next_frame() or b"") == Ping(1)
    assert dec.next_frame() is None
    dec.add(encode_frame(Ping(2))[3:])
    assert decode_message(dec.next_frame() or b"") == Ping(2)


def test_oversized_prefix_rejected_before_buffering() -> None:
    dec = FrameDecoder()
    assert dec.feed((MAX_FRAME + 1).to_bytes(4, "big")[:2]) == []
    with pytest.raises(FrameError):
        dec.feed((MAX_FRAME + 1).to_bytes(4, "big")[2:])  # only the prefix: no body yet
    assert dec.buffered == 0
    with pytest.raises(FrameError):  # poisoned: the stream is out of sync
        dec.feed(encode_frame(Ping(1)))


def test_max_frame_accepted_and_empty_frame_rejected() -> None:
    body = b"\x00" * MAX_FRAME
    dec = FrameDecoder()
    assert dec.feed(len(body).to_bytes(4, "big")) == []
    assert dec.feed(body) == [body]
    with pytest.raises(FrameError):
        FrameDecoder().feed(b"\x00\x00\x00\x00")
    with pytest.raises(FrameError):
        frame(b"\x00" * (MAX_FRAME + 1))


def test_lower_limit_applies_between_frames() -> None:
    dec = FrameDecoder(max_frame=16)
    dec.add(encode_frame(Ping(1)) + encode_frame(Txs([b"x" * 100])))
    assert dec.next_frame() is not None
    dec.max_frame = MAX_FRAME  # raised after the handshake: the big frame now passes
    assert dec.next_frame() is not None


def test_fit_items_respects_frame_and_count() -> None:
    big = b"x" * (MAX_FRAME // 3)
    chunks = list(fit_items([big] * 5))
    assert [len(c) for c in chunks] == [2, 2, 1]
    for c in chunks:
        assert len(encode_frame(Blocks(c))) <= MAX_FRAME + 4
    assert [len(c) for c in fit_items([b"a"] * 10, max_items=4)] == [4, 4, 2]
    assert list(fit_items([b"x" * (MAX_FRAME - FRAME_OVERHEAD)])) == []  # can never fit


def _body(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


REJECTIONS: list[tuple[str, Any, str]] = [
    ("not an array", 5, "non-empty array"),
    ("empty array", [], "non-empty array"),
    ("type not int", ["x"], "type must be an integer"),
    ("unknown type", [99], "unknown message type"),
    ("bool type", [True], "type must be an integer"),
    ("hello short", [1, 1, ID, ID, ID, 0, 0], "expected 7"),
    ("hello chain len", [1, 1, b"x", ID, ID, 0, 0, ID], "chain_id must be 32"),
    ("hello pubkey type", [1, 1, ID, "k" * 32, ID, 0, 0, ID], "node_pubkey must be bin"),
    ("hello nonce len", [1, 1, ID, ID, b"n", 0, 0, ID], "nonce must be 32"),
    ("hello port range", [1, 1, ID, ID, ID, 65536, 0, ID], "listen_port out of range"),
    ("hello negative height", [1, 1, ID, ID, ID, 0, -1, ID], "head_height out of range"),
    ("hello float version", [1, 1.0, ID, ID, ID, 0, 0, ID], "version must be an integer"),
    ("ack short sig", [2, b"s" * 63], "signature must be 64"),
    ("ack extra", [2, SIG, 1], "expected 1"),
    ("ping negative", [3, -1], "nonce out of range"),
    ("ping too big", [3, 2**64], "malformed msgpack"),  # msgpack cannot even encode it
    ("pong none", [4, None], "nonce must be an integer"),
    ("inv bad kind", [5, 3, [ID]], "kind out of range"),
    ("inv no ids", [5, 0, []], "INV must have 1.."),
    ("inv too many ids", [5, 0, [ID] * (MAX_INV_IDS + 1)], "INV must have 1.."),
    ("inv short id", [5, 0, [b"x"]], "INV id must be 32"),
    ("inv ids not list", [5, 0, ID], "INV must be an array"),
    ("getdata bad id", [6, 1, ["x" * 32]], "GET_DATA id must be bin"),
    ("txs empty", [7, []], "TXS must have 1.."),
    ("txs empty item", [7, [b""]], "non-empty bin"),
    ("txs str item", [7, ["tx"]], "non-empty bin"),
    ("blocks not list", [8, b"x"], "BLOCKS must be an array"),
    ("votes int item", [9, [1]], "non-empty bin"),
    ("getblocks zero", [10, 1, 0], "count out of range"),
    ("getblocks too many", [10, 1, MAX_GET_BLOCKS + 1], "count out of range"),
    ("getheads args", [11, 1], "expected 0"),
    ("heads final above head", [12, 5, ID, 6], "final_height out of range"),
    ("heads short id", [12, 5, b"x", 1], "head_id must be 32"),
    ("peersreq args", [13, 0], "expected 0"),
    ("peers entry shape", [14, [["h"]]], "PEERS entry must have 2"),
    ("peers empty host", [14, [["", 1]]], "host is empty"),
    ("peers port 0", [14, [["h", 0]]], "PEERS port out of range"),
    ("peers long host", [14, [["h" * 256, 1]]], "longer than 255"),
    ("peers too many", [14, [["h", 1]] * (MAX_PEER_ENTRIES + 1)], "PEERS must have"),
    ("bye not str", [15, b"why"], "BYE reason must be str"),
    ("bye too long", [15, "x" * 257], "longer than 256"),
    ("notfound bad kind", [16, -1, [ID]], "kind out of range"),
    ("blockrange too many", [17, 0, [b"b"] * (MAX_GET_BLOCKS + 1)], "BLOCK_RANGE must have"),
    ("blockrange item", [17, 0, [b""]], "non-empty bin"),
]


@pytest.mark.parametrize(("obj", "reason"), [(o, r) for _, o, r in REJECTIONS],
                         ids=[n for n, _, _ in REJECTIONS])
def test_decoder_rejections(obj: Any, reason: str) -> None:
    try:
        body = _body(obj)
    except OverflowError:
        body = b"\x92\x03\xcf" + b"\xff" * 7  # truncated uint64: malformed
    with pytest.raises(MessageError) as err:
        decode_message(body)
    assert reason in err.value.reason


@pytest.mark.parametrize(("body", "reason"), [
    (_body([3, {"a": 2}]), "maps are not allowed"),
    (_body([3, {1: 2}]), "malformed msgpack"),  # non-str keys fail even earlier
    (_body([3, msgpack.ExtType(1, b"x")]), "extension types"),
    (_body([3, 1]) + b"\x00", "malformed msgpack"),  # trailing bytes
    (b"\x92\x03", "malformed msgpack"),  # truncated
    (b"\xc1", "malformed msgpack"),  # reserved byte
    (b"\x91" * 5000 + b"\x00", "malformed msgpack"),  # nesting deeper than msgpack allows
    (b"\x92\x0f\xa2\xff\xfe", "malformed msgpack"),  # invalid UTF-8 in a str
])
def test_decoder_rejects_bad_msgpack(body: bytes, reason: str) -> None:
    with pytest.raises(MessageError) as err:
        decode_message(body)
    assert reason in err.value.reason


def test_hello_tolerates_trailing_fields_for_version_negotiation() -> None:
    hello = Hello(2, ID, ID2, ID, 0, 0, ID)
    body = _body([1, *hello.fields(), "future field"])
    assert decode_message(body) == hello


def test_encoding_is_canonical_msgpack() -> None:
    msg = Inv(Kind.VOTE, [ID])
    assert encode_message(msg) == _body([5, 2, [ID]])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_random_bytes_never_crash_the_decoder(chunks: list[bytes]) -> None:
    dec = FrameDecoder(max_frame=4096)
    try:
        for chunk in chunks:
            for body in dec.feed(chunk):
                try:
                    decode_message(body)
                except MessageError:
                    pass
    except FrameError:
        pass


_leaf = (st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.binary(max_size=40)
         | st.text(max_size=10) | st.booleans() | st.none() | st.floats())
_obj = st.recursive(_leaf, lambda c: st.lists(c, max_size=6), max_leaves=30)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=20), st.lists(_obj, max_size=8))
def test_random_structures_only_raise_message_error(kind: int, fields: list[Any]) -> None:
    body = _body([kind, *fields])
    try:
        msg = decode_message(body)
    except MessageError:
        return
    # whatever decoded re-encodes to an equivalent message
    assert decode_message(encode_message(msg)) == msg
