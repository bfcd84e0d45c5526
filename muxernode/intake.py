"""Tx intake (architecture "The node inside"): decode, verify once, admit to the mempool.

``TxIntake`` owns what happens to a tx before it is in a block: the edge's admission
control (the pool's backlog, finality lag, the intake share that late blocks cut, load
shedding while the event loop runs late), the signature checks on worker threads (two
pools: txs at a lower OS priority, blocks' txs at normal priority, and a memory of what
passed so that no signature is checked twice), the gossip queue and its loop, and the
mempool admission itself (under the node's writer lock). The node hands it RPC and
gossiped txs and the txs of peers' blocks to verify; it tells it how late peers' blocks
come (``adapt``) and what blocks included (``note_included``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from consensus.block import Block
from consensus.chain import BlockRef
from consensus.errors import Rejected
from consensus.tx import SignedTx, decode_tx, verify_tx
from muxernode.ops import op_of
from p2p import PENALTIES

if TYPE_CHECKING:
    from muxernode.node import Node

__all__ = ["INTAKE_CUT", "INTAKE_MIN", "INTAKE_STEP", "LATE_S", "ON_TIME_S", "TxIntake",
           "run_in_pool", "verify_batch"]

T = TypeVar("T")

GOSSIP_QUEUE = 256  # batches of gossiped txs waiting for their signature checks
GOSSIP_MERGE = 2048  # txs of queued gossip batches checked and admitted together, at most
LAG_PROBE_S = 0.1
SHED_LAG_S = 0.5  # event-loop lateness above which new txs are refused (load shedding)
TX_VERIFY_NICE = 10  # OS niceness of the tx-verify threads (below the event loop's)
BACKLOG_S = 3.0  # seconds of recent blocks' txs the pool may hold before RPC txs are refused
SHED_FINAL_LAG_SLOTS = 4  # ... and none while finality is this far behind and ...
SHED_MIN_POOL = 1000  # ... the pool holds at least this many
# tx id -> raw bytes of txs whose signatures passed lately, shared by the tx and block
# verify paths (a few seconds of traffic at full load; ~4 MB)
CHECKED_KEPT = 16_384
# ids of the txs the main chain's latest blocks included (about 16 s at 4,000 tx/s): what
# a peer offers, and a gossiped tx, is looked up here instead of in the store's tx index
INCLUDED_KEPT = 65_536
# The share of that room RPC txs may take, adapted to how late peers' blocks reach us
# (additive increase, multiplicative decrease): a block applied here more than LATE_S of
# a slot after its slot began cuts it to INTAKE_CUT of itself (never below INTAKE_MIN),
# one in time (under ON_TIME_S of a slot) adds INTAKE_STEP back (up to 1)
LATE_S, ON_TIME_S = 0.6, 0.35
INTAKE_CUT, INTAKE_STEP, INTAKE_MIN = 0.7, 0.05, 0.1
# reasons that prove a gossiped tx bad in itself (not merely unwanted here)
INVALID_TX = frozenset({"bad_encoding", "bad_signature", "too_large", "bad_op"})


def verify_batch(txs: list[SignedTx], chain_id: bytes,
                 checked: Mapping[bytes, bytes]) -> tuple[list[bool], int]:
    """Runs on a worker thread: libsodium releases the GIL while verifying. A tx whose
    exact bytes are in ``checked`` (tx id -> raw: passed on either path, possibly while
    this batch waited for its thread) is not checked again. Returns the verdicts and how
    many signatures were checked."""
    oks: list[bool] = []
    done = 0
    for tx in txs:
        # dict.get is atomic under the GIL: the event loop thread adds entries meanwhile
        if checked.get(tx.tx_id) == tx.raw:
            oks.append(True)
        else:
            oks.append(verify_tx(tx, chain_id))
            done += 1
    return oks, done


def _lower_thread_priority() -> None:
    """Initializer of the tx-verify threads: nice +TX_VERIFY_NICE for this thread only
    (Linux applies setpriority to a thread id). Under overload the event loop (blocks,
    votes, relay) and block verification must get the CPU first; txs can wait, and the
    admission control refuses new ones while they do. Elsewhere: no change."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), TX_VERIFY_NICE)


