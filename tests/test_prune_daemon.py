"""Pruning on real daemons (``muxernode run --keep-blocks``) on 127.0.0.1: a pruned witness
on 1-s blocks answers -32006 for its old heights and its peers see it in ``peers``; a new
node syncing from a pruned and an archive peer takes the old blocks from the archive one;
a daemon killed with SIGKILL mid-prune restarts from its store and finishes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.prune import new_chain
from consensus.chain import Chain
from consensus.genesis import load_genesis
from devnet.cluster import free_ports
from muxernode.ledger import Ledger
from muxernode.node import init_data_dir
from storage import schema
from storage.leveldb import LevelDBStore
from tests.procs import Daemon, RpcFailure, make_genesis, rpc, wait_for

PRUNED = -32006


def pruned_error(url: str, height: int) -> dict[str, Any] | None:
    """The -32006 error of get_block(height), or None if the block is served (or not
    there yet: -32001 above the head, while a new witness makes its first blocks)."""
    try:
        rpc(url, "get_block", height)
    except RpcFailure as exc:
        if exc.error["code"] == -32001:
            return None
        assert exc.error["code"] == PRUNED, exc.error
        return exc.error
    return None


def peer_at(url: str, port: int) -> dict[str, Any] | None:
    return next((p for p in rpc(url, "peers") if p["address"] == f"127.0.0.1:{port}"), None)


def test_pruned_witness_old_heights_its_peers_and_a_mixed_sync(tmp_path: Path) -> None:
    gdir = tmp_path / "g"
    gpath = make_genesis(gdir, witnesses=1, accounts=2, interval=1, seed=21)
    doc = json.loads(gpath.read_text())
    doc["params"]["max_tx_lifetime_s"] = 4  # a short window below final: pruning soon
    gpath.write_text(json.dumps(doc))
    ports = free_ports(3)
    daemons: list[Daemon] = []
    try:
        dirs = [tmp_path / n for n in ("witness", "archive", "fresh")]
        for data in dirs:
            init_data_dir(gpath, data)
        witness = Daemon(dirs[0], witness_key=gdir / "w1.key",
                         extra_args=["--p2p", f"127.0.0.1:{ports[0]}", "--keep-blocks", "16"])
        witness.start()
        daemons.append(witness)
        archive = Daemon(dirs[1], extra_args=["--p2p", f"127.0.0.1:{ports[1]}",
                                              "--peer", f"127.0.0.1:{ports[0]}"])
        archive.start()
        daemons.append(archive)

        err = wait_for(lambda: pruned_error(witness.url, 1), timeout=90, interval=0.5)
        low = err["data"]["lowest_block"]
        assert low > 1 and err["message"] == f"pruned: this node holds blocks from height {low}"
        info = rpc(witness.url, "chain_info")
        assert low <= info["head_height"] - 15  # the last 16 blocks stay
        assert rpc(witness.url, "get_block", info["head_height"])["height"] == info["head_height"]
        # genesis and heights above the head answer as on any node
        assert rpc(witness.url, "get_block", 0)["height"] == 0
        with pytest.raises(RpcFailure) as above:
            rpc(witness.url, "get_block", info["head_height"] + 1000)
        assert above.value.error["code"] == -32001
        # the archive node holds them all
        assert rpc(archive.url, "get_block", 1)["height"] == 1

        # each side's peers list says who is pruned
        seen = wait_for(lambda: (p := peer_at(archive.url, ports[0])) is not None
                        and p["pruned"] and p["lowest_block"] > 1 and p)
        assert seen["lowest_block"] <= seen["head_height"]
        back = wait_for(lambda: peer_at(witness.url, ports[1]))
        assert back["pruned"] is False and back["lowest_block"] == 1

        # a new node with both as peers: heights 1.. come only from the archive one
        fresh = Daemon(dirs[2], extra_args=["--p2p", f"127.0.0.1:{ports[2]}",
                                            "--peer", f"127.0.0.1:{ports[0]}",
                                            "--peer", f"127.0.0.1:{ports[1]}"])
        fresh.start()
        daemons.append(fresh)
        target = rpc(witness.url, "chain_info")["final_height"]
        wait_for(lambda: rpc(fresh.url, "chain_info")["final_height"] >= target, timeout=60)
        for h in (1, low - 1, target):
            assert rpc(fresh.url, "get_block", h)["id"] == rpc(archive.url, "get_block", h)["id"]
        # and it is still connected to the pruned witness, which it never asked for blocks
        # the witness lacks (its p2p counters would say: block_ranges_unserved)
        p = peer_at(fresh.url, ports[0])
        assert p is not None and p["pruned"]
        metrics = httpx.get(witness.url.replace("/rpc", "/metrics"), timeout=10).text
        assert 'muxer_p2p_total{counter="handshakes"}' in metrics
        assert 'counter="block_ranges_unserved"' not in metrics
        for d in daemons:
            assert d.stop() == 0
    finally:
        for d in daemons:
            d.kill()


def stored_low(db: Path) -> tuple[int, int, int]:
    """(lowest block, head, final) of a stopped node's store, after checking that every
    main-chain block from the lowest up is there and none below it."""
    genesis = load_genesis(db.parent / "genesis.json")
    store = LevelDBStore(str(db))
    try:
        chain = Chain(store, Ledger(store, genesis.params, genesis.genesis_time), genesis,
                      lambda _slot: b"")
        low = chain.lowest_block
        for h in range(1, chain.head.height + 1):
            bid = chain.block_id_at(h)
            assert bid is not None
            assert (store.get(schema.block_key(bid)) is None) == (h < low), h
        return low, chain.head.height, chain.final.height
    finally:
        store.close()


def test_a_daemon_killed_mid_prune_restarts_and_finishes(tmp_path: Path) -> None:
    data = tmp_path / "node"
    # 3000 blocks of the past, built in-process: the daemon prunes 1024 a second
    store, grower = new_chain(data, seed=5, t0=int(time.time()) - 4000, lifetime_s=10)
    grower.grow(3000, 1)
    store.close()
    node = Daemon(data, extra_args=["--keep-blocks", "16"])
    try:
        node.start()
        wait_for(lambda: pruned_error(node.url, 1), timeout=30, interval=0.01)
        node.kill()  # SIGKILL while its first rounds of batches are being written
        low, head, final = stored_low(data / "db")
        floor = min(head - 15, final - 12)
        assert 1 < low < floor, (low, floor)  # killed midway
        node.start()
        err = wait_for(lambda: (e := pruned_error(node.url, floor - 1)) is not None
                       and e["data"]["lowest_block"] == floor and e, timeout=30, interval=0.2)
        assert err["data"]["lowest_block"] == floor
        assert rpc(node.url, "get_block", floor)["height"] == floor
        assert node.stop() == 0
        assert stored_low(data / "db")[0] == floor
    finally:
        node.kill()
