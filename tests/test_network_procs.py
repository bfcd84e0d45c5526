"""Real processes: 4 witness daemons on 127.0.0.1 with real sockets; blocks flow, all
finalize, and a fifth non-witness node syncs from genesis and follows."""

from __future__ import annotations

import time
from pathlib import Path

from devnet.cluster import free_ports
from muxernode.node import init_data_dir
from tests.procs import Daemon, make_genesis, rpc, wait_for


def test_four_witness_daemons_finalize_and_a_fifth_node_syncs(tmp_path: Path) -> None:
    gdir = tmp_path / "g"
    gpath = make_genesis(gdir, witnesses=4, accounts=3, seed=11)
    # below the ephemeral range: a daemon's RPC port (0: the kernel picks) cannot take one
    ports = free_ports(5)
    daemons: list[Daemon] = []
    try:
        for i in range(4):
            data = tmp_path / f"n{i + 1}"
            init_data_dir(gpath, data)
            peers = [a for j in range(4) if j != i for a in ("--peer", f"127.0.0.1:{ports[j]}")]
            d = Daemon(data, witness_key=gdir / f"w{i + 1}.key",
                       extra_args=["--p2p", f"127.0.0.1:{ports[i]}", *peers])
            d.start()
            daemons.append(d)

        def infos() -> list[dict[str, int]]:
            return [rpc(d.url, "chain_info") for d in daemons]

        # every node finalizes past height 6 (all four witnesses produce and vote)
        wait_for(lambda: all(x["final_height"] >= 6 for x in infos()), timeout=40)
        producers = {rpc(daemons[0].url, "get_block", h)["witness"] for h in range(1, 7)}
        assert len(producers) >= 3, producers
        # agreement: the same block at every node's common final height
        target = min(x["final_height"] for x in infos())
        ids = {rpc(d.url, "get_block", target)["id"] for d in daemons}
        assert len(ids) == 1
        assert all(rpc(d.url, "get_block", target)["final"] for d in daemons)
        peers = rpc(daemons[0].url, "peers")
        assert len(peers) == 3 and all(p["direction"] in ("in", "out") for p in peers)

        # a fifth, non-witness node syncs from genesis through one peer and follows
        data5 = tmp_path / "n5"
        init_data_dir(gpath, data5)
        d5 = Daemon(data5, extra_args=["--p2p", f"127.0.0.1:{ports[4]}",
                                       "--peer", f"127.0.0.1:{ports[1]}"])
        d5.start()
        daemons.append(d5)
        head = rpc(daemons[0].url, "chain_info")["head_height"]
        wait_for(lambda: rpc(d5.url, "chain_info")["final_height"] >= head, timeout=40)
        h = rpc(d5.url, "chain_info")["final_height"]
        assert rpc(d5.url, "get_block", h)["id"] == rpc(daemons[0].url, "get_block", h)["id"]
        time.sleep(0.1)
        for d in daemons:
            assert d.stop() == 0
    finally:
        for d in daemons:
            d.kill()
