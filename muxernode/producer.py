"""The witness's side (protocol sections 6 and 7): produce its slots' blocks, vote.

``Producer`` runs the two loops of a witness node: at each slot its witness owns it builds
a block from the mempool (at most a quarter of a slot: every peer needs about as long
again to apply it) and commits it through the chain; at the middle of each slot whose
block has not come it votes. It never signs two blocks for one slot (the last slot
produced is stored first) nor two votes for one slot (the voter guard is stored before a
vote leaves the node). The loops call the node's ``produce`` and ``cast_vote``, which a
test node may override (tests/sim.py's equivocating witness).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import trio

from consensus.block import Block
from p2p import Kind
from storage import schema
from storage.leveldb import StorageError

if TYPE_CHECKING:
    from muxernode.node import Node

__all__ = ["BUILD_SHARE", "Producer"]

log = logging.getLogger("muxer.node")

BUILD_SHARE = 0.25  # of a slot, the most a producer spends building its block


class Producer:
    def __init__(self, node: Node) -> None:
        self.node = node

    async def produce_loop(self) -> None:
        """Produce at each slot this node's witness owns (once per slot, ever)."""
        key = self.node.witness_key
        if key is None:
            return
        while not self.node.stopping.is_set():
            slot = self.node.current_slot() + 1
            delay = self.node.slot_time(slot) - self.node.now()
            with trio.move_on_after(max(0.0, delay)):
                await self.node.stopping.wait()
            if self.node.stopping.is_set():
                return
            if self.node.witness_for_slot(slot) != key.address:
                continue
            if self.node.chain.head.slot >= slot:
                continue
            last = self.node.store.get(schema.META_LAST_SLOT)
            if last is not None and schema.from_u64(last) >= slot:
                continue  # never sign two blocks for one slot, even across a restart
            if self.node.store.failed is not None:
                continue  # paused: a block that cannot be stored must not be signed
            async with self.node._lock:
                # shielded: a shutdown finishes the block in hand before stopping
                with trio.CancelScope(shield=True):
                    try:
                        self.node.produce(slot)
                    except StorageError as exc:
                        # nothing was relayed; the chain and its app are as before
                        self.node.recovery.failed(exc, "produce")

    def build(self, slot: int) -> Block:
        assert self.node.witness_key is not None
        started = time.perf_counter()
        self.node.store.write({schema.META_LAST_SLOT: schema.u64(slot)}, sync=True)
        votes = self.node.consensus.votes_to_include(slot)
        # a quarter of a slot at most for building: each peer needs about as long again
        # to apply it, and the next producer needs it applied before its own slot
        deadline = started + self.node.params.block_interval_s * BUILD_SHARE
        block, dropped = self.node.chain.build_block(
            self.node.witness_key, self.node.slot_time(slot), self.node.mempool.pending(), votes,
            max_txs=self.node.config.block_txs, deadline=deadline,
        )
        self.node.follower.mark_seen(block.id)
        self.node.follower.relay(block)
        self.node.follower.after_block(block, started)
        log.info("produced", extra={"kv": {
            "height": block.height, "slot": slot, "txs": len(block.txs),
            "dropped": len(dropped), "pool": len(self.node.mempool)}})
        return block

    def vote(self, slot: int) -> None:
        """The honest vote for ``slot``: recorded and persisted before it leaves the node."""
        key = self.node.witness_key
        if key is None or self.node.store.failed is not None:
            return  # paused: a vote whose guard record cannot be stored is not cast
        vote = self.node.consensus.make_vote(key, self.node.guard, slot)
        if vote is None:
            return
        self.node.guard.record(vote)
        try:
            self.node.store.write({schema.META_LAST_VOTE: self.node.guard.dump()}, sync=True)
        except StorageError as exc:
            # not sent; the guard in memory keeps it (stricter than the store), and the
            # recovery writes the guard before anything else
            self.node.recovery.failed(exc, "vote")
            return
        self.node.consensus.add_vote(vote, slot)
        if self.node.network is not None:  # only now, after the guard is on disk
            self.node.network.push(Kind.VOTE, [(vote.hash, vote.encode())])
        self.node.follower.finalize()

    async def vote_loop(self) -> None:
        """Vote for a slot at its middle if its block has not come (section 7)."""
        if self.node.witness_key is None:
            return
        interval = self.node.params.block_interval_s
        while not self.node.stopping.is_set():
            slot = self.node.current_slot()
            at = self.node.slot_time(slot) + interval / 2
            if at <= self.node.now():
                slot += 1
                at += interval
            with trio.move_on_after(max(0.0, at - self.node.now())):
                await self.node.stopping.wait()
            if self.node.stopping.is_set():
                return
            async with self.node._lock:
                self.node.cast_vote(slot)
