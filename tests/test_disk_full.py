"""A full disk: the node stops writing, keeps its store intact, stays up, and resumes.

There is no root here, hence no tiny tmpfs to fill. Writes fail in two other ways:

- For real, at the OS level: RLIMIT_FSIZE, a per-process file size limit. A write past it
  fails with EFBIG, which LevelDB reports through plyvel as the same ``plyvel.IOError`` as
  ENOSPC, and which hits LevelDB exactly where a full disk would (log appends, table
  files, the manifest). The limit is process-wide, so it is only used where one store, or
  one simulated node, is all that writes (Python ignores SIGXFSZ; the helper makes sure).
- Per node, in the deterministic simulation (tests/sim.py: real nodes, real LevelDB,
  virtual time): the node's plyvel handle is wrapped so that a write batch raises the
  ``plyvel.IOError`` LevelDB raises on ENOSPC without writing anything ("full"), or is
  written and then raises ("land": a failed fsync after the log record was whole, whose
  batch turns up when the store is reopened). The wrapper survives the store's reopen.

What is checked: a clear ERROR once per outage, health 503 (``health()`` false) and the
``muxer_storage_failing`` metric while it lasts; no crash; production, acceptance and votes
pause while the others go on; the store on disk replays to its head (no half-applied
block) even when the node is killed during the outage; the node resumes once space is back
(head and final catch up, its witness produces again, digests agree, its chain replays).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import resource
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plyvel
import pytest

from consensus.chain import Chain, ChainError
from devnet.rpc import parse_metrics
from muxernode.ledger import Ledger
from muxernode.node import Node
from storage import schema
from storage.kv import MemoryKV
from storage.leveldb import LevelDBStore, StorageError, StorageLost
from tests.chain_helpers import digests, fresh_chain, produce, state_dump, tx_on
from tests.ledger_helpers import ALICE, BOB, op_transfer
from tests.sim import GENESIS_TIME, Sim, SimConfig, run_sim, same_chain, wait_for

ENOSPC = "IO error: {path}/000042.log: No space left on device"


# --- faults ---------------------------------------------------------------------------------


@contextlib.contextmanager
def file_size_limit(nbytes: int) -> Iterator[None]:
    """Every file this process writes stops growing at ``nbytes`` (EFBIG past it)."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the write kills us
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)


def log_size(db_path: str) -> int:
    """Size of LevelDB's current write-ahead log in ``db_path``."""
    return max(os.path.getsize(p) for p in glob.glob(os.path.join(db_path, "*.log")))


class Disk:
    """The fault switch of one store. ``mode``: None (healthy), "full" (every batch fails,
    nothing written) or "land" (the next batch that moves the head is written, then
    reported failed; the mode clears itself). ``reopen_fails``: reopening raises."""

    def __init__(self) -> None:
        self.mode: str | None = None
        self.reopen_fails = False
        self.failed_batches = 0
        self.landed: list[bytes] = []  # head pointers written by a batch reported failed
        self.path = ""

    def error(self) -> plyvel.IOError:
        self.failed_batches += 1
        return plyvel.IOError(ENOSPC.format(path=self.path).encode())

    def attach(self, store: LevelDBStore) -> None:
        """Wrap the store's plyvel handle, now and after every reopen."""
        self.path = store.path
        store._db = FaultyDB(store._db, self)
        real_open = store._open

        def faulty_open(create: bool) -> Any:
            if self.reopen_fails:
                raise StorageError(f"cannot open database {store.path}: {ENOSPC}")
            return FaultyDB(real_open(create), self)

        setattr(store, "_open", faulty_open)  # noqa: B010 - an instance attribute, for mypy


class FaultyDB:
    """A plyvel.DB whose write batches obey a ``Disk``; everything else is the real DB."""

    def __init__(self, db: Any, disk: Disk) -> None:
        self._real = db
        self._disk = disk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def write_batch(self, **kwargs: Any) -> FaultyBatch:
        return FaultyBatch(self._real.write_batch(**kwargs), self._disk)


