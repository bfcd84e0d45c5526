"""The mempool: admitted txs, checked against head state plus the pending txs before them.

- A tx reaches the mempool with its signature already verified (once, on a worker
  thread); nothing here verifies again, and neither does block building or applying.
- Admission applies the tx to a pending view of the application (its own instance over
  the same store) inside an open, never-committed block: so a tx that spends what an
  earlier pending tx received is admitted, and one that double-spends is refused.
- Caps: at most ``max_count`` txs and ``max_bytes`` bytes. When full, a tx with a higher
  fee rate than the cheapest pending ones evicts them (the view keeps their effects until
  the next head re-checks the pool, which drops txs that depended on them); otherwise
  ``mempool_full``.
- On a new head, txs included in it leave; the rest are re-checked in pool order on the
  new head, and those no longer valid (expired, spent, duplicate) are dropped. Txs of
  popped blocks are offered again the same way. The re-check may be split: the first
  ``limit`` txs at once, the rest by ``recheck`` calls (a node runs them between its other
  work). Txs admitted meanwhile are checked on the view as it stands; of two conflicting
  txs the one checked first stays, and the pool's order becomes the order the view
  applied them in (a tx re-checked after a newer admission moves behind it), which is
  the order block building offers them in. A tx waiting for its re-check is in the pool
  (known, served to peers, offered to block building, which applies every candidate).
- Re-checking need not re-apply. With a ``Recorder`` (muxernode/pending.py) the pool keeps
  what each tx read and wrote when it applied; on a new head ``reset_view`` says which
  state keys the head changed, and a tx whose reads meet none of the dirty keys (those,
  the pending block's begin writes, and the writes of txs before it that left or came
  out differently) is laid back from its record instead (the recorder's rules: block
  time, TaPoS and expiration). When the changed keys are unknown (a fork switch, a view
  reset, a round cut short by a newer head after admissions reordered it), every tx is
  re-applied, as without a recorder.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from consensus.app import Application, BlockContext
from consensus.errors import Rejected
from consensus.tx import SignedTx

__all__ = ["KEEP_COST", "Mempool", "Recorder", "fee_rate"]

# a re-check's ``limit`` counts re-applied txs; laying one back from its record costs
# about an eighth of re-applying it (bench.pipeline's mempool stage)
KEEP_COST = 8


class Recorder(Protocol):
    """Records what a tx did to the pending view, and lays it back (muxernode/pending.py).
    Effects are opaque here; a ``None`` effect means unknown."""

    def start(self, tx: SignedTx) -> None: ...

    def cancel(self) -> None: ...

    def stop(self, tx: SignedTx, ctx: BlockContext) -> Any: ...

    def opened(self) -> set[bytes]:
        """The keys the open block's begin_block wrote."""
        ...

    def keep(self, tx: SignedTx, effects: Any, ctx: BlockContext, dirty: set[bytes]) -> bool:
        """Lay the effects into the open block if the tx needs no re-apply."""
        ...

    def differs(self, old: Any, new: Any) -> Iterable[bytes] | None: ...

    def written(self, effects: Any) -> Iterable[bytes] | None: ...


def fee_rate(tx: SignedTx) -> int:
    """Fee per byte, scaled to an integer (eviction order)."""
    return tx.fee * 1_000_000 // len(tx.raw)


