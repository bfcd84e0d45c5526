"""WebSocket subscribers on one node under load (issue: the node as an application platform).

    python -m bench.subscriptions                     # 1000 subscribers, 1000 tx/s, 20 s
    python -m bench.subscriptions --subscribers 200 --offered 500 --seconds 10

Two runs of the same offered load on a fresh one-witness node each (1-s blocks, pre-signed
transfers between --accounts accounts): without subscribers, then with --subscribers
WebSocket connections, each subscribed to ``heads`` and to the ``account`` of one sender.
The subscribers are spread over --client-procs processes of their own, each a single epoll
loop over non-blocking sockets with wsproto's client side (no task per connection), that
stamps each read as it returns and parses after the run: the client must not be what is
measured (its CPU is printed too). Prints:

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
import selectors
import shutil
import socket
import subprocess
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState as WsState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from bench.common import verify_note, verify_rate
from bench.node import Daemon, included_between, make_chain, rpc, sign_all, submit_all
from consensus.crypto import address_from_text

CONNECT_S = 120.0  # all subscribers connected and subscribed within this


def load_items(accts: list[dict[str, str]], n: int) -> list[tuple[str, list[Any]]]:
    m = len(accts)
    return [(accts[i % m]["secret"],
             [1, address_from_text(accts[(i + 1) % m]["address"]), 1, f"s{i}"])
            for i in range(n)]


class _Client:
    """One subscriber connection: a non-blocking socket and wsproto's client side (the
    framing is the library's; only the bookkeeping is ours)."""

    def __init__(self, sock: socket.socket, host: str, address: str) -> None:
        self.sock = sock
        self.address = address
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.accepted = False
        self.answers = 0  # subscribe answers received (2 when both are in)
        self.close_code: int | None = None
        self.texts: list[tuple[float, str]] = []  # (arrival, text): parsed after the run
        self._partial: list[str] = []
        sock.sendall(self.ws.send(Request(host=host, target="/ws")))

    def feed(self, data: bytes, now: float) -> None:
        """Bytes read at ``now``: every message they complete arrived then."""
        if not data:
            self.ws.receive_data(None)
        else:
            self.ws.receive_data(data)
        out = b""
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
                for i, (topic, flt) in enumerate((("heads", None), ("account", self.address))):
                    params = [topic] if flt is None else [topic, flt]
                    out += self.ws.send(TextMessage(data=json.dumps({
                        "jsonrpc": "2.0", "id": i, "method": "subscribe", "params": params})))
            elif isinstance(event, TextMessage):
                self._partial.append(event.data)
                if event.message_finished:
                    text = "".join(self._partial)
                    self._partial.clear()
                    if text.startswith('{"jsonrpc":"2.0","method"'):
                        self.texts.append((now, text))
                    else:
                        answer = json.loads(text)
                        assert "result" in answer, answer
                        self.answers += 1
            elif isinstance(event, Ping):
                out += self.ws.send(event.response())
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                if self.ws.state is not WsState.CLOSED:
                    out += self.ws.send(event.response())
            elif isinstance(event, RejectConnection):
                raise RuntimeError(f"the node refused the WebSocket: {event.status_code}")
        if out:
            self.sock.setblocking(True)  # a few small frames: the socket takes them at once
            self.sock.sendall(out)
            self.sock.setblocking(False)


