"""Crash safety: SIGKILL the daemon under load at random moments, 20 times.

After each kill, with the node down, the test opens its LevelDB and replays every stored
main-chain block into a fresh in-memory state: the replayed state and digest must equal
the stored ones and the head block's digest. Then the node restarts and must serve at once
at a head no lower than the last block any RPC answer reported, and every tx that the RPC
had answered as included at a height at or below the new head must still be there.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

from consensus.chain import Chain
from consensus.crypto import PrivateKey, address_from_text
from consensus.genesis import load_genesis
from consensus.tx import build_tx
from muxernode.ledger import Ledger
from muxernode.node import DB_DIR, GENESIS_FILE, init_data_dir
from storage import schema
from storage.kv import MemoryKV
from storage.leveldb import LevelDBStore
from tests.procs import Daemon, accounts, make_genesis, rpc, rpc_batch

KILLS = 20


def replay_and_compare(data_dir: Path) -> int:
    """Replay stored blocks into a fresh state; assert it equals the stored state."""
    genesis = load_genesis(data_dir / GENESIS_FILE)
    store = LevelDBStore(str(data_dir / DB_DIR))
    try:
        ledger = Ledger(store, genesis.params, genesis.genesis_time)
        witness = genesis.witnesses[0].address
        chain = Chain(store, ledger, genesis, lambda slot: witness)
        head = chain.head
        mem = MemoryKV()
        fresh = Ledger(mem, genesis.params, genesis.genesis_time)
        Chain.initialize(mem, fresh, genesis)
        replay = Chain(mem, fresh, genesis, lambda slot: witness)
        head_block = None
        for h in range(1, head.height + 1):
            bid = chain.block_id_at(h)
            assert bid is not None, f"no block id stored at height {h}"
            head_block = chain.get_block(bid)
            assert head_block is not None
            replay.apply_block(head_block)
        assert replay.head.id == head.id
        assert fresh.state_digest() == ledger.state_digest()
        if head_block is not None:
            assert head_block.state_digest == ledger.state_digest()
        stored_state = list(store.iterate(schema.PREFIX_STATE))
        assert stored_state == list(mem.iterate(schema.PREFIX_STATE))
        return head.height
    finally:
        store.close()


class Load:
    """Submits signed transfers and records what the RPC answers as included."""

    def __init__(self, chain_id: bytes, keys: list[PrivateKey], rng: random.Random) -> None:
        self.chain_id = chain_id
        self.keys = keys
        self.rng = rng
        self.prefix = int.from_bytes(chain_id[:4], "big")
        self.n = 0
        self.submitted: list[str] = []
        self.included: dict[str, int] = {}
        self.max_seen_head = 0

    def batch(self, size: int) -> list[str]:
        exp = int(time.time()) + 3000
        out = []
        for _ in range(size):
            self.n += 1
            k = self.keys[self.n % len(self.keys)]
            to = self.keys[(self.n * 3 + 1) % len(self.keys)].address
            tx = build_tx(k, self.chain_id, [1, to, self.n, ""], ref_block_num=0,
                          ref_block_prefix=self.prefix, expiration=exp, fee=10)
            out.append(tx.raw.hex())
        return out

    def run(self, url: str, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                res = rpc(url, "submit_txs", self.batch(self.rng.randrange(5, 60)), timeout=5)
                self.submitted += [r["tx_id"] for r in res if "tx_id" in r]
                recent = [t for t in self.submitted[-200:] if t not in self.included]
                answers = rpc_batch(url, [("get_tx", [t]) for t in recent], timeout=5)
                for tid, got in zip(recent, answers, strict=True):
                    if got["status"] in ("included", "final"):
                        self.included[tid] = got["height"]
                head = rpc(url, "chain_info", timeout=5)["head_height"]
                self.max_seen_head = max(self.max_seen_head, head)
        except Exception:
            return  # the node was killed under us: expected


def test_sigkill_under_load_twenty_times(tmp_path: Path) -> None:
    rng = random.Random(20261126)
    gdir = tmp_path / "g"
    gpath = make_genesis(gdir, accounts=10, seed=3)
    data = tmp_path / "node"
    genesis = init_data_dir(gpath, data)
    keys = [PrivateKey(bytes.fromhex(a["secret"])) for a in accounts(gdir)]
    assert keys[0].address == address_from_text(accounts(gdir)[0]["address"])
    load = Load(genesis.chain_id, keys, rng)
    daemon = Daemon(data, witness_key=gdir / "w1.key")
    last_height = 0
    try:
        last_height = _kill_loop(daemon, load, data, rng)
    finally:
        daemon.kill()
    assert len(load.included) > 50, "the load produced too few included txs to mean much"
    assert last_height > 10


def _kill_loop(daemon: Daemon, load: Load, data: Path, rng: random.Random) -> int:
    last_height = 0
    for i in range(KILLS):
        t0 = time.monotonic()
        url = daemon.start()
        info: dict[str, Any] = rpc(url, "chain_info")
        restart_s = time.monotonic() - t0
        # serves at once, at a head no lower than any block reported before the kill
        assert info["head_height"] >= last_height
        assert info["head_height"] >= load.max_seen_head
        assert restart_s < 15, f"restart took {restart_s:.1f} s"
        check = [(tid, h) for tid, h in load.included.items() if h <= info["head_height"]]
        answers = rpc_batch(url, [("get_tx", [tid]) for tid, _ in check]) if check else []
        for (tid, height), got in zip(check, answers, strict=True):
            assert got["status"] in ("included", "final"), (i, tid, got)
            assert got["height"] == height
        stop = threading.Event()
        worker = threading.Thread(target=load.run, args=(url, stop), daemon=True)
        worker.start()
        time.sleep(rng.uniform(0.2, 1.6))
        daemon.kill()
        stop.set()
        worker.join(timeout=10)
        last_height = replay_and_compare(data)
    return last_height
