"""What one pending tx did to the mempool's ledger view, so a new head can keep it unapplied.

The mempool (consensus/mempool.py) re-checks its pool on every new head. Re-applying every
pending tx cost about a third of a node's ledger time under load, though most txs touch
nothing the new block touched. ``PendingRecorder`` records, while a tx applies on the
mempool's view, the state keys it read and the values it left in the keys it wrote; on the
next head a tx is laid back (its writes put into the new overlay, no handler run) when all
of these hold, and re-applied otherwise:

- its reads meet none of the ``dirty`` keys: what the new block(s) changed, what the old
  and the new pending block's ``begin_block`` wrote (claims closed, standing pledges,
  pruned ids), and what the txs before it in the pool wrote differently this time
  (re-applied with other results, dropped, evicted, or included in the block: the mempool
  keeps that set);
- its handler does not read the block time (``TIME_FREE``: karma decays, claims open and
  close by it), or the pending block's time is the one it was recorded at;
- its envelope's time and TaPoS rules hold on the new context (expiration after the block
  time and not too far past it; the referenced block still on the chain); the duplicate
  rule is a read of the tx's id key, so a block that included the same id makes it dirty;
- it iterated no committed range (no handler does today; such a tx is always re-applied).

Two keys every tx writes are counters, not reads: the pending view's fee sink (the
mempool's context credits fees to ``bytes(20)``, which no one can sign for) and the
per-expiration-second id count (``X`` + u64). Had they been reads, every tx would depend on
the one before it. Their effect is recorded as a delta and added on laying, which is what
re-applying would have done. A tx wrongly kept is no consensus risk (block building and the
block path re-apply every tx); tests/test_mempool_keep.py checks the kept set and the
overlay against a full re-check over random pools and blocks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from consensus.app import BlockContext
from consensus.tx import SignedTx
from muxernode import ops
from muxernode.ledger import APPROVALS, BAL, Ledger, account_key, u64
from muxernode.state import copy_record

__all__ = ["SINK", "TIME_FREE", "Effects", "PendingRecorder"]

SINK = bytes(20)  # the producer of the mempool's pending block (node._next_context)
_SINK_KEY = account_key(SINK)
_NEW_ACCOUNT: tuple[int, int, list[Any], list[Any]] = (0, 0, [], [])  # Ledger._credit's new

# ops whose handlers never read the block time ``t`` (checked against the ledger's source
# by tests/test_mempool_keep.py) and whose effects are all in the state (Comment also
# appends to the ledger's block comment list, so it is always re-applied)
TIME_FREE: frozenset[type] = frozenset({
    ops.Transfer, ops.RegisterWitness, ops.VoteWitness, ops.CreateAsset, ops.IssueAsset,
    ops.TransferAsset, ops.SetProxy, ops.WithdrawClaim, ops.AmendClaim,
})
_ALWAYS: frozenset[type] = frozenset({ops.Comment})


@dataclass(slots=True)
class Effects:
    reads: set[bytes]  # keys read (counters excepted); a touched key counts as read
    writes: dict[bytes, Any]  # key -> the value the tx left (shared with the state: see
    # State.share; a later tx that touches it works on a copy)
    deltas: tuple[tuple[bytes, int], ...]  # counter key -> what the tx added
    t: int  # the pending block time it was applied at
    time_free: bool
    keepable: bool  # False: always re-apply (iterated a range, Comment, sent by the sink)


class PendingRecorder:
    """The mempool's ``Recorder`` over the pending view's Ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.state = ledger.state
        self.max_lifetime = ledger.params.max_tx_lifetime_s
        self._count_key = b""
        self._before: tuple[Any, Any] = (None, None)

    @staticmethod
    def _sink_shape(acct: Any) -> tuple[Any, ...]:
        """The sink account's balance, then what must not change for its change to be a
        pure increment (only a tx the sink signs could change those)."""
        a: Any = _NEW_ACCOUNT if acct is None else acct
        return a[BAL], a[1], len(a[APPROVALS]), len(a[3])

    def start(self, tx: SignedTx) -> None:
        st = self.state
        self._count_key = count_key = b"X" + u64(tx.expiration)
        self._before = (self._sink_shape(st.peek(_SINK_KEY)), st.peek(count_key))
        st.record()

    def cancel(self) -> None:
        self.state.recorded()

    def stop(self, tx: SignedTx, ctx: BlockContext) -> Effects | None:
        rec = self.state.recorded()
        if rec is None:
            return None
        reads, written, iterated = rec
        st = self.state
        deltas: list[tuple[bytes, int]] = []
        sink_before, count_before = self._before
        count_key = self._count_key
        if count_key in written:
            now = st.peek(count_key)
            if type(now) is int and (count_before is None or type(count_before) is int):
                deltas.append((count_key, now - (count_before or 0)))
                written.discard(count_key)
                reads.discard(count_key)
        if _SINK_KEY in written and tx.sender != SINK:
            now = st.peek(_SINK_KEY)
            # only the balance moved (fees, a transfer to it): a pure increment
            if type(now) is list and not now[APPROVALS]:
                shape = self._sink_shape(now)
                if shape[1:] == sink_before[1:]:
                    deltas.append((_SINK_KEY, shape[0] - sink_before[0]))
                    written.discard(_SINK_KEY)
                    reads.discard(_SINK_KEY)
        kind = type(ops.op_of(tx))
        st.share(written)
        return Effects(
            reads=reads,
            writes={k: st.peek(k) for k in written},
            deltas=tuple(deltas),
            t=ctx.timestamp,
            time_free=kind in TIME_FREE,
            keepable=not iterated and kind not in _ALWAYS and tx.sender != SINK,
        )

    def opened(self) -> set[bytes]:
        """The keys the pending block's begin_block wrote."""
        return self.state.touched()

    def keep(self, tx: SignedTx, eff: Effects, ctx: BlockContext, dirty: set[bytes]) -> bool:
        """Lay ``eff`` into the open pending block if the tx needs no re-apply (the rules
        in the module docstring); False (nothing laid) if it must be re-applied."""
        t = ctx.timestamp
        if not eff.keepable or (not eff.time_free and eff.t != t):
            return False
        # the envelope's rules that depend on the context rather than on state
        # (Ledger.check_envelope; the fee rule is fixed, the duplicate rule is a read)
        if not t < tx.expiration <= t + self.max_lifetime:
            return False
        if ctx.tapos(tx.ref_block_num) != tx.ref_block_prefix:
            return False
        if not dirty.isdisjoint(eff.reads):
            return False
        st = self.state
        for key, _delta in eff.deltas:
            if key == _SINK_KEY:
                sink = st.peek(key)
                if sink is not None and sink[APPROVALS]:
                    return False  # its stake counts in witness votes: not an increment
        for key, value in eff.writes.items():
            st.lay(key, value)
        for key, delta in eff.deltas:
            if key == _SINK_KEY:
                acct = st.touch(key)
                if acct is None:
                    acct = copy_record(list(_NEW_ACCOUNT))
                    st.put(key, acct)
                acct[BAL] += delta
            else:
                st.put(key, (st.peek(key) or 0) + delta)
        return True

    @staticmethod
    def differs(old: Effects | None, new: Effects | None) -> Iterable[bytes] | None:
        """The keys whose values after the tx may differ between two applications of it
        (None: unknown, everything after it must be re-applied). Every write is recorded,
        so only a missing record is unknown; counters do not count (nothing reads them)."""
        if old is None or new is None:
            return None
        if old.writes == new.writes:
            return ()
        return itertools.chain(old.writes, new.writes)

    @staticmethod
    def written(eff: Effects | None) -> Iterable[bytes] | None:
        """The keys a tx that left wrote (None: unknown)."""
        return None if eff is None else eff.writes.keys()