def subscribers(ws_url: str, addresses: list[str], out: str, ctl: Connection,
                stop_after: float) -> None:
    """One client process: a connection per address (heads + account) under one epoll
    selector, no task per connection. Each read is timestamped as it returns, before any
    parsing, so the figure is the node's delay plus the kernel's, not this process's
    parsing; ``ready`` is sent once every subscription is answered, and the process
    stops, writing what it saw, when told to."""
    host_port = ws_url.removeprefix("ws://").split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    sel = selectors.DefaultSelector()
    clients: list[_Client] = []
    for address in addresses:
        sock = socket.create_connection((host, int(port)), timeout=CONNECT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = _Client(sock, host_port, address)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, c)
        clients.append(c)
    sel.register(ctl.fileno(), selectors.EVENT_READ, None)
    deadline = time.monotonic() + CONNECT_S
    hard_stop = time.monotonic() + stop_after  # should the parent never say stop
    said_ready = False
    open_ = len(clients)
    stop = False
    while not stop and open_ and time.monotonic() < hard_stop:
        for key, _mask in sel.select(1.0):
            c = key.data
            if c is None:
                ctl.recv()
                stop = True
                continue
            now = time.time()
            try:
                data = c.sock.recv(1 << 18)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            c.feed(data, now)
            if not data:
                sel.unregister(c.sock)
                open_ -= 1
        if not said_ready:
            if all(c.answers == 2 for c in clients):
                ctl.send("ready")
                said_ready = True
            elif time.monotonic() > deadline:
                raise TimeoutError("the subscriptions were not all answered in time")
    seen: list[tuple[str, int, float]] = []
    for c in clients:
        for now, text in c.texts:
            result = json.loads(text)["params"]["result"]
            seen.append(("account" if "role" in result else "heads", result["height"], now))
        c.sock.close()
    closed = sum(1 for c in clients if c.close_code is not None)
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
    procs: list[tuple[multiprocessing.Process, Connection, Path]] = []
    try:
        chain_id = bytes.fromhex(rpc(d.url, "chain_info")["chain_id"])
        n = int(args.offered * args.seconds)
        txs = sign_all(chain_id, load_items(c["accounts"], n), int(time.time()) + 3000)
        if subs:
            ws_url = d.url.replace("http://", "ws://").replace("/rpc", "/ws")
            addresses = [c["accounts"][i % len(c["accounts"])]["address"] for i in range(subs)]
            k = max(1, min(args.client_procs, subs))
            for j in range(k):
                parent, child = multiprocessing.Pipe()
                out = root / f"{name}-{j}.json"
                proc = multiprocessing.Process(target=subscribers, args=(
                    ws_url, addresses[j::k], str(out), child,
                    CONNECT_S + args.seconds + 60))
                proc.start()
                procs.append((proc, parent, out))
            for _proc, parent, _out in procs:
                if not parent.poll(CONNECT_S + 10):
                    raise TimeoutError("the subscribers did not connect in time")
                parent.recv()
            print(f"  {subs} subscribers connected ({k} client processes)", flush=True)
        assert d.proc is not None
        spy = None
        if args.profile and subs:
            spy = subprocess.Popen([args.py_spy, "record", "--pid", str(d.proc.pid), "-d",
                                    str(int(args.seconds)), "-o", args.profile,
                                    "--format", "raw"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def clients_cpu() -> float:
            return sum(cpu_s(p.pid) for p, _c, _o in procs if p.pid is not None)

        cpu0 = cpu_s(d.proc.pid), clients_cpu()
        t0 = time.time()
        admitted, rejected, took = submit_all(d.url, txs, args.seconds, rate=args.offered)
        t1 = time.time()
        cpu1 = cpu_s(d.proc.pid), clients_cpu()
        if spy is not None:
            spy.wait(60)
        time.sleep(3)  # the last blocks and their notifications
        included = included_between(d.url, int(t0) + 1, int(t1))
        window = max(1, int(t1) - int(t0))
        result: dict[str, Any] = {"included_per_s": included / window, "admitted": admitted,
                                  "rejected": rejected, "took": took, "t0": t0, "t1": t1,
                                  "node_cpu": (cpu1[0] - cpu0[0]) / (t1 - t0),
                                  "client_cpu": (cpu1[1] - cpu0[1]) / (t1 - t0)}
        if procs:
            seen: list[list[Any]] = []
            closed = 0
            for _proc, parent, _out in procs:
                parent.send("stop")
            for proc, _parent, out in procs:
                proc.join(60)
                data = json.loads(out.read_text())
                seen += data["seen"]
                closed += data["closed"]
            commits = commit_times(log)
            kept = [(kind, h, at - commits[h]) for kind, h, at in seen
                    if h in commits and t0 <= commits[h] <= t1 + 1]
            result["delays"] = sorted(d for _k, _h, d in kept)
            result["heads"] = sorted(d for k, _h, d in kept if k == "heads")
            result["account"] = sorted(d for k, _h, d in kept if k == "account")
            first: dict[int, float] = {}
            for _k, h, delay in kept:
                first[h] = min(delay, first.get(h, delay))
            result["first"] = sorted(first.values())  # when a block's fan-out began
            result["closed"] = closed
        return result
    finally:
        for proc, _parent, _out in procs:
            if proc.is_alive():
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
    ap.add_argument("--client-procs", type=int, default=2,
                    help="processes the subscribers are spread over")
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
        for label, key in (("  heads", "heads"), ("  account", "account"),
                           ("  a block's first", "first")):
            v = loaded[key]
            print(f"{label:<24}p50 {pct(v, 0.5) * 1000:.0f} ms, p99 {pct(v, 0.99) * 1000:.0f} ms"
                  f" ({len(v)})")
        a, b = base["included_per_s"], loaded["included_per_s"]
        print(f"included/s              {a:,.0f} without subscribers, {b:,.0f} with "
              f"({(b / a - 1) * 100 if a else float('nan'):+.1f} %; target within 10 %)")
        print(f"refused at submission   {base['rejected']} without subscribers, "
              f"{loaded['rejected']} with (load shedding: the event loop ran late)")
        print(f"node CPU                {base['node_cpu']:.2f} cores without subscribers, "
              f"{loaded['node_cpu']:.2f} with; the subscribers' processes "
              f"{loaded['client_cpu']:.2f} (same machine: {os.cpu_count()} cores)")
        print(verify_note(vrate))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
