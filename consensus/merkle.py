"""RFC 6962 Merkle tree hash (protocol section 6).

leaf = H(0x00 + item), node = H(0x01 + left + right), empty = H(b"").
RFC 6962 splits n leaves at the largest power of two below n. Pairing level by level and
carrying an odd last node up unchanged builds exactly that tree, without recursion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["merkle_root"]

_EMPTY = hashlib.sha256(b"").digest()


def merkle_root(items: Sequence[bytes]) -> bytes:
    if not items:
        return _EMPTY
    sha = hashlib.sha256
    level = [sha(b"\x00" + item).digest() for item in items]
    while len(level) > 1:
        nxt = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            nxt.append(level[-1])
        level = nxt
    return level[0]
