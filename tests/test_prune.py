"""Pruning (``--keep-blocks``; consensus/chain.py ``Chain.prune``, muxernode/pruner.py) on a
real Chain, Ledger, history index and LevelDB in a temp dir: what goes, what stays, a
restart, a kill -9 mid-prune, compaction, the HELLO fields and the config check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
import trio

import consensus.chain as chain_module
from bench.prune import ChainGrower, new_chain
from consensus.block import Block
from consensus.chain import Chain
from consensus.genesis import load_genesis
from muxernode.config import ConfigError, NodeConfig, load_config, set_key
from muxernode.history import HistoryIndex
from muxernode.ledger import Ledger
from muxernode.pruner import PRUNE_BATCH, PRUNED_PREFIXES, Pruner
from muxernode.sync import P2PAdapter
from p2p.messages import Hello, MessageError, decode_message, encode_message, serves_from
from storage import schema
from storage.leveldb import LevelDBStore
from tests.procs import REPO
from tests.test_p2p_helpers import StoreHandler, make_node, running, until

LIFETIME_S = 10  # tx lifetime in 1-s blocks: the window below final kept is 12 blocks


def grown(tmp_path: Path, blocks: int, **kw: Any) -> tuple[LevelDBStore, ChainGrower]:
    store, grower = new_chain(tmp_path / "node", seed=3, lifetime_s=LIFETIME_S, **kw)
    grower.grow(blocks, 2)
    return store, grower


def main_blocks(chain: Chain) -> dict[int, Block]:
    out = {}
    for h in range(1, chain.head.height + 1):
        bid = chain.block_id_at(h)
        assert bid is not None
        block = chain.get_block(bid)
        assert block is not None
        out[h] = block
    return out


def prune_all(pruner: Pruner) -> int:
    total = 0
    for _ in range(1000):
        n = pruner.step()
        total += n
        if n == 0:
            return total
    raise AssertionError("pruning did not finish")


def history_heights(store: LevelDBStore) -> set[int]:
    """Heights of every account-history entry in the store."""
    prefix = schema.PREFIX_HISTORY + b"a"
    return {HistoryIndex.cursor_height(k[len(prefix) + 20:])
            for k, _ in store.iterate(prefix)}


def test_prune_deletes_old_blocks_and_keeps_what_the_node_needs(tmp_path: Path) -> None:
    store, grower = grown(tmp_path, 120)
    chain = grower.chain
    assert grower.history is not None
    grower.history.pruning = True
    before = main_blocks(chain)
    head, final = chain.head, chain.final
    assert final.height >= head.height - 3  # every block votes for the previous link
    keep = 16
    floor = min(head.height - keep + 1, final.height - (LIFETIME_S + 2))
    assert chain.prune_floor(keep) == floor
    undo_above_final = [before[h].id for h in range(final.height + 1, head.height + 1)]
    assert all(store.get(schema.undo_key(b)) is not None for b in undo_above_final)

    pruner = Pruner(chain, keep)
    assert prune_all(pruner) == floor - 1
    assert chain.lowest_block == floor
    assert store.get(schema.META_PRUNED) == schema.u64(floor)
    for h, block in before.items():
        stored = store.get(schema.block_key(block.id))
        tx_entries = [store.get(schema.tx_index_key(t.tx_id)) for t in block.txs]
        vote_entries = [store.get(schema.vote_index_key(v.hash)) for v in block.votes]
        if h < floor:
            assert stored is None and chain.is_pruned(h)
            assert tx_entries == [None] * len(block.txs)
            assert vote_entries == [None] * len(block.votes)
            assert store.get(b"Iu" + block.id) is None
        else:
            assert stored is not None and not chain.is_pruned(h)
            assert tx_entries == [schema.u64(h)] * len(block.txs)
        # the height index stays for TaPoS (all within 2**16 heights here)
        assert chain.block_id_at(h) == block.id
    # the history keeps only the items of the blocks held, and those whole
    assert min(history_heights(store)) == floor
    assert history_heights(store) == set(range(floor, head.height + 1))
    # undo records above the final block stay: a fork switch and the final state's
    # snapshot still read them
    assert all(store.get(schema.undo_key(b)) is not None for b in undo_above_final)

    # a restart opens the pruned store as it left it, and the chain goes on
    store.close()
    store = LevelDBStore(str(tmp_path / "node" / "db"))
    again = ChainGrower(store, grower.genesis, grower.witness, grower.senders, seed=4)
    assert again.chain.lowest_block == floor and again.chain.head == head
    popped = again.chain.pop_block()  # the head is not final: its undo record is there
    assert popped.id == head.id
    again.grow(40, 2)
    assert Pruner(again.chain, keep).step() > 0
    assert again.chain.lowest_block > floor
    store.close()


def test_the_floor_keeps_the_chain_views_checkpoint_and_the_final_block(
        tmp_path: Path) -> None:
    store, grower = grown(tmp_path, 80)
    chain = grower.chain
    # the engine's chain view may trail the node's final block: its checkpoint and the
    # blocks above are replayed at start, so they stay
    cv = chain.block_id_at(30)
    assert cv is not None
    store.write({schema.META_CHAIN_FINAL: msgpack.packb([cv, 30, 30])})
    assert chain.prune_floor(16) == 30
    prune_all(Pruner(chain, 16))
    assert chain.lowest_block == 30 and chain.get_block(cv) is not None
    store.close()


def test_the_height_index_goes_only_below_the_tapos_window(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a chain of 2**16 blocks takes long to build: the window is narrowed for the test
    monkeypatch.setattr(chain_module, "TAPOS_WINDOW", 40)
    store, grower = grown(tmp_path, 120, history=False)
    chain = grower.chain
    ids = {h: chain.block_id_at(h) for h in range(1, chain.head.height + 1)}
    prune_all(Pruner(chain, 16))
    low = chain.lowest_block
    assert low > 41
    for h, bid in ids.items():
        raw = store.get(schema.height_key(h))
        assert raw == (None if h < low - 40 else bid), h
    store.close()


def test_compaction_gives_the_pruned_bytes_back(tmp_path: Path) -> None:
    store, grower = grown(tmp_path, 1500)
    assert grower.history is not None
    grower.history.pruning = True
    full = store.size_on_disk()
    pruner = Pruner(grower.chain, 16)
    prune_all(pruner)
    for prefix in PRUNED_PREFIXES:
        pruner.compact(store, prefix)
    pruner.compacted()
    small = store.size_on_disk()
    # 1500 blocks of 2 transfers each down to the last ~30: what remains is mostly the
    # state, the logs and the manifest
    assert small < full * 0.5, (full, small)
    assert pruner.compactions == 1 and pruner.since_compaction == 0
    store.close()


def test_a_pruned_node_answers_an_empty_range_below_its_lowest_block(
        tmp_path: Path) -> None:
    store, grower = grown(tmp_path, 60)
    chain = grower.chain
    pruner = Pruner(chain, 16)
    prune_all(pruner)
    low = chain.lowest_block
    adapter = P2PAdapter(SimpleNamespace(chain=chain, pruner=pruner))  # type: ignore[arg-type]
    assert adapter.get_blocks(1, 10) == []
    assert adapter.get_blocks(low - 1, 10) == []
    got = adapter.get_blocks(low, 10)
    assert len(got) == 10 and got[0] == chain.get_block_raw(chain.block_id_at(low) or b"")
    assert adapter.served_blocks() == (low, 16)
    store.close()


def test_hello_says_which_blocks_a_node_serves() -> None:
    base = Hello(1, b"c" * 32, b"k" * 32, b"n" * 32, 5555, 900, b"h" * 32)
    assert (base.lowest_block, base.keep_blocks) == (1, 0)
    pruned = Hello(1, b"c" * 32, b"k" * 32, b"n" * 32, 5555, 900, b"h" * 32, 700, 100)
    assert decode_message(encode_message(pruned)) == pruned
    # an older node's 7-field HELLO serves every block
    old = msgpack.packb([1, 1, b"c" * 32, b"k" * 32, b"n" * 32, 5555, 900, b"h" * 32])
    assert decode_message(old) == base
    with pytest.raises(MessageError, match="lowest_block without keep_blocks"):
        decode_message(msgpack.packb([1, 1, b"c" * 32, b"k" * 32, b"n" * 32, 5555, 900,
                                      b"h" * 32, 700]))
    with pytest.raises(MessageError, match="lowest_block"):
        decode_message(msgpack.packb([1, 1, b"c" * 32, b"k" * 32, b"n" * 32, 5555, 900,
                                      b"h" * 32, 0, 0]))
    assert serves_from(700, 100, 900) == 801  # the last 100 below its head
    assert serves_from(700, 100, 750) == 700
    assert serves_from(1, 0, 10**6) == 1


def test_keep_blocks_below_16_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    cfg = NodeConfig()
    set_key(cfg, "storage", "keep_blocks", 16)
    assert cfg.keep_blocks == 16
    set_key(cfg, "storage", "keep_blocks", 0)
    with pytest.raises(ConfigError, match=r"storage.keep_blocks must be 0 \(keep every "
                                          r"block\) or at least 16, got 15"):
        set_key(cfg, "storage", "keep_blocks", 15)
    path = tmp_path / "node.toml"
    path.write_text("[storage]\nkeep_blocks = 3\n")
    with pytest.raises(ConfigError, match="at least 16, got 3"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="MUXER_STORAGE_KEEP_BLOCKS"):
        load_config(None, env={"MUXER_STORAGE_KEEP_BLOCKS": "8"})
    assert load_config(None, env={"MUXER_STORAGE_KEEP_BLOCKS": "1000"}).keep_blocks == 1000
    with pytest.raises(ValueError, match="at least 16"):
        Pruner(SimpleNamespace(), 5)  # type: ignore[arg-type]
    # the daemon's flag
    result = subprocess.run([sys.executable, "-m", "muxernode.daemon", "run", "--data-dir",
                             str(tmp_path / "none"), "--keep-blocks", "4"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--keep-blocks must be 0 (keep every block) or at least 16, got 4" in result.stderr


CHILD = """
import sys
from bench.prune import new_chain
from muxernode.pruner import Pruner
store, grower = new_chain(__import__("pathlib").Path(sys.argv[1]), seed=3, lifetime_s=10)
grower.grow(int(sys.argv[2]), 1)
print("built", flush=True)
pruner = Pruner(grower.chain, 16)
while pruner.step():
    print(grower.chain.lowest_block, flush=True)
