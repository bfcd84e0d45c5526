"""Compact-block relay and sync from final blocks on the 4-node devnet (issue 18).

    python -m bench.relay                          # both parts
    python -m bench.relay --part relay|sync --tps 2000 --seconds 60

relay  four nodes / four witnesses / 1-s slots, --tps offered for --seconds (the
       bench.network step, round-robin over the nodes). Per node, from its p2p counters
       (/metrics ``muxer_p2p_total{counter}``): the bytes of block relay it received
       (CMPCT_BLOCK, GET_BLOCK_TXN, BLOCK_TXN, and BLOCKS: full blocks, the fallback) over
       the bytes of the full bodies of the blocks it got (each block once: what one full
       copy would weigh; the push of full blocks sent each node one to three copies).
       Target: <= 15 % on every node. Also the short ids' hit rate in the mempools, and
       the fallbacks.
sync   a fresh non-witness node syncs the chain the relay part left (run it first, or
       --sync-txs more txs are offered at 1,400 tx/s), twice: by default (the tx
       signatures of blocks final by the synced ranges' votes not checked again) and with
       --verify-all-signatures. The rate is the txs synced over the time from its first
       synced block to the head; "without apply" takes out the seconds the node spent
       applying and committing blocks (muxer_block_apply_seconds: the ledger's share),
       leaving the share of sync itself (fetching, decoding, the vote count, signature
       checks). Target: >= 30,000 tx/s.

Every figure is printed next to the single-thread verify rate measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import keep_or_remove, verify_note, verify_rate
from bench.network import Cluster, final_height, run_step
from bench.node import Daemon, metrics, rpc, setup_society
from muxernode.node import init_data_dir

RELAY_TYPES = ("cmpctblock", "getblocktxn", "blocktxn", "blocks")


def p2p(url: str) -> dict[str, float]:
    """A node's p2p counters, from its /metrics."""
    prefix = 'muxer_p2p_total{counter="'
    return {k[len(prefix):-2]: v for k, v in metrics(url).items() if k.startswith(prefix)}


def relay_part(c: Cluster, chain_id: bytes, tps: float, seconds: float, vrate: float) -> None:
    before = [p2p(u) for u in c.urls]
    rate, _, _ = run_step(c, chain_id, tps, seconds, 1)
    after = [p2p(u) for u in c.urls]
    print(f"\n== block relay at {tps:,.0f} tx/s offered for {seconds:.0f} s, 4 nodes ==")
    print(f"final tx/s              {rate:,.0f}  (ratio to verify {rate / vrate:.2f})")
    worst = 0.0
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        d = {k: a.get(k, 0.0) - b.get(k, 0.0) for k in a}
        relay = sum(d.get(f"bytes_in_{t}", 0.0) for t in RELAY_TYPES)
        full = d.get("compact_body_bytes", 0.0) + d.get("bytes_in_blocks", 0.0)
        share = relay / full if full else float("nan")
        worst = max(worst, share)
        txs = d.get("compact_txs", 0.0)
        hit = 1 - d.get("compact_txs_missing", 0.0) / txs if txs else float("nan")
        print(f"node {i + 1}: relay {relay / 1e6:7.2f} MB of {full / 1e6:7.2f} MB full bodies "
              f"= {share:6.1%}  (short ids found in the mempool {hit:.1%}; rebuilt "
              f"{d.get('compact_rebuilt', 0):.0f}, fallbacks "
              f"{d.get('compact_fallbacks', 0):.0f}, timeouts "
              f"{d.get('compact_timeouts', 0):.0f}; CMPCT_BLOCK copies "
              f"{d.get('msg_in_cmpctblock', 0):.0f}, "
              f"{d.get('bytes_in_cmpctblock', 0.0) / 1e6:.2f} MB; BLOCK_TXN "
              f"{d.get('bytes_in_blocktxn', 0.0) / 1e6:.2f} MB; prefilled by it "
              f"{d.get('compact_prefilled', 0):.0f} txs)")
    print(f"block relay bytes       {worst:.1%} of full bodies on the worst node  "
          f"(target <= 15 %; at {rate / vrate:.2f} x the verify rate)")


def sync_once(c: Cluster, root: Path, name: str, head: int, extra: list[str]
              ) -> tuple[int, float, float]:
    """(txs synced, seconds from the first synced block to the head, apply seconds)."""
    data = root / name
    init_data_dir(c.genesis, data)
    fresh = Daemon(data, None, root / f"{name}.log")
    fresh.extra = ["--p2p", f"127.0.0.1:{c.ports[-1]}", "--peer",
                   f"127.0.0.1:{c.ports[0]}", "--peer", f"127.0.0.1:{c.ports[1]}", *extra]
    fresh.start()
    try:
        deadline = time.monotonic() + 3600
        h0 = 0
        while h0 == 0:
            h0 = rpc(fresh.url, "chain_info")["head_height"]
            if time.monotonic() > deadline:
                raise TimeoutError("sync did not start")
            time.sleep(0.02)
        t0 = time.monotonic()
        apply0 = metrics(fresh.url).get("muxer_block_apply_seconds_sum", 0.0)
        while (h := rpc(fresh.url, "chain_info")["head_height"]) < head:
            if time.monotonic() > deadline:
                raise TimeoutError("sync did not finish in an hour")
            time.sleep(0.05)
        took = time.monotonic() - t0
        applied = metrics(fresh.url).get("muxer_block_apply_seconds_sum", 0.0) - apply0
        txs = sum(len(rpc(fresh.url, "get_block", x)["tx_ids"]) for x in range(h0 + 1, h + 1))
        return txs, took, applied
    finally:
        fresh.stop()


def sync_part(c: Cluster, chain_id: bytes, root: Path, min_txs: int, vrate: float) -> None:
    url = c.urls[0]
    total = sum(len(rpc(url, "get_block", h)["tx_ids"]) for h in range(1, final_height(url) + 1))
    offset = 10
    while total < min_txs:
        offset += 1
        rate, _, _ = run_step(c, chain_id, 1400, 30, offset)
        total += int(rate * 30)
    head = final_height(url)
    print(f"\n== sync of a fresh node: {head} final blocks, ~{total:,} txs ==")
    for name, extra in (("default", []), ("verify-all", ["--verify-all-signatures"])):
        txs, took, applied = sync_once(c, root, name, head, extra)
        rate = txs / took
        own = txs / max(1e-9, took - applied)
        print(f"{name:<11} {rate:>8,.0f} tx/s  (ratio to verify {rate / vrate:.2f}; "
              f"{txs:,} txs in {took:.1f} s, {applied:.1f} s of it applying blocks; "
              f"without apply {own:,.0f} tx/s)  target >= 30,000", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["all", "relay", "sync"], default="all")
    ap.add_argument("--tps", type=float, default=2000.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--sync-txs", type=int, default=100_000)
    ap.add_argument("--keep", action="store_true", help="keep the nodes' data and logs")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="muxer-relay-"))
    vrate = verify_rate(2.0)
    print(verify_note(vrate), flush=True)
    c = Cluster(root)
    try:
        c.start()
        chain_id = bytes.fromhex(rpc(c.urls[0], "chain_info")["chain_id"])
        setup_society(c.urls[0], chain_id, c.accounts)
        if args.part in ("all", "relay"):
            relay_part(c, chain_id, args.tps, args.seconds, vrate)
        if args.part in ("all", "sync"):
            sync_part(c, chain_id, root, args.sync_txs, vrate)
    finally:
        c.stop()
        keep_or_remove(root, args.keep)


if __name__ == "__main__":
    main()
