"""The node: storage, chain, ledger, mempool, witness production, finality and RPC on trio.

One data path: bytes in (RPC, later p2p) -> decode and verify once (worker threads) ->
mempool -> block -> chain -> one storage batch -> events out. The I/O shell takes its
clock as a parameter so that simulations can drive it with trio's MockClock.

This module only assembles the node (architecture "The node inside"): tx intake
(muxernode/intake.py), the chain follower (follower.py: blocks and votes from peers, fork
choice, finality, the mempool's follow of the head), the witness's production and votes
(producer.py), catching up and the p2p layer's view (sync.py), the recovery from failed
writes (recovery.py) and the query service (queries.py). The methods left here other
than the lifecycle are thin: the overridable hooks (``produce``, ``cast_vote``) and the
entry points tools and tests call on a node.
"""

from __future__ import annotations

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

from consensus.block import Block
from consensus.chain import Chain, ChainError
from consensus.crypto import PrivateKey
from consensus.engine import Consensus
from consensus.finality import VoterGuard
from consensus.genesis import Genesis, load_genesis
from consensus.mempool import Mempool
from consensus.tx import SignedTx
from muxernode.config import NodeConfig
from muxernode.follower import (  # RECHECK_CHUNK re-exported: tests import it from here
    CACHE_ENTRIES,
    RECHECK_CHUNK,
    ChainFollower,
    trim_heap,
)
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
from muxernode.pruner import Pruner
from muxernode.queries import QueryService
from muxernode.recovery import StorageRecovery
from muxernode.service import AppService
from muxernode.statesync import SnapshotServer
from muxernode.sync import BlockSync, P2PAdapter
from p2p import Network, P2PConfig, Transport
from storage import schema
from storage.leveldb import LevelDBStore

__all__ = ["INTAKE_CUT", "INTAKE_MIN", "INTAKE_STEP", "LATE_S", "ON_TIME_S", "RECHECK_CHUNK",
           "Node", "NodeError", "init_data_dir", "load_witness_key", "verify_batch"]

log = logging.getLogger("muxer.node")

GENESIS_FILE = "genesis.json"
DB_DIR = "db"
RPC_ADDR_FILE = "rpc.addr"
NODE_KEY_FILE = "node.key"  # the p2p identity (not a witness key), mode 0600


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


def _release_memory() -> None:
    """After a large transient parse: collect, then trim."""
    gc.collect()
    trim_heap()


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
            self.chain.final_votes = self.consensus.final_votes  # kept: a snapshot's proof
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
        # --keep-blocks: old blocks pruned (muxernode/pruner.py); history keeps the keys
        # of each block until the block goes, to delete them with it
        self.pruner = Pruner(self.chain, config.keep_blocks) if config.keep_blocks else None
        if self.pruner is not None and self.app_service.history is not None:
            self.app_service.history.pruning = True
        self.rpc_token: str | None = None  # admin RPC methods need it (<data_dir>/rpc.token)
        if serve_rpc:
            from muxernode.rpc import TokenError, load_or_create_token

            try:
                self.rpc_token = load_or_create_token(self.data_dir)
            except TokenError as exc:
                self.store.close()
                raise NodeError(str(exc)) from None
        self.network: Network | None = None
        self.peer_heads: dict[bytes, tuple[int, bytes, int]] = {}
        self._nursery: trio.Nursery | None = None
        self.p2p_port: int | None = None
        self.metrics = NodeMetrics()
        self.metrics.app_figures = self.app_service.metrics
        self.queries = QueryService(self)  # the RPC's backend: reads only
        # read when /metrics is scraped: a LevelDB property costs a mutex, not a scan
        self.metrics.leveldb_memory.set_function(lambda: self.store.memory_stats()[0])
        self.metrics.leveldb_table_files.set_function(lambda: self.store.memory_stats()[1])
        self.tx_intake = TxIntake(self)  # decode, verify once, admit
        self.producer = Producer(self)  # the witness: blocks and votes
        self.block_sync = BlockSync(self)  # catching up from peers
        self.snapshot_server = SnapshotServer(self)  # state sync: serving the final state
        self.follower = ChainFollower(self)  # blocks and votes in, fork choice, finality
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

    # --- figures for /metrics -----------------------------------------------------------

    def _update_metrics(self) -> None:
        m = self.metrics
        m.head_height.set(self.chain.head.height)
        m.final_height.set(self.chain.final.height)
        m.mempool_size.set(len(self.mempool))
        m.mempool_bytes.set(self.mempool.size_bytes)
        m.tx_rate.set(self.tx_intake.tx_rate())
        m.peers.set(0 if self.network is None else len(self.network.peer_ids()))
        m.peers_banned.set(0 if self.network is None else self.network.stats()["banned"])

    # --- blocks, votes, finality (muxernode/follower.py) ---------------------------------

    async def accept_blocks(self, raws: list[bytes]) -> list[bool]:
        """Blocks from a peer (gossip or sync): False iff a block is invalid."""
        return await self.follower.accept_blocks(raws)

    async def accept_block(self, block: Block) -> bool:
        return await self.follower.accept_block(block)

    async def accept_votes(self, raws: list[bytes]) -> list[bool]:
        return await self.follower.accept_votes(raws)

    def block_known(self, block_id: bytes) -> bool:
        return self.follower.block_known(block_id)

    @property
    def bad_blocks(self) -> dict[bytes, None]:
        return self.follower.bad_blocks

    async def recheck_loop(self) -> None:
        await self.follower.recheck_loop()

    @property
    def _recheck_wakeup(self) -> trio.Event:
        # kept for tests/test_recheck.py, which wakes the loop it runs by hand
        return self.follower.recheck_wakeup

    # --- queries (muxernode/queries.py answers them) ------------------------------------

    async def health(self) -> tuple[bool, dict[str, Any]]:
        return await self.queries.health()

    async def metrics_text(self) -> bytes:
        return await self.queries.metrics()

    # --- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        self.tx_intake.close()
        self.snapshot_server.close()
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
                if self.pruner is not None:
                    nursery.start_soon(self.pruner.loop, self)
                if self.network is not None:
                    nursery.start_soon(self.block_sync.loop)
                    nursery.start_soon(self.snapshot_server.loop)
                    nursery.start_soon(self.tx_intake.gossip_loop)
                nursery.start_soon(self.follower.recheck_loop)
                nursery.start_soon(self.app_service.run, self.stopping)
                await self.stopping.wait()
                self.block_sync.wakeup.set()
                self.snapshot_server.wakeup.set()
                self.follower.recheck_wakeup.set()
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
        self.network.state_sync = self.snapshot_server
        self.metrics.p2p_counters = self.network.counters.copy  # muxer_p2p_total{counter}
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
