"""Casper FFG finality over DPoS slots, fork choice and the honest voter's guard (section 7).

Rules of the tracker (``FinalityTracker``):

- A checkpoint is ``(block_id, slot)`` with the block at or before that slot. Genesis
  ``(chain_id, 0)`` is justified and final.
- A vote links source -> target. It counts iff: its witness is a voter of the target slot
  (the active set of the round containing it, from ``voters_for_slot``), the signature is
  by that witness's signing key, ``source_slot < target_slot``, the target block is known
  and its slot is <= target_slot, the source block is known, its slot is <= source_slot
  and it is an ancestor-or-self of the target block.
- Links are counted by distinct voters. Supermajority = floor(2n/3) + 1 where n is the
  size of the target slot's voter set.
- T is justified when a supermajority link S -> T exists with S justified.
  A justified S is final when a supermajority link S -> T exists with
  T.slot == S.slot + 1; a final block's ancestors are final. ``final`` is the highest
  final checkpoint; finality never moves to a block that does not descend from it.
- Slashable pairs (same witness): *double* = two different votes with one target slot;
  *surround* = s1 < s2 and t2 < t1. Detecting one returns an ``Evidence`` and keeps both
  votes (both still count: FFG's guarantee is that conflicting finality needs >= 1/3 of
  the voters to leave such evidence, not that it cannot happen).

Implementation choices (documented for the node integrator):

- Votes whose target or source block is unknown wait in a bounded FIFO pool
  (``max_pending``, signature already checked) and are retried by ``on_block(block_id)``.
  Slashing checks run when a vote is processed, not while it waits.
- Bounded memory: when finality moves to F, everything with target slot <= F.slot is
  dropped, as are justified checkpoints and links that do not descend from F.
  Afterwards a vote with target slot <= F.slot is ``stale`` (ignored, not even checked);
  a vote whose source is below F (``stale_source``) or whose target does not descend from
  F (``conflicts_final``) is kept for slashing checks but never counted. Ignoring those
  links is safe (finality from a subset of the votes is still accountable) and can only
  cost liveness for voters that lag behind finality. One witness keeps at most two votes
  per target slot; a third is ``excess`` (dropped, evidence still returned).
- The outcome depends only on the sequence of calls, never on timing or hash order, so
  two nodes that feed the same votes of the same chain in the same order agree: that is
  how finality "by the votes included in that chain" (section 5) is recomputed. For that
  *chain view*, call ``add_vote`` for each vote of each block in chain order with
  ``max_target_slot`` = the including block's slot (so no vote is judged against a voter
  set that a later epoch could still change); the callbacks must know every block the
  node knows, side forks included (a vote for a side-fork block can finalize a common
  ancestor). A ``pending`` outcome names the ``missing`` block: fetch it before
  accepting the including block, or nodes that lack it would count differently.
  For the faster *gossip view*, pass the current slot as ``max_target_slot`` and call
  ``on_block`` whenever a block becomes known.
- "Not already included on this chain" (section 6) is the chain's index of vote hashes,
  not ``duplicate``: the tracker forgets votes below the final slot.
- Restart: build the tracker with the last final checkpoint in place of genesis (it is
  taken as justified and final) and replay the votes of the blocks above its slot.
- Statuses in ``INVALID`` mean the vote is wrong in itself or against this chain's
  voter sets (penalise the sender); the others are benign. ``not_voter`` can also come
  from the known limit of section 7 (forks that switched voter sets at different rounds).

The tracker reads no clock and does no I/O; the three callbacks are the node's view of
the block tree and of the schedule. ``is_ancestor(a, b)`` is ancestor-or-self and must
return False for unknown blocks; ``slot_of_block`` returns None for unknown blocks and 0
for the genesis id.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from consensus.codec import CodecError, decode, encode
from consensus.vote import Vote, VoteError, decode_vote

__all__ = [
    "INVALID",
    "Checkpoint",
    "Evidence",
    "FinalityTracker",
    "HeadInfo",
    "VoteOutcome",
    "VoterGuard",
    "choose_head",
    "supermajority",
]

# Statuses of VoteOutcome.
ACCEPTED = "accepted"  # counted towards its link
PENDING = "pending"  # waits for its source or target block
DUPLICATE = "duplicate"  # this exact vote was seen already
STALE = "stale"  # target slot at or below the final slot: ignored
TOO_EARLY = "too_early"  # target slot above max_target_slot: ignored
STALE_SOURCE = "stale_source"  # source below the final checkpoint: kept, not counted
CONFLICTS_FINAL = "conflicts_final"  # target does not descend from final: kept, not counted
EXCESS = "excess"  # a third vote by one witness for one target slot: dropped
NOT_VOTER = "not_voter"
BAD_SIGNATURE = "bad_signature"
BAD_SPAN = "bad_span"
BAD_TARGET = "bad_target"  # target block later than the target slot
BAD_SOURCE = "bad_source"  # source block later than its slot, or not an ancestor of target

INVALID = frozenset({NOT_VOTER, BAD_SIGNATURE, BAD_SPAN, BAD_TARGET, BAD_SOURCE})
"""Statuses for a vote that is invalid in itself or for this chain."""

VOTES_PER_TARGET_SLOT = 2


def supermajority(n: int) -> int:
    """floor(2n/3) + 1: the distinct voters a link needs among n voters."""
    return 2 * n // 3 + 1


class Checkpoint(NamedTuple):
    """(block_id, slot): the chain ending at block_id, as of slot."""

    block_id: bytes
    slot: int


@dataclass(frozen=True, slots=True)
class Evidence:
    """Two votes by one witness that break a slashing rule; ``vote_a`` was seen first."""

    vote_a: Vote
    vote_b: Vote
    kind: Literal["double", "surround"]

    def obj(self) -> list[Any]:
        """``[kind, vote_a, vote_b]`` as an array (for gossip or storage)."""
        return [self.kind, self.vote_a.obj(), self.vote_b.obj()]

    def is_valid(self, chain_id: bytes, signing_key: bytes) -> bool:
        """Both votes by one witness, both signed by ``signing_key``, and a rule broken."""
        a, b = self.vote_a, self.vote_b
        return (
            a.witness == b.witness
            and a != b
            and _conflict(a, b) == self.kind
            and a.verify(chain_id, signing_key)
            and b.verify(chain_id, signing_key)
        )


def _conflict(a: Vote, b: Vote) -> Literal["double", "surround"] | None:
    if a.target_slot == b.target_slot:
        return "double" if a != b else None
    if (a.source_slot < b.source_slot and b.target_slot < a.target_slot) or (
        b.source_slot < a.source_slot and a.target_slot < b.target_slot
    ):
        return "surround"
    return None


@dataclass(slots=True)
class VoteOutcome:
    """What one vote did: its status and whatever became justified, final or evident."""

    vote: Vote
    status: str
    justified: list[Checkpoint] = field(default_factory=list)
    finalized: list[Checkpoint] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    missing: bytes | None = None  # PENDING: the block id the vote waits for

    @property
    def accepted(self) -> bool:
        """True iff the vote was counted."""
        return self.status == ACCEPTED

    @property
    def invalid(self) -> bool:
        """True iff the vote is invalid in itself or for this chain."""
        return self.status in INVALID


@dataclass(slots=True)
class _Link:
    threshold: int
    voters: dict[bytes, None] = field(default_factory=dict)


class FinalityTracker:
    """Counts votes into justified and final checkpoints (sans-IO)."""

    def __init__(
        self,
        chain_id: bytes,
        genesis_checkpoint: Checkpoint,
        voters_for_slot: Callable[[int], Mapping[bytes, bytes]],
        is_ancestor: Callable[[bytes, bytes], bool],
        slot_of_block: Callable[[bytes], int | None],
        *,
        max_pending: int = 4096,
    ) -> None:
        self.chain_id = bytes(chain_id)
        self._voters_for_slot = voters_for_slot
        self._is_ancestor = is_ancestor
        self._slot_of_block = slot_of_block
        self.max_pending = max_pending
        self._final = Checkpoint(*genesis_checkpoint)
        self._justified: dict[Checkpoint, None] = {self._final: None}
        self._links: dict[tuple[Checkpoint, Checkpoint], _Link] = {}
        self._links_from: dict[Checkpoint, dict[Checkpoint, None]] = {}
        # witness -> target slot -> its votes (at most VOTES_PER_TARGET_SLOT)
        self._by_witness: dict[bytes, dict[int, list[Vote]]] = {}
        self._seen: set[bytes] = set()  # hashes of votes held in _by_witness
        # vote hash -> (vote, id of the block it waits for), oldest first
        self._pending: OrderedDict[bytes, tuple[Vote, bytes]] = OrderedDict()
        self._waiting: dict[bytes, dict[bytes, None]] = {}  # missing block id -> vote hashes
        self.evidence: list[Evidence] = []
        self.max_evidence = 1024
        # the link (final, its child slot's checkpoint) that made ``final`` final: its
        # votes are the proof a snapshot of the final state carries (final_votes)
        self._final_link: tuple[Checkpoint, Checkpoint] | None = None

    # --- queries --------------------------------------------------------------------------

    @property
    def final(self) -> Checkpoint:
        """The highest final checkpoint."""
        return self._final

    def final_votes(self) -> list[Vote]:
        """The votes of the supermajority link that made the final checkpoint final, in
        witness order; [] when this tracker did not see it happen (genesis, a restart)."""
        if self._final_link is None or self._final_link[0] != self._final:
            return []
        s, t = self._final_link
        out = [v for w in sorted(self._by_witness)
               for v in self._by_witness[w].get(t.slot, ())
               if v.source_id == s.block_id and v.source_slot == s.slot
               and v.target_id == t.block_id]
        return out

    @property
    def justified(self) -> tuple[Checkpoint, ...]:
        """The justified checkpoints still tracked (the final one and above it)."""
        return tuple(self._justified)

    def is_justified(self, checkpoint: Checkpoint) -> bool:
        """True iff ``checkpoint`` is justified and still tracked."""
        return checkpoint in self._justified

    @property
    def pending_count(self) -> int:
        """Votes waiting for a block."""
        return len(self._pending)

    def link_voters(self, source: Checkpoint, target: Checkpoint) -> int:
        """How many distinct voters voted source -> target (counted links only)."""
        link = self._links.get((source, target))
        return 0 if link is None else len(link.voters)

    def highest_justified_on(self, head_id: bytes) -> Checkpoint:
        """The highest-slot justified checkpoint whose block is an ancestor-or-self of head.

        Raises ValueError if ``head_id`` does not descend from the final block.
        """
        best: Checkpoint | None = None
        for cp in self._justified:
            if best is not None and cp.slot <= best.slot:
                continue
            if self._is_ancestor(cp.block_id, head_id):
                best = cp
        if best is None:
            raise ValueError("head does not descend from the final block")
        return best

    def is_final_block(self, block_id: bytes) -> bool:
        """True iff ``block_id`` is the final block or one of its ancestors."""
        return self._is_ancestor(block_id, self._final.block_id)

    def descends_from_final(self, block_id: bytes) -> bool:
        """True iff ``block_id`` is the final block or a descendant of it."""
        return self._is_ancestor(self._final.block_id, block_id)

    # --- events ---------------------------------------------------------------------------

    def add_vote(
        self,
        vote: Vote,
        *,
        max_target_slot: int | None = None,
        signature_checked: bool = False,
    ) -> VoteOutcome:
        """Validate and count one vote.

        ``max_target_slot``: refuse (``too_early``) a vote for a later slot.
        ``signature_checked``: the caller verified the signature with the key that
        ``voters_for_slot(vote.target_slot)[vote.witness]`` gives (e.g. on a thread pool).
        """
        if vote.source_slot >= vote.target_slot:
            return VoteOutcome(vote, BAD_SPAN)
        if max_target_slot is not None and vote.target_slot > max_target_slot:
            return VoteOutcome(vote, TOO_EARLY)
        if vote.target_slot <= self._final.slot:
            return VoteOutcome(vote, STALE)
        if vote.hash in self._seen or vote.hash in self._pending:
            return VoteOutcome(vote, DUPLICATE)
        voters = self._voters_for_slot(vote.target_slot)
        key = voters.get(vote.witness)
        if key is None:
            return VoteOutcome(vote, NOT_VOTER)
        if not signature_checked and not vote.verify(self.chain_id, key):
            return VoteOutcome(vote, BAD_SIGNATURE)
        return self._process(vote, len(voters))

    def on_block(self, block_id: bytes) -> list[VoteOutcome]:
        """A block became known: retry the votes that waited for it."""
        outcomes: list[VoteOutcome] = []
        retry = [self._pending.pop(h)[0] for h in self._waiting.pop(block_id, {})]
        for vote in retry:
            if vote.target_slot <= self._final.slot:
                outcomes.append(VoteOutcome(vote, STALE))
                continue
            n = len(self._voters_for_slot(vote.target_slot))
            outcomes.append(self._process(vote, n))
        return outcomes

    # --- internals ------------------------------------------------------------------------

    def _process(self, vote: Vote, n_voters: int) -> VoteOutcome:
        """Block checks, slashing checks, then counting; signature already verified."""
        target_block_slot = self._slot_of_block(vote.target_id)
        source_block_slot = self._slot_of_block(vote.source_id)
        if target_block_slot is not None and target_block_slot > vote.target_slot:
            return VoteOutcome(vote, BAD_TARGET)
        if source_block_slot is not None and source_block_slot > vote.source_slot:
            return VoteOutcome(vote, BAD_SOURCE)
        if target_block_slot is None or source_block_slot is None:
            missing = vote.target_id if target_block_slot is None else vote.source_id
            self._hold(vote, missing)
            return VoteOutcome(vote, PENDING, missing=missing)
        if not self._is_ancestor(vote.source_id, vote.target_id):
            return VoteOutcome(vote, BAD_SOURCE)

        outcome = VoteOutcome(vote, ACCEPTED)
        mine = self._by_witness.setdefault(vote.witness, {})
        for slot_votes in mine.values():
            for other in slot_votes:
                kind = _conflict(other, vote)
                if kind is not None:
                    outcome.evidence.append(Evidence(other, vote, kind))
                    break
        if len(self.evidence) < self.max_evidence:
            self.evidence.extend(outcome.evidence[: self.max_evidence - len(self.evidence)])
        same_slot = mine.setdefault(vote.target_slot, [])
        if len(same_slot) >= VOTES_PER_TARGET_SLOT:
            outcome.status = EXCESS
            return outcome
        same_slot.append(vote)
        self._seen.add(vote.hash)

        final = self._final
        source = Checkpoint(vote.source_id, vote.source_slot)
        target = Checkpoint(vote.target_id, vote.target_slot)
        if source.slot < final.slot or (source.slot == final.slot and source != final):
            outcome.status = STALE_SOURCE
            return outcome
        if source != final and not self._is_ancestor(final.block_id, source.block_id):
            outcome.status = CONFLICTS_FINAL
            return outcome

        link = self._links.get((source, target))
        if link is None:
            link = _Link(threshold=supermajority(n_voters))
            self._links[(source, target)] = link
            self._links_from.setdefault(source, {})[target] = None
        link.voters[vote.witness] = None
        if len(link.voters) >= link.threshold and source in self._justified:
            self._settle(source, target, outcome)
        return outcome

    def _hold(self, vote: Vote, missing: bytes) -> None:
        self._pending[vote.hash] = (vote, missing)
        self._waiting.setdefault(missing, {})[vote.hash] = None
        while len(self._pending) > self.max_pending:
            self._unhold(next(iter(self._pending)))

    def _unhold(self, h: bytes) -> None:
        _vote, missing = self._pending.pop(h)
        waiting = self._waiting[missing]
        del waiting[h]
        if not waiting:
            del self._waiting[missing]

    def _settle(self, source: Checkpoint, target: Checkpoint, outcome: VoteOutcome) -> None:
        """Apply the justification and finality rules from one supermajority link on."""
        work: deque[tuple[Checkpoint, Checkpoint]] = deque([(source, target)])
        finalized = False
        while work:
            s, t = work.popleft()
            link = self._links.get((s, t))
            if link is None or len(link.voters) < link.threshold or s not in self._justified:
                continue
            if (
                t not in self._justified
                and t.slot > self._final.slot
                and self._is_ancestor(self._final.block_id, t.block_id)
            ):
                self._justified[t] = None
                outcome.justified.append(t)
                work.extend((t, u) for u in self._links_from.get(t, {}))
            if (
                t.slot == s.slot + 1
                and s.slot > self._final.slot
                and self._is_ancestor(self._final.block_id, s.block_id)
            ):
                self._final = s
                self._final_link = (s, t)
                outcome.finalized.append(s)
                finalized = True
        if finalized:
            self._prune()

    def _prune(self) -> None:
        """Forget everything that can no longer matter below or beside the final block."""
        final = self._final
        memo: dict[bytes, bool] = {}

        def on_final_chain(cp: Checkpoint) -> bool:
            if cp == final:
                return True
            if cp.slot <= final.slot:
                return False
            hit = memo.get(cp.block_id)
            if hit is None:
                hit = memo[cp.block_id] = self._is_ancestor(final.block_id, cp.block_id)
            return hit

        self._justified = {cp: None for cp in self._justified if on_final_chain(cp)}
        self._links = {
            (s, t): link
            for (s, t), link in self._links.items()
            if t.slot > final.slot and on_final_chain(s)
        }
        links_from: dict[Checkpoint, dict[Checkpoint, None]] = {}
        for s, t in self._links:
            links_from.setdefault(s, {})[t] = None
        self._links_from = links_from
        self._seen.clear()
        for witness in list(self._by_witness):
            slots = {ts: vs for ts, vs in self._by_witness[witness].items() if ts > final.slot}
            if slots:
                self._by_witness[witness] = slots
                for vs in slots.values():
                    self._seen.update(v.hash for v in vs)
            else:
                del self._by_witness[witness]
        for h in [h for h, (v, _b) in self._pending.items() if v.target_slot <= final.slot]:
            self._unhold(h)


# --- fork choice ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeadInfo:
    """A candidate head for fork choice."""

    block_id: bytes
    height: int
    justified_slot: int  # slot of the highest justified checkpoint on its chain
    seen_order: int  # lower = seen earlier
    descends_from_final: bool


def choose_head(heads: Iterable[HeadInfo]) -> HeadInfo:
    """Fork choice (section 7): never leave the last final block; prefer the higher
    justified slot, then the greater height, then the head seen first.

    Raises ValueError if no candidate descends from the final block.
    """
    best: HeadInfo | None = None
    best_key: tuple[int, int, int] | None = None
    for h in heads:
        if not h.descends_from_final:
            continue
        key = (h.justified_slot, h.height, -h.seen_order)
        if best_key is None or key > best_key:
            best, best_key = h, key
    if best is None:
        raise ValueError("no candidate head descends from the final block")
    return best


# --- the honest voter -----------------------------------------------------------------------


class VoterGuard:
    """The honest voter's memory of its own votes (section 7).

    ``may_vote`` refuses a vote with a target slot it already voted for, a vote whose
    [source_slot, target_slot] surrounds or is surrounded by one of its own, and a vote
    with source_slot >= target_slot. It remembers the last ``keep`` votes exactly; for
    older ones it keeps two watermarks (highest target slot, highest source slot) and
    refuses conservatively any target slot <= that target watermark and any source slot
    < that source watermark. Persist ``dump()`` after ``record`` and before sending.
    """

    __slots__ = ("_dropped_source", "_dropped_target", "_votes", "keep")

    VERSION = 1

    def __init__(self, keep: int = 256) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.keep = keep
        self._votes: list[Vote] = []
        self._dropped_target = -1
        self._dropped_source = -1

    @property
    def votes(self) -> tuple[Vote, ...]:
        """The remembered votes, oldest first."""
        return tuple(self._votes)

    @property
    def last_vote(self) -> Vote | None:
        """The last vote recorded (to re-broadcast after a restart)."""
        return self._votes[-1] if self._votes else None

    def may_vote(self, source: Checkpoint, target: Checkpoint) -> bool:
        """True iff voting source -> target breaks neither slashing rule."""
        s, t = source.slot, target.slot
        if s >= t or t <= self._dropped_target or s < self._dropped_source:
            return False
        for v in self._votes:
            if t == v.target_slot:
                return False
            if (v.source_slot < s and t < v.target_slot) or (
                s < v.source_slot and v.target_slot < t
            ):
                return False
        return True

    def record(self, vote: Vote) -> None:
        """Remember a vote about to be sent; raises ValueError if it breaks a rule."""
        if not self.may_vote(
            Checkpoint(vote.source_id, vote.source_slot),
            Checkpoint(vote.target_id, vote.target_slot),
        ):
            raise ValueError(f"{vote!r} would be a slashable vote")
        self._votes.append(vote)
        while len(self._votes) > self.keep:
            old = self._votes.pop(0)
            self._dropped_target = max(self._dropped_target, old.target_slot)
            self._dropped_source = max(self._dropped_source, old.source_slot)

    def dump(self) -> bytes:
        """Canonical bytes of the guard: [1, keep, dropped_target, dropped_source, votes]."""
        return encode(
            [
                self.VERSION,
                self.keep,
                self._dropped_target,
                self._dropped_source,
                [v.obj() for v in self._votes],
            ]
        )

    @classmethod
    def load(cls, data: bytes) -> VoterGuard:
        """Restore a guard from ``dump()``; raises ValueError on anything malformed."""
        try:
            obj = decode(data)
        except CodecError as exc:
            raise ValueError(f"bad voter guard record: {exc}") from None
        if type(obj) is not list or len(obj) != 5 or obj[0] != cls.VERSION:
            raise ValueError("bad voter guard record: shape or version")
        _, keep, dropped_target, dropped_source, votes = obj
        for x in (keep, dropped_target, dropped_source):
            if type(x) is not int or x < -1:
                raise ValueError("bad voter guard record: watermarks")
        if keep < 1 or type(votes) is not list or len(votes) > keep:
            raise ValueError("bad voter guard record: votes")
        guard = cls(keep)
        guard._dropped_target = dropped_target
        guard._dropped_source = dropped_source
        try:
            for v in votes:
                guard.record(decode_vote(v))
        except VoteError as exc:
            raise ValueError(f"bad voter guard record: {exc}") from None
        return guard
