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
- On a new head, txs included in it leave; the rest are re-applied in arrival order on
  the new head, and those no longer valid (expired, spent, duplicate) are dropped. Txs of
  popped blocks are offered again the same way. The re-check may be split: the first
  ``limit`` txs at once, the rest by ``recheck`` calls (a node runs them between its other
  work, since a loaded pool takes hundreds of ms). Txs admitted meanwhile are checked on
  the view as it stands; of two conflicting txs the one checked first stays. A tx waiting
  for its re-check is in the pool (known, served to peers, offered to block building,
  which applies every candidate anyway).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from consensus.app import Application, BlockContext
from consensus.errors import Rejected
from consensus.tx import SignedTx

__all__ = ["Mempool", "fee_rate"]


def fee_rate(tx: SignedTx) -> int:
    """Fee per byte, scaled to an integer (eviction order)."""
    return tx.fee * 1_000_000 // len(tx.raw)


class Mempool:
    def __init__(
        self,
        view: Application,
        context: Callable[[], BlockContext],
        reset_view: Callable[[], None],
        max_count: int = 50_000,
        max_bytes: int = 64 * 1024 * 1024,
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
            self._view.begin_block(self._context())
            self._open = True

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
        self._view.apply_tx(tx)
        for v in victims:
            del self._txs[v.tx_id]
            self._bytes -= len(v.raw)
        if victims:
            # The view keeps the evicted txs' effects until the next head re-checks the
            # pool (a pending tx that depended on one is dropped then, and a block never
            # carries it: building re-applies every tx). Re-applying the whole pool per
            # evicting tx would let a stream of slightly better-paying txs cost O(pool)
            # each: it stalled a node for 17 s under load.
            self._floor_rate = None
            self.evicted += len(victims)
        self._txs[tx.tx_id] = tx
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
        for tx_id in included:
            tx = self._txs.pop(tx_id, None)
            if tx is not None:
                self._bytes -= len(tx.raw)
        if self._open:
            self._view.abort_block()
            self._open = False
        self._reset_view()
        self._floor_rate = None
        readd = [tx for tx in readd if tx.tx_id not in self._txs]
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
        those no longer valid leave. Returns how many still wait."""
        queue = self._unchecked
        todo = len(queue) if limit is None else limit
        while todo > 0 and queue:
            tx = queue.popleft()
            if self._txs.get(tx.tx_id) is not tx:
                continue  # gone meanwhile (evicted, or included by a newer head)
            todo -= 1
            try:
                self._ensure_open()
                self._view.apply_tx(tx)
            except Rejected:
                del self._txs[tx.tx_id]
                self._bytes -= len(tx.raw)
                self._floor_rate = None
                self.dropped += 1
        return len(queue)
