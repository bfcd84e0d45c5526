"""WebSocket subscribers on one node under load (issue: the node as an application platform).

    python -m bench.subscriptions                     # 1000 subscribers, 1000 tx/s, 20 s
    python -m bench.subscriptions --subscribers 200 --offered 500 --seconds 10

Two runs of the same offered load on a fresh one-witness node each (1-s blocks, pre-signed
transfers between --accounts accounts): without subscribers, then with --subscribers
WebSocket connections (trio-websocket, in a process of their own), each subscribed to
``heads`` and to the ``account`` of one sender. Prints:

- the notification delay after the block: the time from the block's commit on the node
  (its ``produced`` log line, JSON, same machine clock) to the notification's arrival at
  the client, p50 / p99 / max over every heads and account notification (target p99 <=
  200 ms);
- the node's included tx/s in both runs and their ratio (target: within 10 %).

Signing happens before the clock starts; the figures are printed next to the single-thread
verify rate of the same run, as the other benchmarks do.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from bench.common import verify_note, verify_rate
from bench.node import Daemon, included_between, make_chain, rpc, sign_all, submit_all
from consensus.crypto import address_from_text

CONNECT_S = 120.0  # all subscribers connected and subscribed within this


def load_items(accts: list[dict[str, str]], n: int) -> list[tuple[str, list[Any]]]:
    m = len(accts)
    return [(accts[i % m]["secret"],
             [1, address_from_text(accts[(i + 1) % m]["address"]), 1, f"s{i}"])
            for i in range(n)]


def subscribers(ws_url: str, addresses: list[str], out: str, ready: Connection,
                stop_after: float) -> None:
    """The client process: one connection per address (heads + account), every
    notification's (kind, height, arrival time) written to ``out`` at the end."""
    seen: list[tuple[str, int, float]] = []
    closed = 0

    async def one(address: str, started: trio.Event, done: trio.Event) -> None:
        nonlocal closed
        try:
            async with open_websocket_url(ws_url, message_queue_size=64) as ws:
                for i, (topic, flt) in enumerate((("heads", None), ("account", address))):
                    params = [topic] if flt is None else [topic, flt]
                    await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": i,
                                                      "method": "subscribe",
                                                      "params": params}))
                    for _ in range(1000):  # heads may come before the answer
                        answer = json.loads(await ws.get_message())
                        if answer.get("id") == i:
                            break
                    assert "result" in answer, answer
                started.set()
                with trio.move_on_after(stop_after):
                    while not done.is_set():
                        msg = json.loads(await ws.get_message())
                        now = time.time()
                        result = msg["params"]["result"]
                        kind = "account" if "role" in result else "heads"
                        seen.append((kind, result["height"], now))
        except ConnectionClosed:
            closed += 1
            started.set()

    async def run() -> None:
        done = trio.Event()
        async with trio.open_nursery() as nursery:
            events = []
            for address in addresses:
                ev = trio.Event()
                events.append(ev)
                nursery.start_soon(one, address, ev, done)
                await trio.sleep(0.002)  # a connection storm is not what is measured
            with trio.fail_after(CONNECT_S):
                for ev in events:
                    await ev.wait()
            ready.send("ready")
            await trio.sleep(stop_after)
            done.set()
            nursery.cancel_scope.cancel()

    trio.run(run)
    Path(out).write_text(json.dumps({"seen": seen, "closed": closed}))


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def commit_times(log: Path) -> dict[int, float]:
    """height -> when the node committed its block (the ``produced`` JSON log lines)."""
    out: dict[int, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        doc = json.loads(line)
        if doc.get("event") == "produced":
            out[int(doc["height"])] = float(doc["ts"])
    return out


def one_run(root: Path, args: argparse.Namespace, subs: int) -> dict[str, Any]:
    name = f"run{subs}"
    c = make_chain(root / name, args.accounts)
    log = root / f"{name}.log"
    d = Daemon(c["data"], c["wkey"], log)
    d.config_text += f"max_connections = {subs + 64}\n"
    d.extra = ["--log-format", "json"]
    d.start()
    proc = None
    try:
        chain_id = bytes.fromhex(rpc(d.url, "chain_info")["chain_id"])
        n = int(args.offered * args.seconds)
        txs = sign_all(chain_id, load_items(c["accounts"], n), int(time.time()) + 3000)
        out = root / f"{name}.json"
        if subs:
            ws_url = d.url.replace("http://", "ws://").replace("/rpc", "/ws")
            addresses = [c["accounts"][i % len(c["accounts"])]["address"] for i in range(subs)]
            parent, child = multiprocessing.Pipe()
            proc = multiprocessing.Process(target=subscribers, args=(
                ws_url, addresses, str(out), child, CONNECT_S + args.seconds + 10))
            proc.start()
            if not parent.poll(CONNECT_S + 10):
                raise TimeoutError("the subscribers did not connect in time")
            parent.recv()
            print(f"  {subs} subscribers connected", flush=True)
        assert d.proc is not None
        spy = None
        if args.profile and subs:
            spy = subprocess.Popen([args.py_spy, "record", "--pid", str(d.proc.pid), "-d",
                                    str(int(args.seconds)), "-o", args.profile,
                                    "--format", "raw"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0 = cpu_s(d.proc.pid), (cpu_s(proc.pid) if proc is not None and proc.pid else 0.0)
        t0 = time.time()
        admitted, rejected, took = submit_all(d.url, txs, args.seconds, rate=args.offered)
        t1 = time.time()
        cpu1 = cpu_s(d.proc.pid), (cpu_s(proc.pid) if proc is not None and proc.pid else 0.0)
        if spy is not None:
            spy.wait(60)
        time.sleep(3)  # the last blocks and their notifications
        included = included_between(d.url, int(t0) + 1, int(t1))
        window = max(1, int(t1) - int(t0))
        result: dict[str, Any] = {"included_per_s": included / window, "admitted": admitted,
                                  "rejected": rejected, "took": took, "t0": t0, "t1": t1,
                                  "node_cpu": (cpu1[0] - cpu0[0]) / (t1 - t0),
                                  "client_cpu": (cpu1[1] - cpu0[1]) / (t1 - t0)}
        if proc is not None:
            proc.join(CONNECT_S + args.seconds + 60)
            data = json.loads(out.read_text())
            commits = commit_times(log)
            delays = sorted(at - commits[h] for _kind, h, at in data["seen"]
                            if h in commits and t0 <= commits[h] <= t1 + 1)
            result["delays"] = delays
            result["closed"] = data["closed"]
        return result
    finally:
        if proc is not None and proc.is_alive():
            proc.kill()
        d.stop()


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--offered", type=int, default=1000, help="pre-signed txs per second")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--profile", default="", help="py-spy raw profile of the loaded node")
    ap.add_argument("--py-spy", default="py-spy", help="the py-spy program")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="muxer-bench-subs-"))
    vrate = verify_rate(2.0)
    try:
        print("run without subscribers ...", flush=True)
        base = one_run(root, args, 0)
        print(f"run with {args.subscribers} subscribers ...", flush=True)
        loaded = one_run(root, args, args.subscribers)
        delays = loaded["delays"]
        print(f"\n== subscriptions: one node, {args.subscribers} WebSocket subscribers "
              f"(heads + account), {args.offered} tx/s offered for {args.seconds:.0f} s ==")
        print(f"notifications           {len(delays)} "
              f"(connections closed by the node: {loaded['closed']})")
        print(f"delay after the block   p50 {pct(delays, 0.5) * 1000:.0f} ms, "
              f"p99 {pct(delays, 0.99) * 1000:.0f} ms, "
              f"max {pct(delays, 1.0) * 1000:.0f} ms  (target p99 <= 200 ms)")
        a, b = base["included_per_s"], loaded["included_per_s"]
        print(f"included/s              {a:,.0f} without subscribers, {b:,.0f} with "
              f"({(b / a - 1) * 100 if a else float('nan'):+.1f} %; target within 10 %)")
        print(f"refused at submission   {base['rejected']} without subscribers, "
              f"{loaded['rejected']} with (load shedding: the event loop ran late)")
        print(f"node CPU                {base['node_cpu']:.2f} cores without subscribers, "
              f"{loaded['node_cpu']:.2f} with; the subscribers' process "
              f"{loaded['client_cpu']:.2f} (same machine: {os.cpu_count()} cores)")
        print(verify_note(vrate))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