class FaultyBatch:
    def __init__(self, batch: Any, disk: Disk) -> None:
        self._batch = batch
        self._disk = disk
        self._head: bytes | None = None

    def put(self, key: bytes, value: bytes) -> None:
        if key == schema.META_HEAD:
            self._head = value
        self._batch.put(key, value)

    def delete(self, key: bytes) -> None:
        self._batch.delete(key)

    def __enter__(self) -> FaultyBatch:
        self._batch.__enter__()
        return self

    def __exit__(self, *exc: Any) -> bool | None:
        disk = self._disk
        if exc[0] is not None:
            return bool(self._batch.__exit__(*exc))
        if disk.mode == "full":
            err = disk.error()
            self._batch.__exit__(type(err), err, None)  # a transaction: discarded
            raise err
        self._batch.__exit__(None, None, None)  # written
        if disk.mode == "land" and self._head is not None:
            disk.mode = None
            disk.landed.append(self._head)
            raise disk.error()
        return None


def node_on(disk: Disk) -> type[Node]:
    """A Node class whose store obeys ``disk`` (test-only: no hook in the node)."""

    class NodeOnDisk(Node):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            disk.attach(self.store)

    return NodeOnDisk


def replay_stored_chain(db_path: Path, sim: Sim) -> int:
    """Open a node's store (the node is down) and check it block by block: every main-chain
    block replays into a fresh state with its digest, the stored state equals the replayed
    one, and the stored head and final pointers are on that chain. Returns the head."""
    with LevelDBStore(str(db_path), create=False) as store:
        ledger = Ledger(store, sim.params, GENESIS_TIME)
        by_slot: dict[int, bytes] = {}
        chain = Chain(store, ledger, sim.genesis, lambda slot: by_slot[slot])
        head = chain.head
        mem = MemoryKV()
        fresh = Ledger(mem, sim.params, GENESIS_TIME)
        Chain.initialize(mem, fresh, sim.genesis)
        replay = Chain(mem, fresh, sim.genesis, lambda slot: by_slot[slot])
        for h in range(1, head.height + 1):
            bid = chain.block_id_at(h)
            block = chain.get_block(bid) if bid is not None else None
            assert block is not None, f"no main-chain block stored at height {h}"
            by_slot[chain.slot_of(block.timestamp)] = block.witness
            replay.apply_block(block)  # checks parent, witness signature and state digest
        assert replay.head == head, "the stored head is not where its blocks lead"
        assert chain.final.height <= head.height
        assert chain.block_id_at(chain.final.height) == chain.final.id
        assert fresh.state_digest() == ledger.state_digest()
        assert state_dump(store) == state_dump(mem), "stored state differs from the replay"
        return head.height


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == name]


def fields(record: logging.LogRecord) -> dict[str, Any]:
    kv: dict[str, Any] = record.__dict__.get("kv", {})
    return kv




async def failing_view(node: Node) -> tuple[bool, dict[str, Any], str]:
    ok, details = await node.health()
    metrics = (await node.metrics_text()).decode()
    return ok, details, metrics


# --- LevelDB and the store ----------------------------------------------------------------------


def test_leveldb_loses_synced_writes_made_after_a_failed_write(tmp_path: Path) -> None:
    """Why the store refuses writes after a failure until it is reopened: LevelDB 1.22 (in
    plyvel 1.5.1) reports later writes on the same handle as written, synced, yet drops
    them at the next open (its log writer counted the torn record's bytes as written). If
    this starts failing, LevelDB fixed it; the reopen is then only cautious."""
    path = str(tmp_path / "db")
    db = plyvel.DB(path, create_if_missing=True)
    try:
        for i in range(50):
            db.put(b"before%d" % i, b"v" * 100, sync=True)
        # the next record is torn at 50 bytes
        with file_size_limit(log_size(path) + 50), \
                pytest.raises(plyvel.IOError, match="File too large"):
            db.put(b"torn", b"w" * 100, sync=True)
        for i in range(3):
            db.put(b"after%d" % i, b"x" * 100, sync=True)  # "succeed"
        assert db.get(b"after2") == b"x" * 100
    finally:
        db.close()
    db = plyvel.DB(path)
    try:
        assert db.get(b"before49") is not None
        assert db.get(b"torn") is None
        assert [db.get(b"after%d" % i) for i in range(3)] == [None, None, None]
    finally:
        db.close()


