"""The chain: blocks applied through the Application, stored in one batch each.

Rules (protocol section 6, and architecture "Storage"):
- A block extends the head only if its parent is the head, its slot is later than the
  parent's, its witness is the slot's scheduled witness and signed it, its roots match
  (checked when decoded), every tx applies in order (claim closings first, done by the
  application's begin_block), and the state digest matches the recomputed one.
- Each block commits in ONE atomic write batch: the state changes, the block, its undo
  record, the height and tx indices, and the head pointer; sync=True. A kill at any
  instant leaves the last committed block, and a restart serves at once with no replay.
- pop_block undoes the head with its undo record, again in one batch.
- switch_to pops to the common ancestor and applies the other branch; if any block of
  the new branch fails, the old branch is re-applied, so a failed switch changes nothing.
- Undo records below the final block are pruned: nothing final is ever popped.
- With ``--keep-blocks N`` whole blocks are pruned too (``prune``): a batch at a time, the
  oldest first, each batch deleting the blocks' bodies, tx and vote index entries and
  history keys and raising ``lowest_block`` in the same write, so a kill at any instant
  leaves a store the node restarts from. Never pruned: the last N blocks, the final block
  and everything above it (fork choice, undo records, the final state's snapshot), the
  chain view's stored final checkpoint and the blocks above it (the engine replays their
  votes at start), the blocks of the tx lifetime below the final one (a snapshot for state
  sync carries their headers), and the height index of the last 2**16 heights (TaPoS
  names any of them: ref_block_num is 16 bits).
- A write that fails (a full disk) changes nothing in memory: head and final move only
  after their batch is written, and the app's cache is dropped. A switch stops where the
  failing batch left it. Once the store is reopened, ``reconcile`` undoes or redoes the one
  batch whose failure report may have been wrong.
The chain reads no clock: "not more than 1 s ahead of the local clock" is the node's check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from consensus.app import Application, BlockContext
from consensus.block import Block, decode_block
from consensus.errors import Rejected
from consensus.genesis import Genesis
from consensus.tx import SignedTx
from storage import schema
from storage.kv import KVStore

__all__ = ["TAPOS_WINDOW", "BlockIndexer", "BlockRef", "Chain", "ChainError"]

DECODED_BLOCKS = 16  # recently read blocks kept decoded
RECENT_IDS = 8192  # main-chain height -> id kept in memory (TaPoS, RPC); older: one read
TAPOS_WINDOW = 1 << 16  # heights a tx's ref_block_num can name below its block's parent

log = logging.getLogger("muxer.chain")


class ChainError(Exception):
    """A block that cannot extend the chain; ``reason`` says why (for scores and logs)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.block_id: bytes | None = None  # the block that failed, when known


@dataclass(frozen=True, slots=True)
class BlockRef:
    height: int
    id: bytes
    timestamp: int
    slot: int


class BlockIndexer(Protocol):
    """A node-side index written in each block's own batch (muxernode/history.py): its
    keys live under a prefix of its own (storage/schema.py), outside the state and its
    digest, so a kill at any instant leaves the index and the chain at the same block."""

    def commit_keys(self, block: Block, changes: Mapping[bytes, bytes | None]
                    ) -> Mapping[bytes, bytes | None]:
        """Keys to write with the block's commit (the app has applied it)."""
        ...

    def pop_keys(self, block: Block) -> Mapping[bytes, bytes | None]:
        """Keys to write (None: delete) in the batch that pops the block."""
        ...

    def prune_keys(self, block_id: bytes) -> Iterable[bytes]:
        """Keys to delete once the block is final (its undo record, if any)."""
        ...

    def drop_keys(self, block: Block) -> Iterable[bytes]:
        """Keys to delete when the (final) block itself is pruned (``Chain.prune``)."""
        ...


def _pack(obj: Any) -> bytes:
    # Local records (not consensus objects) may hold None: plain msgpack is right here.
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False)


