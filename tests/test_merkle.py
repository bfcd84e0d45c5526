"""The RFC 6962 Merkle tree hash (protocol section 6) against a direct recursive definition."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.merkle import merkle_root


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def rfc6962(items: list[bytes]) -> bytes:
    """MTH of RFC 6962 section 2.1, written as the RFC states it."""
    n = len(items)
    if n == 0:
        return h(b"")
    if n == 1:
        return h(b"\x00" + items[0])
    k = 1
    while k * 2 < n:  # the largest power of two smaller than n
        k *= 2
    return h(b"\x01" + rfc6962(items[:k]) + rfc6962(items[k:]))


def leaf(x: bytes) -> bytes:
    return h(b"\x00" + x)


def node(a: bytes, b: bytes) -> bytes:
    return h(b"\x01" + a + b)


ITEMS = [bytes([i]) * (i + 1) for i in range(16)]


def test_empty() -> None:
    assert merkle_root([]) == h(b"")
    assert merkle_root([]) == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_one_leaf() -> None:
    assert merkle_root([b"abc"]) == h(b"\x00abc")
    assert merkle_root([b""]) == h(b"\x00")
    assert merkle_root([b""]) != merkle_root([])


def test_small_trees_written_out() -> None:
    a, b, c, d, e = ITEMS[:5]
    assert merkle_root([a, b]) == node(leaf(a), leaf(b))
    assert merkle_root([a, b, c]) == node(node(leaf(a), leaf(b)), leaf(c))
    # 5 leaves: split 4 | 1, so e is hashed in only at the top
    left = node(node(leaf(a), leaf(b)), node(leaf(c), leaf(d)))
    assert merkle_root([a, b, c, d, e]) == node(left, leaf(e))


@pytest.mark.parametrize("n", [2, 3, 5, 7, 1, 4, 6, 8, 9, 11, 13, 16])
def test_against_recursive_definition(n: int) -> None:
    assert merkle_root(ITEMS[:n]) == rfc6962(ITEMS[:n])


def test_seven_leaves_shape() -> None:
    # 7 = 4 | 3, and 3 = 2 | 1
    ls = [leaf(x) for x in ITEMS[:7]]
    right = node(node(ls[4], ls[5]), ls[6])
    left = node(node(ls[0], ls[1]), node(ls[2], ls[3]))
    assert merkle_root(ITEMS[:7]) == node(left, right)


def test_order_and_content_matter() -> None:
    a, b, c = ITEMS[:3]
    assert merkle_root([a, b, c]) != merkle_root([b, a, c])
    assert merkle_root([a, b]) != merkle_root([a, b, b])
    # second-preimage guard: an inner node is not a leaf
    assert merkle_root([a, b]) != merkle_root([leaf(a) + leaf(b)])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=8), max_size=70))
def test_property_matches_recursive_definition(items: list[bytes]) -> None:
    assert merkle_root(items) == rfc6962(items)
