"""Catching up and the p2p layer's view of the node (protocol section 8).

``BlockSync`` asks peers that are ahead for ranges of blocks (the peers ahead take turns;
after two rounds without progress it starts again from the final block) and releases the
blocks held from the near future once their time has come. ``P2PAdapter`` is the node as
the p2p layer sees it (``p2p.P2PHandler``): items in, verdicts out; the p2p layer knows
nothing of the ledger.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING

import trio

from consensus.block import Block
from consensus.finality import Checkpoint, FinalityTracker
from consensus.tx import tx_id_of
from p2p import MAX_FRAME, Kind, PeerUnavailable

if TYPE_CHECKING:
    from muxernode.node import Node

__all__ = ["SYNC_BATCH", "BlockSync", "P2PAdapter"]

SYNC_BATCH = 256
HOLD_BEHIND_S = 10  # a range ending this far behind now: its unfinal tail waits for more
MAX_TAIL = 16  # blocks kept back at most
RECENT_TXS = 8192  # gossiped txs remembered for compact-block rebuilds (~1.5 MB)
MIN_TX_BYTES = 66  # tx_id_of cuts a 64-byte signature and its bin header off the end


class BlockSync:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.wakeup = trio.Event()  # a peer is ahead, an orphan came, the store recovered
        # sync from final blocks: txs of synced blocks whose signatures were not checked
        # again (final by the range's votes) and txs whose signatures were
        self.txs_trusted = 0
        self.txs_checked = 0
        self.tail: list[Block] = []  # the unfinal end of the last range, kept (see plan)

    async def accept_range(self, raws: list[bytes]) -> list[bool]:
        """A range of blocks from sync (BLOCK_RANGE): like gossip, except that the tx
        signatures of the blocks the range's own votes make final are not checked again,
        unless the node is told to verify all signatures (docs/security.md)."""
        follower = self.node.follower
        if self.node.config.verify_all_signatures:
            return await follower.accept_blocks(raws, self._check_all)
        return await follower.accept_blocks(raws, self.plan)

    def _check_all(self, blocks: list[Block]) -> list[tuple[Block, bool]]:
        self.txs_checked += sum(len(b.txs) for b in blocks)
        return [(b, True) for b in blocks]

    def plan(self, blocks: list[Block]) -> list[tuple[Block, bool]]:
        """What to take of a sync range, and how: the blocks final by the votes are taken
        without their tx signatures checked. The last blocks of a range are never final
        by its own votes (those come in the next blocks), so far behind the head they are
        kept back (``tail``) and counted with the next range, which makes them final;
        near the head, or when the next range does not continue them, they are taken
        with every signature checked."""
        held, self.tail = self.tail, []
        out: list[tuple[Block, bool]] = []
        if held and not (blocks and blocks[0].previous_id == held[-1].id
                         and blocks[0].height == held[-1].height + 1):
            out += [(b, True) for b in held]
            self.txs_checked += sum(len(b.txs) for b in held)
            held = []
        run = held + blocks
        trusted = self.final_by_votes(run)
        keep = len(run)
        ahead = max((h for h, _i, _f in self.node.peer_heads.values()), default=0)
        if (blocks and blocks[-1].timestamp < self.node.now() - HOLD_BEHIND_S
                and ahead > blocks[-1].height):  # more to come: a peer is beyond it
            while keep > 0 and run[keep - 1].id not in trusted and len(run) - keep < MAX_TAIL:
                keep -= 1
        self.tail = run[keep:]
        # final_by_votes counted the held blocks as checked; they come back next time
        self.txs_checked -= sum(len(b.txs) for b in self.tail)
        out += [(b, b.id not in trusted) for b in run[:keep]]
        return out

    def final_by_votes(self, blocks: list[Block]) -> set[bytes]:
        """The ids of the blocks of a sync range that the votes included in the range (and
        in our chain above our final block) make final, counted by the finality rules
        (protocol section 7) with our chain's voter sets and signing keys, every vote's
        signature checked. Only a range that continues our main chain above our final
        block is considered; of it, the run of blocks each the parent of the next."""
        node = self.node
        chain = node.chain
        final = chain.final
        heights: dict[bytes, int] = {}
        slots: dict[bytes, int] = {}
        run: list[Block] = []
        if blocks:
            first = blocks[0]
            parent_h = first.height - 1
            if parent_h >= final.height and chain.block_id_at(parent_h) == first.previous_id:
                run.append(first)
                for b in blocks[1:]:
                    if b.previous_id != run[-1].id or b.height != run[-1].height + 1:
                        break
                    run.append(b)
        if not run:
            self.txs_checked += sum(len(b.txs) for b in blocks)
            return set()
        ours: list[Block] = []  # our main chain from above final to the range's parent
        for h in range(final.height + 1, run[0].height):
            bid = chain.block_id_at(h)
            mine = chain.get_block(bid) if bid is not None else None
            if mine is None:
                self.txs_checked += sum(len(b.txs) for b in blocks)
                return set()
            ours.append(mine)
        heights[final.id], slots[final.id] = final.height, final.slot
        for b in ours + run:
            heights[b.id], slots[b.id] = b.height, chain.slot_of(b.timestamp)

        def is_ancestor(a: bytes, b: bytes) -> bool:  # one line of blocks: by height
            return a in heights and b in heights and heights[a] <= heights[b]

        tracker = FinalityTracker(node.chain_id, Checkpoint(final.id, final.slot),
                                  node.consensus.voters_for_slot, is_ancestor, slots.get)
        for b in ours + run:
            for v in b.votes:
                tracker.add_vote(v, max_target_slot=slots[b.id])  # signature checked
        top = heights.get(tracker.final.block_id, final.height)
        trusted = {b.id for b in run if b.height <= top}
        n = sum(len(b.txs) for b in blocks if b.id in trusted)
        self.txs_trusted += n
        self.txs_checked += sum(len(b.txs) for b in blocks) - n
        return trusted

    def _reached(self) -> int:
        """The height sync has reached: the head, or the last block kept back."""
        return self.tail[-1].height if self.tail else self.node.chain.head.height

    async def loop(self) -> None:
        """Catch up from peers that are ahead: ranges of blocks, from several peers."""
        net = self.node.network
        if net is None:
            return
        stuck = 0
        while not self.node.stopping.is_set():
            with trio.move_on_after(1.0):
                await self.wakeup.wait()
            self.wakeup = trio.Event()
            self.release_held()
            head = self.node.chain.head
            before = self._reached()
            if stuck < 2:  # past the blocks kept back from the last range (see plan)
                start = self.tail[-1].height + 1 if self.tail else head.height + 1
            else:
                self.tail = []  # starting over: they come again
                start = self.node.chain.final.height + 1
            # only peers that serve the blocks from start on: a pruned peer (HELLO's
            # lowest_block and keep_blocks) would answer an empty range
            ahead = [(h, pid) for pid, (h, _i, _f) in self.node.peer_heads.items()
                     if h > head.height and (low := net.serves_from(pid)) is not None
                     and low <= start]
            if not ahead and not self.node.follower.orphans:
                stuck = 0
                continue
            if not ahead:
                continue
            ahead.sort(reverse=True)
            # spread the load: the peers ahead take turns
            _h, pid = ahead[stuck % len(ahead)]
            try:
                await net.request_blocks(pid, start, SYNC_BATCH)
            except PeerUnavailable:
                self.node.peer_heads.pop(pid, None)
            stuck = stuck + 1 if self._reached() <= before else 0
            if stuck > 4:
                stuck = 0
            else:
                self.wakeup.set()

    def release_held(self) -> None:
        now = self.node.now()
        held = self.node.follower.held
        due = [b for b in held.values() if b.timestamp <= now + 1]
        for b in due:
            del held[b.id]
            if self.node._nursery is not None:
                self.node._nursery.start_soon(self.node.accept_block, b)


class P2PAdapter:
    """The node as the p2p layer sees it (p2p.P2PHandler): items in, verdicts out."""

    def __init__(self, node: Node) -> None:
        self.node = node
        # the last gossiped txs by id, verified or not: under load a tx waits in the
        # intake's queue for a while before it reaches the mempool, and a compact block
        # naming it is rebuilt from here instead of asking for it (the block path checks
        # its signature like any tx not in the mempool, and the body hash its bytes)
        self.recent_txs: OrderedDict[bytes, bytes] = OrderedDict()

    def head(self) -> tuple[int, bytes, int]:
        chain = self.node.chain
        return chain.head.height, chain.head.id, chain.final.height

    def served_blocks(self) -> tuple[int, int]:
        """What HELLO says of the blocks we serve: the lowest one stored, and the blocks
        kept below the head when pruning (0: all)."""
        pruner = self.node.pruner
        return self.node.chain.lowest_block, 0 if pruner is None else pruner.keep

    def has(self, kind: Kind, item_id: bytes) -> bool:
        node = self.node
        if kind is Kind.TX:
            # the latest blocks' ids in memory, not the store's tx index: asked for every
            # id a peer offers (TxIntake.recently_included)
            return item_id in node.mempool or node.tx_intake.recently_included(item_id)
        if kind is Kind.BLOCK:
            return node.block_known(item_id)
        return (item_id in node.consensus.vote_pool
                or node.chain.vote_included(item_id))

    def get_items(self, kind: Kind, ids: list[bytes]) -> list[bytes]:
        node = self.node
        out: list[bytes] = []
        for i in ids:
            raw: bytes | None = None
            if kind is Kind.TX:
                tx = node.mempool.get(i)
                raw = None if tx is None else tx.raw
            elif kind is Kind.BLOCK:
                raw = node.chain.get_block_raw(i)
            else:
                vote = node.consensus.vote_pool.get(i)
                raw = None if vote is None else vote.encode()
            if raw is not None:
                out.append(raw)
        return out

    def pool_txs(self) -> Iterator[tuple[bytes, bytes]]:
        """(tx id, bytes) of the mempool's txs and of the txs gossiped lately that are not
        in it (yet): what compact blocks are rebuilt from."""
        pool = self.node.mempool
        for tx in pool.pending():
            yield tx.tx_id, tx.raw
        for tx_id, raw in list(self.recent_txs.items()):
            if tx_id not in pool:
                yield tx_id, raw

    def get_blocks(self, from_height: int, count: int) -> list[bytes]:
        chain = self.node.chain
        out: list[bytes] = []
        size = 0
        for h in range(max(1, from_height), min(chain.head.height, from_height + count - 1) + 1):
            bid = chain.block_id_at(h)
            raw = chain.get_block_raw(bid) if bid else None
            if raw is None:
                break
            out.append(raw)
            size += len(raw)
            if size >= MAX_FRAME:  # p2p sends one frame of them: reading more is waste
                break
        return out

    async def on_txs(self, peer_id: bytes, raws: list[bytes]) -> list[bool]:
        # Queued, not awaited: verifying them here would hold this peer's reader, and a
        # block or vote queued behind a batch of txs would arrive late and fork the next
        # producer. Invalid ones are reported to the network once checked.
        self.node.tx_intake.queue_gossip(peer_id, raws)
        recent = self.recent_txs
        for raw in raws:
            if len(raw) > MIN_TX_BYTES:
                recent[tx_id_of(raw)] = raw
        while len(recent) > RECENT_TXS:
            recent.popitem(last=False)
        return [True] * len(raws)

    async def on_blocks(self, peer_id: bytes, raws: list[bytes]) -> list[bool]:
        return await self.node.accept_blocks(raws)

    async def on_block_range(self, peer_id: bytes, raws: list[bytes]) -> list[bool]:
        return await self.node.block_sync.accept_range(raws)

    async def on_votes(self, peer_id: bytes, raws: list[bytes]) -> list[bool]:
        return await self.node.accept_votes(raws)

    async def on_head(self, peer_id: bytes, head_height: int, head_id: bytes,
                      final_height: int) -> None:
        node = self.node
        node.peer_heads[peer_id] = (head_height, head_id, final_height)
        net = node.network
        if net is not None and len(node.peer_heads) > 2 * len(net.peer_ids()) + 64:
            # forget the heads of peers that are gone: node keys are free, so a stream of
            # connections under fresh keys would otherwise grow this without bound
            live = set(net.peer_ids())
            node.peer_heads = {p: h for p, h in node.peer_heads.items() if p in live}
        if head_height > node.chain.head.height:
            node.block_sync.wakeup.set()
