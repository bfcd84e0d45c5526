"""The consensus engine: block tree, schedule, FFG votes and finality over one Chain.

Sans-IO like the rest of consensus/: the node shell calls it with events (a block was
committed, a vote arrived, a slot came) and it returns what to do (votes to include or
send). It never reads a clock.

Rules it keeps (protocol sections 5 and 7):
- Witness of a slot: ``Schedule.witness_at``. The genesis epoch is the genesis elected set
  from slot 1. An elected set of a maintenance block takes effect at the first round that
  starts after the block that records the maintenance block's finality *by the votes
  included in this chain* (the chain view), so every fork above it agrees.
- Two finality views. The *chain view* counts only votes included in main-chain blocks, in
  chain order, each judged no later than its including block's slot: deterministic, so a
  syncing node recomputes it. The *node view* also counts gossiped votes and moves first;
  the node's ``final`` (what the RPC reports, what undo pruning and fork choice respect)
  is the node view, which is always at or above the chain view. Both are safe (section 7).
- The block tree holds the final block and every known block above it (main chain and
  side forks), for ancestry queries; blocks below the final one are never needed again
  by the trackers (votes below the final slot are stale).
- Votes: a vote is valid in a block iff it is well formed, its witness is a voter of its
  target slot and signed it, its target slot is before the block's slot, and its hash is
  not already included on the chain (the chain's vote index). Producers include every
  known vote that is not yet included.
- The honest voter: once per slot, vote target = (head, slot) with source = the highest
  justified checkpoint on head's chain, only if the VoterGuard allows it; the guard is
  persisted by the caller before the vote leaves the node.
- Restart: both trackers are rebuilt from the stored final checkpoint and the votes of the
  main-chain blocks above it; the schedule's epochs are stored under META_SCHEDULE.
- Equivocation evidence (``evidence_log``, newest last, at most MAX_EVIDENCE, stored under
  ``E`` keys so it survives a restart; a write that fails on a full disk is retried by
  ``save_evidence``): double and surround votes from the node view, and ``double_block``:
  one witness signing two different blocks for one slot. For blocks the engine remembers
  the signed header (``packb([header, signature])``) of the first block it accepted for
  each (slot, witness) (the last SIGNED_SLOTS_KEPT of them); a second header for the same
  pair is recorded once, and only if both signatures verify under the witness's signing key,
  so a peer cannot forge evidence against an honest witness.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import NamedTuple

import msgpack

from consensus.block import Block
from consensus.chain import BlockRef, Chain
from consensus.codec import encode
from consensus.crypto import TAG_BLOCK, PrivateKey, verify
from consensus.finality import Checkpoint, Evidence, FinalityTracker, VoterGuard
from consensus.schedule import Schedule
from consensus.vote import Vote
from storage import schema
from storage.kv import StorageError

__all__ = ["BlockInfo", "Consensus", "EvidenceRecord"]

log = logging.getLogger("muxer.consensus")

MAX_VOTES_PER_BLOCK = 1024
STATS_WINDOW = 256  # blocks scanned at start-up for the witnesses' production record
MAX_EVIDENCE = 1024  # evidence records kept (oldest dropped first)
SIGNED_SLOTS_KEPT = 4096  # (slot, witness) -> first signed header, for double_block checks
VOTE_KINDS = {"double": "double_vote", "surround": "surround_vote"}


class BlockInfo(NamedTuple):
    parent: bytes
    height: int
    slot: int


class EvidenceRecord(NamedTuple):
    """Proof that a witness equivocated: two messages it signed that break a rule.

    ``kind``: "double_vote", "surround_vote" (``first``/``second`` are encoded votes, the
    first one seen first; ``slot`` is the second vote's target slot) or "double_block"
    (``first``/``second`` are signed block headers ``packb([header, signature])`` for
    ``slot``; the block id is H(packb(header)), the signature is over it as in section 6).
    """

    kind: str
    witness: bytes
    slot: int
    first: bytes
    second: bytes


class _SignedSlot(NamedTuple):
    block_id: bytes
    signature: bytes
    signed_header: bytes
    reported: bool  # evidence was recorded for this (slot, witness): log it once


class Consensus:
    def __init__(
        self,
        chain: Chain,
        elected: Callable[[], tuple[int, list[bytes]] | None],
        signing_key_of: Callable[[bytes], bytes | None],
    ) -> None:
        self.chain = chain
        self.chain_id = chain.chain_id
        self._elected = elected
        self._signing_key_of = signing_key_of
        self.schedule = self._load_schedule()
        self.tree: dict[bytes, BlockInfo] = {}
        # the slot and included votes of each block in the tree: a pop recounts the chain
        # view over the main chain, which must not decode every block's txs again (under
        # load each pop of a fork switch did, a fifth of the switch's CPU)
        self._votes_of: dict[bytes, tuple[int, list[Vote]]] = {}
        self.vote_pool: dict[bytes, Vote] = {}  # known votes, by hash, not yet on the chain
        self.evidence: list[Evidence] = []
        # every kind of equivocation evidence in the order found (the RPC's list_evidence)
        self.evidence_log: deque[EvidenceRecord] = deque(maxlen=MAX_EVIDENCE)
        self._evidence_seq = 0  # key of the next record stored
        self._unsaved_evidence: list[EvidenceRecord] = []
        self._load_evidence()
        self._signed_slots: OrderedDict[tuple[int, bytes], _SignedSlot] = OrderedDict()
        # (slot of the deciding block, maintenance height) for each election decided here
        self.decisions: list[tuple[int, int]] = self._stored_decisions()
        # production record as far as this node has seen: witness -> last slot / missed
        self.last_slot: dict[bytes, int] = {}
        self.missed: dict[bytes, int] = {}
        self._count_recent_production(STATS_WINDOW)
        self._saved_cv_final = Checkpoint(b"", -1)  # last chain-view final written
        self._rebuild()
        head = chain.get_block(chain.head.id) if chain.head.height else None
        if head is not None:
            # a crash between a block's commit and its decision's write redoes it here
            self._decide_elections(head)

    # --- schedule ---------------------------------------------------------------------

    def _load_schedule(self) -> Schedule:
        raw = self.chain.store.get(schema.META_SCHEDULE)
        if raw is not None:
            epochs = msgpack.unpackb(raw)
            return Schedule(self.chain_id, [(e[0], e[1], e[2]) for e in epochs[1]])
        elected = self._elected()
        if elected is None:
            raise ValueError("the state holds no elected witness set")
        height, active = elected
        if height != 0:
            # nothing decided (so nothing saved) yet, but a maintenance block already
            # replaced the genesis election in the state (a restart between the two): the
            # first epoch is still the genesis set, the first registered witnesses
            genesis = self.chain.genesis
            active = [w.address for w in genesis.witnesses][: genesis.params.active_witnesses]
        return Schedule(self.chain_id, [(1, active)])

    def _stored_decisions(self) -> list[tuple[int, int]]:
        raw = self.chain.store.get(schema.META_SCHEDULE)
        return [] if raw is None else [(int(a), int(b)) for a, b in msgpack.unpackb(raw)[0]]

    @property
    def decided_maintenance(self) -> int:
        return self.decisions[-1][1] if self.decisions else 0

    def save_schedule(self) -> None:
        epochs = [[e.first_slot, list(e.active), e.decided_at] for e in self.schedule.epochs]
        record = msgpack.packb([self.decisions, epochs], use_bin_type=True)
        self.chain.store.write({schema.META_SCHEDULE: record}, sync=True)

    def witness_for_slot(self, slot: int) -> bytes:
        return self.schedule.witness_at(slot)

    def may_own_slot(self, witness: bytes, slot: int) -> bool:
        """Whether ``witness`` can own ``slot`` on some branch: the owner by our schedule,
        or a member of any set active in it or elected in our state.

        For a side block: its branch may have decided an election at another round than
        ours (or not at all), so its slot owner is known only on that branch. The exact
        check comes when the branch is applied (``switch``); this one keeps witnesses
        that were never in any active set from flooding the block tree."""
        if self.schedule.witness_at(slot) == witness:
            return True
        if any(witness in e.active for e in self.schedule.epochs):
            return True
        elected = self._elected()
        return elected is not None and witness in elected[1]

    def voters_for_slot(self, slot: int) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        for address in self.schedule.voters_at(slot):
            key = self._signing_key_of(address)
            if key is not None:
                out[address] = key
        return out

    def active_witnesses(self, slot: int) -> list[bytes]:
        return list(self.schedule.voters_at(max(1, slot)))

    # --- block tree -----------------------------------------------------------------------

    def is_ancestor(self, a: bytes, b: bytes) -> bool:
        """a is an ancestor-or-self of b (both known in the tree)."""
        ia = self.tree.get(a)
        if ia is None:
            return False
        cur = b
        for _ in range(1_000_000):  # bounded by the tree's height span
            if cur == a:
                return True
            info = self.tree.get(cur)
            if info is None or info.height <= ia.height:
                return False
            cur = info.parent
        return False

    def slot_of_block(self, block_id: bytes) -> int | None:
        info = self.tree.get(block_id)
        return None if info is None else info.slot

    def _count_recent_production(self, blocks: int) -> None:
        chain = self.chain
        prev_slot: int | None = None
        for h in range(max(0, chain.head.height - blocks), chain.head.height + 1):
            bid = chain.block_id_at(h)
            block = chain.get_block(bid) if bid and h > 0 else None
            slot = 0 if block is None else chain.slot_of(block.timestamp)
            if block is not None and prev_slot is not None:
                self._record_production(block.witness, prev_slot, slot)
            prev_slot = slot if (block is not None or h == 0) else None

    def _record_production(self, witness: bytes, parent_slot: int, slot: int) -> None:
        self.last_slot[witness] = max(slot, self.last_slot.get(witness, 0))
        for s in range(max(parent_slot + 1, slot - 10_000), slot):
            w = self.schedule.witness_at(s)
            self.missed[w] = self.missed.get(w, 0) + 1

    def production_stats(self) -> dict[bytes, tuple[int, int]]:
        """witness -> (last slot it produced, slots it missed), as far as this node saw."""
        ws = set(self.last_slot) | set(self.missed)
        return {w: (self.last_slot.get(w, 0), self.missed.get(w, 0)) for w in ws}

    def _new_tracker(self, final: BlockRef) -> FinalityTracker:
        return FinalityTracker(
            self.chain_id, Checkpoint(final.id, final.slot), self.voters_for_slot,
            self.is_ancestor, self.slot_of_block,
        )

    def _cv_base(self) -> BlockRef:
        """Where the chain view starts: its stored final checkpoint, if still on our chain
        and not above the node's final block; else the node's final block.

        Restarting the chain view from the node's (gossip-fed, higher) final block would
        make it finalize earlier than the chain's own votes did, and decide an election at
        another round than every other node (the restart-during-election bug)."""
        chain = self.chain
        raw = chain.store.get(schema.META_CHAIN_FINAL)
        if raw is not None:
            bid, slot, height = msgpack.unpackb(raw)
            if height <= chain.final.height and chain.block_id_at(height) == bid:
                if height == 0:
                    return chain.genesis_ref
                ref = chain.ref_at(height)  # a recent one without decoding the block
                if ref is not None and ref.id == bid:
                    return BlockRef(height, bid, ref.timestamp, slot)
        return chain.final

    def _save_cv_final(self) -> None:
        cp = self.chain_view.final
        info = self.tree.get(cp.block_id)
        if info is None or cp == self._saved_cv_final:
            return
        self._saved_cv_final = cp
        # not in the block's batch: an older value after a crash only means a longer
        # (deterministic) replay; it is never ahead of the truth
        self.chain.store.write({schema.META_CHAIN_FINAL: msgpack.packb(
            [cp.block_id, cp.slot, info.height], use_bin_type=True)})

    def _rebuild(self) -> None:
        """Trackers and tree from the stored final checkpoints and the main chain above."""
        chain = self.chain
        final = chain.final
        base = self._cv_base()
        self.tree = {base.id: BlockInfo(b"", base.height, base.slot)}
        self._votes_of = {}
        self.node_view = self._new_tracker(final)
        self.chain_view = self._new_tracker(base)
        self._saved_cv_final = self.chain_view.final
        for h in range(base.height + 1, chain.head.height + 1):
            bid = chain.block_id_at(h)
            block = chain.get_block(bid) if bid else None
            if block is None:
                break
            self._add_to_tree(block)
            slot = chain.slot_of(block.timestamp)
            for v in block.votes:
                self.chain_view.add_vote(v, max_target_slot=slot, signature_checked=True)
                if h > final.height:
                    self._note(self.node_view.add_vote(v, signature_checked=True).evidence)
                self.vote_pool.pop(v.hash, None)

    def _add_to_tree(self, block: Block) -> None:
        slot = self.chain.slot_of(block.timestamp)
        self.tree[block.id] = BlockInfo(block.previous_id, block.height, slot)
        self._votes_of[block.id] = (slot, block.votes)

    def _count_included(self, block: Block) -> None:
        slot = self.chain.slot_of(block.timestamp)
        for v in block.votes:
            self.chain_view.add_vote(v, max_target_slot=slot, signature_checked=True)
            self._note(self.node_view.add_vote(v, signature_checked=True).evidence)
            self.vote_pool.pop(v.hash, None)

    def _note(self, found: list[Evidence]) -> None:
        for evidence in found:
            self.evidence.append(evidence)
            del self.evidence[:-1024]
            a, b = evidence.vote_a, evidence.vote_b
            record = EvidenceRecord(VOTE_KINDS[evidence.kind], a.witness, b.target_slot,
                                    a.encode(), b.encode())
            if not self._record(record):
                continue  # the same pair found again (replayed after a switch or restart)
            log.warning("equivocation", extra={"kv": {
                "witness": a.witness, "kind": evidence.kind,
                "vote_a": a.encode(), "vote_b": b.encode()}})

    # --- evidence store ------------------------------------------------------------------

    def _load_evidence(self) -> None:
        for key, raw in self.chain.store.iterate(schema.PREFIX_EVIDENCE):
            kind, witness, slot, first, second = msgpack.unpackb(raw)
            self.evidence_log.append(EvidenceRecord(kind, witness, slot, first, second))
            self._evidence_seq = schema.from_u64(key[len(schema.PREFIX_EVIDENCE):]) + 1

    def _record(self, record: EvidenceRecord) -> bool:
        """Keep and store new evidence; False if the same two messages are known (in
        either order: after a restart the other one may be seen first)."""
        pair = {record.first, record.second}
        if any(r.kind == record.kind and r.witness == record.witness
               and {r.first, r.second} == pair for r in self.evidence_log):
            return False
        self.evidence_log.append(record)
        self._unsaved_evidence.append(record)
        self.save_evidence()
        return True

    def save_evidence(self) -> None:
        """Store the evidence not stored yet, dropping records older than the last
        MAX_EVIDENCE. A failed write (a full disk) keeps it in memory for the next call
        (the node calls again once its store recovers): losing evidence to a full disk is
        no reason to stop consensus, which the node pauses on its own writes anyway."""
        if not self._unsaved_evidence:
            return
        changes: dict[bytes, bytes | None] = {}
        seq = self._evidence_seq
        for record in self._unsaved_evidence:
            changes[schema.evidence_key(seq)] = msgpack.packb(list(record), use_bin_type=True)
            if seq >= MAX_EVIDENCE:
                changes[schema.evidence_key(seq - MAX_EVIDENCE)] = None
            seq += 1
        try:
            self.chain.store.write(changes)
        except StorageError:
            return
        self._evidence_seq = seq
        self._unsaved_evidence.clear()

    def note_block(self, block: Block, *, verified: bool) -> EvidenceRecord | None:
        """Check a block against the one its witness signed first for its slot.

        ``verified``: the block's signature was checked by the caller, so it may become the
        remembered first block of its (slot, witness). An unverified block is only
        compared (cheap unless it conflicts). A conflicting block is evidence only if both
        headers verify under the witness's signing key; it is recorded and logged once.
        """
        slot = self.chain.slot_of(block.timestamp)
        key = (slot, block.witness)
        first = self._signed_slots.get(key)
        if first is None:
            if verified:
                self._signed_slots[key] = _SignedSlot(
                    block.id, block.signature, encode([block.header(), block.signature]),
                    False)
                while len(self._signed_slots) > SIGNED_SLOTS_KEPT:
                    self._signed_slots.popitem(last=False)
            return None
        if first.block_id == block.id or first.reported:
            return None
        signing_key = self._signing_key_of(block.witness)
        if (signing_key is None or not block.verify_signature(self.chain_id, signing_key)
                or not verify(signing_key, first.signature,
                              TAG_BLOCK + self.chain_id + first.block_id)):
            return None  # not provably the same key holder: no evidence
        self._signed_slots[key] = first._replace(reported=True)
        record = EvidenceRecord("double_block", block.witness, slot, first.signed_header,
                                encode([block.header(), block.signature]))
        if not self._record(record):
            return None  # known from before a restart
        log.warning("equivocation", extra={"kv": {
            "witness": block.witness, "kind": "double_block", "slot": slot,
            "block_a": first.block_id, "block_b": block.id}})
        return record

    # --- events -------------------------------------------------------------------------

    def check_votes(self, block: Block) -> str | None:
        """Why the block's votes are invalid on this chain, or None (section 6)."""
        slot = self.chain.slot_of(block.timestamp)
        seen: set[bytes] = set()
        for v in block.votes:
            if v.hash in seen or self.chain.vote_included(v.hash):
                return "vote already included on this chain"
            seen.add(v.hash)
            if not v.source_slot < v.target_slot < slot:
                return "vote slots out of order"
            key = self.voters_for_slot(v.target_slot).get(v.witness)
            if key is None:
                return "vote by a non-voter"
            if not v.verify(self.chain_id, key):
                return "vote signature invalid"
        return None

    def on_block_committed(self, block: Block) -> None:
        """A block became the main chain's head."""
        parent = self.tree.get(block.previous_id)
        if parent is not None:
            self._record_production(block.witness, parent.slot,
                                    self.chain.slot_of(block.timestamp))
        self._add_to_tree(block)
        self.note_block(block, verified=True)  # the chain checked its signature
        self._note_retried(block.id)
        self.chain_view.on_block(block.id)
        self._count_included(block)
        self._decide_elections(block)
        self._save_cv_final()

    def add_side_block(self, block: Block) -> None:
        """A valid-looking block off the main chain: known for ancestry and fork choice.
        The caller has checked its witness signature."""
        self._add_to_tree(block)
        self.note_block(block, verified=True)
        self._note_retried(block.id)

    def _note_retried(self, block_id: bytes) -> None:
        """Votes that waited for this block are processed now: keep their evidence."""
        for outcome in self.node_view.on_block(block_id):
            self._note(outcome.evidence)

    def leaves(self) -> list[bytes]:
        """Tips of the block tree (candidates for the fork choice)."""
        parents = {info.parent for info in self.tree.values()}
        return [bid for bid in self.tree if bid not in parents]

    def forget_block(self, block_id: bytes) -> None:
        """Drop an invalid block and everything above it from the tree."""
        doomed = {block_id}
        for _ in range(len(self.tree)):
            more = {b for b, info in self.tree.items() if info.parent in doomed} - doomed
            if not more:
                break
            doomed |= more
        for b in doomed:
            self.tree.pop(b, None)
            self._votes_of.pop(b, None)

    def prune_tree(self) -> None:
        """Forget blocks that do not descend from the final block (they can never win).

        The root is the chain view's final block when it is lower than the node's final
        (it usually is, by a slot): the chain view still counts votes whose sources and
        targets lie between the two, and elections look its final block up here."""
        final = self.chain.final
        root_id, root = final.id, self.tree.get(final.id)
        cv_root = self.tree.get(self.chain_view.final.block_id)
        if root is None or (cv_root is not None and cv_root.height < root.height):
            root_id, root = self.chain_view.final.block_id, cv_root
        if root is None:
            return
        # one pass in height order: a block stays iff it is the root or its parent stayed
        keep = {root_id}
        for bid, info in sorted(self.tree.items(), key=lambda kv: kv[1].height):
            if info.height > root.height and info.parent in keep:
                keep.add(bid)
        self.tree = {bid: self.tree[bid] for bid in keep}
        self.tree[root_id] = BlockInfo(b"", root.height, root.slot)
        self._votes_of = {bid: v for bid, v in self._votes_of.items() if bid in keep}

    def switch(self, branch: list[Block]) -> list[Block]:
        """Make ``branch`` the main chain (``Chain.switch_to``) with the schedule and the
        chain view following every step; returns the popped blocks, newest first.

        Each pop rolls back the elections decided above the new head and recounts the
        chain view up to it; each commit counts the block's votes and decides its
        elections, as if it had been committed on its own. So every branch block is
        checked against the schedule of its own branch (a block of the other branch,
        after an election decided at another round there, is not refused), a refused
        switch restores the old branch under the old schedule, and the decision belongs
        to the block whose votes made the maintenance block final, not to the branch's
        tip: every node holding this chain computes the same schedule.

        On ChainError (old branch restored) or StorageError (the chain stopped where its
        store did) the engine already matches the chain; the caller reports the switch
        that happened with ``on_switch``."""
        chain = self.chain
        chain.on_pop.append(self._follow_pop)
        chain.on_commit.append(self._follow_commit)
        try:
            return chain.switch_to(branch)
        finally:
            chain.on_pop.remove(self._follow_pop)
            chain.on_commit.remove(self._follow_commit)
            self.save_schedule()

    def _follow_pop(self, _block: Block) -> None:
        cut = self.chain.head.slot
        if any(slot > cut for slot, _ in self.decisions):
            self.schedule.rollback(cut)
            self.decisions = [d for d in self.decisions if d[0] <= cut]
        self._recount_chain_view()

    def _follow_commit(self, block: Block, _ref: BlockRef) -> None:
        self._add_to_tree(block)
        self.chain_view.on_block(block.id)
        slot = self.chain.slot_of(block.timestamp)
        for v in block.votes:
            self.chain_view.add_vote(v, max_target_slot=slot, signature_checked=True)
        self._decide_elections(block, save=False)

    def _recount_chain_view(self) -> None:
        """The chain view from its base over the main chain's included votes."""
        base = self._cv_base()
        self.chain_view = self._new_tracker(base)
        for h in range(base.height + 1, self.chain.head.height + 1):
            bid = self.chain.block_id_at(h)
            if bid is None:
                continue
            known = self._votes_of.get(bid)
            if known is None:  # not in the tree (below its root): read from the store
                stored = self.chain.get_block(bid)
                if stored is None:
                    continue
                known = (self.chain.slot_of(stored.timestamp), stored.votes)
            slot, votes = known
            for v in votes:
                self.chain_view.add_vote(v, max_target_slot=slot, signature_checked=True)

    def on_switch(self, popped: list[Block], applied: list[Block]) -> None:
        """After ``switch``: popped blocks left the main chain (their votes are unincluded
        again), applied ones joined it (their votes count in the node view too, as
        on_block_committed lets them: else a node that switched branches never learns
        the justifications they carry)."""
        for block in popped:
            for v in block.votes:
                self.vote_pool[v.hash] = v
        for block in applied:
            for v in block.votes:
                self.vote_pool.pop(v.hash, None)
                self._note(self.node_view.add_vote(v, signature_checked=True).evidence)
        self._save_cv_final()

    def add_vote(self, vote: Vote, current_slot: int) -> tuple[str, list[Evidence]]:
        """A gossiped (or own) vote: count it in the node view and keep it for inclusion."""
        if self.chain.vote_included(vote.hash):
            return "duplicate", []
        out = self.node_view.add_vote(vote, max_target_slot=current_slot)
        self._note(out.evidence)
        if out.accepted or out.status == "pending":
            self.vote_pool[vote.hash] = vote
            if len(self.vote_pool) > 4 * MAX_VOTES_PER_BLOCK:
                oldest = min(self.vote_pool.values(), key=lambda x: x.target_slot)
                del self.vote_pool[oldest.hash]
        return out.status, out.evidence

    def votes_to_include(self, block_slot: int) -> list[Vote]:
        """Known votes not yet on the chain, valid in a block at block_slot."""
        final_slot = self.chain.final.slot
        out = []
        voter_sets: dict[int, set[bytes]] = {}
        for h, v in list(self.vote_pool.items()):
            if v.target_slot <= final_slot and v.target_slot < self.chain_view.final.slot:
                del self.vote_pool[h]  # stale for both views
                continue
            if v.target_slot >= block_slot or self.chain.vote_included(h):
                continue
            voters = voter_sets.get(v.target_slot)
            if voters is None:  # one lookup per target slot, not per vote
                voters = voter_sets[v.target_slot] = set(self.schedule.voters_at(v.target_slot))
            if v.witness not in voters:
                continue
            out.append(v)
            if len(out) >= MAX_VOTES_PER_BLOCK:
                break
        out.sort(key=lambda x: (x.target_slot, x.hash))
        return out

    def final_block(self) -> Checkpoint:
        """The node view's final checkpoint (never below the chain view's)."""
        a, b = self.node_view.final, self.chain_view.final
        return a if a.slot >= b.slot else b

    def final_votes(self, block_id: bytes) -> list[bytes]:
        """The encoded votes that made ``block_id`` final, from whichever view saw it
        (Chain.set_final persists them: a snapshot's proof of finality); [] if unknown."""
        for view in (self.node_view, self.chain_view):
            if view.final.block_id == block_id:
                votes = view.final_votes()
                if votes:
                    return [v.encode() for v in votes]
        return []

    def make_vote(self, key: PrivateKey, guard: VoterGuard, slot: int) -> Vote | None:
        """The honest vote for ``slot`` on the current head, if this key may cast it."""
        if slot < 1:  # slot 0 is genesis: no voters (a node started in its first half)
            return None
        if key.address not in self.voters_for_slot(slot):
            return None
        head = self.chain.head
        if head.slot > slot:
            return None
        try:
            source = self.node_view.highest_justified_on(head.id)
        except ValueError:
            return None
        target = Checkpoint(head.id, slot)
        if not guard.may_vote(source, target):
            return None
        return Vote.sign(key, self.chain_id, source.block_id, source.slot, head.id, slot)

    # --- elections --------------------------------------------------------------------

    def _decide_elections(self, block: Block, save: bool = True) -> None:
        """Schedule an elected set once its maintenance block is final by the chain view."""
        elected = self._elected()
        if elected is None:
            return
        height, active = elected
        if height <= self.decided_maintenance:
            return
        cv_final = self.chain_view.final
        final_info = self.tree.get(cv_final.block_id)
        if final_info is None or final_info.height < height:
            return
        slot = self.chain.slot_of(block.timestamp)
        first = self.schedule.next_round_start(slot)
        if active and tuple(sorted(active)) != self.schedule.epochs[-1].active:
            self.schedule.add_epoch(first, active, decided_at=slot)
            log.info("elected", extra={"kv": {"maintenance_height": height,
                                              "from_slot": first, "witnesses": len(active)}})
        self.decisions.append((slot, height))
        if save:
            self.save_schedule()
