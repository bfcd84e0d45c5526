"""Blocks (protocol section 6).

    header = [1, height, previous_id, timestamp, witness: bin20, tx_root, votes_root,
              state_digest]
    block  = [header, signature, [signed_tx, ...], [vote, ...]]
    block_id  = H(packb(header))
    signature = Ed25519 over b"MUXER/block/v1" + chain_id + block_id

Decoding checks everything a block can be checked for without the chain: canonical bytes,
size, field types, each tx's envelope shape, each vote's shape, and both Merkle roots. The
witness signature needs the witness's signing key (chain state) and is checked by the
chain; tx signatures are checked by the node, once per tx_id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from consensus.codec import (
    CodecError,
    array_header,
    check_canonical,
    encode,
    unpacker,
)
from consensus.crypto import TAG_BLOCK, PrivateKey, sha256, verify
from consensus.errors import Rejected
from consensus.merkle import merkle_root
from consensus.tx import SignedTx, tx_from_obj, tx_id_of
from consensus.vote import Vote, VoteError, decode_vote

__all__ = ["BLOCK_VERSION", "Block", "BlockError", "decode_block", "peek_block_id"]

BLOCK_VERSION = 1
_U63 = 2**63 - 1


class BlockError(ValueError):
    """A block that is malformed on its own (before any chain check)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class Block:
    """A decoded block. ``raw`` is its canonical encoding; ``id`` is H(packb(header))."""

    __slots__ = (
        "height",
        "id",
        "previous_id",
        "raw",
        "signature",
        "state_digest",
        "timestamp",
        "tx_root",
        "txs",
        "votes",
        "votes_root",
        "witness",
    )

    def __init__(
        self,
        header: list[Any],
        signature: bytes,
        txs: list[SignedTx],
        votes: list[Vote],
        raw: bytes | None = None,
    ) -> None:
        (_v, self.height, self.previous_id, self.timestamp, self.witness, self.tx_root,
         self.votes_root, self.state_digest) = header
        self.signature = signature
        self.txs = txs
        self.votes = votes
        header_raw = encode(header)
        self.id = sha256(header_raw)
        # A built block's bytes are assembled from its parts' canonical bytes (an array's
        # canonical encoding is its header and its items' encodings): no tx is encoded again.
        self.raw = raw if raw is not None else b"".join((
            array_header(4), header_raw, encode(signature), array_header(len(txs)),
            *(t.raw for t in txs), array_header(len(votes)), *(v.raw for v in votes)))

    def header(self) -> list[Any]:
        return [BLOCK_VERSION, self.height, self.previous_id, self.timestamp, self.witness,
                self.tx_root, self.votes_root, self.state_digest]

    def encode(self) -> bytes:
        return self.raw

    def verify_signature(self, chain_id: bytes, signing_key: bytes) -> bool:
        return verify(signing_key, self.signature, TAG_BLOCK + chain_id + self.id)

    @classmethod
    def build(
        cls,
        key: PrivateKey,
        chain_id: bytes,
        height: int,
        previous_id: bytes,
        timestamp: int,
        txs: Sequence[SignedTx],
        votes: Sequence[Vote],
        state_digest: bytes,
    ) -> Block:
        header = [
            BLOCK_VERSION, height, previous_id, timestamp, key.address,
            merkle_root([t.tx_id for t in txs]), merkle_root([v.hash for v in votes]),
            state_digest,
        ]
        block_id = sha256(encode(header))
        signature = key.sign(TAG_BLOCK + chain_id + block_id)
        return cls(header, signature, list(txs), list(votes))

    def __repr__(self) -> str:
        return f"Block({self.height}, {self.id.hex()[:16]}, txs={len(self.txs)})"


def _bin(x: Any, n: int) -> bool:
    return type(x) is bytes and len(x) == n


def peek_block_id(raw: bytes) -> bytes | None:
    """The id the bytes of a block claim, H(bytes of its header), without decoding its txs
    (None if it has no readable header). A peer pushes each block to every neighbour, so
    most copies that arrive are of known blocks: this recognizes them for the price of a
    header. For a canonical block it is the block's id; for any other bytes it names no
    valid block, so a match with a known id is a copy of that block."""
    try:
        up = unpacker(raw)
        if up.read_array_header() != 4:
            return None
        start = up.tell()
        up.skip()
        end = up.tell()
    except Exception:  # msgpack raises several unrelated types for malformed input
        return None
    return sha256(raw[start:end])


def _part(up: Any, raw: bytes) -> Any:
    """The next object of ``up`` (over ``raw``), checked to be canonically encoded."""
    start = up.tell()
    obj = up.unpack()
    check_canonical(obj, raw[start:up.tell()])
    return obj


