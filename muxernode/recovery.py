"""Storage failures (a full disk): pause what writes, retry, resume (docs/security.md).

``StorageRecovery`` owns the node's reaction to a failed write: the store refuses writes
from then on (storage/leveldb.py says why), so block production, block acceptance, votes
and finality pause while RPC reads, tx intake and gossip go on; its loop reopens the store
once the disk has room and brings the store back to the chain in memory.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from consensus.chain import ChainError
from storage import schema
from storage.leveldb import StorageError, StorageLost

if TYPE_CHECKING:
    from muxernode.node import Node

__all__ = ["STORAGE_RETRY_MAX_S", "STORAGE_RETRY_MIN_S", "StorageRecovery"]

log = logging.getLogger("muxer.node")

# after a failed write the store's recovery is retried this often: doubling from MIN up
# to MAX, so a long outage costs one cheap probe every MAX seconds
STORAGE_RETRY_MIN_S = 0.5
STORAGE_RETRY_MAX_S = 15.0


class StorageRecovery:
    def __init__(self, node: Node) -> None:
        self.node = node
        # a write failed: since when (the node's clock), until it recovers
        self.outage: float | None = None
        self.wakeup = trio.Event()

    def failed(self, exc: StorageError, during: str) -> None:
        """A write failed. The store refuses writes from now on (storage/leveldb.py says
        why), so block production, block acceptance, votes and finality pause; RPC reads,
        tx intake and gossip go on. ``loop`` reopens the store once the disk has
        room. Logged once per outage; every failed write is counted."""
        self.node.metrics.storage_write_failures.inc()
        if self.outage is not None:
            return
        self.outage = self.node.now()
        self.node.metrics.storage_failing.set(1)
        log.error("storage_write_failed", extra={"kv": {
            "during": during, "error": str(exc),
            "action": "pausing block production, block acceptance and votes; will retry"}})
        self.wakeup.set()

    async def loop(self) -> None:
        """While the store refuses writes, try to recover it, with a backoff that doubles
        from STORAGE_RETRY_MIN_S to STORAGE_RETRY_MAX_S."""
        delay = STORAGE_RETRY_MIN_S
        while not self.node.stopping.is_set():
            if self.node.store.failed is None:
                delay = STORAGE_RETRY_MIN_S
                with trio.move_on_after(1.0):
                    await self.wakeup.wait()
                self.wakeup = trio.Event()
                continue
            if self.outage is None:  # a failed write no caller reported
                self.failed(StorageError(self.node.store.failed), "write")
            with trio.move_on_after(delay):
                await self.node.stopping.wait()
            if self.node.stopping.is_set():
                return
            delay = min(delay * 2, STORAGE_RETRY_MAX_S)
            async with self.node._lock:
                with trio.CancelScope(shield=True):
                    self.recover()

    def recover(self) -> bool:
        """One attempt, under the lock and without an await: reopen the store if the disk
        has room, write again what a failed write may have lost, and bring the store back
        to the chain in memory. True iff writes resumed. A store that cannot be opened
        again is fatal: the node stops (a restart opens it at its last stored block)."""
        try:
            self.node.store.recover()
            # first write: the guard in memory may hold a vote whose record failed
            self.node.store.write({schema.META_LAST_VOTE: self.node.guard.dump()}, sync=True)
            self.node.chain.reconcile()
            # the schedule in memory may hold an election whose record failed: a restart
            # without it would follow another schedule than the network's
            self.node.consensus.save_schedule()
        except StorageLost as exc:
            log.critical("storage_lost", extra={"kv": {"error": str(exc),
                                                      "action": "stopping"}})
            raise
        except StorageError:
            return False  # no room yet, or the first write failed again: retried later
        except ChainError as exc:
            log.critical("storage_diverged", extra={"kv": {"error": str(exc),
                                                          "action": "stopping"}})
            raise StorageLost(str(exc)) from None
        outage = self.node.now() - (self.outage or self.node.now())
        self.outage = None
        self.node.metrics.storage_failing.set(0)
        log.warning("storage_recovered", extra={"kv": {
            "outage_s": round(outage, 1), "head": self.node.chain.head.height,
            "final": self.node.chain.final.height}})
        self.node.follower.finalize()  # votes counted while paused may have moved finality
        self.node.consensus.save_evidence()  # what a failed write kept in memory
        self.node.block_sync.wakeup.set()  # fetch the blocks dropped while paused
        self.node._update_metrics()
        return True
