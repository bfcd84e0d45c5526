"""The canonical MessagePack codec (protocol section 1): one object, exactly one encoding."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import CodecError, decode, encode
from consensus.errors import Rejected
from consensus.tx import decode_tx

# --- round trips ---------------------------------------------------------------------------

NESTED: list[Any] = [
    0,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**64 - 1,
    -1,
    -32,
    -33,
    -(2**63),
    "",
    "x" * 31,
    "y" * 32,
    "z" * 256,
    "é€😀",
    b"",
    b"\x00" * 255,
    b"\x01" * 256,
    b"\x02" * 65536,
    [],
    [[], [[]], [1, [b"a", ["b"]]]],
    list(range(16)),
    list(range(70000)),
]


@pytest.mark.parametrize("obj", [*NESTED, NESTED], ids=lambda o: type(o).__name__)
def test_round_trip(obj: Any) -> None:
    data = encode(obj)
    assert data == msgpack.packb(obj, use_bin_type=True)
    back = decode(data)
    assert back == obj
    assert type(back) is type(obj)


def test_str_and_bin_stay_distinct() -> None:
    assert encode("abc") == b"\xa3abc"
    assert encode(b"abc") == b"\xc4\x03abc"
    assert decode(b"\xa3abc") == "abc"
    assert type(decode(b"\xa3abc")) is str
    assert decode(b"\xc4\x03abc") == b"abc"
    assert type(decode(b"\xc4\x03abc")) is bytes


def test_known_encodings() -> None:
    # spot checks of the exact bytes, so an encoder change cannot go unnoticed
    assert encode([1, 2, 3]) == bytes.fromhex("93010203")
    assert encode(300) == bytes.fromhex("cd012c")
    assert encode(-1) == bytes.fromhex("ff")
    assert encode("a" * 32) == bytes.fromhex("d920") + b"a" * 32
    assert encode([b"\xff", "é"]) == bytes.fromhex("92c401ffa2c3a9")


# --- rejections ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hex_bytes",
    [
        "cc05",  # uint8 5: fixint is minimal
        "cd0005",  # uint16 5
        "ce00000005",  # uint32 5
        "cf0000000000000005",  # uint64 5
        "cd00ff",  # uint16 255: uint8 is minimal
        "d005",  # int8 5 for a positive number
        "d0ff",  # int8 -1: negative fixint is minimal
        "d1ffff",  # int16 -1
        "d2ffffffff",  # int32 -1
        "d3ffffffffffffffff",  # int64 -1
        "d100ff",  # int16 255
    ],
)
def test_rejects_non_minimal_ints(hex_bytes: str) -> None:
    with pytest.raises(CodecError, match="non-canonical"):
        decode(bytes.fromhex(hex_bytes))


@pytest.mark.parametrize(
    "hex_bytes",
    [
        "d903616263",  # str8 "abc": fixstr is minimal
        "da0003616263",  # str16 "abc"
        "db00000003616263",  # str32 "abc"
        "c50003616263",  # bin16 b"abc": bin8 is minimal
        "c600000003616263",  # bin32 b"abc"
        "dc0001" + "01",  # array16 [1]: fixarray is minimal
        "dd00000001" + "01",  # array32 [1]
    ],
)
def test_rejects_non_minimal_lengths(hex_bytes: str) -> None:
    with pytest.raises(CodecError, match="non-canonical"):
        decode(bytes.fromhex(hex_bytes))


def test_rejects_invalid_utf8_in_str() -> None:
    # bytes that are valid as bin but not as text: a str header over them is refused
    with pytest.raises(CodecError, match="malformed"):
        decode(b"\xa2\xff\xfe")
    assert decode(b"\xc4\x02\xff\xfe") == b"\xff\xfe"


@pytest.mark.parametrize("tail", [b"\x00", b"\x90", b"\xc0", b"\x01\x02"])
def test_rejects_trailing_bytes(tail: bytes) -> None:
    data = encode([1, "a", b"b"])
    with pytest.raises(CodecError):
        decode(data + tail)


@pytest.mark.parametrize(
    "data",
    [
        encode({}),
        encode({1: 2}),
        encode([1, {b"k": b"v"}]),
        encode({"a": [1]}),
        bytes.fromhex("de0000"),  # map16, empty
    ],
    ids=["empty", "int-key", "nested", "str-key", "map16"],
)
def test_rejects_maps(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode(data)


def test_rejects_map_with_its_own_message() -> None:
    with pytest.raises(CodecError, match="maps are not allowed"):
        decode(encode([{"k": 2}]))


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("d40100"),  # fixext1, type 1
        bytes.fromhex("d5020000"),  # fixext2
        bytes.fromhex("d60300000000"),  # fixext4
        bytes.fromhex("c70105ff"),  # ext8, length 1
        bytes.fromhex("91d40100"),  # inside an array
        msgpack.packb(msgpack.ExtType(5, b"abc")),
        msgpack.packb(msgpack.ExtType(127, b"")),
    ],
)
def test_rejects_ext_types(data: bytes) -> None:
    with pytest.raises(CodecError, match="extension types are not allowed"):
        decode(data)


@pytest.mark.parametrize(
    "hex_bytes",
    [
        "d6ff00000001",  # timestamp 32: msgpack decodes type -1 without the ext hook
        "d7ff0000000000000001",  # timestamp 64
        "c70cff000000000000000000000001",  # timestamp 96
        "91d6ff00000001",  # inside an array
        "d5ff0000",  # type -1 of a length no timestamp has
    ],
)
def test_rejects_timestamp_ext_type(hex_bytes: str) -> None:
    with pytest.raises(CodecError):
        decode(bytes.fromhex(hex_bytes))


def test_rejects_float32() -> None:
    # a float32 re-encodes as float64, so the canonical check refuses it
    with pytest.raises(CodecError, match="non-canonical"):
        decode(bytes.fromhex("ca3fc00000"))


@pytest.mark.parametrize("value", [1.5, 0.0, float("inf"), -2.25])
def test_float64_never_makes_a_valid_tx(value: float) -> None:
    """float64 re-encodes to itself, so the codec leaves it (documented in codec.py) to
    the typed checks of each structure: a float in any tx field is bad_encoding/bad_op."""
    assert decode(encode(value)) == value  # the codec's documented behaviour
    unsigned: list[Any] = [1, 0, 0, 100, bytes(32), 10, [1, bytes(20), 5, ""]]
    for i in (1, 2, 3, 5):
        bad = list(unsigned)
        bad[i] = value
        with pytest.raises(Rejected) as exc:
            decode_tx(encode([bad, bytes(64)]), 8192)
        assert exc.value.reason == "bad_encoding"
    with pytest.raises(Rejected) as exc:
        decode_tx(encode([[1, 0, 0, 100, bytes(32), 10, [value]], bytes(64)]), 8192)
    assert exc.value.reason == "bad_op"


def test_rejects_oversized_input() -> None:
    data = encode(b"\x00" * 100)
    assert decode(data, max_len=len(data)) == b"\x00" * 100
    with pytest.raises(CodecError, match="limit"):
        decode(data, max_len=len(data) - 1)
    big = encode(b"\x00" * (4 * 1024 * 1024))
    with pytest.raises(CodecError, match="limit"):
        decode(big)


@pytest.mark.parametrize(
    "obj", [[1, "abc", b"def", [2**40, -5]], "hello", b"\x00" * 300, 2**64 - 1]
)
def test_rejects_every_truncation(obj: Any) -> None:
    data = encode(obj)
    for n in range(len(data)):
        with pytest.raises(CodecError):
            decode(data[:n])


def test_rejects_reserved_byte_and_huge_declared_lengths() -> None:
    for data in (b"\xc1", b"\xdd\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff\x00"):
        with pytest.raises(CodecError):
            decode(data)


def test_deep_nesting_is_a_codec_error_not_a_crash() -> None:
    with pytest.raises(CodecError):
        decode(b"\x91" * 100_000 + b"\x90")


# --- properties ----------------------------------------------------------------------------

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
consensus_objects = st.recursive(
    ints | st.text(max_size=40) | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=6),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(consensus_objects)
def test_property_round_trip(obj: Any) -> None:
    data = encode(obj)
    assert decode(data) == obj
    assert encode(decode(data)) == data


@settings(max_examples=400, deadline=None)
@given(consensus_objects, st.data())
def test_property_single_byte_mutation(obj: Any, data: st.DataObject) -> None:
    encoded = encode(obj)
    pos = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1), label="pos")
    byte = data.draw(
        st.integers(min_value=0, max_value=255).filter(lambda b: b != encoded[pos]), label="byte"
    )
    mutated = encoded[:pos] + bytes([byte]) + encoded[pos + 1 :]
    try:
        back = decode(mutated)
    except CodecError:
        return
    # it decoded, so it is the one canonical encoding of some other object
    assert encode(back) == mutated