def decode_block(raw: bytes, max_block_bytes: int,
                 known_tx: Callable[[bytes], SignedTx | None] | None = None) -> Block:
    """Decode and check a block on its own; raises BlockError.

    ``known_tx(tx_id)`` may return an already decoded tx (the mempool's): when its bytes
    equal the block's bytes for that tx, that object is reused and those bytes are not
    decoded again (they were checked canonical when that tx was decoded).
    """
    if len(raw) > max_block_bytes:
        raise BlockError("too_large", f"block is {len(raw)} bytes, max {max_block_bytes}")
    # One streaming pass over the parts, each checked canonical on its own (an array's
    # canonical encoding is its canonical header and its items' encodings, so this checks
    # the whole block): a tx part whose bytes are a known tx's is skipped, not decoded,
    # which on a follower is nearly every tx of a block.
    slots: list[SignedTx | None] = []  # the block's txs, None where one must be decoded
    unknown: list[tuple[int, bytes]] = []  # (position, bytes) of the txs to decode
    try:
        up = unpacker(raw)
        if up.read_array_header() != 4:
            raise BlockError("bad_encoding", "a block is [header, signature, txs, votes]")
        if up.tell() != 1:
            raise CodecError("non-canonical encoding")
        header = _part(up, raw)
        signature = _part(up, raw)
        start = up.tell()
        n_txs = up.read_array_header()
        if raw[start:up.tell()] != array_header(n_txs):
            raise CodecError("non-canonical encoding")
        for i in range(n_txs):
            start = up.tell()
            up.skip()
            t_raw = raw[start:up.tell()]
            known = known_tx(tx_id_of(t_raw)) if known_tx is not None else None
            if known is not None and known.raw == t_raw:
                slots.append(known)
            else:
                slots.append(None)
                unknown.append((i, t_raw))
        vote_objs = _part(up, raw)
        if up.tell() != len(raw):
            raise BlockError("bad_encoding", "trailing bytes after the block")
        # the txs to decode, in one stream, and one canonical check for all of them (see
        # array_header): a call per tx costs more than its decoding
        joined = b"".join(t_raw for _, t_raw in unknown)
        tx_objs = list(unpacker(joined)) if unknown else []
        if len(tx_objs) != len(unknown):
            raise CodecError("a tx's bytes are not one object")
        check_canonical(tx_objs, array_header(len(unknown)) + joined)
    except BlockError:
        raise
    except CodecError as exc:
        raise BlockError("bad_encoding", str(exc)) from None
    except Exception as exc:  # msgpack raises several unrelated types for malformed input
        raise BlockError("bad_encoding", f"malformed msgpack: {type(exc).__name__}: {exc}"
                         ) from None
    if type(header) is not list or len(header) != 8:
        raise BlockError("bad_encoding", "a header has 8 items")
    version, height, previous_id, timestamp, witness, tx_root, votes_root, digest = header
    if type(version) is not int or version != BLOCK_VERSION:
        raise BlockError("bad_encoding", f"unsupported block version {version!r}")
    if type(height) is not int or not 1 <= height <= _U63:
        raise BlockError("bad_encoding", "height must be a positive integer")
    if type(timestamp) is not int or not 0 <= timestamp <= _U63:
        raise BlockError("bad_encoding", "timestamp must be a non-negative integer")
    if not (_bin(previous_id, 32) and _bin(witness, 20) and _bin(tx_root, 32)
            and _bin(votes_root, 32) and _bin(digest, 32)):
        raise BlockError("bad_encoding", "header ids, witness, roots or digest malformed")
    if not _bin(signature, 64):
        raise BlockError("bad_encoding", "signature must be 64 bytes")
    if type(vote_objs) is not list:
        raise BlockError("bad_encoding", "txs and votes are arrays")
    for (i, t_raw), t in zip(unknown, tx_objs, strict=True):
        try:
            slots[i] = tx_from_obj(t, t_raw)
        except Rejected as exc:
            raise BlockError("bad_tx", f"tx {i}: {exc}") from None
    txs = [t for t in slots if t is not None]
    votes: list[Vote] = []
    for v in vote_objs:
        try:
            votes.append(decode_vote(v))
        except VoteError as exc:
            raise BlockError("bad_vote", f"vote {len(votes)}: {exc}") from None
    if merkle_root([t.tx_id for t in txs]) != tx_root:
        raise BlockError("bad_tx_root", "tx_root does not match the txs")
    if merkle_root([v.hash for v in votes]) != votes_root:
        raise BlockError("bad_votes_root", "votes_root does not match the votes")
    if len({t.tx_id for t in txs}) != len(txs):
        raise BlockError("bad_tx", "a tx appears twice in the block")
    return Block(header, signature, txs, votes, raw)