def test_store_refuses_writes_until_reopened_and_keeps_every_acknowledged_one(
        tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    store = LevelDBStore(path)
    try:
        for i in range(50):
            store.write({b"k%03d" % i: b"v" * 100}, sync=True)
        with file_size_limit(log_size(path) + 50):
            with pytest.raises(StorageError, match="File too large"):
                store.write({b"lost": b"w" * 100}, sync=True)
            assert store.failed is not None and "File too large" in store.failed
            assert store.get(b"k049") == b"v" * 100  # reads go on
            # still full: the probe finds no room, the store stays open and refusing
            with pytest.raises(StorageError, match="still no room"):
                store.recover()
            assert not store.closed and store.failed is not None
            assert not os.path.exists(os.path.join(path, "muxer-space-probe"))
        # space is back, but this handle is never written again
        with pytest.raises(StorageError, match="paused"):
            store.write({b"lost": b"again"}, sync=True)
        store.recover()
        assert store.failed is None
        for i in range(3):
            store.write({b"after%d" % i: b"x" * 100}, sync=True)
    finally:
        store.close()
    with LevelDBStore(path) as again:
        assert again.get(b"lost") is None
        assert all(again.get(b"k%03d" % i) == b"v" * 100 for i in range(50))
        assert [again.get(b"after%d" % i) for i in range(3)] == [b"x" * 100] * 3


def test_store_that_cannot_be_reopened_is_lost(tmp_path: Path) -> None:
    store = LevelDBStore(str(tmp_path / "db"))
    disk = Disk()
    disk.attach(store)
    try:
        disk.mode = "full"
        with pytest.raises(StorageError, match="No space left"):
            store.write({b"a": b"1"})
        disk.reopen_fails = True
        with pytest.raises(StorageLost, match="could not be reopened"):
            store.recover()
    finally:
        store.close()


# --- the chain over a failing LevelDB -------------------------------------------------------------


def chain_on(tmp_path: Path) -> tuple[Chain, LevelDBStore, Disk]:
    store = LevelDBStore(str(tmp_path / "db"))
    disk = Disk()
    disk.attach(store)
    chain = fresh_chain(store)
    for i in range(3):
        produce(chain, [tx_on(chain, ALICE, op_transfer(BOB.address, i + 1))])
    return chain, store, disk


def assert_consistent(chain: Chain) -> None:
    """Memory, store and the head block agree (the app's digest equals the recomputed one
    and the head block's)."""
    app_digest, store_digest = digests(chain)
    assert app_digest == store_digest
    head = chain.get_block(chain.head.id)
    assert head is not None and head.state_digest == store_digest
    raw = chain.store.get(schema.META_HEAD)
    assert raw is not None and Chain(chain.store, chain.app, chain.genesis,
                                     chain.witness_for_slot).head == chain.head


def test_full_disk_mid_commit_leaves_chain_app_and_store_as_before(tmp_path: Path) -> None:
    chain, store, disk = chain_on(tmp_path)
    try:
        head = chain.head
        disk.mode = "full"
        with pytest.raises(StorageError, match="No space left"):
            produce(chain, [tx_on(chain, ALICE, op_transfer(BOB.address, 99))])
        assert chain.head == head
        assert_consistent(chain)
        with pytest.raises(StorageError, match="paused"):  # the handle is not written again
            produce(chain, [tx_on(chain, ALICE, op_transfer(BOB.address, 99))])
        disk.mode = None
        store.recover()
        chain.reconcile()
        assert chain.head == head
        block = produce(chain, [tx_on(chain, ALICE, op_transfer(BOB.address, 99))])
        assert chain.head.id == block.id
        assert_consistent(chain)
    finally:
        store.close()


def test_reconcile_undoes_a_commit_that_landed_and_redoes_a_pop_that_landed(
        tmp_path: Path) -> None:
    chain, store, disk = chain_on(tmp_path)
    try:
        head = chain.head
        disk.mode = "land"  # written, reported failed: memory stays at head
        with pytest.raises(StorageError):
            produce(chain, [tx_on(chain, ALICE, op_transfer(BOB.address, 7))])
        assert chain.head == head and len(disk.landed) == 1
        store.recover()
        assert store.get(schema.META_HEAD) == disk.landed[0]  # the store went on without us
        chain.reconcile()
        assert chain.head == head
        assert store.get(schema.height_key(head.height + 1)) is None
        assert_consistent(chain)

        disk.mode = "land"  # a pop written, reported failed: memory keeps the block
        with pytest.raises(StorageError):
            chain.pop_block()
        assert chain.head == head
        store.recover()
        chain.reconcile()
        assert chain.head == head and store.get(schema.height_key(head.height)) == head.id
        assert_consistent(chain)
        produce(chain, [tx_on(chain, ALICE, op_transfer(BOB.address, 8))])
        assert_consistent(chain)
    finally:
        store.close()


def test_reconcile_refuses_a_store_that_is_not_next_to_memory(tmp_path: Path) -> None:
    chain, store, _disk = chain_on(tmp_path)
    try:
        head = chain.head
        chain.pop_block()
        chain.pop_block()  # the store is now two blocks below a chain that still says head
        stale = Chain(store, chain.app, chain.genesis, chain.witness_for_slot)
        stale.head = head
        with pytest.raises(ChainError, match="store_diverged"):
            stale.reconcile()
        assert stale.head == head
    finally:
        store.close()


# --- nodes (deterministic simulation) ------------------------------------------------------

VICTIM = 3


async def full_disk(sim: Sim, disk: Disk, caplog: pytest.LogCaptureFixture) -> dict[str, int]:
    """Node 3 (a witness among four) runs out of space, is killed during the outage and
    restarted on the still-full disk, then space comes back."""
    sim.nursery.start_soon(lambda: sim.transfer_load(every_slots=1, until_slot=70))
    others = [0, 1, 2]
    await sim.run_until_slot(10, 0.2)
    node = sim.node(VICTIM)
    disk.mode = "full"
    failed_at = await wait_for(sim, "the victim's first failed write",
                               lambda: node.store.failed is not None, max_slots=3)
    ok, details, metrics = await failing_view(node)
    assert not ok and details["storage"] == "failing" and "No space" in details["storage_error"]
    assert parse_metrics(metrics)["muxer_storage_failing"] == 1.0
    assert parse_metrics(metrics)["muxer_storage_write_failures_total"] >= 1.0
    stuck = (node.chain.head, node.chain.final)
    before = {i: (sim.node(i).chain.head.height, sim.node(i).chain.final.height) for i in others}
    await sim.run_until_slot(failed_at + 8, 0.9)
    assert sim.nodes[VICTIM].node is node, "the node is still running"
    assert (node.chain.head, node.chain.final) == stuck, "it stopped writing"
    for i in others:  # three of four witnesses: blocks and finality go on without it
        assert sim.node(i).chain.head.height >= before[i][0] + 5
        assert sim.node(i).chain.final.height >= before[i][1] + 4
    [first] = events(caplog, "storage_write_failed")  # once, however many writes it refused
    assert first.levelno == logging.ERROR and "will retry" in str(fields(first))

    # killed during the outage: what is on disk replays to its head, nothing half applied
    await sim.crash(VICTIM)
    assert replay_stored_chain(sim.nodes[VICTIM].data_dir / "db", sim) == stuck[0].height
    await sim.restart(VICTIM)  # the disk is still full: it opens, then pauses again
    node = sim.node(VICTIM)
    await wait_for(sim, "the restarted victim pauses", lambda: node.store.failed is not None,
                   max_slots=3)

    disk.mode = None  # space is back
    resumed = await wait_for(sim, "the victim recovers and catches up",
                             lambda: node.store.failed is None
                             and same_chain(sim, [0, 1, 2, VICTIM]), max_slots=40)
    ok, details, metrics = await failing_view(node)
    assert ok and details["storage"] == "ok"
    assert parse_metrics(metrics)["muxer_storage_failing"] == 0.0
    await sim.run_until_slot(resumed + 12, 0.9)
    mine = sim.witness_keys[VICTIM].address
    assert mine in sim.witnesses_between(0, resumed + 1, resumed + 12), "it produces again"
    assert same_chain(sim, [0, 1, 2, VICTIM]) or node.chain.final.height >= \
        sim.node(0).chain.final.height - 2
    sim.check_common_digests()
    return {"replayed": sim.replay_digests(VICTIM), "failed_at": failed_at,
            "resumed": resumed, "final": node.chain.final.height}


@pytest.mark.parametrize("seed", [31, 32])
def test_full_disk_pauses_the_node_and_it_resumes(
        seed: int, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="muxer")
    disk = Disk()
    cfg = SimConfig(witnesses=4, node_factory={VICTIM: node_on(disk)}, wall_limit=60.0)
    _res, info = run_sim(seed, cfg, lambda sim: full_disk(sim, disk, caplog), tmp_path)
    assert info["replayed"] >= info["final"] > 0
    assert disk.failed_batches >= 2  # one per incarnation; the rest were refused earlier
    # one ERROR per outage (before the kill, after the restart), one recovery
    assert len(events(caplog, "storage_write_failed")) == 2
    assert len(events(caplog, "storage_recovered")) == 1
    assert not events(caplog, "storage_lost")


async def landed_batch(sim: Sim, disk: Disk, caplog: pytest.LogCaptureFixture) -> int:
    sim.nursery.start_soon(lambda: sim.transfer_load(every_slots=1, until_slot=40))
    await sim.run_until_slot(8, 0.1)
    node = sim.node(VICTIM)
    disk.mode = "land"
    await wait_for(sim, "a batch that lands but is reported failed",
                   lambda: bool(disk.landed), max_slots=4)
    slot = await wait_for(sim, "the victim recovers and catches up",
                          lambda: node.store.failed is None
                          and same_chain(sim, [0, 1, 2, VICTIM]), max_slots=20)
    [fix] = events(caplog, "reconcile")
    assert "undo_commit" in fields(fix)
    await sim.run_until_slot(slot + 6, 0.9)
    sim.check_common_digests()
    return sim.replay_digests(VICTIM)


def test_a_batch_reported_failed_that_landed_is_undone_after_the_reopen(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="muxer")
    disk = Disk()
    cfg = SimConfig(witnesses=4, node_factory={VICTIM: node_on(disk)}, wall_limit=60.0)
    _res, replayed = run_sim(33, cfg, lambda sim: landed_batch(sim, disk, caplog), tmp_path)
    assert replayed > 10
    assert len(events(caplog, "storage_write_failed")) == 1
    assert len(events(caplog, "storage_recovered")) == 1


async def real_disk_full(sim: Sim) -> dict[str, int]:
    """One witness, the real failure: the process may not grow any file (EFBIG)."""
    node = sim.node(0)
    await sim.run_until_slot(6, 0.9)
    with file_size_limit(1):
        failed_at = await wait_for(sim, "a failed write", lambda: node.store.failed is not None,
                                   max_slots=2)
        height = node.chain.head.height
        await sim.run_until_slot(failed_at + 6, 0.9)
        assert node.chain.head.height == height, "no block while the disk is full"
        ok, details, _metrics = await failing_view(node)
        assert not ok and "File too large" in details["storage_error"]
    resumed = await wait_for(sim, "writes resume", lambda: node.store.failed is None,
                             max_slots=20)
    await sim.run_until_slot(resumed + 5, 0.9)
    assert node.chain.head.height >= height + 4
    assert node.chain.final.height >= height + 3
    return {"height": height, "replayed": sim.replay_digests(0)}


def test_a_real_write_failure_pauses_a_single_witness_until_space_returns(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="muxer")
    _res, info = run_sim(34, SimConfig(witnesses=1, wall_limit=60.0), real_disk_full, tmp_path)
    assert info["replayed"] >= info["height"] + 4
    [failed] = events(caplog, "storage_write_failed")
    assert "File too large" in str(fields(failed))
    [recovered] = events(caplog, "storage_recovered")
    assert fields(recovered)["outage_s"] >= 6  # in the node's (virtual) time


async def lost_store(sim: Sim, disk: Disk) -> None:
    await sim.run_until_slot(5, 0.5)
    disk.mode = "full"
    disk.reopen_fails = True
    await sim.run_until_slot(40)  # the node stops itself long before this
    raise AssertionError("the node kept running without a database")


def test_a_store_that_cannot_be_reopened_stops_the_node(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="muxer")
    disk = Disk()
    cfg = SimConfig(witnesses=1, node_factory={0: node_on(disk)}, wall_limit=60.0)
    with pytest.raises(StorageLost, match="could not be reopened"):
        run_sim(35, cfg, lambda sim: lost_store(sim, disk), tmp_path)
    [lost] = events(caplog, "storage_lost")
    assert lost.levelno == logging.CRITICAL
