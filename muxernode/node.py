"""The node: storage, chain, ledger, mempool, witness production, finality and RPC on trio.

One data path: bytes in (RPC, later p2p) -> decode and verify once (worker threads) ->
mempool -> block -> chain -> one storage batch -> events out. The I/O shell takes its
clock as a parameter so that simulations can drive it with trio's MockClock.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from consensus.block import Block, BlockError, decode_block, peek_block_id
from consensus.chain import Chain, ChainError
from consensus.crypto import PrivateKey
from consensus.engine import Consensus
from consensus.finality import INVALID, HeadInfo, VoterGuard, choose_head
from consensus.genesis import Genesis, load_genesis
from consensus.mempool import Mempool
from consensus.tx import SignedTx
from consensus.vote import VoteError, decode_vote
from muxernode.config import NodeConfig
from muxernode.intake import (  # re-exported: tests and benches import them from here
    INTAKE_CUT,
    INTAKE_MIN,
    INTAKE_STEP,
    LATE_S,
    ON_TIME_S,
    TxIntake,
    verify_batch,
)
from muxernode.ledger import Ledger
from muxernode.metrics import NodeMetrics
from muxernode.producer import Producer
from muxernode.queries import QueryService
from muxernode.recovery import StorageRecovery
from muxernode.service import AppService
from muxernode.sync import BlockSync, P2PAdapter
from p2p import Kind, Network, P2PConfig, Transport
from storage import schema
from storage.leveldb import LevelDBStore, StorageError

__all__ = ["INTAKE_CUT", "INTAKE_MIN", "INTAKE_STEP", "LATE_S", "ON_TIME_S", "Node",
           "NodeError", "init_data_dir", "load_witness_key", "verify_batch"]

log = logging.getLogger("muxer.node")

GENESIS_FILE = "genesis.json"
DB_DIR = "db"
RPC_ADDR_FILE = "rpc.addr"
NODE_KEY_FILE = "node.key"  # the p2p identity (not a witness key), mode 0600
MAX_ORPHANS = 2048  # blocks whose parent we have not seen yet
MAX_HELD = 256  # blocks from the near future, held until their time
RECHECK_CHUNK = 256  # pool txs re-checked between two looks at other work (~5-15 ms)
# decoded state records kept per ledger view (chain's and mempool's); bounds memory
CACHE_ENTRIES = 15_000
TRIM_EVERY_S = 10.0  # hand freed heap back to the OS this often (RSS stays flat)


class NodeError(Exception):
    """A node that cannot start: the message says what to fix."""


def init_data_dir(genesis_path: str | Path, data_dir: str | Path) -> Genesis:
    genesis = load_genesis(genesis_path)
    d = Path(data_dir)
    if (d / DB_DIR).exists():
        raise NodeError(f"{d} already holds a chain (remove it to start over)")
    d.mkdir(parents=True, exist_ok=True)
    (d / GENESIS_FILE).write_text(Path(genesis_path).read_text(encoding="utf-8"))
    store = LevelDBStore(str(d / DB_DIR))
    try:
        schema.check_schema(store)
        Chain.initialize(store, Ledger(store, genesis.params, genesis.genesis_time), genesis)
    finally:
        store.close()
    return genesis


def load_witness_key(path: str | Path) -> PrivateKey:
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise NodeError(f"cannot read witness key {p}: {exc.strerror}") from None
    if st.st_mode & 0o077:
        raise NodeError(
            f"witness key {p} is readable by others (mode {st.st_mode & 0o777:o}); "
            f"run: chmod 600 {p}"
        )
    text = p.read_text(encoding="utf-8").strip()
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise NodeError(f"witness key {p} must hold 64 hex digits") from None
    if len(seed) != 32:
        raise NodeError(f"witness key {p} must hold 64 hex digits")
    return PrivateKey(seed)


def _trim_heap() -> None:
    """Hand freed heap back to the OS (glibc's malloc_trim; a no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _release_memory() -> None:
    """After a large transient parse: collect, then trim."""
    gc.collect()
    _trim_heap()


def load_or_create_node_key(data_dir: Path) -> PrivateKey:
    """The node's p2p identity: created once (0600), then reused so peers know it."""
    path = data_dir / NODE_KEY_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(os.urandom(32).hex() + "\n")
    return load_witness_key(path)


class Node:
    def __init__(
        self,
        data_dir: str | Path,
        config: NodeConfig,
        *,
        now: Callable[[], float] = time.time,
        witness_key: PrivateKey | None = None,
        transport: Transport | None = None,
        rng: random.Random | None = None,
        inline_verify: bool = False,
        serve_rpc: bool = True,
    ) -> None:
        """``now`` is the node's clock (simulation: derived from trio's MockClock);
        ``transport``/``rng`` go to the p2p layer (simulation: memory streams and a seeded
        Random); ``inline_verify`` checks signatures on the event loop instead of worker
        threads, because a worker thread would let virtual time jump while it runs."""
        self.data_dir = Path(data_dir)
        self.config = config
        self.now = now
        self.transport = transport
        self.rng = rng
        self.inline_verify = inline_verify
        self.serve_rpc = serve_rpc
        gpath = self.data_dir / GENESIS_FILE
        if not gpath.exists():
            raise NodeError(f"{self.data_dir} is not initialised: run muxernode init first")
        # The balances matter only to `init`; a node keeps the rest (chain id, time, params,
        # witnesses) and hands the memory the parse used back to the OS.
        self.genesis = dataclasses.replace(load_genesis(gpath), balances=())
        _release_memory()
        self.params = self.genesis.params
        self.chain_id = self.genesis.chain_id
        open_started = time.perf_counter()
        self.store = LevelDBStore(str(self.data_dir / DB_DIR))
        try:
            schema.check_schema(self.store)
            stored = self.store.get(schema.META_CHAIN_ID)
            if stored is not None and stored != self.chain_id:
                raise NodeError(f"{self.data_dir}: the database belongs to another chain")
            self.ledger = Ledger(self.store, self.params, self.genesis.genesis_time)
            self.chain = Chain(self.store, self.ledger, self.genesis, self.witness_for_slot)
            self.consensus = Consensus(self.chain, self.ledger.elected_witnesses,
                                       self.ledger.witness_signing_key)
            self.chain.check_votes = self.consensus.check_votes
            raw_guard = self.store.get(schema.META_LAST_VOTE)
            self.guard = VoterGuard.load(raw_guard) if raw_guard else VoterGuard(keep=16)
        except BaseException:
            self.store.close()
            raise
        # How the node came up, for operators and the crash tests: a restart reads the
        # head pointer and serves; chain.version counts the blocks applied or popped
        # through the chain since the open, so it is 0 unless start-up replayed blocks.
        log.info("opened", extra={"kv": {
            "head": self.chain.head.height, "final": self.chain.final.height,
            "replayed_blocks": self.chain.version,
            "open_ms": round((time.perf_counter() - open_started) * 1000)}})
        self.pending = Ledger(self.store, self.params, self.genesis.genesis_time)
        self._pending_version = self.chain.version
        self.mempool = Mempool(
            self.pending,
            self._next_context,
            self._refresh_pending,
            max_count=config.mempool_txs,
            max_bytes=config.mempool_bytes,
        )
        self.witness_key = witness_key
        self.node_key = load_or_create_node_key(self.data_dir)
        # section 12: the history index (in each block's batch), the event hub, queries
        self.app_service = AppService(self.chain, self.ledger, self.mempool, self.store,
                                      history=config.history, secret=self.node_key.seed)
        self.rpc_token: str | None = None  # admin RPC methods need it (<data_dir>/rpc.token)
        if serve_rpc:
            from muxernode.rpc import TokenError, load_or_create_token

            try:
                self.rpc_token = load_or_create_token(self.data_dir)
            except TokenError as exc:
                self.store.close()
                raise NodeError(str(exc)) from None
        self.network: Network | None = None
        self.orphans: dict[bytes, Block] = {}  # by id; parent not known yet
        self.held: dict[bytes, Block] = {}  # from the near future (section 6: hold, not drop)
        self.bad_blocks: dict[bytes, None] = {}  # ids known invalid (bounded, oldest out)
        self.seen: dict[bytes, int] = {}  # block id -> arrival order, for the fork choice
        self._seen_counter = 0
        self.peer_heads: dict[bytes, tuple[int, bytes, int]] = {}
        self._nursery: trio.Nursery | None = None
        self.p2p_port: int | None = None
        self._last_trim = time.monotonic()
        self._recheck_wakeup = trio.Event()  # the mempool has txs to re-check
        self.metrics = NodeMetrics()
        self.metrics.app_figures = self.app_service.metrics
        self.queries = QueryService(self)  # the RPC's backend: reads only
        # read when /metrics is scraped: a LevelDB property costs a mutex, not a scan
        self.metrics.leveldb_memory.set_function(lambda: self.store.memory_stats()[0])
        self.metrics.leveldb_table_files.set_function(lambda: self.store.memory_stats()[1])
        self.tx_intake = TxIntake(self)  # decode, verify once, admit
        self.producer = Producer(self)  # the witness: blocks and votes
        self.block_sync = BlockSync(self)  # catching up from peers
        self.started = False
        self.stopping = trio.Event()
        self.rpc_port: int | None = None
        self._lock = trio.Lock()  # one writer at a time: producer, block application
        self.recovery = StorageRecovery(self)  # a failed write (full disk): pause, retry
        self._update_metrics()

    # --- schedule -----------------------------------------------------------------------

    def active_witnesses(self) -> list[bytes]:
        return self.consensus.active_witnesses(max(self.current_slot(), 1))

    def witness_for_slot(self, slot: int) -> bytes:
        return self.consensus.witness_for_slot(slot)

    def slot_time(self, slot: int) -> int:
        return self.genesis.genesis_time + slot * self.params.block_interval_s

    def current_slot(self) -> int:
        return int(self.now() - self.genesis.genesis_time) // self.params.block_interval_s

    def _refresh_pending(self) -> None:
        """The mempool's view follows the chain: forget only what the last block changed."""
        chain = self.chain
        if self._pending_version == chain.version:
            self.pending.state.rollback()  # same head (an eviction): keep the whole cache
        elif self._pending_version == chain.version - 1 and chain.last_changes is not None:
            self.pending.state.absorb(chain.last_changes)
        else:
            self.pending.state.reset()
        self._pending_version = chain.version
        self.pending.state.trim_cache(CACHE_ENTRIES)

    def _next_context(self) -> Any:
        ts = max(self.slot_time(self.current_slot() + 1), self.chain.head.timestamp + 1)
        return self.chain.context_for(ts, bytes(20))

    # --- submission ---------------------------------------------------------------------

    # --- tx intake (muxernode/intake.py) --------------------------------------------------

    async def submit_txs(self, raws: list[bytes], relay: bool = True,
                         gossip: bool = False) -> list[dict[str, Any]]:
        """Admit txs (RPC or, with ``gossip``, from peers); a result per raw, in order."""
        return await self.tx_intake.submit(raws, relay, gossip)

    async def _verify(self, txs: list[SignedTx], urgent: bool = False) -> list[bool]:
        return await self.tx_intake.verify(txs, urgent)

    @property
    def intake(self) -> float:
        """The share of the mempool's room open to RPC txs (TxIntake.adapt)."""
        return self.tx_intake.share

    # --- production and votes (muxernode/producer.py) -----------------------------------

    def produce(self, slot: int) -> Block:
        """Build, commit and relay this node's block for ``slot``."""
        return self.producer.build(slot)

    def cast_vote(self, slot: int) -> None:
        """The honest vote for ``slot``: recorded and persisted before it leaves the node."""
        self.producer.vote(slot)

    def _after_block(self, block: Block, started: float) -> None:
        try:
            self.consensus.on_block_committed(block)
        except StorageError as exc:
            # the block is committed; only the engine's own records (schedule, chain-view
            # final) were not written: memory holds them, the recovery writes them again
            self.recovery.failed(exc, "consensus record")
        # the head and our vote go out before the mempool's re-check of what is left
        # (a good part of a slot under load): finality waits on the votes
        self._on_new_head_block(block)
        self._pool_on_new_head([tx.tx_id for tx in block.txs])
        self._finalize()
        elapsed = time.perf_counter() - started
        self.metrics.block_apply_seconds.observe(elapsed)
        self.metrics.txs_included.inc(len(block.txs))
        self.tx_intake.note_included(len(block.txs))
        self.ledger.state.trim_cache(CACHE_ENTRIES)
        if time.monotonic() - self._last_trim > TRIM_EVERY_S:
            self._last_trim = time.monotonic()
            _trim_heap()
        self._update_metrics()

    def _finalize(self) -> None:
        """Move the chain's final block to the engine's final checkpoint (FFG, section 7).

        With one active witness its own vote is the supermajority (floor(2/3)+1 = 1), so
        each slot's vote justifies the head and finalizes the previous slot's block."""
        if self.store.failed is not None:
            return  # paused; the first block or vote after the recovery finalizes
        final = self.consensus.final_block()
        info = self.consensus.tree.get(final.block_id)
        if info is None or info.height <= self.chain.final.height:
            return
        if self.chain.block_id_at(info.height) == final.block_id:
            old_final = self.chain.final.height
            try:
                self.chain.set_final(final.block_id)
            except StorageError as exc:
                self.recovery.failed(exc, "finalize")  # chain.final did not move
                return
            self.app_service.on_final(old_final, self.chain.final.height)
            self.consensus.prune_tree()  # what does not descend from final never wins

    def _update_metrics(self) -> None:
        m = self.metrics
        m.head_height.set(self.chain.head.height)
        m.final_height.set(self.chain.final.height)
        m.mempool_size.set(len(self.mempool))
        m.mempool_bytes.set(self.mempool.size_bytes)
        m.tx_rate.set(self.tx_intake.tx_rate())
        m.peers.set(0 if self.network is None else len(self.network.peer_ids()))
        m.peers_banned.set(0 if self.network is None else self.network.stats()["banned"])

    # --- blocks and votes from peers (protocol sections 6-8) ------------------------------

    def _mark_seen(self, block_id: bytes) -> None:
        if block_id not in self.seen:
            self._seen_counter += 1
            self.seen[block_id] = self._seen_counter
            if len(self.seen) > 100_000:
                for k in list(self.seen)[:10_000]:
                    del self.seen[k]

    def _mark_bad(self, block_id: bytes, why: str) -> None:
        self.bad_blocks[block_id] = None
        if len(self.bad_blocks) > 10_000:
            del self.bad_blocks[next(iter(self.bad_blocks))]
        self.consensus.forget_block(block_id)
        log.warning("bad_block", extra={"kv": {"block": block_id[:8], "why": why}})

    def block_known(self, block_id: bytes) -> bool:
        return (block_id in self.bad_blocks or block_id in self.orphans
                or block_id in self.held
                or self.store.get(schema.block_key(block_id)) is not None)

    def _have_block(self, block_id: bytes) -> bool:
        # "have it" = in the block tree, not merely stored: a side block stored before a
        # restart is not in the rebuilt tree and must be taken again when it comes back
        return (block_id in self.consensus.tree or block_id in self.orphans
                or block_id in self.held)

    async def accept_blocks(self, raws: list[bytes]) -> list[bool]:
        """Blocks from a peer (gossip or sync): False iff a block is invalid."""
        verdicts: list[bool] = []
        for raw in raws:
            seen = peek_block_id(raw)
            if seen is not None and seen in self.bad_blocks:
                verdicts.append(False)
                continue
            if seen is not None and self._have_block(seen):
                verdicts.append(True)  # a copy from another neighbour: skip its decoding
                continue
            try:
                block = decode_block(raw, self.params.max_block_bytes, self.mempool.get)
            except BlockError as exc:
                log.info("block_rejected", extra={"kv": {"why": str(exc)}})
                verdicts.append(False)
                continue
            verdicts.append(await self.accept_block(block))
        return verdicts

    async def accept_block(self, block: Block) -> bool:
        if block.id in self.bad_blocks:
            return False
        # a second block its witness signed for a slot is evidence even when the block is
        # of no use (below final, or invalid later): checked before anything drops it
        self.consensus.note_block(block, verified=False)
        if self._have_block(block.id) or block.height <= self.chain.final.height:
            return True  # already have it, or it cannot matter (below final)
        # Neither the witness's signature nor the txs' signatures are covered by the block
        # id: a copy with a bad one is refused (its sender penalized) but must never mark
        # the id bad, or whoever sends a malleated copy first gets the honest block refused
        # (and its relayers penalized). Both are checked before a block is held or kept as
        # an orphan, because a kept block is applied later without another look at them.
        key = self.ledger.witness_signing_key(block.witness)
        if key is None or not block.verify_signature(self.chain_id, key):
            # parent known: the chain's own check, the sender is at fault; parent unknown:
            # our witness keys may be older than the block's, so it is dropped unjudged
            return block.previous_id not in self.consensus.tree
        if not await self._verify_block_txs(block):
            return False  # wrong on any chain: a tx signature covers nothing but its tx
        if self._have_block(block.id):
            return True  # taken meanwhile, from another peer
        if block.timestamp > self.now() + 1:
            if len(self.held) < MAX_HELD:
                self.held[block.id] = block
            return True
        if block.previous_id not in self.consensus.tree:
            if len(self.orphans) >= MAX_ORPHANS:
                del self.orphans[next(iter(self.orphans))]
            self.orphans[block.id] = block
            self.block_sync.wakeup.set()
            return True
        if self.store.failed is not None:
            return True  # paused: dropped, not judged; the sync fetches it after recovery
        self._mark_seen(block.id)
        ok = True
        async with self._lock:
            with trio.CancelScope(shield=True):
                ok = self._take_block(block)
                # orphans waiting for this block (iteratively: a synced run of children)
                if ok:
                    for _ in range(MAX_ORPHANS):
                        child = next((b for b in self.orphans.values()
                                      if b.previous_id in self.consensus.tree
                                      and b.id not in self.consensus.tree), None)
                        if child is None:
                            break
                        del self.orphans[child.id]
                        self._mark_seen(child.id)
                        self._take_block(child)
        return ok

    async def _verify_block_txs(self, block: Block) -> bool:
        # verified once: txs admitted to our mempool were verified on admission, and
        # ``_verify`` skips those that passed lately on the tx path (the same bytes: a
        # tx_id does not cover the signature, so a block could carry a mempool tx's id
        # with a forged signature)
        pool = self.mempool
        todo = [tx for tx in block.txs
                if (known := pool.get(tx.tx_id)) is None or known.raw != tx.raw]
        oks = await self.tx_intake.verify(todo, urgent=True)
        return all(oks)

    def _take_block(self, block: Block) -> bool:
        """Apply a block on the head, or keep it as a side block and run the fork choice."""
        chain = self.chain
        started = time.perf_counter()
        if self.store.failed is not None:
            return True  # the store failed while this block waited for the lock
        if block.previous_id == chain.head.id:
            try:
                chain.apply_block(block)
            except ChainError as exc:
                self._mark_bad(block.id, str(exc))
                return False
            except StorageError as exc:
                # not the block's fault: it stays unjudged and comes back by sync
                self.recovery.failed(exc, "apply block")
                return True
            self._relay(block)
            self._after_block(block, started)
            # how late after its slot began a peer's block joined our chain: above half a
            # slot the next producer has little margin (the first thing to read in a log
            # when finality stalls under load)
            late = self.now() - self.slot_time(chain.slot_of(block.timestamp))
            self.tx_intake.adapt(late)
            log.info("applied", extra={"kv": {
                "height": block.height, "txs": len(block.txs), "late_ms": round(late * 1000),
                "apply_ms": round((time.perf_counter() - started) * 1000),
                "pool": len(self.mempool)}})
            return True
        parent = self.consensus.tree[block.previous_id]
        if chain.slot_of(block.timestamp) <= parent.slot or block.height != parent.height + 1:
            self._mark_bad(block.id, "slot or height does not follow its parent")
            return False
        # its signature was verified in accept_block, before it was held or kept as an
        # orphan (every block reaches here through there)
        if not self.consensus.may_own_slot(block.witness, chain.slot_of(block.timestamp)):
            self._mark_bad(block.id, "not signed by a witness that can own the slot")
            return False
        try:
            self.store.write({schema.block_key(block.id): block.encode()}, sync=False)
        except StorageError as exc:
            self.recovery.failed(exc, "store side block")
            return True
        self.consensus.add_side_block(block)
        self._fork_choice()
        return block.id not in self.bad_blocks

    def _relay(self, block: Block) -> None:
        """Push a new main-chain block to the peers that lack it: first thing after its
        commit (the mempool's re-check of what is left takes a good part of a slot under
        load, and the next producer needs this block now)."""
        if self.network is not None:
            self.network.push(Kind.BLOCK, [(block.id, block.encode())])

    def _on_new_head_block(self, block: Block) -> None:
        """After a block joined the main chain and the engine counted it: announce the new
        head (and final block) and vote for its slot."""
        if self.network is not None:
            self.network.broadcast_head()
        self.cast_vote(self.chain.slot_of(block.timestamp))

    def _fork_choice(self) -> None:
        """Section 7: stay above the final block; highest justified; height; first seen."""
        cons = self.consensus
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
        if best.block_id == self.chain.head.id:
            return
        # the head itself is a leaf only if nothing builds on it; compare with it directly
        head = self.chain.head
        mine = next((h for h in heads if h.block_id == head.id), None)
        if mine is not None and choose_head([mine, best]).block_id == head.id:
            return
        self._switch_to(best.block_id)

    def _switch_to(self, tip: bytes) -> None:
        chain, cons = self.chain, self.consensus
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
            self._mark_bad(exc.block_id or tip, str(exc))
            return
        except StorageError as exc:
            self.recovery.failed(exc, "switch")
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
            self.recovery.failed(exc, "consensus record")  # memory has it; see _after_block
        if branch:  # as in _after_block: the new head and our vote before the mempool
            self._relay(branch[-1])
            self._on_new_head_block(branch[-1])
        readd = [tx for b in popped for tx in b.txs]
        self._pool_on_new_head([tx.tx_id for b in branch for tx in b.txs], readd)
        log.info("switched", extra={"kv": {"popped": len(popped), "applied": len(branch),
                                           "head": chain.head.height}})
        self._finalize()
        self.metrics.block_apply_seconds.observe(time.perf_counter() - started)
        self._update_metrics()

    async def accept_votes(self, raws: list[bytes]) -> list[bool]:
        verdicts: list[bool] = []
        fresh: list[tuple[bytes, bytes]] = []
        slot = self.current_slot()
        for raw in raws:
            try:
                vote = decode_vote(raw)
            except VoteError:
                verdicts.append(False)
                continue
            status, _evidence = self.consensus.add_vote(vote, slot + 1)
            # not_voter is no proof of a bad peer: an honest one on a branch that switched
            # voter sets at another round relays it (section 7's known limit)
            verdicts.append(status not in INVALID or status == "not_voter")
            if status in ("accepted", "pending"):
                fresh.append((vote.hash, vote.encode()))
        if fresh:
            if self.network is not None:
                self.network.push(Kind.VOTE, fresh)
            async with self._lock:
                self._finalize()
        return verdicts

    def _pool_on_new_head(self, included: list[bytes], readd: list[SignedTx] | None = None
                          ) -> None:
        """Tell the mempool the head changed. A running node re-checks a chunk of the pool
        at once and leaves the rest to ``recheck_loop``; a node driven directly (tests,
        benchmarks) re-checks it all."""
        limit = RECHECK_CHUNK if self._nursery is not None else None
        self.mempool.on_new_head(included, readd or (), limit=limit)
        if self.mempool.unchecked:
            self._recheck_wakeup.set()

    async def recheck_loop(self) -> None:
        """The mempool's re-check after a new head, a chunk at a time. A loaded pool takes
        hundreds of ms to re-check (its txs re-applied on the new head); in one piece it
        held up the blocks and votes that arrived meanwhile, and under overload those
        late blocks forked the next producers. Between chunks they go first, and a newer
        head restarts the re-check rather than waiting for the old one."""
        while not self.stopping.is_set():
            await self._recheck_wakeup.wait()
            self._recheck_wakeup = trio.Event()
            # bounded: a pool holds at most mempool_txs txs (newer heads refill the queue:
            # what a round leaves waits for the next)
            for _ in range(self.config.mempool_txs // RECHECK_CHUNK + 1):
                if not self.mempool.recheck(RECHECK_CHUNK) or self.stopping.is_set():
                    break
                await trio.sleep(0)
            else:
                self._recheck_wakeup.set()
            self.metrics.mempool_size.set(len(self.mempool))

    # --- queries (muxernode/queries.py answers them) ------------------------------------

    async def health(self) -> tuple[bool, dict[str, Any]]:
        return await self.queries.health()

    async def metrics_text(self) -> bytes:
        return await self.queries.metrics()

    # --- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        self.tx_intake.close()
        self.store.close()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        from muxernode.rpc import JsonRpcApp, serve_rpc

        app = JsonRpcApp(self.queries, max_body_bytes=self.config.max_body_bytes,
                         max_batch=self.config.max_batch,
                         max_concurrent=self.config.max_concurrent,
                         admin_token=self.rpc_token, hub=self.app_service.hub)
        try:
            async with trio.open_nursery() as nursery:
                if self.serve_rpc:
                    self.rpc_port = await nursery.start(
                        lambda task_status: serve_rpc(
                            app, self.config.rpc_host, self.config.rpc_port,
                            shutdown=self.stopping, task_status=task_status,
                            max_connections=self.config.max_connections,
                        )
                    )
                    self._write_rpc_addr()
                self.started = True
                log.info("serving", extra={"kv": {
                    "rpc": f"http://{self.config.rpc_host}:{self.rpc_port}/rpc",
                    "head": self.chain.head.height, "final": self.chain.final.height,
                    "witness": self.witness_key.address_text if self.witness_key else "none",
                    "pid": os.getpid()}})
                self._nursery = nursery
                await self._start_network(nursery)
                task_status.started(self.rpc_port)
                nursery.start_soon(self.producer.produce_loop)
                nursery.start_soon(self.producer.vote_loop)
                nursery.start_soon(self.tx_intake.lag_monitor)
                nursery.start_soon(self.recovery.loop)
                if self.network is not None:
                    nursery.start_soon(self.block_sync.loop)
                    nursery.start_soon(self.tx_intake.gossip_loop)
                nursery.start_soon(self.recheck_loop)
                nursery.start_soon(self.app_service.run, self.stopping)
                await self.stopping.wait()
                self.block_sync.wakeup.set()
                self._recheck_wakeup.set()
                self.tx_intake.close_gossip()
                if self.network is not None:
                    self.network.stop()
        finally:
            self._nursery = None
            (self.data_dir / RPC_ADDR_FILE).unlink(missing_ok=True)
            self.close()
            log.info("stopped", extra={"kv": {"head": self.chain.head.height}})

    def stop(self) -> None:
        self.stopping.set()
        self.recovery.wakeup.set()  # its loop waits on it, not on stopping

    async def _start_network(self, nursery: trio.Nursery) -> None:
        cfg = self.config
        seeds = []
        for text in cfg.peers:
            host, _, port = text.rpartition(":")
            seeds.append((host, int(port)))
        self.network = Network(
            self.node_key, self.chain_id, P2PAdapter(self),
            config=P2PConfig(listen_host=cfg.p2p_host, listen_port=cfg.p2p_port, seeds=seeds),
            transport=self.transport, rng=self.rng,
        )
        self.p2p_port = await nursery.start(self.network.run)
        log.info("p2p", extra={"kv": {"listen": f"{cfg.p2p_host}:{self.p2p_port}",
                                      "seeds": len(seeds),
                                      "node_id": self.node_key.public_key[:8]}})

    def _write_rpc_addr(self) -> None:
        # Tools (tests, devnet) that start a node on port 0 learn its URL here; written
        # atomically so a reader never sees half a line.
        path = self.data_dir / RPC_ADDR_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"http://{self.config.rpc_host}:{self.rpc_port}/rpc\n", encoding="utf-8")
        os.replace(tmp, path)


RpcAdapter = QueryService  # the earlier name of the RPC backend over a node

__all__ += ["ChainError", "P2PAdapter", "RpcAdapter"]
