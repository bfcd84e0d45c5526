"""Four nodes, four witnesses, 1-s slots on this machine (issue: many nodes).

    python -m bench.network                      # all parts
    python -m bench.network --part steps|sustained|latency|sync [--minutes 10]

steps    offered load stepped up (--steps) for --step-seconds each, submitted round-robin
         to the four nodes, each step from a drained network; prints the sustained tx/s
         to finality at each step: txs in final blocks whose timestamps fall in the
         step's window after its first WARMUP_S seconds, over that span (target: >= 4,000
         tx/s, issue 18); and the CPU seconds (user + system, /proc) the nodes used per
         final tx, per node (target <= 100 us), which shows whether a step was limited by
         work per tx or by time lost (forks, waits). A tx reaches a block about a second
         after its submission, so the blocks of a window's first second carry almost
         nothing and the txs of its last second land after it: counting the whole window
         (printed too, "whole window") caps a network that keeps up at offered x
         (1 - 1 s / window).
sustained one step at --sustained-tps (4,500) for --minutes (10): the same figures over
         the whole run (target: >= 4,000 tx/s to finality for 10 minutes). Its txs are
         signed first (about 350 bytes of memory each).
latency  at --latency-tps (3,000) for --step-seconds: submission-to-final latency p50 and
         p99 (targets: p50 <= 2.0 s, two 1-s slots; p99 <= 2.5 s).
sync     a fresh non-witness node joins after the chain holds >= --sync-txs txs and syncs
         from the others; prints its sync rate in tx/s (target >= 5,000 tx/s).

Every figure is printed next to the single-thread verify rate measured in the same run.
Txs are signed before the clock starts (on every core), so the figures measure the nodes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.common import keep_or_remove, verify_note, verify_rate
from bench.node import Daemon, _cli, load_items, metrics, rpc, setup_society, sign_all
from devnet.cluster import free_ports
from muxernode.node import init_data_dir

WARMUP_S = 5  # a step's first seconds, left out of its sustained rate (see steps above)


class Cluster:
    def __init__(self, root: Path, nodes: int = 4, accounts: int = 1000) -> None:
        self.root = root
        gdir = root / "genesis"
        _cli("genesis", "new", "--out", str(gdir), "--witnesses", str(nodes), "--accounts",
             str(accounts), "--block-interval", "1", "--seed", "9",
             "--maintenance-interval", "100000000")
        self.genesis = gdir / "genesis.json"
        self.accounts: list[dict[str, str]] = json.loads((gdir / "accounts.json").read_text())
        # below the ephemeral range: a daemon's RPC port (0: the kernel picks) cannot take
        # one before its node binds it (it happened: Address already in use)
        self.ports = free_ports(nodes + 1)
        self.daemons: list[Daemon] = []
        for i in range(nodes):
            data = root / f"n{i + 1}"
            init_data_dir(self.genesis, data)
            d = Daemon(data, gdir / f"w{i + 1}.key", root / f"n{i + 1}.log")
            d.extra = ["--p2p", f"127.0.0.1:{self.ports[i]}"] + [
                a for j in range(nodes) if j != i for a in ("--peer", f"127.0.0.1:{self.ports[j]}")
            ]
            self.daemons.append(d)

    def start(self) -> None:
        for d in self.daemons:
            d.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(rpc(d.url, "chain_info")["final_height"] >= 3 for d in self.daemons):
                return
            time.sleep(0.5)
        raise TimeoutError("the cluster did not finalize")

    def stop(self) -> None:
        for d in self.daemons:
            d.stop()

    @property
    def urls(self) -> list[str]:
        return [d.url for d in self.daemons]


def final_height(url: str) -> int:
    h: int = rpc(url, "chain_info")["final_height"]
    return h


async def get_txs(http: httpx.AsyncClient, url: str, ids: list[str]
                  ) -> dict[str, dict[str, Any]]:
    """One batched get_tx call: tx id -> its result (ids without a result are left out)."""
    if not ids:
        return {}
    body = [{"jsonrpc": "2.0", "id": i, "method": "get_tx", "params": [t]}
            for i, t in enumerate(ids)]
    docs = (await http.post(url, json=body, timeout=30)).json()
    return {ids[d["id"]]: d["result"] for d in (docs if isinstance(docs, list) else [])
            if isinstance(d.get("result"), dict)}


async def offer(urls: list[str], txs: list[str], tps: float, seconds: float,
                submitted: list[tuple[str, float]],
                latencies: list[tuple[float, float, int]] | None = None,
                sample_every: int = 10) -> None:
    """Submit at a steady rate in 100-ms ticks, round-robin over the nodes.

    With ``latencies``, every ``sample_every``-th admitted tx is watched *while* the load
    runs and its submission-to-final time is recorded when the first node's final height
    first reaches the tx's block (see ``watch``)."""
    per_tick = max(1, int(tps / 10))
    failed: list[tuple[int, str]] = []  # (txs, why) of requests that got no answer
    watched: dict[str, float] = {}
    start = trio.current_time()
    pos = 0
    sending = True

    async def watch(http: httpx.AsyncClient) -> None:
        # Two cheap polls instead of one heavy one: the watched txs' heights (batched
        # get_tx every 250 ms, until each is in a block), and the final height (chain_info
        # every 50 ms). A tx is final when the final height reaches its height; the time
        # is taken from the chain_info poll, so detection adds at most ~50 ms.
        assert latencies is not None
        heights: dict[str, int] = {}  # watched tx -> height of the block it is in
        deadline = trio.current_time() + seconds + 30
        next_lookup = 0.0
        while (sending or watched) and trio.current_time() < deadline:
            try:
                if trio.current_time() >= next_lookup:
                    next_lookup = trio.current_time() + 0.25
                    ids = [t for t in watched if t not in heights][:1000]
                    for tid, res in (await get_txs(http, urls[0], ids)).items():
                        if res.get("status") in ("included", "final"):
                            heights[tid] = res["height"]
                doc = (await http.post(urls[0], json={
                    "jsonrpc": "2.0", "id": 1, "method": "chain_info", "params": []},
                    timeout=30)).json()
            except httpx.HTTPError:
                await trio.sleep(0.05)
                continue
            now = time.monotonic()
            final = doc.get("result", {}).get("final_height", -1)
            due = [t for t, h in heights.items() if h <= final]
            if due:  # confirm (a fork may have moved a tx to another block): one batch
                try:
                    found = await get_txs(http, urls[0], due)
                except httpx.HTTPError:
                    found = {}
                for tid, res in found.items():
                    if res.get("status") == "final" and res.get("height") == heights[tid]:
                        t = watched.pop(tid)
                        latencies.append((t, now - t, heights[tid]))
                    del heights[tid]  # else: looked up again
            await trio.sleep(0.05)

    async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
        if latencies is not None:
            nursery.start_soon(watch, http)
        tick = 0
        while pos < len(txs) and trio.current_time() - start < seconds:
            chunk = txs[pos:pos + per_tick]
            pos += len(chunk)
            url = urls[tick % len(urls)]

            async def send(url: str = url, chunk: list[str] = chunk) -> None:
                t = time.monotonic()
                body = {"jsonrpc": "2.0", "id": 1, "method": "submit_txs", "params": [chunk]}
                try:
                    try:
                        r = await http.post(url, json=body, timeout=60)
                    except (httpx.RemoteProtocolError, httpx.ConnectError):
                        # a pooled keep-alive connection the node closed as idle just as
                        # we reused it: resubmitting is safe (a known tx answers its id)
                        r = await http.post(url, json=body, timeout=60)
                except httpx.HTTPError as exc:
                    # an overloaded node: counted, not fatal
                    failed.append((len(chunk), f"{type(exc).__name__} {url}"))
                    return
                for item in r.json().get("result", []):
                    if "tx_id" in item:
                        submitted.append((item["tx_id"], t))
                        if latencies is not None and len(submitted) % sample_every == 0:
                            watched[item["tx_id"]] = t

            nursery.start_soon(send)
            tick += 1
            await trio.sleep_until(start + tick / 10)
        sending = False
    if failed:
        whys = sorted({why for _, why in failed})
        print(f"  ({sum(n for n, _ in failed)} txs in {len(failed)} requests failed to "
              f"submit: {', '.join(whys)})")
    if latencies is not None and watched:
        print(f"  ({len(watched)} watched txs not seen final in time)")


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def print_windows(pairs: list[tuple[float, float, int]], width: float = 10.0) -> None:
    """p50 / p99 / max by window of submission time: shows whether slow txs are spread
    out or bunched (a stall, a fork switch) and when."""
    if not pairs:
        return
    t0 = min(t for t, _, _ in pairs)
    by: dict[int, list[float]] = {}
    for t, x, _ in pairs:
        by.setdefault(int((t - t0) // width), []).append(x)
    print("  by submission window: " + "  ".join(
        f"{int(k * width)}s {pct(v, 50):.1f}/{pct(v, 99):.1f}/{max(v):.1f}"
        for k, v in sorted(by.items())) + "  (p50/p99/max s)")


def print_phases(url: str, pairs: list[tuple[float, float, int]], wall: float) -> None:
    """Where the time goes, by medians: submission to the start of the slot of the block
    that carries the tx (waiting for a slot, gossip to its producer), and from there to
    final (the block's way to the others, their votes, the next slot's votes)."""
    if not pairs:
        return
    slot_start = {h: rpc(url, "get_block", h)["timestamp"] for h in {h for _, _, h in pairs}}
    waits = [slot_start[h] - (t + wall) for t, _, h in pairs]
    finals = [(t + x + wall) - slot_start[h] for t, x, h in pairs]
    print(f"  median: submission -> its block's slot {pct(waits, 50):.2f} s, slot -> final "
          f"{pct(finals, 50):.2f} s")


def drain(c: Cluster, limit_s: float = 120.0) -> None:
    """Wait until every mempool is empty (bounded): each step and the latency part start
    from an idle network, not from the backlog an overloaded step left behind."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        pools = [metrics(u).get("muxer_mempool_txs", 0.0) for u in c.urls]
        if not any(pools):
            return
        time.sleep(0.5)
    print(f"  (mempools not empty after {limit_s:.0f} s)")


def cpu_seconds(c: Cluster) -> float:
    """User + system CPU seconds the cluster's daemons have used so far (/proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for d in c.daemons:
        if d.proc is None:
            continue
        stat = Path(f"/proc/{d.proc.pid}/stat").read_text()
        fields = stat[stat.rfind(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def work(c: Cluster) -> dict[str, float]:
    """What the cluster's daemons have done so far, summed over them: CPU seconds, tx
    signatures checked for the mempool (path tx) and for peers' blocks (path block), and
    seconds in the cycle collector (gc)."""
    out = {"cpu": cpu_seconds(c), "tx": 0.0, "block": 0.0, "gc": 0.0}
    for url in c.urls:
        m = metrics(url)
        for path in ("tx", "block"):
            out[path] += m.get(f'muxer_tx_signature_checks_total{{path="{path}"}}', 0.0)
        out["gc"] += sum(m.get(f'muxer_gc_pause_seconds_total{{generation="{g}"}}', 0.0)
                         for g in range(3))
    return out


def start_profile(c: Cluster, path: str, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy (the venv's, else PATH's) sampling node 1 from outside for ``seconds``,
    written as raw collapsed stacks (one line per stack, its sample count last)."""
    proc = c.daemons[0].proc
    assert proc is not None
    exe = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen([str(exe) if exe.exists() else "py-spy", "record", "--pid",
                             str(proc.pid), "-d", str(int(seconds)), "-o", path,
                             "--format", "raw", "--nolineno"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_step(c: Cluster, chain_id: bytes, tps: float, seconds: float, offset: int,
             latencies: list[tuple[float, float, int]] | None = None, profile: str = ""
             ) -> tuple[float, list[tuple[str, float]], dict[str, float]]:
    """(sustained tx/s to finality, the admitted (tx id, time) pairs, the nodes' work
    (``work``) per final tx of the window, summed over the nodes). With ``profile``, node
    1 is sampled by py-spy over the offered window, into that file."""
    n = int(tps * seconds)
    txs = sign_all(chain_id, load_items(c.accounts[offset % 7:] + c.accounts, n),
                   int(time.time()) + 3000)
    drain(c)
    url = c.urls[0]
    f0 = final_height(url)
    submitted: list[tuple[str, float]] = []
    work0 = work(c)
    t0 = time.time()
    spy = start_profile(c, profile, seconds) if profile else None
    trio.run(offer, c.urls, txs, tps, seconds, submitted, latencies)
    if spy is not None:
        spy.wait(60)
    # Sustained rate to finality: txs in final blocks whose timestamps fall in the
    # offered window (block time is UNIX seconds), over the window. Blocks after it that
    # carry a backlog left by an overloaded step do not count.
    lo, hi = int(t0), int(t0 + seconds)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # let finality pass the window's end
        if rpc(url, "get_block", final_height(url))["timestamp"] >= hi:
            break
        time.sleep(0.5)
    finalized = steady = 0
    for h in range(f0 + 1, final_height(url) + 1):
        block = rpc(url, "get_block", h)
        if lo < block["timestamp"] <= hi:
            finalized += len(block["tx_ids"])
            if block["timestamp"] > lo + WARMUP_S:
                steady += len(block["tx_ids"])
    done = work(c)
    per_tx = {k: (done[k] - work0[k]) / max(1, finalized) for k in done}
    per_tx["whole_window"] = finalized / (hi - lo)
    return steady / (hi - lo - WARMUP_S), submitted, per_tx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["all", "steps", "sustained", "latency", "sync"],
                    default="all")
    ap.add_argument("--steps", default="2000,3000,4000,4500")
    ap.add_argument("--step-seconds", type=float, default=60.0)
    ap.add_argument("--sustained-tps", type=float, default=4500.0)
    ap.add_argument("--minutes", type=float, default=10.0,
                    help="length of the sustained run (the target is for 10)")
    ap.add_argument("--latency-tps", type=float, default=3000.0)
    ap.add_argument("--sync-txs", type=int, default=200_000)
    ap.add_argument("--keep", action="store_true",
                    help="keep the nodes' data and logs (the path is printed)")
    ap.add_argument("--profile", default="", metavar="PREFIX",
                    help="py-spy raw profile of node 1 in each run, to PREFIX.<part>.<tps>.txt")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="muxer-net-"))
    vrate = verify_rate(2.0)
    print(verify_note(vrate), flush=True)
    c = Cluster(root)
    try:
        c.start()
        chain_id = bytes.fromhex(rpc(c.urls[0], "chain_info")["chain_id"])
        setup_society(c.urls[0], chain_id, c.accounts)
        offset = 0
        nodes = len(c.daemons)

        def load_run(part: str, tps: float, seconds: float) -> float:
            nonlocal offset
            offset += 1
            rate, _, per_tx = run_step(
                c, chain_id, tps, seconds, offset,
                profile=f"{args.profile}.{part}.{tps:.0f}.txt" if args.profile else "")
            print(f"offered {tps:>7,.0f} tx/s -> final {rate:>7,.0f} tx/s  "
                  f"(whole window {per_tx['whole_window']:,.0f}; "
                  f"ratio to verify {rate / vrate:.2f}; per final tx per node: CPU "
                  f"{per_tx['cpu'] / nodes * 1e6:,.0f} us, target <= 100 (GC "
                  f"{per_tx['gc'] / nodes * 1e6:,.0f}), signature checks "
                  f"{per_tx['tx'] / nodes:.2f} + {per_tx['block'] / nodes:.2f} in "
                  "blocks)", flush=True)
            return rate

        if args.part in ("all", "steps"):
            print("\n== sustained tx/s to finality, 4 nodes, 4 witnesses, 1-s slots ==")
            best = max(load_run("steps", float(x), args.step_seconds)
                       for x in args.steps.split(","))
            print(f"best sustained          {best:,.0f} tx/s  (target >= 4,000)")
        if args.part in ("all", "sustained"):
            print(f"\n== sustained for {args.minutes:g} min at {args.sustained_tps:,.0f} tx/s "
                  "offered, 4 nodes ==")
            rate = load_run("sustained", args.sustained_tps, args.minutes * 60)
            print(f"sustained {args.minutes:g} min        {rate:,.0f} tx/s  (target >= 4,000 for "
                  "10 minutes)")
        if args.part in ("all", "latency"):
            offset += 1
            pairs: list[tuple[float, float, int]] = []
            wall = time.time() - time.monotonic()  # offer's times are monotonic
            rate, submitted, _ = run_step(c, chain_id, args.latency_tps, args.step_seconds,
                                          offset, pairs)
            lat = [x for _, x, _ in pairs]
            print(f"\n== latency at {args.latency_tps:,.0f} tx/s offered ==")
            print(f"final tx/s              {rate:,.0f}")
            print(f"p50 submission->final   {pct(lat, 50):.2f} s  (target <= 2.0)")
            print(f"p99 submission->final   {pct(lat, 99):.2f} s  (target <= 2.5)")
            print(f"measured                {len(lat)} sampled of {len(submitted)} txs")
            print_windows(pairs)
            print_phases(c.urls[0], pairs, wall)
        if args.part in ("all", "sync"):
            total = sum(len(rpc(c.urls[0], "get_block", h)["tx_ids"])
                        for h in range(1, final_height(c.urls[0]) + 1))
            while total < args.sync_txs:
                offset += 1
                rate, _, _ = run_step(c, chain_id, 1400, 30, offset)
                total += int(rate * 30)
                print(f"chain holds ~{total:,} txs", flush=True)
            head = rpc(c.urls[0], "chain_info")["head_height"]
            txs_total = sum(len(rpc(c.urls[0], "get_block", h)["tx_ids"])
                            for h in range(1, head + 1))
            data = root / "fresh"
            init_data_dir(c.genesis, data)
            fresh = Daemon(data, None, root / "fresh.log")
            fresh.extra = ["--p2p", f"127.0.0.1:{c.ports[-1]}", "--peer",
                           f"127.0.0.1:{c.ports[0]}", "--peer", f"127.0.0.1:{c.ports[1]}"]
            t0 = time.monotonic()
            fresh.start()
            while rpc(fresh.url, "chain_info")["head_height"] < head:
                time.sleep(0.2)
                if time.monotonic() - t0 > 3600:
                    raise TimeoutError("sync did not finish in an hour")
            took = time.monotonic() - t0
            fresh.stop()
            print(f"\n== sync of a fresh node: {head} blocks, {txs_total:,} txs ==")
            print(f"sync rate               {txs_total / took:,.0f} tx/s  (target >= 5,000)")
            print(f"ratio to verify         {txs_total / took / vrate:.2f}")
    finally:
        c.stop()
        keep_or_remove(root, args.keep)


if __name__ == "__main__":
    main()
