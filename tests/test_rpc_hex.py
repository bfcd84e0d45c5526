"""rpc's hex params (``_hex``, cursors) by bytes.fromhex: exactly the texts the former
regex ``(?:[0-9a-fA-F]{2})*`` took (digit pairs, either case, nothing else), checked over
random texts with whitespace, signs, prefixes and non-ASCII digits mixed in."""

from __future__ import annotations

import re
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxernode.rpc import RpcError, _from_hex, _hex

PAIRS = re.compile(r"(?:[0-9a-fA-F]{2})*")  # the rule, as the regex said it
ALPHABET = string.hexdigits + " \t\n\r\x0b\x0cxX0-+_gG\u0660\u0661\u00a0\u3000\uff10"


@given(st.text(alphabet=ALPHABET, max_size=40))
def test_takes_exactly_the_digit_pairs(text: str) -> None:
    expected = bytes.fromhex(text) if PAIRS.fullmatch(text) else None
    assert _from_hex(text) == expected


@pytest.mark.parametrize("bad", ["0a 0b", " 0a", "0a\n", "abc", "0x0a", "\u0660\u0661",
                                 "0a\u3000", None, 10, b"0a", ["0a"]])
def test_refuses_with_a_clear_error(bad: Any) -> None:
    with pytest.raises(RpcError) as info:
        _hex(bad, "tx_hex")
    assert "tx_hex must be a string of hex digit pairs" in str(info.value.data or info.value)


def test_sizes_and_cases() -> None:
    assert _hex("0A0b", "x") == b"\x0a\x0b"
    assert _hex("", "x") == b""
    assert _hex("ab" * 32, "tx_id", 32) == bytes([0xAB]) * 32
    with pytest.raises(RpcError) as info:
        _hex("ab" * 31, "tx_id", 32)
    assert "tx_id must be 64 hex digits" in str(info.value.data or info.value)
