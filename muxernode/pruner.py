"""Pruning (``--keep-blocks N``, docs/operator.md "Pruning"): old blocks out, disk flat.

``Pruner`` deletes the blocks below the chain's prune floor (``Chain.prune``: the last N
blocks, the final block and what finality and fork choice need stay) a bounded batch at a
time, under the node's write lock, once per PRUNE_INTERVAL_S, never inside a block's
commit. LevelDB keeps deleted data until it compacts it, so once COMPACT_AFTER more blocks
have gone it compacts the key kinds pruning deletes from, one kind per step, in a worker
thread (plyvel releases the GIL): the event loop, block production and votes go on
meanwhile. ``step`` and ``compact`` are plain calls, so that bench.prune drives the same
policy over a chain it builds in-process.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Protocol

import trio

from consensus.chain import Chain
from muxernode.config import MIN_KEEP_BLOCKS
from storage import schema
from storage.kv import StorageError

if TYPE_CHECKING:
    from muxernode.node import Node

__all__ = ["COMPACT_AFTER", "MIN_KEEP_BLOCKS", "PRUNED_PREFIXES", "PRUNE_BATCH", "Pruner"]

log = logging.getLogger("muxer.prune")

PRUNE_BATCH = 64  # blocks per batch: a few ms under the lock, then the lock is free again
PRUNE_BATCHES = 16  # batches per round at most (a node that turns pruning on catches up)
PRUNE_INTERVAL_S = 1.0
COMPACT_AFTER = 512  # blocks pruned between compactions
# the key kinds pruning deletes from (block bodies, undo records, height, tx and vote
# index, history); each is a contiguous range (storage/schema.py)
PRUNED_PREFIXES = (schema.PREFIX_BLOCK, schema.PREFIX_UNDO, schema.PREFIX_HEIGHT,
                   schema.PREFIX_TX, schema.PREFIX_VOTE, schema.PREFIX_HISTORY)


class Compactable(Protocol):
    def compact_prefix(self, prefix: bytes) -> None: ...


class Pruner:
    def __init__(self, chain: Chain, keep: int) -> None:
        if keep < MIN_KEEP_BLOCKS:
            raise ValueError(f"keep_blocks must be at least {MIN_KEEP_BLOCKS}, got {keep}")
        self.chain = chain
        self.keep = keep
        self.since_compaction = 0  # blocks pruned since the last compaction
        self.compactions = 0

    def step(self) -> int:
        """One batch (at most PRUNE_BATCH blocks); the number pruned."""
        n = self.chain.prune(self.keep, PRUNE_BATCH)
        self.since_compaction += n
        return n

    @property
    def compaction_due(self) -> bool:
        return self.since_compaction >= COMPACT_AFTER

    def compact(self, store: Compactable, prefix: bytes) -> None:
        """Compact one key kind (blocking: a worker thread's call in the node)."""
        store.compact_prefix(prefix)

    def compacted(self) -> None:
        self.since_compaction = 0
        self.compactions += 1

    async def loop(self, node: Node) -> None:
        """The node's task: prune a few batches per round, compact when due."""
        while not node.stopping.is_set():
            with trio.move_on_after(PRUNE_INTERVAL_S):
                await node.stopping.wait()
            if node.stopping.is_set() or node.store.failed is not None:
                continue
            pruned = 0
            for _ in range(PRUNE_BATCHES):
                async with node._lock:
                    try:
                        n = self.step()
                    except StorageError as exc:
                        node.recovery.failed(exc, "prune")
                        break
                pruned += n
                if n < PRUNE_BATCH:
                    break
                await trio.sleep(0)  # let the producer and the follower take the lock
            if pruned:
                log.debug("pruned", extra={"kv": {"blocks": pruned,
                                                  "lowest": self.chain.lowest_block}})
            compact = getattr(node.store, "compact_prefix", None)
            if compact is None or not self.compaction_due:
                continue
            started = time.perf_counter()
            try:
                for prefix in PRUNED_PREFIXES:
                    if node.stopping.is_set():
                        break
                    await trio.to_thread.run_sync(self.compact, node.store, prefix)
            except StorageError as exc:
                node.recovery.failed(exc, "compaction")
                continue
            self.compacted()
            log.info("compacted", extra={"kv": {
                "lowest": self.chain.lowest_block,
                "ms": round((time.perf_counter() - started) * 1000)}})