class Mempool:
    def __init__(
        self,
        view: Application,
        context: Callable[[], BlockContext],
        reset_view: Callable[[], set[bytes] | None],
        max_count: int = 50_000,
        max_bytes: int = 64 * 1024 * 1024,
        recorder: Recorder | None = None,
    ) -> None:
        self._view = view
        self._context = context  # the context of the next block on the current head
        self._reset_view = reset_view
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._txs: dict[bytes, SignedTx] = {}  # arrival order
        self._bytes = 0
        self._open = False
        self.evicted = 0
        self.dropped = 0
        self._floor_rate: int | None = None  # lowest pending fee rate, None = recompute
        self._unchecked: deque[SignedTx] = deque()  # waiting for their re-check, in order
        # ``reset_view`` returns the state keys the new head changed (None: unknown)
        self._recorder = recorder
        self._effects: dict[bytes, Any] = {}  # tx id -> its record on the view
        self._ctx: BlockContext | None = None  # the open pending block's
        self._begin_keys: set[bytes] = set()  # what the open block's begin_block wrote
        self._dirty: set[bytes] | None = None  # this round's changed keys (None: all)
        self._left: set[bytes] | None = set()  # evicted txs' writes since the last head
        self._reorder = False  # a tx was admitted while the round had txs waiting
        self.kept = 0  # txs laid back from their record instead of re-applied
        self.reapplied = 0

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._txs

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, tx_id: bytes) -> SignedTx | None:
        return self._txs.get(tx_id)

    def pending(self) -> Iterator[SignedTx]:
        """Pending txs in arrival order (the order they were checked in)."""
        return iter(list(self._txs.values()))

    def _ensure_open(self) -> None:
        if not self._open:
            ctx = self._context()
            self._view.begin_block(ctx)
            self._ctx = ctx
            self._open = True
            if self._recorder is not None:
                # what the old pending block's begin wrote is not in this one, and what
                # this one's wrote was not in the old: both differ from the records
                opened = self._recorder.opened()
                if self._dirty is not None:
                    self._dirty |= self._begin_keys | opened
                self._begin_keys = opened

    def _apply(self, tx: SignedTx) -> Any:
        """Apply tx on the open view; its record (None without a recorder)."""
        rec = self._recorder
        if rec is None:
            self._view.apply_tx(tx)
            return None
        rec.start(tx)
        try:
            self._view.apply_tx(tx)
        except BaseException:
            rec.cancel()
            raise
        assert self._ctx is not None
        return rec.stop(tx, self._ctx)

    def _mark(self, keys: Iterable[bytes] | None) -> None:
        """These keys' pending values changed under the records of the txs after them."""
        if self._dirty is not None:
            if keys is None:
                self._dirty = None
            else:
                self._dirty.update(keys)

    def _floor(self) -> int:
        """The lowest fee rate pending (cached: a full pool is asked on every submission)."""
        if self._floor_rate is None:
            self._floor_rate = min((fee_rate(t) for t in self._txs.values()), default=0)
        return self._floor_rate

    def is_full_for(self, tx: SignedTx) -> bool:
        """True if ``tx`` would be refused as ``mempool_full``: check before verifying it."""
        full = (len(self._txs) + 1 > self.max_count
                or self._bytes + len(tx.raw) > self.max_bytes)
        return full and fee_rate(tx) <= self._floor()

    def add(self, tx: SignedTx) -> None:
        """Admit a verified tx or raise Rejected with the reason."""
        if tx.tx_id in self._txs:
            raise Rejected("duplicate", "already in the mempool")
        need = len(tx.raw)
        victims: list[SignedTx] = []
        if len(self._txs) + 1 > self.max_count or self._bytes + need > self.max_bytes:
            if fee_rate(tx) <= self._floor():
                raise Rejected("mempool_full")  # it could evict nobody
            victims = self._victims(tx)
        # An invalid newcomer must evict nobody: it is checked on the current view first
        # (a refused tx changes nothing).
        self._ensure_open()
        effects = self._apply(tx)
        rec = self._recorder
        for v in victims:
            del self._txs[v.tx_id]
            self._bytes -= len(v.raw)
            if rec is not None:
                w = rec.written(self._effects.pop(v.tx_id, None))
                if w is None:
                    self._left = None
                elif self._left is not None:
                    self._left.update(w)
        if victims:
            # The view keeps the evicted txs' effects until the next head re-checks the
            # pool (a pending tx that depended on one is dropped then, and a block never
            # carries it: building re-applies every tx). Re-applying the whole pool per
            # evicting tx would let a stream of slightly better-paying txs cost O(pool)
            # each: it stalled a node for 17 s under load.
            self._floor_rate = None
            self.evicted += len(victims)
        self._txs[tx.tx_id] = tx
        if rec is not None:
            self._effects[tx.tx_id] = effects
            if self._unchecked:
                self._reorder = True  # applied before the txs still waiting
        self._bytes += need
        if self._floor_rate is not None:
            self._floor_rate = min(self._floor_rate, fee_rate(tx))

    def _victims(self, tx: SignedTx) -> list[SignedTx]:
        """The cheapest pending txs ``tx`` would evict to fit, or Rejected("mempool_full")."""
        need = len(tx.raw)
        victims: list[SignedTx] = []
        count, size = len(self._txs) + 1, self._bytes + need
        cheapest = heapq.nsmallest(
            64, self._txs.values(), key=lambda t: (t.fee * 1_000_000 // len(t.raw))
        )
        rate = tx.fee * 1_000_000 // need
        for victim in cheapest:
            if count <= self.max_count and size <= self.max_bytes:
                break
            if victim.fee * 1_000_000 // len(victim.raw) >= rate:
                break
            victims.append(victim)
            count -= 1
            size -= len(victim.raw)
        if count > self.max_count or size > self.max_bytes:
            raise Rejected("mempool_full")
        return victims

    def on_new_head(self, included: Iterable[bytes], readd: Iterable[SignedTx] = (),
                    limit: int | None = None) -> None:
        """The head changed: drop included txs, re-check the rest (and readd) on the new
        head: ``limit`` of them now (None: all), the others by ``recheck``."""
        rec = self._recorder
        left = self._left  # this method's own: replaced by a new set below
        for tx_id in included:
            tx = self._txs.pop(tx_id, None)
            if tx is not None:
                self._bytes -= len(tx.raw)
                if rec is not None:
                    # its effect is in the block now, no longer a pending one: the net
                    # change the block reports can hide a key it wrote
                    w = rec.written(self._effects.pop(tx_id, None))
                    if w is None:
                        left = None
                    elif left is not None:
                        left.update(w)
        if self._open:
            self._view.abort_block()
            self._open = False
        changed = self._reset_view()
        self._floor_rate = None
        readd = [tx for tx in readd if tx.tx_id not in self._txs]
        dirty: set[bytes] | None = None
        if rec is not None and changed is not None and left is not None and not readd:
            dirty = set(changed) | left | self._begin_keys
            if self._unchecked:
                # a round cut short: its dirty keys still hold for the txs it did not
                # reach; after admissions its order is not the records' order
                waiting = [t for t in self._unchecked if self._txs.get(t.tx_id) is t]
                if waiting and (self._reorder or self._dirty is None):
                    dirty = None
                elif waiting and self._dirty is not None:
                    dirty |= self._dirty
        self._dirty = dirty
        self._left = set()
        self._reorder = False
        if readd:
            # the popped blocks' txs are older than what is pending: they go first, and
            # when they overfill the pool the newest arrivals leave
            txs: dict[bytes, SignedTx] = {}
            for tx in readd:
                txs.setdefault(tx.tx_id, tx)
            for tx_id, tx in self._txs.items():
                txs.setdefault(tx_id, tx)
            self._txs = txs
            self._bytes = sum(len(tx.raw) for tx in txs.values())
            while self._txs and (len(self._txs) > self.max_count
                                 or self._bytes > self.max_bytes):
                _tx_id, tx = self._txs.popitem()
                self._bytes -= len(tx.raw)
                self.dropped += 1
        self._unchecked = deque(self._txs.values())
        self.recheck(limit)

    @property
    def unchecked(self) -> int:
        """Txs still waiting for their re-check on the current head."""
        return len(self._unchecked)

    def recheck(self, limit: int | None = None) -> int:
        """Re-check up to ``limit`` (None: all) of the txs waiting since the last new head;
        those no longer valid leave. Returns how many still wait. A tx laid back from its
        record counts 1/KEEP_COST of one re-applied."""
        queue = self._unchecked
        rec = self._recorder
        budget = None if limit is None else limit * KEEP_COST
        while queue and (budget is None or budget > 0):
            tx = queue.popleft()
            tx_id = tx.tx_id
            if self._txs.get(tx_id) is not tx:
                continue  # gone meanwhile (evicted, or included by a newer head)
            self._ensure_open()
            old = self._effects.get(tx_id) if rec is not None else None
            dirty = self._dirty
            assert self._ctx is not None
            if old is not None and dirty is not None and rec is not None and rec.keep(
                    tx, old, self._ctx, dirty):
                self.kept += 1
                if budget is not None:
                    budget -= 1
            else:
                self.reapplied += 1
                if budget is not None:
                    budget -= KEEP_COST
                try:
                    new = self._apply(tx)
                except Rejected:
                    del self._txs[tx_id]
                    self._bytes -= len(tx.raw)
                    self._floor_rate = None
                    self.dropped += 1
                    if rec is not None:
                        self._mark(rec.written(self._effects.pop(tx_id, None)))
                    continue
                if rec is not None:
                    self._mark(rec.differs(old, new))
                    self._effects[tx_id] = new
            if self._reorder:
                # behind the txs admitted since the round began, as the view has it
                del self._txs[tx_id]
                self._txs[tx_id] = tx
        return len(queue)
