"""Finality votes (protocol section 7).

    vote      = [source_id: bin32, source_slot, target_id: bin32, target_slot,
                 witness: bin20, signature: bin64]
    vote hash = H(packb(vote))           (the leaf item of votes_root, section 6)
    signature = Ed25519 over b"MUXER/vote/v1" + chain_id
                + packb([source_id, source_slot, target_id, target_slot])

Rules enforced here, i.e. everything that needs no chain state:

- The encoding is canonical MessagePack (section 1) and the array has exactly these six
  items of exactly these types: ``bin`` of the stated lengths, non-negative ``int`` slots
  at most 2**63 - 1 (bools, floats, nil and str are refused).
- ``source_slot < target_slot`` (a vote is a link forward in time).
- The signature is checked by ``Vote.verify`` against a signing key the caller supplies:
  a witness's address is not derived from its current signing key (witnesses re-key with
  register_witness), so only the caller's view of the round knows the key.

Everything that needs chain state (is the witness a voter of the target slot, are the
blocks known, is the source an ancestor of the target) belongs to consensus.finality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consensus.codec import CodecError, decode, encode
from consensus.crypto import TAG_VOTE, PrivateKey, sha256, verify

__all__ = ["MAX_SLOT", "VOTE_REASONS", "Vote", "VoteError", "decode_vote"]

MAX_SLOT = 2**63 - 1
MAX_VOTE_BYTES = 256  # an encoded vote is 166-190 bytes

VOTE_REASONS: dict[str, str] = {
    "bad_encoding": "the vote is not a canonical MessagePack encoding of the right shape",
    "bad_span": "a vote's source slot must be lower than its target slot",
}


class VoteError(ValueError):
    """A vote that is malformed in itself; ``reason`` is a key of VOTE_REASONS."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        if reason not in VOTE_REASONS:
            raise ValueError(f"unknown vote reason {reason!r}")
        self.reason = reason
        self.message = message or VOTE_REASONS[reason]
        super().__init__(f"{reason}: {self.message}")


def _link(source_id: bytes, source_slot: int, target_id: bytes, target_slot: int) -> bytes:
    return encode([source_id, source_slot, target_id, target_slot])


@dataclass(frozen=True, slots=True)
class Vote:
    """A decoded vote. ``raw`` is its canonical encoding and ``hash`` = H(raw)."""

    source_id: bytes
    source_slot: int
    target_id: bytes
    target_slot: int
    witness: bytes
    signature: bytes
    raw: bytes = field(init=False, repr=False, compare=False)
    hash: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        raw = encode(self.obj())
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "hash", sha256(raw))

    @classmethod
    def sign(
        cls,
        key: PrivateKey,
        chain_id: bytes,
        source_id: bytes,
        source_slot: int,
        target_id: bytes,
        target_slot: int,
        *,
        witness: bytes | None = None,
    ) -> Vote:
        """Sign a vote with ``key``; ``witness`` defaults to the key's own address."""
        message = TAG_VOTE + chain_id + _link(source_id, source_slot, target_id, target_slot)
        return cls(
            source_id,
            source_slot,
            target_id,
            target_slot,
            key.address if witness is None else witness,
            key.sign(message),
        )

    def obj(self) -> list[Any]:
        """The vote array, as it is embedded in a block."""
        return [
            self.source_id,
            self.source_slot,
            self.target_id,
            self.target_slot,
            self.witness,
            self.signature,
        ]

    def encode(self) -> bytes:
        """The canonical encoding ``packb(vote)``."""
        return self.raw

    def signing_payload(self, chain_id: bytes) -> bytes:
        """The signed message: tag + chain id + packb([source_id, source_slot, ...])."""
        link = _link(self.source_id, self.source_slot, self.target_id, self.target_slot)
        return TAG_VOTE + chain_id + link

    def verify(self, chain_id: bytes, signing_key: bytes) -> bool:
        """True iff the signature is by ``signing_key`` (32-byte Ed25519 public key)."""
        return verify(signing_key, self.signature, self.signing_payload(chain_id))

    def __repr__(self) -> str:
        return (
            f"Vote({self.witness.hex()[:8]} {self.source_id.hex()[:8]}@{self.source_slot}"
            f" -> {self.target_id.hex()[:8]}@{self.target_slot})"
        )


def _bin(x: Any, n: int, name: str) -> bytes:
    if type(x) is not bytes or len(x) != n:
        raise VoteError("bad_encoding", f"{name} must be {n} bytes")
    return x


def _slot(x: Any, name: str) -> int:
    if type(x) is not int or not 0 <= x <= MAX_SLOT:
        raise VoteError("bad_encoding", f"{name} must be an integer 0..2**63-1")
    return x


def decode_vote(data: bytes | list[Any]) -> Vote:
    """Decode a vote from its bytes or from its array (inside a decoded block).

    Raises VoteError; never checks the signature.
    """
    if type(data) is bytes:
        if len(data) > MAX_VOTE_BYTES:
            raise VoteError("bad_encoding", f"a vote is at most {MAX_VOTE_BYTES} bytes")
        try:
            obj = decode(data)
        except CodecError as exc:
            raise VoteError("bad_encoding", str(exc)) from None
    else:
        obj = data
    if type(obj) is not list or len(obj) != 6:
        raise VoteError("bad_encoding", "a vote is an array of 6 items")
    source_id = _bin(obj[0], 32, "source_id")
    source_slot = _slot(obj[1], "source_slot")
    target_id = _bin(obj[2], 32, "target_id")
    target_slot = _slot(obj[3], "target_slot")
    witness = _bin(obj[4], 20, "witness")
    signature = _bin(obj[5], 64, "signature")
    if source_slot >= target_slot:
        raise VoteError("bad_span", f"source slot {source_slot} >= target slot {target_slot}")
    vote = Vote(source_id, source_slot, target_id, target_slot, witness, signature)
    if type(data) is bytes and vote.raw != data:  # cannot happen after a canonical decode
        raise VoteError("bad_encoding", "non-canonical encoding")
    return vote
