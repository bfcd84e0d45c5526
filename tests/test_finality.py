"""Votes, the FFG finality tracker, the voter guard and fork choice (protocol section 7)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from consensus.codec import encode
from consensus.crypto import TAG_VOTE, PrivateKey, sha256, verify
from consensus.finality import (
    INVALID,
    Checkpoint,
    Evidence,
    FinalityTracker,
    HeadInfo,
    VoteOutcome,
    VoterGuard,
    choose_head,
    supermajority,
)
from consensus.vote import Vote, VoteError, decode_vote

CHAIN_ID = sha256(b"test")
GENESIS = Checkpoint(CHAIN_ID, 0)
KEYS = [PrivateKey(bytes([i + 1]) * 32) for i in range(10)]
OUTSIDER = PrivateKey(bytes([99]) * 32)


class Tree:
    """A block tree: id -> (parent, slot). The genesis id is the chain id, at slot 0."""

    def __init__(self) -> None:
        self.parent: dict[bytes, bytes | None] = {CHAIN_ID: None}
        self.slot: dict[bytes, int] = {CHAIN_ID: 0}

    def add(self, name: str, parent: bytes, slot: int, *, known: bool = True) -> bytes:
        block_id = sha256(name.encode())
        if known:
            self.insert(block_id, parent, slot)
        return block_id

    def insert(self, block_id: bytes, parent: bytes, slot: int) -> None:
        assert self.slot[parent] < slot
        self.parent[block_id] = parent
        self.slot[block_id] = slot

    def is_ancestor(self, a: bytes, b: bytes) -> bool:
        if a not in self.slot:
            return False
        cur: bytes | None = b if b in self.slot else None
        while cur is not None:
            if cur == a:
                return True
            cur = self.parent[cur]
        return False

    def slot_of(self, block_id: bytes) -> int | None:
        return self.slot.get(block_id)


def voter_map(keys: Sequence[PrivateKey]) -> dict[bytes, bytes]:
    return {k.address: k.public_key for k in keys}


def make_tracker(tree: Tree, keys: Sequence[PrivateKey], **kw: int) -> FinalityTracker:
    voters: Mapping[bytes, bytes] = voter_map(keys)
    return FinalityTracker(
        CHAIN_ID, GENESIS, lambda _slot: voters, tree.is_ancestor, tree.slot_of, **kw
    )


def cast(key: PrivateKey, source: Checkpoint, tgt: Checkpoint) -> Vote:
    return Vote.sign(key, CHAIN_ID, source.block_id, source.slot, tgt.block_id, tgt.slot)


def feed(
    tracker: FinalityTracker, keys: Sequence[PrivateKey], source: Checkpoint, tgt: Checkpoint
) -> list[VoteOutcome]:
    outs = [tracker.add_vote(cast(k, source, tgt)) for k in keys]
    assert all(o.accepted for o in outs), [o.status for o in outs]
    return outs


def chain(tree: Tree, n: int, prefix: str = "b", parent: bytes = CHAIN_ID) -> list[bytes]:
    """Blocks at slots 1..n on one chain; returns ids, index = slot - 1."""
    ids = []
    for slot in range(1, n + 1):
        parent = tree.add(f"{prefix}{slot}", parent, slot)
        ids.append(parent)
    return ids


# --- votes ------------------------------------------------------------------------------------


def test_vote_encoding_hash_and_signature() -> None:
    a, b = sha256(b"a"), sha256(b"b")
    v = Vote.sign(KEYS[0], CHAIN_ID, a, 3, b, 4)
    assert v.obj() == [a, 3, b, 4, KEYS[0].address, v.signature]
    assert v.encode() == msgpack.packb(v.obj(), use_bin_type=True)
    assert v.hash == sha256(v.encode())
    payload = TAG_VOTE + CHAIN_ID + msgpack.packb([a, 3, b, 4], use_bin_type=True)
    assert v.signing_payload(CHAIN_ID) == payload
    assert verify(KEYS[0].public_key, v.signature, payload)
    assert v.verify(CHAIN_ID, KEYS[0].public_key)
    assert not v.verify(CHAIN_ID, KEYS[1].public_key)
    assert not v.verify(sha256(b"other chain"), KEYS[0].public_key)
    assert decode_vote(v.encode()) == v
    assert decode_vote(v.obj()) == v
    assert decode_vote(v.encode()).hash == v.hash
    # a re-keyed witness signs with a key whose address is not its own
    w = Vote.sign(KEYS[1], CHAIN_ID, a, 3, b, 4, witness=KEYS[0].address)
    assert w.witness == KEYS[0].address and w.verify(CHAIN_ID, KEYS[1].public_key)


def test_vote_is_immutable() -> None:
    v = Vote.sign(KEYS[0], CHAIN_ID, sha256(b"a"), 0, sha256(b"b"), 1)
    with pytest.raises(AttributeError):
        v.target_slot = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o[:5],
        lambda o: [*o, 0],
        lambda o: [o[0][:31], *o[1:]],
        lambda o: [o[0], True, *o[2:]],
        lambda o: [o[0], 1.0, *o[2:]],
        lambda o: [o[0], -1, *o[2:]],
        lambda o: [o[0], o[1], o[2], 2**63, *o[4:]],
        lambda o: [o[0], o[1], o[2], None, *o[4:]],
        lambda o: [*o[:4], o[4].hex(), o[5]],
        lambda o: [*o[:4], o[4] + b"\0", o[5]],
        lambda o: [*o[:5], o[5][:63]],
        lambda o: tuple(o),
    ],
)
def test_decode_vote_strict_types(mutate: object) -> None:
    v = Vote.sign(KEYS[0], CHAIN_ID, sha256(b"a"), 1, sha256(b"b"), 2)
    bad = mutate(v.obj())  # type: ignore[operator]
    with pytest.raises(VoteError) as info:
        decode_vote(bad)
    assert info.value.reason == "bad_encoding"
    if isinstance(bad, list):
        try:
            raw = msgpack.packb(bad, use_bin_type=True)
        except (TypeError, OverflowError):
            return
        with pytest.raises(VoteError):
            decode_vote(raw)


def test_decode_vote_rejects_non_canonical_and_bad_span() -> None:
    v = Vote.sign(KEYS[0], CHAIN_ID, sha256(b"a"), 1, sha256(b"b"), 2)
    raw = v.encode()
    with pytest.raises(VoteError):
        decode_vote(raw + b"\x00")
    # source_slot 1 as a uint8 (0xcc 0x01) instead of a positive fixint
    idx = raw.index(b"\x01", 1 + 2 + 32)
    with pytest.raises(VoteError, match="canonical"):
        decode_vote(raw[:idx] + b"\xcc" + raw[idx:])
    with pytest.raises(VoteError):
        decode_vote(b"\x00" * 300)
    same = Vote.sign(KEYS[0], CHAIN_ID, sha256(b"a"), 2, sha256(b"b"), 2)
    with pytest.raises(VoteError) as info:
        decode_vote(same.encode())
    assert info.value.reason == "bad_span"


# --- justification and finality --------------------------------------------------------------


@pytest.mark.parametrize("n", [4, 7])
def test_supermajority_exactly(n: int) -> None:
    keys = KEYS[:n]
    need = supermajority(n)
    assert need == {4: 3, 7: 5}[n]
    tree = Tree()
    b1, b2, b3 = chain(tree, 3)
    t = make_tracker(tree, keys)
    c1, c2, c3 = Checkpoint(b1, 1), Checkpoint(b2, 2), Checkpoint(b3, 3)

    feed(t, keys[: need - 1], GENESIS, c1)
    assert not t.is_justified(c1)
    assert t.link_voters(GENESIS, c1) == need - 1
    out = feed(t, keys[need - 1 : need], GENESIS, c1)[0]
    assert out.justified == [c1] and out.finalized == []  # genesis was final already
    assert t.is_justified(c1) and t.final == GENESIS

    feed(t, keys[: need - 1], c1, c2)
    assert not t.is_justified(c2) and t.final == GENESIS
    out = feed(t, keys[need - 1 : need], c1, c2)[0]
    assert out.justified == [c2] and out.finalized == [c1]
    assert t.final == c1
    # votes past the supermajority change nothing
    extra = feed(t, keys[need:], c1, c2)
    assert all(o.justified == [] and o.finalized == [] for o in extra)

    out = feed(t, keys[:need], c2, c3)[-1]
    assert out.finalized == [c2] and t.final == c2


def test_votes_from_non_voters_rejected() -> None:
    tree = Tree()
    (b1,) = chain(tree, 1)
    t = make_tracker(tree, KEYS[:4])
    out = t.add_vote(cast(OUTSIDER, GENESIS, Checkpoint(b1, 1)))
    assert out.status == "not_voter" and out.invalid
    assert t.link_voters(GENESIS, Checkpoint(b1, 1)) == 0


def test_bad_signature_rejected() -> None:
    tree = Tree()
    (b1,) = chain(tree, 1)
    t = make_tracker(tree, KEYS[:4])
    good = cast(KEYS[0], GENESIS, Checkpoint(b1, 1))
    sig = bytes([good.signature[0] ^ 1]) + good.signature[1:]
    forged = Vote(good.source_id, good.source_slot, good.target_id, 1, good.witness, sig)
    assert t.add_vote(forged).status == "bad_signature"
    # signed by another voter's key but claiming to be KEYS[0]
    other = Vote.sign(KEYS[1], CHAIN_ID, CHAIN_ID, 0, b1, 1, witness=KEYS[0].address)
    assert t.add_vote(other).status == "bad_signature"
    # the same signature over another target slot
    moved = Vote(good.source_id, 0, good.target_id, 2, good.witness, good.signature)
    assert t.add_vote(moved).status == "bad_signature"
    assert t.add_vote(good).accepted
    # a caller that verified on its own thread pool may skip the check
    assert t.add_vote(forged, signature_checked=True).accepted


def test_wrong_source_and_target_rejected() -> None:
    tree = Tree()
    a1 = tree.add("a1", CHAIN_ID, 1)
    x1 = tree.add("x1", CHAIN_ID, 1)  # a sibling of a1
    a2 = tree.add("a2", a1, 2)
    t = make_tracker(tree, KEYS[:4])
    k = KEYS[0]
    out = t.add_vote(cast(k, Checkpoint(x1, 1), Checkpoint(a2, 2)))
    assert out.status == "bad_source" and out.invalid
    # source block later than the source slot
    assert t.add_vote(cast(k, Checkpoint(a2, 1), Checkpoint(a2, 3))).status == "bad_source"
    # target block later than the target slot
    assert t.add_vote(cast(k, GENESIS, Checkpoint(a2, 1))).status == "bad_target"
    # source slot not below the target slot
    span = Vote(a1, 2, a2, 2, k.address, bytes(64))
    assert t.add_vote(span).status == "bad_span"
    assert all(s in INVALID for s in ("bad_source", "bad_target", "bad_span"))
    # nothing of the above was kept
    assert t.add_vote(cast(k, Checkpoint(a1, 1), Checkpoint(a2, 2))).accepted


def test_non_consecutive_link_justifies_without_finalizing() -> None:
    keys = KEYS[:4]
    tree = Tree()
    b1, b2, b3, b4 = chain(tree, 4)
    t = make_tracker(tree, keys)
    c1, c3, c4 = Checkpoint(b1, 1), Checkpoint(b3, 3), Checkpoint(b4, 4)
    feed(t, keys[:3], GENESIS, c1)
    out = feed(t, keys[:3], c1, c3)[-1]
    assert out.justified == [c3] and out.finalized == []
    assert t.final == GENESIS
    assert t.highest_justified_on(b4) == c3
    assert t.highest_justified_on(b2) == c1
    # c3 -> c4 is consecutive: c3 final, and with it b1, b2 (ancestors)
    out = feed(t, keys[:3], c3, c4)[-1]
    assert out.finalized == [c3] and t.final == c3
    assert t.is_final_block(b1) and t.is_final_block(b2) and t.is_final_block(b3)
    assert t.is_final_block(CHAIN_ID) and not t.is_final_block(b4)


def test_missed_slot_checkpoint_finalizes_earlier_block() -> None:
    keys = KEYS[:4]
    tree = Tree()
    b1 = tree.add("b1", CHAIN_ID, 1)  # slot 2 is missed: (b1, 2) is still a checkpoint
    t = make_tracker(tree, keys)
    feed(t, keys[:3], GENESIS, Checkpoint(b1, 1))
    out = feed(t, keys[:3], Checkpoint(b1, 1), Checkpoint(b1, 2))[-1]
    assert out.finalized == [Checkpoint(b1, 1)]
    assert t.is_justified(Checkpoint(b1, 2))


def test_link_counted_before_its_source_is_justified() -> None:
    keys = KEYS[:4]
    tree = Tree()
    b1, b2, b3 = chain(tree, 3)
    t = make_tracker(tree, keys)
    c1, c2, c3 = Checkpoint(b1, 1), Checkpoint(b2, 2), Checkpoint(b3, 3)
    feed(t, keys[:3], c2, c3)  # source not justified yet
    feed(t, keys[:3], c1, c2)  # not justified either: c1 is not
    assert not t.is_justified(c2)
    out = feed(t, keys[:3], GENESIS, c1)[-1]  # cascade: c1, c2, c3 justified; c1, c2 final
    assert out.justified == [c1, c2, c3]
    assert out.finalized == [c1, c2]
    assert t.final == c2


def test_distinct_voters_only() -> None:
    keys = KEYS[:4]
    tree = Tree()
    (b1,) = chain(tree, 1)
    t = make_tracker(tree, keys)
    c1 = Checkpoint(b1, 1)
    v = cast(keys[0], GENESIS, c1)
    assert t.add_vote(v).accepted
    assert t.add_vote(v).status == "duplicate"
    assert t.add_vote(decode_vote(v.encode())).status == "duplicate"
    assert t.link_voters(GENESIS, c1) == 1


def test_pending_votes_wait_for_their_block() -> None:
    keys = KEYS[:4]
    tree = Tree()
    b1 = tree.add("b1", CHAIN_ID, 1)
    b2 = tree.add("b2", b1, 2, known=False)
    t = make_tracker(tree, keys)
    c1, c2 = Checkpoint(b1, 1), Checkpoint(b2, 2)
    feed(t, keys[:3], GENESIS, c1)
    outs = [t.add_vote(cast(k, c1, c2)) for k in keys[:3]]
    assert [o.status for o in outs] == ["pending"] * 3
    assert [o.missing for o in outs] == [b2] * 3
    assert t.pending_count == 3
    assert t.add_vote(cast(keys[0], c1, c2)).status == "duplicate"
    assert t.on_block(sha256(b"unrelated")) == []
    tree.insert(b2, b1, 2)
    outs = t.on_block(b2)
    assert [o.status for o in outs] == ["accepted"] * 3
    assert outs[-1].finalized == [c1]
    assert t.pending_count == 0
    # a vote whose source and target are both unknown waits for its target
    b3 = tree.add("b3", b2, 3, known=False)
    b4 = tree.add("b4", b3, 4, known=False)
    assert t.add_vote(cast(keys[0], Checkpoint(b3, 3), Checkpoint(b4, 4))).status == "pending"
    tree.insert(b3, b2, 3)
    assert t.on_block(b3) == []
    tree.insert(b4, b3, 4)
    assert [o.status for o in t.on_block(b4)] == ["accepted"]


def test_pending_pool_is_bounded() -> None:
    keys = KEYS[:4]
    tree = Tree()
    t = make_tracker(tree, keys, max_pending=5)
    missing = [tree.add(f"m{i}", CHAIN_ID, i + 1, known=False) for i in range(8)]
    for i, m in enumerate(missing):
        assert t.add_vote(cast(keys[0], GENESIS, Checkpoint(m, i + 1))).status == "pending"
    assert t.pending_count == 5
    tree.insert(missing[0], CHAIN_ID, 1)  # evicted: nothing to retry
    assert t.on_block(missing[0]) == []
    tree.insert(missing[7], CHAIN_ID, 8)
    assert [o.status for o in t.on_block(missing[7])] == ["accepted"]


def test_max_target_slot() -> None:
    tree = Tree()
    _b1, b2 = chain(tree, 2)
    t = make_tracker(tree, KEYS[:4])
    v = cast(KEYS[0], GENESIS, Checkpoint(b2, 2))
    assert t.add_vote(v, max_target_slot=1).status == "too_early"
    assert t.add_vote(v, max_target_slot=2).accepted


def test_pruning_after_finality() -> None:
    keys = KEYS[:4]
    tree = Tree()
    b1, b2, b3, b4 = chain(tree, 4)
    x2 = tree.add("x2", b1, 2)  # a fork beside b2
    x3 = tree.add("x3", x2, 3)
    t = make_tracker(tree, keys)
    c1, c2, c3 = Checkpoint(b1, 1), Checkpoint(b2, 2), Checkpoint(b3, 3)
    feed(t, keys[:3], GENESIS, c1)
    feed(t, keys[:1], c1, Checkpoint(x3, 3))  # a link on the fork, then finality on b
    feed(t, keys[:3], c1, c2)
    out = feed(t, keys[:3], c2, c3)[-1]
    assert out.finalized == [c2] and t.final == c2
    assert set(t.justified) == {c2, c3}
    assert t.link_voters(c1, Checkpoint(x3, 3)) == 0
    # below or at the final slot: stale, not even checked
    assert t.add_vote(cast(OUTSIDER, GENESIS, c2)).status == "stale"
    # source below final: kept for slashing checks, never counted
    stale = t.add_vote(cast(keys[3], c1, Checkpoint(b4, 4)))
    assert stale.status == "stale_source" and not stale.invalid
    assert t.link_voters(c1, Checkpoint(b4, 4)) == 0
    # target on a fork that does not descend from final
    x4 = tree.add("x4", x3, 4)
    off = t.add_vote(cast(keys[0], Checkpoint(x3, 3), Checkpoint(x4, 4)))
    assert off.status == "conflicts_final" and not off.invalid
    with pytest.raises(ValueError):
        t.highest_justified_on(x4)
    assert t.highest_justified_on(b4) == c3
    assert t.descends_from_final(b4) and not t.descends_from_final(x4)


# --- slashing evidence ------------------------------------------------------------------------


def test_double_vote_evidence() -> None:
    keys = KEYS[:4]
    tree = Tree()
    a1 = tree.add("a1", CHAIN_ID, 1)
    x1 = tree.add("x1", CHAIN_ID, 1)
    t = make_tracker(tree, keys)
    first = cast(keys[0], GENESIS, Checkpoint(a1, 1))
    second = cast(keys[0], GENESIS, Checkpoint(x1, 1))
    assert t.add_vote(first).evidence == []
    out = t.add_vote(second)
    assert out.accepted  # both are kept and counted
    assert out.evidence == [Evidence(first, second, "double")]
    assert t.evidence == out.evidence
    assert out.evidence[0].is_valid(CHAIN_ID, keys[0].public_key)
    assert not out.evidence[0].is_valid(CHAIN_ID, keys[1].public_key)
    assert t.link_voters(GENESIS, Checkpoint(a1, 1)) == 1
    assert t.link_voters(GENESIS, Checkpoint(x1, 1)) == 1
    # a third different vote for the same target slot is dropped, still evident
    y1 = tree.add("y1", CHAIN_ID, 1)
    third = t.add_vote(cast(keys[0], GENESIS, Checkpoint(y1, 1)))
    assert third.status == "excess" and third.evidence and not third.invalid
    assert t.link_voters(GENESIS, Checkpoint(y1, 1)) == 0
    # another witness voting the same is not evidence against keys[0]
    assert t.add_vote(cast(keys[1], GENESIS, Checkpoint(x1, 1))).evidence == []


@pytest.mark.parametrize("outer_first", [True, False])
def test_surround_vote_evidence(outer_first: bool) -> None:
    keys = KEYS[:4]
    tree = Tree()
    b1, b2, b3, b4 = chain(tree, 4)
    t = make_tracker(tree, keys)
    outer = cast(keys[2], Checkpoint(b1, 1), Checkpoint(b4, 4))
    inner = cast(keys[2], Checkpoint(b2, 2), Checkpoint(b3, 3))
    a, b = (outer, inner) if outer_first else (inner, outer)
    assert t.add_vote(a).evidence == []
    out = t.add_vote(b)
    assert out.accepted
    assert out.evidence == [Evidence(a, b, "surround")]
    assert out.evidence[0].is_valid(CHAIN_ID, keys[2].public_key)
    # touching spans are not slashable
    t2 = make_tracker(tree, keys)
    assert t2.add_vote(cast(keys[2], Checkpoint(b1, 1), Checkpoint(b3, 3))).accepted
    assert t2.add_vote(cast(keys[2], Checkpoint(b1, 1), Checkpoint(b4, 4))).evidence == []
    assert t2.add_vote(cast(keys[2], Checkpoint(b3, 3), Checkpoint(b4, 4))).evidence != []


# --- the voter guard --------------------------------------------------------------------------


def cp(slot: int) -> Checkpoint:
    return Checkpoint(sha256(b"blk%d" % slot), slot)


def guard_vote(s: int, t: int) -> Vote:
    return cast(KEYS[0], cp(s), cp(t))


def test_voter_guard_rules() -> None:
    g = VoterGuard()
    assert g.last_vote is None
    assert g.may_vote(cp(2), cp(5))
    g.record(guard_vote(2, 5))
    assert not g.may_vote(cp(2), cp(5))  # the same target slot
    assert not g.may_vote(cp(3), Checkpoint(sha256(b"other"), 5))  # double vote
    assert not g.may_vote(cp(3), cp(4))  # surrounded by 2..5
    assert not g.may_vote(cp(1), cp(6))  # surrounds 2..5
    assert not g.may_vote(cp(6), cp(6))  # empty span
    assert g.may_vote(cp(2), cp(4))  # shares the source: not surrounded
    assert g.may_vote(cp(5), cp(6))
    assert g.may_vote(cp(3), cp(7))
    with pytest.raises(ValueError):
        g.record(guard_vote(1, 6))
    g.record(guard_vote(5, 6))
    assert g.last_vote == guard_vote(5, 6)


def test_voter_guard_dump_load() -> None:
    g = VoterGuard()
    for s, t in [(0, 1), (1, 2), (2, 4), (4, 5)]:
        g.record(guard_vote(s, t))
    raw = g.dump()
    h = VoterGuard.load(raw)
    assert h.votes == g.votes and h.dump() == raw
    for s, t in itertools.combinations(range(8), 2):
        assert h.may_vote(cp(s), cp(t)) == g.may_vote(cp(s), cp(t))
    assert not h.may_vote(cp(3), cp(5)) and not h.may_vote(cp(1), cp(6))
    assert h.may_vote(cp(5), cp(6))
    for bad in [b"", b"\x91\x01", raw[:-1], encode([2, 256, -1, -1, []])]:
        with pytest.raises(ValueError):
            VoterGuard.load(bad)
    # a record holding a slashable pair is refused on load
    pair = encode([1, 256, -1, -1, [guard_vote(1, 4).obj(), guard_vote(2, 3).obj()]])
    with pytest.raises(ValueError):
        VoterGuard.load(pair)


def test_voter_guard_watermark_after_forgetting() -> None:
    g = VoterGuard(keep=2)
    for s, t in [(0, 3), (3, 4), (4, 5)]:
        g.record(guard_vote(s, t))
    assert len(g.votes) == 2
    assert not g.may_vote(cp(1), cp(3))  # 3 was forgotten but is below the watermark
    assert not g.may_vote(cp(1), cp(2))  # surrounded by the forgotten 0..3
    assert g.may_vote(cp(5), cp(6))
    h = VoterGuard.load(g.dump())
    assert not h.may_vote(cp(1), cp(3)) and h.may_vote(cp(5), cp(6))


# --- fork choice ------------------------------------------------------------------------------


def head(name: str, height: int, justified: int, seen: int, ok: bool = True) -> HeadInfo:
    return HeadInfo(sha256(name.encode()), height, justified, seen, ok)


def test_fork_choice_order() -> None:
    a = head("a", 10, 5, 0)
    b = head("b", 12, 5, 1)  # taller
    c = head("c", 9, 7, 2)  # higher justified beats height
    d = head("d", 12, 5, 0)  # same as b but seen earlier
    off = head("off", 50, 40, 0, ok=False)  # leaves the final block: never
    assert choose_head([a, b]) == b
    assert choose_head([a, b, c]) == c
    assert choose_head([b, d]) == d and choose_head([d, b]) == d
    assert choose_head([a, off]) == a
    assert choose_head([off, c, b, a, d]) == c
    with pytest.raises(ValueError):
        choose_head([off])
    with pytest.raises(ValueError):
        choose_head([])


# --- safety -----------------------------------------------------------------------------------


def conflicting(tree: Tree, a: Checkpoint, b: Checkpoint) -> bool:
    ab = tree.is_ancestor(a.block_id, b.block_id)
    return not (ab or tree.is_ancestor(b.block_id, a.block_id))


def run_views(tree: Tree, keys: Sequence[PrivateKey], views: list[list[Vote]]) -> list[Checkpoint]:
    finals = []
    for votes in views:
        t = make_tracker(tree, keys)
        for v in votes:
            finals.extend(t.add_vote(v).finalized)
    return finals


def test_one_third_equivocators_can_break_safety_and_leave_evidence() -> None:
    """The detector below has teeth: with 2 of 4 (>= 1/3) equivocating, two views that each
    see a different half of the votes finalize conflicting blocks."""
    keys = KEYS[:4]
    tree = Tree()
    a1 = tree.add("a1", CHAIN_ID, 1)
    x1 = tree.add("x1", CHAIN_ID, 1)
    honest_a, honest_x, byz = keys[0], keys[1], keys[2:]
    ca, cx = Checkpoint(a1, 1), Checkpoint(x1, 1)
    ca2, cx2 = Checkpoint(a1, 2), Checkpoint(x1, 2)
    side_a = [cast(k, GENESIS, ca) for k in (honest_a, *byz)]
    side_a += [cast(k, ca, ca2) for k in (honest_a, *byz)]
    side_x = [cast(k, GENESIS, cx) for k in (honest_x, *byz)]
    side_x += [cast(k, cx, cx2) for k in (honest_x, *byz)]
    finals = run_views(tree, keys, [side_a, side_x])
    assert finals == [ca, cx] and conflicting(tree, ca, cx)
    t = make_tracker(tree, keys)
    evidence = [e for v in side_a + side_x for e in t.add_vote(v).evidence]
    assert {e.vote_a.witness for e in evidence} == {k.address for k in byz}


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, int]], random.Random, int]:
    n = draw(st.sampled_from([4, 7]))
    f = draw(st.integers(0, (n - 1) // 3))  # fewer than n/3 equivocate
    blocks = draw(st.integers(3, 12))
    tree_spec = []
    slot = 0
    for k in range(1, blocks + 1):
        slot += draw(st.integers(1, 2))
        tree_spec.append((draw(st.integers(max(0, k - 3), k - 1)), slot))
    rng = draw(st.randoms(use_true_random=False))
    groups = draw(st.integers(1, 3))
    return n, f, tree_spec, rng, groups


def simulate(
    n: int, f: int, tree_spec: list[tuple[int, int]], rng: random.Random, n_groups: int
) -> tuple[Tree, list[Checkpoint]]:
    """Honest voters in partitioned groups, each group with its own view (tracker) and
    preferred branch; equivocators sign every link any honest voter signs, in every view.
    Returns the tree and every checkpoint any view finalized."""
    keys = KEYS[:n]
    byz, honest = keys[:f], keys[f:]
    tree = Tree()
    ids = [CHAIN_ID]
    for i, (parent, slot) in enumerate(tree_spec, start=1):
        ids.append(tree.add(f"blk{i}", ids[parent], slot))
    children: dict[bytes, list[bytes]] = {b: [] for b in ids}
    for i, (parent, _slot) in enumerate(tree_spec, start=1):
        children[ids[parent]].append(ids[i])
    group_of = {k.address: rng.randrange(n_groups) for k in honest}
    views = [make_tracker(tree, keys) for _ in range(n_groups)]
    cross = rng.choice([0.0, 0.3, 1.0])  # how much of other groups' gossip gets through
    heads = [CHAIN_ID] * n_groups
    guards = {k.address: VoterGuard() for k in honest}
    finals: list[Checkpoint] = []
    for s in range(1, tree_spec[-1][1] + 3):
        for g in range(n_groups):  # each group follows its branch, sometimes switching
            nxt = [c for c in children[heads[g]] if tree.slot[c] <= s]
            if nxt:
                heads[g] = rng.choice(nxt)
            elif rng.random() < 0.15:
                heads[g] = rng.choice([b for b in ids if tree.slot[b] <= s])
        cast_now: list[tuple[int, Vote]] = []
        links: dict[tuple[Checkpoint, Checkpoint], None] = {}
        for k in honest:
            g = group_of[k.address]
            try:
                source = views[g].highest_justified_on(heads[g])
            except ValueError:
                continue  # the head left the final block: an honest node would not vote on it
            tgt = Checkpoint(heads[g], s)
            if not guards[k.address].may_vote(source, tgt):
                continue
            v = cast(k, source, tgt)
            guards[k.address].record(v)
            cast_now.append((g, v))
            links[(source, tgt)] = None
        for k in byz:
            for source, tgt in links:
                cast_now.append((-1, cast(k, source, tgt)))
        for g, view in enumerate(views):
            for origin, v in cast_now:
                if origin in (-1, g) or rng.random() < cross:
                    finals.extend(view.add_vote(v).finalized)
    return tree, finals


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_no_conflicting_finality_with_fewer_than_a_third_equivocating(
    scenario: tuple[int, int, list[tuple[int, int]], random.Random, int],
) -> None:
    tree, finals = simulate(*scenario)
    target(float(len(finals)))
    for a, b in itertools.combinations(finals, 2):
        assert not conflicting(tree, a, b), (a, b)


def test_simulation_finds_conflicts_with_a_third_equivocating() -> None:
    """The simulation above has teeth: with >= 1/3 equivocators it does find conflicting
    finality for some seeds."""
    found = 0
    for seed in range(200):
        rng = random.Random(seed)
        spec = [(0, 1), (0, 1), (1, 2), (2, 2), (3, 3), (4, 3), (5, 4), (6, 4)]
        tree, finals = simulate(4, 2, spec, rng, 2)
        found += any(conflicting(tree, a, b) for a, b in itertools.combinations(finals, 2))
        if found:
            break
    assert found


def test_pending_votes_that_finalize_while_retried() -> None:
    keys = KEYS[:4]
    tree = Tree()
    b1 = tree.add("b1", CHAIN_ID, 1)
    b2 = tree.add("b2", b1, 2, known=False)
    t = make_tracker(tree, keys)
    c1, c2, c3 = Checkpoint(b1, 1), Checkpoint(b2, 2), Checkpoint(b2, 3)
    feed(t, keys[:3], GENESIS, c1)
    waiting = [cast(k, c1, c2) for k in keys[:3]]
    waiting += [cast(k, c2, c3) for k in keys[:3]]
    waiting += [cast(keys[3], c1, c2)]  # retried after c2 became final: stale
    assert [t.add_vote(v).status for v in waiting] == ["pending"] * 7
    tree.insert(b2, b1, 2)
    outs = t.on_block(b2)
    assert [o.status for o in outs] == ["accepted"] * 6 + ["stale"]
    assert outs[2].finalized == [c1] and outs[5].finalized == [c2]
    assert t.final == c2 and t.pending_count == 0 and set(t.justified) == {c2, c3}