class Chain:
    """The main chain over one KVStore, driving one Application (the chain's own view)."""

    def __init__(
        self,
        store: KVStore,
        app: Application,
        genesis: Genesis,
        witness_for_slot: Callable[[int], bytes],
    ) -> None:
        self.store = store
        self.app = app
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.params = genesis.params
        self.witness_for_slot = witness_for_slot
        raw = store.get(schema.META_HEAD)
        if raw is None:
            raise ChainError("not_initialized", "the data directory holds no chain; run init")
        self.head = BlockRef(*_unpack(raw))
        raw_final = store.get(schema.META_FINAL)
        self.final = BlockRef(*_unpack(raw_final)) if raw_final else self.genesis_ref
        raw_low = store.get(schema.META_PRUNED)
        # the lowest height whose block the store holds: 1 until ``prune`` raises it (or
        # higher in a store made from a snapshot, which holds no blocks below it)
        self.lowest_block = (self._first_stored_block() if raw_low is None
                             else schema.from_u64(raw_low))
        # recent height -> id on the main chain, for TaPoS without a store read per tx
        self._ids: dict[int, bytes] = {}
        self.on_commit: list[Callable[[Block, BlockRef], None]] = []
        self.on_pop: list[Callable[[Block], None]] = []  # after a pop, with the popped block
        self.indexers: list[BlockIndexer] = []  # add their keys to each block's batch
        # state keys the last commit changed, and a counter of commits and pops: a view
        # that saw version v-1 and finds last_changes set may refresh just those keys
        self.last_changes: Mapping[bytes, bytes | None] | None = None
        self._refs: dict[bytes, BlockRef] = {}  # recent committed blocks, for set_final
        self._decoded: dict[bytes, Block] = {}
        self.version = 0
        # extra validity of a block's votes (the consensus engine's): a reason, or None
        self.check_votes: Callable[[Block], str | None] | None = None
        # fsync every block commit; only bulk set-up (benchmarks) turns this off
        self.sync = True
        # the encoded votes that made a block final (the engine's), stored by set_final
        # with the final pointer so that a snapshot of the final state carries its proof
        self.final_votes: Callable[[bytes], list[bytes]] | None = None

    # --- set-up -----------------------------------------------------------------------

    @property
    def genesis_ref(self) -> BlockRef:
        return BlockRef(0, self.chain_id, self.genesis.genesis_time, 0)

    @staticmethod
    def initialize(store: KVStore, app: Any, genesis: Genesis) -> None:
        """Write genesis state and pointers (app must offer init_genesis)."""
        if store.get(schema.META_HEAD) is not None:
            raise ChainError("already_initialized", "the data directory already holds a chain")
        result = app.init_genesis(genesis)
        ref = [0, genesis.chain_id, genesis.genesis_time, 0]
        batch: dict[bytes, bytes | None] = dict(result.changes)
        batch[schema.height_key(0)] = genesis.chain_id
        batch[schema.META_HEAD] = _pack(ref)
        batch[schema.META_FINAL] = _pack(ref)
        batch[schema.META_CHAIN_ID] = genesis.chain_id
        store.write(batch, sync=True)

    # --- reads --------------------------------------------------------------------------

    def slot_of(self, timestamp: int) -> int:
        return (timestamp - self.genesis.genesis_time) // self.params.block_interval_s

    def block_id_at(self, height: int) -> bytes | None:
        if height < 0 or height > self.head.height:
            return None
        bid = self._ids.get(height)
        if bid is None:
            bid = self.store.get(schema.height_key(height))
            if bid is not None and height > self.head.height - RECENT_IDS:
                self._ids[height] = bid
        return bid

    def get_block(self, block_id: bytes) -> Block | None:
        # Blocks are immutable by id: recent ones stay decoded (RPC get_tx / get_block
        # polling would otherwise decode a whole block per call).
        block = self._decoded.get(block_id)
        if block is not None:
            return block
        raw = self.store.get(schema.block_key(block_id))
        if raw is None:
            return None
        block = decode_block(raw, self.params.max_block_bytes)
        self.keep_decoded(block)
        return block

    def keep_decoded(self, block: Block) -> None:
        """Keep a stored block decoded for ``get_block`` (among the DECODED_BLOCKS last):
        a side block the node just decoded is read again by the switch to its branch."""
        self._decoded[block.id] = block
        if len(self._decoded) > DECODED_BLOCKS:
            del self._decoded[next(iter(self._decoded))]

    def ref_at(self, height: int) -> BlockRef | None:
        """The main chain's block at height as a BlockRef, decoding it only if it is not
        among the recent committed ones (a header walk, e.g. participation, must not
        decode thousands of txs per block)."""
        bid = self.block_id_at(height)
        if bid is None:
            return None
        if height == 0:
            return self.genesis_ref
        ref = self._refs.get(bid)
        if ref is None:
            blk = self.get_block(bid)
            if blk is None:
                return None
            ref = BlockRef(blk.height, blk.id, blk.timestamp, self.slot_of(blk.timestamp))
        return ref

    def get_block_raw(self, block_id: bytes) -> bytes | None:
        return self.store.get(schema.block_key(block_id))

    def tx_height(self, tx_id: bytes) -> int | None:
        raw = self.store.get(schema.tx_index_key(tx_id))
        return None if raw is None else schema.from_u64(raw)

    def vote_included(self, vote_hash: bytes) -> bool:
        return self.store.get(schema.vote_index_key(vote_hash)) is not None

    def tapos_for(self, parent_height: int) -> Callable[[int], int | None]:
        """TaPoS lookup for a block whose parent is at parent_height on the main chain."""

        def tapos(num: int) -> int | None:
            h = parent_height - ((parent_height - num) & 0xFFFF)
            if h < 0:
                return None
            bid = self.block_id_at(h)
            return None if bid is None else int.from_bytes(bid[:4], "big")

        return tapos

    def context_for(self, timestamp: int, producer: bytes) -> BlockContext:
        return BlockContext(self.head.height + 1, timestamp, producer,
                            self.tapos_for(self.head.height))

    # --- extending ------------------------------------------------------------------------

    def validate_header(self, block: Block) -> None:
        """Checks that need the parent (the head) but no state."""
        head = self.head
        if block.previous_id != head.id:
            raise ChainError("not_head_child", "the block's parent is not the head")
        if block.height != head.height + 1:
            raise ChainError("bad_height", f"height {block.height}, expected {head.height + 1}")
        gap = block.timestamp - self.genesis.genesis_time
        if gap <= 0 or gap % self.params.block_interval_s:
            raise ChainError("bad_slot", "the timestamp is not a slot time")
        slot = self.slot_of(block.timestamp)
        if slot <= head.slot:
            raise ChainError("bad_slot", f"slot {slot} is not after the parent's {head.slot}")
        expected = self.witness_for_slot(slot)
        if block.witness != expected:
            raise ChainError("wrong_witness", f"slot {slot} belongs to {expected.hex()}")
        key = self.app.witness_signing_key(block.witness)
        if key is None or not block.verify_signature(self.chain_id, key):
            raise ChainError("bad_signature", "the block is not signed by the slot's witness")

    def apply_block(self, block: Block, extra: Iterable[tuple[bytes, bytes]] = ()) -> BlockRef:
        """Validate and commit a block on top of the head (txs' signatures already checked).

        ``extra`` are more (key, value) pairs to write in the same batch (the node's own
        records, e.g. the votes it includes)."""
        self.validate_header(block)
        if self.check_votes is not None:
            why = self.check_votes(block)
            if why is not None:
                raise ChainError("bad_vote", why)
        app = self.app
        app.begin_block(BlockContext(block.height, block.timestamp, block.witness,
                                     self.tapos_for(self.head.height)))
        try:
            for tx in block.txs:
                app.apply_tx(tx)
            result = app.end_block()
        except Rejected as exc:
            app.abort_block()
            raise ChainError("bad_tx", f"tx rejected: {exc}") from None
        except BaseException:
            app.abort_block()
            raise
        if result.state_digest != block.state_digest:
            # end_block folded the block into the app's cache and the store was not
            # written: dropping the cache returns the app to the committed state
            self.app_reset()
            raise ChainError("bad_digest", "the state digest differs from the recomputed one")
        return self._commit(block, result.changes, result.undo, extra)

    def _commit(
        self,
        block: Block,
        changes: Any,
        undo: Any,
        extra: Iterable[tuple[bytes, bytes]],
    ) -> BlockRef:
        ref = BlockRef(block.height, block.id, block.timestamp, self.slot_of(block.timestamp))
        batch: dict[bytes, bytes | None] = dict(changes)
        batch[schema.block_key(block.id)] = block.encode()
        batch[schema.undo_key(block.id)] = _pack(list(undo.items()))
        batch[schema.height_key(block.height)] = block.id
        hb = schema.u64(block.height)
        for tx in block.txs:
            batch[schema.tx_index_key(tx.tx_id)] = hb
        for vote in block.votes:
            batch[schema.vote_index_key(vote.hash)] = hb
        batch[schema.META_HEAD] = _pack([ref.height, ref.id, ref.timestamp, ref.slot])
        for indexer in self.indexers:
            batch.update(indexer.commit_keys(block, changes))
        for k, v in extra:
            batch[k] = v
        try:
            self.store.write(batch, sync=self.sync)
        except BaseException:
            # The store did not take the block: forget what the app cached for it.
            self.app_reset()
            raise
        self.head = ref
        self._refs[block.id] = ref
        if len(self._refs) > 4096:
            del self._refs[next(iter(self._refs))]
        self.last_changes = changes
        self.version += 1
        self._ids[block.height] = block.id
        self._ids.pop(block.height - RECENT_IDS, None)
        for cb in self.on_commit:
            cb(block, ref)
        return ref

    def app_reset(self) -> None:
        # The Ledger keeps its cache in ``app.state`` (no ``reset`` of its own): without
        # this fallback a pop, a bad digest or a failed write left the app's cache ahead
        # of the store.
        reset = getattr(self.app, "reset", None)
        if reset is None:
            reset = getattr(getattr(self.app, "state", None), "reset", None)
        if reset is not None:
            reset()

    def build_block(
        self,
        key: Any,
        timestamp: int,
        candidates: Iterable[SignedTx],
        votes: list[Any],
        max_bytes: int | None = None,
        max_txs: int | None = None,
        deadline: float | None = None,
    ) -> tuple[Block, list[SignedTx]]:
        """Produce a block on the head: apply candidates in order, skipping invalid ones.

        ``max_txs`` and ``deadline`` (a ``time.perf_counter()`` value) are the producer's
        own limits, not validity rules: every peer spends about as long applying a block
        as its producer spent building it, so a block built for too long arrives too late
        for the next slot's producer and forks it.

        Returns the block (already committed) and the txs that were rejected."""
        app = self.app
        limit = (max_bytes or self.params.max_block_bytes) - 1024  # header, votes, framing
        limit -= sum(len(v.encode()) + 4 for v in votes) if votes else 0
        app.begin_block(self.context_for(timestamp, key.address))
        included: list[SignedTx] = []
        dropped: list[SignedTx] = []
        size = 0
        try:
            for tx in candidates:
                n = len(tx.raw) + 2
                if size + n > limit or (max_txs is not None and len(included) >= max_txs):
                    break
                if (deadline is not None and not len(included) % 64
                        and time.perf_counter() > deadline):
                    break
                try:
                    app.apply_tx(tx)
                except Rejected:
                    dropped.append(tx)
                    continue
                included.append(tx)
                size += n
            result = app.end_block()
        except BaseException:
            app.abort_block()
            raise
        block = Block.build(key, self.chain_id, self.head.height + 1, self.head.id, timestamp,
                            included, votes, result.state_digest)
        try:
            self.validate_header(block)
        except ChainError:
            self.app_reset()  # end_block folded the block into the app's cache
            raise
        self._commit(block, result.changes, result.undo, ())
        return block, dropped

    # --- undoing ------------------------------------------------------------------------

    def pop_block(self) -> Block:
        """Undo the head block (never a final one) in one batch; returns it."""
        head = self.head
        if head.height <= self.final.height:
            raise ChainError("final", "cannot pop a final block")
        block = self.get_block(head.id)
        raw_undo = self.store.get(schema.undo_key(head.id))
        if block is None or raw_undo is None:
            raise ChainError("no_undo", f"no undo record for block {head.height}")
        # the parent's ref: a recent one is known without decoding the parent's txs
        parent = self.ref_at(block.height - 1)
        if parent is None or parent.id != block.previous_id:
            raise ChainError("no_parent", f"parent of block {head.height} is not stored")
        batch: dict[bytes, bytes | None] = {k: v for k, v in _unpack(raw_undo)}
        batch[schema.height_key(head.height)] = None
        batch[schema.undo_key(head.id)] = None
        for tx in block.txs:
            batch[schema.tx_index_key(tx.tx_id)] = None
        for vote in block.votes:
            batch[schema.vote_index_key(vote.hash)] = None
        batch[schema.META_HEAD] = _pack([parent.height, parent.id, parent.timestamp, parent.slot])
        for indexer in self.indexers:
            batch.update(indexer.pop_keys(block))
        self.store.write(batch, sync=True)
        self.app_reset()
        self.last_changes = None
        self.version += 1
        self.head = parent
        self._ids.pop(head.height, None)
        for cb in self.on_pop:
            cb(block)
        return block

    def switch_to(self, branch: list[Block]) -> list[Block]:
        """Make branch (oldest first, its first block's parent on our chain) the main chain.

        Returns the blocks popped (newest first). On failure raises ChainError whose
        ``block_id`` names the branch block that failed, with the old branch restored."""
        if not branch:
            return []
        fork_parent = branch[0].previous_id
        # Check the fork point before popping anything, so a refused switch changes nothing.
        fork_height = branch[0].height - 1
        if self.block_id_at(fork_height) != fork_parent:
            raise ChainError("unknown_parent", "the branch does not fork from the main chain")
        if fork_height < self.final.height:
            raise ChainError("final", "the branch leaves the final block")
        popped: list[Block] = []
        while self.head.id != fork_parent:
            popped.append(self.pop_block())
        applied = 0
        try:
            for block in branch:
                self.apply_block(block)
                applied += 1
        except ChainError as exc:
            exc.block_id = branch[applied].id
            for _ in range(applied):
                self.pop_block()
            for old in reversed(popped):
                self.apply_block(old)
            raise
        return popped

    def reconcile(self) -> None:
        """Make the store hold this chain again after it was reopened following a failed
        write (a full disk): memory, not the store, is what the node acted on.

        A batch whose write reported failure may be durable all the same (LevelDB: a failed
        fsync after the log record was whole). Writes stop at the first failure, so at most
        that one batch differs: a block commit (the store's head is a child of ours: pop it
        again; the node never relayed or voted for it), a pop (the store's head is our
        head's parent: apply our head again), or a final pointer (taken over: the node's
        finality already stood there). Anything else raises ChainError("store_diverged")."""
        raw = self.store.get(schema.META_HEAD)
        if raw is None:
            raise ChainError("store_diverged", "the store lost its head pointer")
        stored = BlockRef(*_unpack(raw))
        mine = self.head
        # the app's cache may hold what a failed batch was to write (a pop's failure leaves
        # it as it was): from here on it reads the store
        self.app_reset()
        if stored.id != mine.id:
            stored_block = self.get_block(stored.id)
            mine_block = self.get_block(mine.id)
            try:
                if (stored.height == mine.height + 1 and stored_block is not None
                        and stored_block.previous_id == mine.id):
                    log.warning("reconcile", extra={"kv": {"undo_commit": stored.height}})
                    self.head = stored  # what pop_block undoes
                    self.pop_block()
                elif (stored.height + 1 == mine.height and mine_block is not None
                        and mine_block.previous_id == stored.id):
                    log.warning("reconcile", extra={"kv": {"redo_block": mine.height}})
                    self.head = stored  # what apply_block extends
                    self.apply_block(mine_block)
                else:
                    raise ChainError("store_diverged", f"the store's head {stored.height} is "
                                     f"not next to the head in memory {mine.height}")
            except BaseException:
                # memory keeps what the node acted on; the next attempt compares again
                self.head = mine
                raise
        raw_final = self.store.get(schema.META_FINAL)
        if raw_final is not None:
            final = BlockRef(*_unpack(raw_final))
            if final.height > self.final.height and self.block_id_at(final.height) == final.id:
                self.final = final
        self.last_changes = None
        self.version += 1

    # --- finality -------------------------------------------------------------------------

    def set_final(self, block_id: bytes) -> None:
        """Record a new final block on the main chain and prune undo records below it."""
        ref = self._refs.get(block_id)
        if ref is None:  # not a recent main-chain block: read its header from the store
            raw = self.store.get(schema.block_key(block_id))
            if raw is None:
                return
            block = decode_block(raw, self.params.max_block_bytes)
            ref = BlockRef(block.height, block.id, block.timestamp, self.slot_of(block.timestamp))
        if ref.height <= self.final.height or self.block_id_at(ref.height) != block_id:
            return
        old = self.final
        batch: dict[bytes, bytes | None] = {
            schema.META_FINAL: _pack([ref.height, ref.id, ref.timestamp, ref.slot])
        }
        votes = self.final_votes(block_id) if self.final_votes is not None else []
        # [block id, votes] or nothing: a record of an older final block is never left
        batch[schema.META_FINAL_VOTES] = _pack([block_id, votes]) if votes else None
        for h in range(old.height + 1, ref.height + 1):
            bid = self.block_id_at(h)
            if bid is not None:
                batch[schema.undo_key(bid)] = None
                for indexer in self.indexers:
                    for k in indexer.prune_keys(bid):
                        batch[k] = None
        self.store.write(batch, sync=self.sync)
        self.final = ref

    # --- pruning ----------------------------------------------------------------------------

    def _first_stored_block(self) -> int:
        """The lowest main-chain height >= 1 whose block is stored (head + 1: none). One
        read pair unless the store began at a snapshot: then the heights of the headers it
        holds below the snapshot (their ids, not their blocks) are walked once."""
        for key, bid in self.store.iterate(schema.PREFIX_HEIGHT):
            h = schema.from_u64(key[1:])
            if h >= 1 and self.store.get(schema.block_key(bid)) is not None:
                return h
        return self.head.height + 1

    def prune_floor(self, keep: int) -> int:
        """The lowest height ``prune`` with ``keep`` blocks must leave (see the module doc):
        the last ``keep`` blocks, the final block and the chain view's stored checkpoint."""
        # a snapshot of the final state (state sync) carries the headers of the blocks a
        # tx's TaPoS reference reaches within the tx lifetime (muxernode/snapshot.py)
        lifetime = self.params.max_tx_lifetime_s // self.params.block_interval_s + 2
        floor = min(self.head.height - keep + 1,
                    self.final.height - min(lifetime, TAPOS_WINDOW - 1))
        raw = self.store.get(schema.META_CHAIN_FINAL)
        if raw is not None:
            floor = min(floor, int(_unpack(raw)[2]))
        return max(floor, self.lowest_block)

    def prune(self, keep: int, max_blocks: int) -> int:
        """Delete the oldest stored main-chain blocks below ``prune_floor(keep)``, at most
        ``max_blocks`` of them, in one batch; the number pruned. Each block goes with its
        tx and vote index entries, its undo record (if any was left) and its indexers'
        keys, and the height index entry TAPOS_WINDOW below it; ``lowest_block`` moves in
        the same batch. Not synced: a batch lost in a crash is lost whole (LevelDB batches
        are atomic), and the next call does it again."""
        start = self.lowest_block
        stop = min(self.prune_floor(keep), start + max_blocks)
        if stop <= start:
            return 0
        batch: dict[bytes, bytes | None] = {}
        gone: list[bytes] = []
        for h in range(start, stop):
            bid = self.block_id_at(h)
            raw = None if bid is None else self.store.get(schema.block_key(bid))
            if bid is not None and raw is not None:
                # decoded without the cache: these blocks are never read again
                block = decode_block(raw, self.params.max_block_bytes)
                gone.append(bid)
                batch[schema.block_key(bid)] = None
                batch[schema.undo_key(bid)] = None
                for tx in block.txs:
                    batch[schema.tx_index_key(tx.tx_id)] = None
                for vote in block.votes:
                    batch[schema.vote_index_key(vote.hash)] = None
                for indexer in self.indexers:
                    for k in indexer.drop_keys(block):
                        batch[k] = None
            if h > TAPOS_WINDOW:
                batch[schema.height_key(h - TAPOS_WINDOW)] = None
        batch[schema.META_PRUNED] = schema.u64(stop)
        self.store.write(batch, sync=False)
        self.lowest_block = stop
        for bid in gone:
            self._decoded.pop(bid, None)
            self._refs.pop(bid, None)
        return stop - start

    def is_pruned(self, height: int) -> bool:
        """True iff the main chain's block at ``height`` was pruned from this store."""
        return 0 < height < self.lowest_block