async def run_in_pool(pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` on one of ``pool``'s threads and wait for it without blocking trio.
    If the caller is cancelled the job still finishes on its thread (its result is
    dropped): verifying is side-effect free."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    future = pool.submit(fn, *args)
    future.add_done_callback(lambda _f: token.run_sync_soon(done.set))
    await done.wait()
    return future.result()


def _error(exc: Rejected) -> dict[str, Any]:
    return {"error": {"code": -32000, "message": exc.message, "data": {"reason": exc.reason}}}


class TxIntake:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._verifying = 0  # submitted txs waiting for their signature checks
        self._checked: OrderedDict[bytes, bytes] = OrderedDict()  # see CHECKED_KEPT
        self._included: OrderedDict[bytes, None] = OrderedDict()  # see INCLUDED_KEPT
        node.chain.on_commit.append(self._on_commit)
        node.chain.on_pop.append(self._on_pop)
        self.loop_lag = 0.0
        self.share = 1.0  # share of the mempool's room open to RPC txs (``adapt``)
        # gossiped tx batches waiting to be checked (bounded: beyond it they are dropped)
        self._gossip_send, self._gossip_recv = trio.open_memory_channel[
            tuple[bytes, list[bytes]]](GOSSIP_QUEUE)
        # two verify pools: txs (lower OS priority) and blocks (normal), see ``verify``
        threads = max(1, node.config.verify_threads)
        self._tx_pool = ThreadPoolExecutor(threads, "verify-tx", _lower_thread_priority)
        self._block_pool = ThreadPoolExecutor(threads, "verify-block")
        self._included_times: deque[tuple[float, int]] = deque(maxlen=64)

    def _on_commit(self, block: Block, _ref: BlockRef) -> None:
        included = self._included
        for tx in block.txs:
            included[tx.tx_id] = None
        while len(included) > INCLUDED_KEPT:
            included.popitem(last=False)

    def _on_pop(self, block: Block) -> None:
        for tx in block.txs:
            self._included.pop(tx.tx_id, None)

    def recently_included(self, tx_id: bytes) -> bool:
        """Whether one of the main chain's latest blocks (INCLUDED_KEPT txs) carries it:
        the gossip paths' question for every tx id a peer offers, which a read of the
        store's tx index per id answered at about 5 us a tx on a loaded node. A tx
        included earlier is not known here: offered again, it costs its signature check
        and is refused at admission (the ledger's duplicate or expiry rule)."""
        return tx_id in self._included

    def note_included(self, count: int) -> None:
        self._included_times.append((self.node.now(), count))

    def close_gossip(self) -> None:
        self._gossip_send.close()

    def close(self) -> None:
        self._tx_pool.shutdown(wait=False, cancel_futures=True)
        self._block_pool.shutdown(wait=False, cancel_futures=True)

    async def submit(self, raws: list[bytes], relay: bool = True,
                     gossip: bool = False) -> list[dict[str, Any]]:
        """Admit txs (RPC or, with ``gossip``, from peers); a result per raw, in order."""
        if self.overloaded:
            busy = Rejected("mempool_full", "the node is overloaded; retry shortly")
            self.node.metrics.txs_shed.inc(len(raws))
            return [_error(busy) for _ in raws]
        results: list[dict[str, Any]] = [{} for _ in raws]
        admitted: list[bytes] = []
        decoded: list[tuple[int, SignedTx]] = []
        # Admission control at the edge: a client's tx costs every node of the network its
        # signature check and two applications, so once the pool holds more than
        # BACKLOG_S seconds of what blocks recently carried, new RPC txs are refused
        # (cheaply, before any signature check) rather than admitted to wait, be relayed
        # and make every node's blocks late. Gossiped txs are already paid for.
        # The same when finality falls behind with a full pool: the network is not
        # keeping up, and new work would only make every block later.
        # Txs still waiting for their signature checks count too: under overload the
        # verify threads are the queue, and requests admitted past a pool-only check
        # would wait there without bound.
        # Scaled by the intake share (``adapt``): past the network's capacity every
        # node's blocks reach the others late, producers fork, and admitted txs only make
        # the next blocks later still.
        room = None if gossip else (
            int(max(self.node.config.block_txs, self.tx_rate() * BACKLOG_S) * self.share)
            - len(self.node.mempool) - self._verifying)
        if (room is not None and len(self.node.mempool) >= SHED_MIN_POOL
                and self.node.current_slot() - self.node.chain.final.slot > SHED_FINAL_LAG_SLOTS):
            room = 0
        shed = 0
        first: dict[bytes, int] = {}  # tx id -> its first position in raws
        copies: list[tuple[int, int]] = []  # (position, first position) of repeated txs
        for i, raw in enumerate(raws):
            if room is not None and len(decoded) >= room:
                results[i] = _error(Rejected(
                    "mempool_full", f"the pool holds over {BACKLOG_S:g} s of blocks; retry"))
                shed += 1
                continue
            try:
                tx = decode_tx(raw, self.node.params.max_tx_bytes)
                op_of(tx)  # static op checks before paying for a signature check
            except Rejected as exc:
                results[i] = _error(exc)
                continue
            if tx.tx_id in self.node.mempool:
                results[i] = {"tx_id": tx.tx_id.hex()}  # idempotent resubmission
                continue
            if tx.tx_id in first:  # twice in one call (merged gossip): one check
                copies.append((i, first[tx.tx_id]))
                continue
            first[tx.tx_id] = i
            if self.node.mempool.is_full_for(tx):  # refuse before paying for its signature
                results[i] = _error(Rejected("mempool_full"))
                continue
            if gossip and self.recently_included(tx.tx_id):
                # under load a gossiped batch can wait behind others until a block has
                # carried its txs: do not pay for their signatures again
                results[i] = _error(Rejected("duplicate", "already included"))
                continue
            decoded.append((i, tx))
        if shed:
            self.node.metrics.txs_shed.inc(shed)
        self._verifying += len(decoded)
        try:
            oks = await self.verify([tx for _, tx in decoded])
        finally:
            self._verifying -= len(decoded)
        async with self.node._lock:
            for (i, tx), ok in zip(decoded, oks, strict=True):
                if not ok:
                    results[i] = _error(Rejected("bad_signature"))
                    continue
                if tx.tx_id in self.node.mempool:
                    results[i] = {"tx_id": tx.tx_id.hex()}
                    continue
                try:
                    self.node.mempool.add(tx)
                except Rejected as exc:
                    results[i] = _error(exc)
                    continue
                results[i] = {"tx_id": tx.tx_id.hex()}
                admitted.append(tx.tx_id)
        for i, j in copies:
            results[i] = results[j]
        self.node.metrics.txs_admitted.inc(len(admitted))
        if admitted:
            self.node.app_service.on_admitted(admitted)
        self.node.metrics.mempool_size.set(len(self.node.mempool))
        if relay and admitted and self.node.network is not None:
            self.node.network.broadcast_txs(admitted)
        return results

    async def verify(self, txs: list[SignedTx], urgent: bool = False) -> list[bool]:
        """Check signatures on worker threads. ``urgent`` (a block's txs) has threads of its
        own, at normal priority: a block must not wait behind the gossip and RPC batches
        queued for the tx threads (which run at a lower OS priority than the event loop),
        or it reaches the next producer too late and forks it."""
        if not txs:
            return []
        checked = self._checked
        if self.node.inline_verify:
            oks, done = verify_batch(txs, self.node.chain_id, checked)
        else:
            threads = max(1, self.node.config.verify_threads)
            pool = self._block_pool if urgent else self._tx_pool
            chunk = len(txs) if len(txs) < 32 else (len(txs) + threads - 1) // threads
            parts: list[tuple[list[bool], int]] = [([], 0)] * ((len(txs) + chunk - 1) // chunk)

            async def run(k: int) -> None:
                parts[k] = await run_in_pool(pool, verify_batch, txs[k * chunk:(k + 1) * chunk],
                                             self.node.chain_id, checked)

            async with trio.open_nursery() as nursery:
                for k in range(len(parts)):
                    nursery.start_soon(run, k)
            oks = [ok for part, _ in parts for ok in part]
            done = sum(n for _, n in parts)
        self.node.metrics.signature_checks.labels("block" if urgent else "tx").inc(done)
        # Remember what passed, for the other path: under load a peer's block often
        # carries txs whose gossiped copies are still queued for (or in) their check on
        # the tx threads, and each would otherwise be checked twice.
        for tx, ok in zip(txs, oks, strict=True):
            if ok:
                checked[tx.tx_id] = tx.raw
        # popitem, not ``del d[next(iter(d))]``: a plain dict emptied from the front keeps
        # the holes, and finding its first key costs O(holes) (5 % of a loaded node's CPU)
        while len(checked) > CHECKED_KEPT:
            checked.popitem(last=False)
        return oks

    def tx_rate(self) -> float:
        now = self.node.now()
        recent = [(t, n) for t, n in self._included_times if now - t <= 10.0]
        if not recent:
            return 0.0
        return sum(n for _, n in recent) / 10.0

    def adapt(self, late: float) -> None:
        """A peer's block joined our chain ``late`` seconds after its slot began: adapt
        the share of the mempool's room that new RPC txs may take (see LATE_S)."""
        interval = self.node.params.block_interval_s
        if late > LATE_S * interval:
            self.share = max(INTAKE_MIN, self.share * INTAKE_CUT)
        elif late < ON_TIME_S * interval:
            self.share = min(1.0, self.share + INTAKE_STEP)
        self.node.metrics.intake.set(self.share)

    @property
    def overloaded(self) -> bool:
        """The event loop runs late: shed tx intake so blocks and votes keep flowing."""
        return self.loop_lag > SHED_LAG_S

    async def lag_monitor(self) -> None:
        """Measure how late the event loop wakes us (a late loop delays blocks and votes,
        and late votes cost finality): the basis of load shedding."""
        while not self.node.stopping.is_set():
            t0 = trio.current_time()
            await trio.sleep(LAG_PROBE_S)
            late = trio.current_time() - t0 - LAG_PROBE_S
            # smoothed: one long block build is not overload, a loop late at every probe is
            self.loop_lag = 0.8 * self.loop_lag + 0.2 * late
            self.node.metrics.loop_lag.set(self.loop_lag)

    def queue_gossip(self, peer_id: bytes, raws: list[bytes]) -> None:
        if self.overloaded:
            self.node.metrics.gossip_dropped.inc(len(raws))
            return
        try:
            self._gossip_send.send_nowait((peer_id, raws))
        except trio.WouldBlock:
            self.node.metrics.gossip_dropped.inc(len(raws))  # best effort: the sender retries

    async def gossip_loop(self) -> None:
        """Check gossiped txs off the readers' path; penalize the senders of invalid ones.
        The batches that queued while one was checked go together (up to GOSSIP_MERGE
        txs): each peer's message holds a few dozen txs, and a call costs its thread
        hand-offs, the writer lock and a relay whatever its size."""
        async for batch in self._gossip_recv:
            batches = [batch]
            total = len(batch[1])
            while total < GOSSIP_MERGE:
                try:
                    batches.append(self._gossip_recv.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                total += len(batches[-1][1])
            results = await self.submit([r for _, raws in batches for r in raws],
                                        relay=True, gossip=True)
            pos = 0
            for peer_id, raws in batches:
                bad = sum(1 for r in results[pos:pos + len(raws)]
                          if r.get("error", {}).get("data", {}).get("reason") in INVALID_TX)
                pos += len(raws)
                if bad and self.node.network is not None:
                    self.node.network.report(peer_id, PENALTIES["invalid_tx"] * bad,
                                             "invalid_tx")
