"""The chain follower (protocol sections 6-8): blocks and votes in, fork choice, finality.

``ChainFollower`` owns what happens to a block from a peer until it is on the chain or
judged: the checks before it is kept (its witness's signature, its txs' signatures, verified
once), the blocks kept meanwhile (orphans whose parent has not come, blocks from the near
future held until their time, the ids known bad, the order blocks were first seen in),
applying it on the head or keeping it as a side block and running the fork choice (a
switch pops and applies branches through the engine), and what follows each new head,
whoever made it (this node's producer or a peer): the engine counts it, the block and the
new head go out, the node votes for its slot, the mempool follows (a chunk of its
re-check at once, the rest in ``recheck_loop``), finality moves, and the RPC intake adapts
to how late peers' blocks come. Votes from peers are counted here too, since they move
finality. Everything that writes runs under the node's writer lock.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from consensus.block import Block, BlockError, decode_block, peek_block_id
from consensus.chain import ChainError
from consensus.finality import INVALID, HeadInfo, choose_head
from consensus.tx import SignedTx
from consensus.vote import VoteError, decode_vote
from p2p import Kind
from storage import schema
from storage.leveldb import StorageError

if TYPE_CHECKING:
    from muxernode.node import Node

__all__ = ["CACHE_ENTRIES", "MAX_HELD", "MAX_ORPHANS", "RECHECK_CHUNK", "TRIM_EVERY_S",
           "ChainFollower", "trim_heap"]

log = logging.getLogger("muxer.node")

MAX_ORPHANS = 2048  # blocks whose parent we have not seen yet
MAX_HELD = 256  # blocks from the near future, held until their time
RECHECK_CHUNK = 256  # pool txs re-checked between two looks at other work (~5-15 ms)
# decoded state records kept per ledger view (chain's and mempool's); bounds memory
CACHE_ENTRIES = 15_000
TRIM_EVERY_S = 10.0  # hand freed heap back to the OS this often (RSS stays flat)


def trim_heap() -> None:
    """Hand freed heap back to the OS (glibc's malloc_trim; a no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class ChainFollower:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.orphans: dict[bytes, Block] = {}  # by id; parent not known yet
        self.held: dict[bytes, Block] = {}  # from the near future (section 6: hold, not drop)
        self.bad_blocks: dict[bytes, None] = {}  # ids known invalid (bounded, oldest out)
        self.seen: dict[bytes, int] = {}  # block id -> arrival order, for the fork choice
        self._seen_counter = 0
        self.recheck_wakeup = trio.Event()  # the mempool has txs to re-check
        self._last_trim = time.monotonic()

    # --- what is known of a block ---------------------------------------------------------

    def mark_seen(self, block_id: bytes) -> None:
        if block_id not in self.seen:
            self._seen_counter += 1
            self.seen[block_id] = self._seen_counter
            if len(self.seen) > 100_000:
                for k in list(self.seen)[:10_000]:
                    del self.seen[k]

    def mark_bad(self, block_id: bytes, why: str) -> None:
        self.bad_blocks[block_id] = None
        if len(self.bad_blocks) > 10_000:
            del self.bad_blocks[next(iter(self.bad_blocks))]
        self.node.consensus.forget_block(block_id)
        log.warning("bad_block", extra={"kv": {"block": block_id[:8], "why": why}})

    def block_known(self, block_id: bytes) -> bool:
        return (block_id in self.bad_blocks or block_id in self.orphans
                or block_id in self.held
                or self.node.store.get(schema.block_key(block_id)) is not None)

    def have_block(self, block_id: bytes) -> bool:
        # "have it" = in the block tree, not merely stored: a side block stored before a
        # restart is not in the rebuilt tree and must be taken again when it comes back
        return (block_id in self.node.consensus.tree or block_id in self.orphans
                or block_id in self.held)

    # --- blocks from peers ------------------------------------------------------------------

    async def accept_blocks(
        self, raws: list[bytes],
        plan: Callable[[list[Block]], list[tuple[Block, bool]]] | None = None,
    ) -> list[bool]:
        """Blocks from a peer (gossip or sync): False iff a block is invalid.

        ``plan`` (a sync range, muxernode/sync.py): given the decoded blocks, the blocks
        to take now, in order, each with whether its tx signatures need checking; it may
        keep some back for the next range (their verdict here is True) and hand back
        ones it kept before."""
        verdicts: list[bool | Block] = []
        for raw in raws:
            seen = peek_block_id(raw)
            if seen is not None and seen in self.bad_blocks:
                verdicts.append(False)
                continue
            if seen is not None and self.have_block(seen):
                verdicts.append(True)  # a copy from another neighbour: skip its decoding
                continue
            try:
                block = decode_block(raw, self.node.params.max_block_bytes,
                                     self.node.mempool.get)
            except BlockError as exc:
                log.info("block_rejected", extra={"kv": {"why": str(exc)}})
                verdicts.append(False)
                continue
            if plan is None:
                verdicts.append(await self.node.accept_block(block))
            else:
                verdicts.append(block)  # judged below, once the range's votes are counted
        if plan is None:
            return [v is True for v in verdicts]
        taken: dict[bytes, bool] = {}
        for block, check in plan([v for v in verdicts if isinstance(v, Block)]):
            taken[block.id] = await self.accept_block(block, check_tx_signatures=check)
        return [taken.get(v.id, True) if isinstance(v, Block) else v for v in verdicts]

    async def accept_block(self, block: Block, *, check_tx_signatures: bool = True) -> bool:
        node = self.node
        if block.id in self.bad_blocks:
            return False
        # a second block its witness signed for a slot is evidence even when the block is
        # of no use (below final, or invalid later): checked before anything drops it
        node.consensus.note_block(block, verified=False)
        if self.have_block(block.id) or block.height <= node.chain.final.height:
            return True  # already have it, or it cannot matter (below final)
        # Neither the witness's signature nor the txs' signatures are covered by the block
        # id: a copy with a bad one is refused (its sender penalized) but must never mark
        # the id bad, or whoever sends a malleated copy first gets the honest block refused
        # (and its relayers penalized). Both are checked before a block is held or kept as
        # an orphan, because a kept block is applied later without another look at them.
        key = node.ledger.witness_signing_key(block.witness)
        if key is None or not block.verify_signature(node.chain_id, key):
            # parent known: the chain's own check, the sender is at fault; parent unknown:
            # our witness keys may be older than the block's, so it is dropped unjudged
            return block.previous_id not in node.consensus.tree
        if check_tx_signatures and not await self.verify_block_txs(block):
            return False  # wrong on any chain: a tx signature covers nothing but its tx
        if self.have_block(block.id):
            return True  # taken meanwhile, from another peer
        if block.timestamp > node.now() + 1:
            if len(self.held) < MAX_HELD:
                self.held[block.id] = block
            return True
        if block.previous_id not in node.consensus.tree:
            if len(self.orphans) >= MAX_ORPHANS:
                del self.orphans[next(iter(self.orphans))]
            self.orphans[block.id] = block
            node.block_sync.wakeup.set()
            return True
        if node.store.failed is not None:
            return True  # paused: dropped, not judged; the sync fetches it after recovery
        self.mark_seen(block.id)
        ok = True
        async with node._lock:
            with trio.CancelScope(shield=True):
                ok = self.take_block(block)
                # orphans waiting for this block (iteratively: a synced run of children)
                if ok:
                    for _ in range(MAX_ORPHANS):
                        child = next((b for b in self.orphans.values()
                                      if b.previous_id in node.consensus.tree
                                      and b.id not in node.consensus.tree), None)
                        if child is None:
                            break
                        del self.orphans[child.id]
                        self.mark_seen(child.id)
                        self.take_block(child)
        return ok

    async def verify_block_txs(self, block: Block) -> bool:
        # verified once: txs admitted to our mempool were verified on admission, and
        # ``TxIntake.verify`` skips those that passed lately on the tx path (the same bytes:
        # a tx_id does not cover the signature, so a block could carry a mempool tx's id
        # with a forged signature)
        pool = self.node.mempool
        todo = [tx for tx in block.txs
                if (known := pool.get(tx.tx_id)) is None or known.raw != tx.raw]
        oks = await self.node.tx_intake.verify(todo, urgent=True)
        return all(oks)

    def take_block(self, block: Block) -> bool:
        """Apply a block on the head, or keep it as a side block and run the fork choice."""
        node = self.node
        chain = node.chain
        started = time.perf_counter()
        if node.store.failed is not None:
            return True  # the store failed while this block waited for the lock
        if block.previous_id == chain.head.id:
            try:
                chain.apply_block(block)
            except ChainError as exc:
                self.mark_bad(block.id, str(exc))
                return False
            except StorageError as exc:
                # not the block's fault: it stays unjudged and comes back by sync
                node.recovery.failed(exc, "apply block")
                return True
            self.relay(block)
            self.after_block(block, started)
            # how late after its slot began a peer's block joined our chain: above half a
            # slot the next producer has little margin (the first thing to read in a log
            # when finality stalls under load)
            late = node.now() - node.slot_time(chain.slot_of(block.timestamp))
            node.tx_intake.adapt(late)
            log.info("applied", extra={"kv": {
                "height": block.height, "txs": len(block.txs), "late_ms": round(late * 1000),
                "apply_ms": round((time.perf_counter() - started) * 1000),
                "pool": len(node.mempool)}})
            return True
        parent = node.consensus.tree[block.previous_id]
        if chain.slot_of(block.timestamp) <= parent.slot or block.height != parent.height + 1:
            self.mark_bad(block.id, "slot or height does not follow its parent")
            return False
        # its signature was verified in accept_block, before it was held or kept as an
        # orphan (every block reaches here through there)
        if not node.consensus.may_own_slot(block.witness, chain.slot_of(block.timestamp)):
            self.mark_bad(block.id, "not signed by a witness that can own the slot")
            return False
        try:
            node.store.write({schema.block_key(block.id): block.encode()}, sync=False)
        except StorageError as exc:
            node.recovery.failed(exc, "store side block")
            return True
        chain.keep_decoded(block)  # a switch to its branch reads it back
        node.consensus.add_side_block(block)
        self.fork_choice()
        return block.id not in self.bad_blocks

    # --- a new head (a peer's block or this node's own) -------------------------------------

    def relay(self, block: Block) -> None:
        """Push a new main-chain block to the peers that lack it: first thing after its
        commit (the mempool's re-check of what is left takes a good part of a slot under
        load, and the next producer needs this block now)."""
        if self.node.network is not None:
            # compactly: the peers rebuild it from their mempools (p2p/compact.py)
            self.node.network.push_block(block.id, block.encode(),
                                         [tx.tx_id for tx in block.txs])

    def after_block(self, block: Block, started: float) -> None:
        node = self.node
        try:
            node.consensus.on_block_committed(block)
        except StorageError as exc:
            # the block is committed; only the engine's own records (schedule, chain-view
            # final) were not written: memory holds them, the recovery writes them again
            node.recovery.failed(exc, "consensus record")
        # the head and our vote go out before the mempool's re-check of what is left
        # (a good part of a slot under load): finality waits on the votes
        self.on_new_head_block(block)
        self.pool_on_new_head([tx.tx_id for tx in block.txs])
        self.finalize()
        elapsed = time.perf_counter() - started
        node.metrics.block_apply_seconds.observe(elapsed)
        node.metrics.txs_included.inc(len(block.txs))
        node.tx_intake.note_included(len(block.txs))
        node.ledger.state.trim_cache(CACHE_ENTRIES)
        if time.monotonic() - self._last_trim > TRIM_EVERY_S:
            self._last_trim = time.monotonic()
            trim_heap()
        node._update_metrics()

    def on_new_head_block(self, block: Block) -> None:
        """After a block joined the main chain and the engine counted it: announce the new
        head (and final block) and vote for its slot."""
        if self.node.network is not None:
            self.node.network.broadcast_head()
        self.node.cast_vote(self.node.chain.slot_of(block.timestamp))

    def fork_choice(self) -> None:
        """Section 7: stay above the final block; highest justified; height; first seen."""
        cons = self.node.consensus
        heads: list[HeadInfo] = []
        for leaf in cons.leaves():
            info = cons.tree[leaf]
            try:
                justified = cons.node_view.highest_justified_on(leaf).slot
            except ValueError:
                continue
            heads.append(HeadInfo(leaf, info.height, justified, self.seen.get(leaf, 0),
                                  cons.node_view.descends_from_final(leaf)))
        if not heads:
            return
        best = choose_head(heads)
        if best.block_id == self.node.chain.head.id:
            return
        # the head itself is a leaf only if nothing builds on it; compare with it directly
        head = self.node.chain.head
        mine = next((h for h in heads if h.block_id == head.id), None)
        if mine is not None and choose_head([mine, best]).block_id == head.id:
            return
        self.switch_to(best.block_id)

    def switch_to(self, tip: bytes) -> None:
        node = self.node
        chain, cons = node.chain, node.consensus
        branch_ids: list[bytes] = []
        cur = tip
        for _ in range(100_000):
            info = cons.tree.get(cur)
            if info is None:
                return
            if chain.block_id_at(info.height) == cur:
                break
            branch_ids.append(cur)
            cur = info.parent
        branch: list[Block] = []
        for bid in reversed(branch_ids):
            b = chain.get_block(bid)
            if b is None:
                return
            branch.append(b)
        started = time.perf_counter()
        fork_height = branch[0].height - 1 if branch else chain.head.height
        old_ids = [(h, chain.block_id_at(h)) for h in range(fork_height + 1,
                                                             chain.head.height + 1)]
        try:
            popped = cons.switch(branch)
        except ChainError as exc:
            self.mark_bad(exc.block_id or tip, str(exc))
            return
        except StorageError as exc:
            node.recovery.failed(exc, "switch")
            # the switch stopped where the failing batch left the chain (store and memory
            # agree on it): tell the engine and the mempool what left and what joined
            popped = [b for h, bid in reversed(old_ids) if bid is not None
                      and chain.block_id_at(h) != bid
                      and (b := chain.get_block(bid)) is not None]
            branch = [b for b in branch if chain.block_id_at(b.height) == b.id]
            if not popped and not branch:
                return
        try:
            cons.on_switch(popped, branch)
        except StorageError as exc:
            node.recovery.failed(exc, "consensus record")  # memory has it; see after_block
        if branch:  # as in after_block: the new head and our vote before the mempool
            self.relay(branch[-1])
            self.on_new_head_block(branch[-1])
        readd = [tx for b in popped for tx in b.txs]
        self.pool_on_new_head([tx.tx_id for b in branch for tx in b.txs], readd)
        log.info("switched", extra={"kv": {"popped": len(popped), "applied": len(branch),
                                           "head": chain.head.height}})
        self.finalize()
        node.metrics.block_apply_seconds.observe(time.perf_counter() - started)
        node._update_metrics()

    # --- votes and finality ---------------------------------------------------------------

    async def accept_votes(self, raws: list[bytes]) -> list[bool]:
        node = self.node
        verdicts: list[bool] = []
        fresh: list[tuple[bytes, bytes]] = []
        slot = node.current_slot()
        for raw in raws:
            try:
                vote = decode_vote(raw)
            except VoteError:
                verdicts.append(False)
                continue
            status, _evidence = node.consensus.add_vote(vote, slot + 1)
            # not_voter is no proof of a bad peer: an honest one on a branch that switched
            # voter sets at another round relays it (section 7's known limit)
            verdicts.append(status not in INVALID or status == "not_voter")
            if status in ("accepted", "pending"):
                fresh.append((vote.hash, vote.encode()))
        if fresh:
            if node.network is not None:
                node.network.push(Kind.VOTE, fresh)
            async with node._lock:
                self.finalize()
        return verdicts

    def finalize(self) -> None:
        """Move the chain's final block to the engine's final checkpoint (FFG, section 7).

        With one active witness its own vote is the supermajority (floor(2/3)+1 = 1), so
        each slot's vote justifies the head and finalizes the previous slot's block."""
        node = self.node
        if node.store.failed is not None:
            return  # paused; the first block or vote after the recovery finalizes
        final = node.consensus.final_block()
        info = node.consensus.tree.get(final.block_id)
        if info is None or info.height <= node.chain.final.height:
            return
        if node.chain.block_id_at(info.height) == final.block_id:
            old_final = node.chain.final.height
            try:
                node.chain.set_final(final.block_id)
            except StorageError as exc:
                node.recovery.failed(exc, "finalize")  # chain.final did not move
                return
            node.app_service.on_final(old_final, node.chain.final.height)
            node.consensus.prune_tree()  # what does not descend from final never wins

    # --- the mempool follows the head -----------------------------------------------------

    def pool_on_new_head(self, included: list[bytes], readd: list[SignedTx] | None = None
                         ) -> None:
        """Tell the mempool the head changed. A running node re-checks a chunk of the pool
        at once and leaves the rest to ``recheck_loop``; a node driven directly (tests,
        benchmarks) re-checks it all."""
        limit = RECHECK_CHUNK if self.node._nursery is not None else None
        self.node.mempool.on_new_head(included, readd or (), limit=limit)
        if self.node.mempool.unchecked:
            self.recheck_wakeup.set()

    async def recheck_loop(self) -> None:
        """The mempool's re-check after a new head, a chunk at a time. A loaded pool takes
        hundreds of ms to re-check (its txs re-applied on the new head); in one piece it
        held up the blocks and votes that arrived meanwhile, and under overload those
        late blocks forked the next producers. Between chunks they go first, and a newer
        head restarts the re-check rather than waiting for the old one."""
        node = self.node
        while not node.stopping.is_set():
            await self.recheck_wakeup.wait()
            self.recheck_wakeup = trio.Event()
            # bounded: a pool holds at most mempool_txs txs (newer heads refill the queue:
            # what a round leaves waits for the next)
            for _ in range(node.config.mempool_txs // RECHECK_CHUNK + 1):
                if not node.mempool.recheck(RECHECK_CHUNK) or node.stopping.is_set():
                    break
                await trio.sleep(0)
            else:
                self.recheck_wakeup.set()
            node.metrics.mempool_size.set(len(node.mempool))