print("done", flush=True)
"""


def test_kill_9_mid_prune_leaves_a_store_the_node_restarts_from(tmp_path: Path) -> None:
    data = tmp_path / "node"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data), "1400"], cwd=REPO,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline().strip()
            lines.append(line)
            if line.isdigit() and int(line) > 3 * PRUNE_BATCH:
                break  # batches are being written: kill it between or inside one
        os.kill(proc.pid, signal.SIGKILL)
        assert lines[-1].isdigit(), lines[-5:]
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    store = LevelDBStore(str(data / "db"))
    genesis = load_genesis(data / "genesis.json")
    chain = Chain(store, Ledger(store, genesis.params, genesis.genesis_time), genesis,
                  lambda _slot: b"")
    low = chain.lowest_block
    assert 1 < low < chain.prune_floor(16)  # killed midway
    # every block from the lowest one up is there, none below; the tx index likewise
    for h in range(1, chain.head.height + 1):
        bid = chain.block_id_at(h)
        assert bid is not None
        assert (store.get(schema.block_key(bid)) is None) == (h < low), h
    tx_heights = {schema.from_u64(v) for _, v in store.iterate(schema.PREFIX_TX)}
    assert min(tx_heights) == low
    # and pruning goes on from there
    prune_all(Pruner(chain, 16))
    assert chain.lowest_block == chain.prune_floor(16)
    store.close()


class PrunedHandler(StoreHandler):
    """A peer that holds only the blocks from ``low`` up, as a pruned node does."""

    def __init__(self, blocks: int, low: int, keep: int) -> None:
        super().__init__(blocks)
        self.low, self.keep = low, keep

    def served_blocks(self) -> tuple[int, int]:
        return self.low, self.keep

    def get_blocks(self, from_height: int, count: int) -> list[bytes]:
        return [] if from_height < self.low else super().get_blocks(from_height, count)


async def test_peers_learn_the_lowest_block_and_an_unserved_range_is_empty() -> None:
    pruned, _hp = make_node(1, blocks=100, peer_exchange=False)
    pruned.handler = PrunedHandler(100, low=60, keep=20)
    with trio.fail_after(10):
        async with running(pruned) as (port,):
            archive, _ha = make_node(2, blocks=100, seeds=[("127.0.0.1", port)],
                                     peer_exchange=False)
            async with running(archive):
                await until(lambda: pruned.node_id in archive.peer_ids()
                            and archive.node_id in pruned.peer_ids())
                # HELLO said (60, 20) with its head at 100: it surely serves 81..100
                assert archive.serves_from(pruned.node_id) == 81
                info = archive.peers_info()[0]
                assert info["pruned"] is True and info["lowest_block"] == 81
                assert pruned.serves_from(archive.node_id) == 1
                assert pruned.peers_info()[0]["pruned"] is False
                # asked for what it lacks: an empty range, no score, still connected
                assert await archive.request_blocks(pruned.node_id, 10, 5) == []
                assert pruned.counters["block_ranges_unserved"] == 1
                assert len(await archive.request_blocks(pruned.node_id, 81, 5)) == 5
                assert pruned.counters["block_ranges_unserved"] == 1
                assert archive.counters["misbehaviour_points"] == 0
                assert pruned.node_id in archive.peer_ids()


def test_a_store_that_began_at_a_snapshot_holds_blocks_from_there(tmp_path: Path) -> None:
    store, grower = grown(tmp_path, 40, history=False)
    chain = grower.chain
    assert chain.lowest_block == 1
    # as `init --snapshot` leaves it: ids of the heights below the snapshot block, no blocks
    store.write({schema.block_key(chain.block_id_at(h) or b""): None for h in range(1, 25)})
    again = Chain(store, chain.app, chain.genesis, chain.witness_for_slot)
    assert again.lowest_block == 25 and again.is_pruned(24) and not again.is_pruned(25)
    store.close()
