"""One node, end to end: throughput, restart time and memory (issue: a single node).

    python -m bench.node                 # all three parts
    python -m bench.node --part tps      # or restart, memory

tps      one daemon (one witness, 1-s blocks); clients submit pre-signed transfers and
         pledges from --accounts accounts through submit_txs for --seconds; prints
         admitted/s, included/s and included/verify (targets: >= 12,000 tx/s included,
         issue 18; ratio >= 0.7, the first target). --offered must exceed the target.
restart  chains of 10k and 100k blocks are written through the real Chain, then the daemon
         is started, killed with SIGKILL, and timed from the kill to answering chain_info at
         its head (targets: <= 2 s each, ratio 100k/10k <= 1.5: no replay).
memory   --memory-txs txs over --memory-accounts accounts through the daemon; prints its
         resident memory (target <= 200 MB).

Signing happens before the clock starts: the figures measure the node, not the client.
Every figure is printed next to the single-thread verify rate measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.common import verify_note, verify_rate
from consensus.chain import Chain
from consensus.crypto import PrivateKey, address_from_text
from consensus.genesis import load_genesis
from consensus.tx import build_tx
from devnet.rpc import parse_metrics
from muxernode.daemon import main as daemon_main
from muxernode.ledger import Ledger
from muxernode.node import DB_DIR, GENESIS_FILE, init_data_dir
from storage.leveldb import LevelDBStore

REPO = Path(__file__).resolve().parent.parent
SOCIETY = "bench"
# short observation so nothing waits; min_pledge 1 unit
RULES = [86400, 3844, 300, 0, 0, 2_592_000, 10, 1000, 1]


def _cli(*args: str) -> None:
    try:
        daemon_main.main(list(args), standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise


def make_chain(root: Path, accounts: int, genesis_time: int | None = None) -> dict[str, Any]:
    out = root / "genesis"
    args = ["genesis", "new", "--out", str(out), "--witnesses", "1", "--accounts",
            str(accounts), "--block-interval", "1", "--seed", "7",
            "--maintenance-interval", "100000000"]
    if genesis_time is not None:
        args += ["--genesis-time", str(genesis_time)]
    _cli(*args)
    data = root / "node"
    init_data_dir(out / "genesis.json", data)
    accts = json.loads((out / "accounts.json").read_text())
    return {"genesis": out / "genesis.json", "data": data, "wkey": out / "w1.key",
            "accounts": accts}


class Daemon:
    def __init__(self, data: Path, wkey: Path | None, log: Path) -> None:
        self.data, self.wkey, self.log = data, wkey, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.extra: list[str] = []  # more `muxernode run` options (p2p address, peers)
        # the node's default limits (mempool 10,000 txs / 64 MiB), bigger RPC bodies only
        self.config_text = ('[limits]\nverify_threads = 2\n[rpc]\nmax_body_bytes = 67108864\n'
                            'max_batch = 10000\n')

    def start(self, timeout: float = 60.0) -> float:
        (self.data / "rpc.addr").unlink(missing_ok=True)
        cfg = self.data / "bench.toml"
        cfg.write_text(self.config_text)
        args = [sys.executable, "-m", "muxernode.daemon", "run", "--data-dir", str(self.data),
                "--rpc", "127.0.0.1:0", "--config", str(cfg)]
        if self.wkey:
            args += ["--witness-key", str(self.wkey)]
        args += self.extra
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(args, cwd=REPO, stdout=f, stderr=f)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited; see {self.log}")
            p = self.data / "rpc.addr"
            if p.exists() and p.read_text().strip():
                self.url = p.read_text().strip()
                return time.monotonic() - t0
            time.sleep(0.005)
        raise TimeoutError("daemon did not start")

    def rss_mb(self, field: str = "VmRSS") -> float:
        """Resident memory in MB: VmRSS (all), RssAnon (the process's own heap, stacks
        and arenas) or RssFile (pages of mapped files: code, and LevelDB's table files,
        which it reads through mmap; clean page cache the kernel reclaims at will)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return 0.0

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def rpc(url: str, method: str, *params: Any) -> Any:
    doc = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                "params": list(params)}, timeout=60).json()
    if "error" in doc:
        raise RuntimeError(doc["error"])
    return doc["result"]


def metrics(url: str) -> dict[str, float]:
    """A node's /metrics (``url`` is its /rpc address), parsed."""
    return parse_metrics(httpx.get(url.replace("/rpc", "/metrics"), timeout=10).text)


def _sign_chunk(args: tuple[bytes, list[tuple[str, list[Any]]], int, int, int]) -> list[str]:
    chain_id, items, ref_prefix, expiration, fee = args
    out = []
    for secret, op in items:
        key = PrivateKey(bytes.fromhex(secret))
        out.append(build_tx(key, chain_id, op, ref_block_num=0, ref_block_prefix=ref_prefix,
                            expiration=expiration, fee=fee).raw.hex())
    return out


def sign_all(chain_id: bytes, items: list[tuple[str, list[Any]]], expiration: int) -> list[str]:
    """Sign on every core (setup, not measured). TaPoS names genesis (height 0)."""
    prefix = int.from_bytes(chain_id[:4], "big")
    n = max(1, os.cpu_count() or 1)
    size = (len(items) + n * 4 - 1) // (n * 4) or 1
    chunks = [(chain_id, items[i:i + size], prefix, expiration, 10)
              for i in range(0, len(items), size)]
    with multiprocessing.Pool(n) as pool:
        parts = pool.map(_sign_chunk, chunks)
    return [h for part in parts for h in part]


def submit_all(url: str, txs: list[str], seconds: float, batch: int = 500,
               clients: int = 4, rate: float | None = None) -> tuple[int, int, float]:
    """Submit in batches from several clients until done or time is up; with ``rate``
    (tx/s) a batch leaves no earlier than its place in a steady schedule (the offered
    load), else as fast as the node answers."""
    admitted = rejected = 0
    pos = 0
    errors: list[Any] = []
    trio_start = 0.0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal admitted, rejected, pos
        while pos < len(txs) and time.monotonic() < deadline:
            at = pos
            chunk = txs[pos:pos + batch]
            pos += batch
            if rate is not None:
                await trio.sleep_until(trio_start + at / rate)
            r = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "submit_txs",
                                           "params": [chunk]}, timeout=120)
            doc = r.json()
            if "result" not in doc:  # the whole call refused (e.g. the node is busy)
                errors.append(doc.get("error"))
                rejected += len(chunk)
                await trio.sleep(0.1)
                continue
            for item in doc["result"]:
                if "tx_id" in item:
                    admitted += 1
                else:
                    rejected += 1
            # back off when the mempool is full rather than spin
            if rejected and admitted == 0:
                await trio.sleep(0.05)

    async def run() -> None:
        nonlocal trio_start
        trio_start = trio.current_time()
        async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(client, http)

    start = time.monotonic()
    deadline = start + seconds
    trio.run(run)
    if errors:
        print(f"  {len(errors)} submit_txs calls refused; first: {errors[0]}")
    return admitted, rejected, time.monotonic() - start


def included_between(url: str, t0: float, t1: float) -> int:
    info = rpc(url, "chain_info")
    total = 0
    for h in range(info["head_height"], 0, -1):
        b = rpc(url, "get_block", h)
        if b["timestamp"] < t0:
            break
        if b["timestamp"] <= t1:
            total += len(b["tx_ids"])
    return total


def wait_included(url: str, tx_ids_hex: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for tid in tx_ids_hex:
        while rpc(url, "get_tx", tid)["status"] not in ("included", "final"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"tx {tid} not included")
            time.sleep(0.1)


def setup_society(url: str, chain_id: bytes, accts: list[dict[str, str]]) -> None:
    exp = int(time.time()) + 3000
    first = sign_all(chain_id, [(accts[0]["secret"], [2, SOCIETY, "Bench", "bench", RULES])],
                     exp)
    res = rpc(url, "submit_txs", first)
    wait_included(url, [r["tx_id"] for r in res])
    joins = sign_all(chain_id, [(a["secret"], [3, SOCIETY, a["name"]]) for a in accts], exp)
    ids: list[str] = []
    for i in range(0, len(joins), 2000):
        ids += [r["tx_id"] for r in rpc(url, "submit_txs", joins[i:i + 2000]) if "tx_id" in r]
    wait_included(url, ids[-1:])


def load_items(accts: list[dict[str, str]], n: int) -> list[tuple[str, list[Any]]]:
    items: list[tuple[str, list[Any]]] = []
    m = len(accts)
    for i in range(n):
        a = accts[i % m]
        if i % 3 == 2:
            items.append((a["secret"], [4, SOCIETY, 1 + i]))  # pledge
        else:
            to = address_from_text(accts[(i * 7 + 1) % m]["address"])
            items.append((a["secret"], [1, to, 1 + i, ""]))  # transfer
    return items


def part_tps(args: argparse.Namespace, root: Path, vrate: float) -> None:
    c = make_chain(root / "tps", args.accounts)
    d = Daemon(c["data"], c["wkey"], root / "tps.log")
    d.start()
    try:
        chain_id = bytes.fromhex(rpc(d.url, "chain_info")["chain_id"])
        setup_society(d.url, chain_id, c["accounts"])
        n = int(args.offered * args.seconds)
        print(f"signing {n} txs ...", flush=True)
        txs = sign_all(chain_id, load_items(c["accounts"], n), int(time.time()) + 3000)
        print(f"submitting for {args.seconds:.0f} s ...", flush=True)
        spy = None
        if args.profile:
            # py-spy samples the daemon from outside (the bench extra installs it)
            assert d.proc is not None
            exe = Path(sys.executable).with_name("py-spy")  # the venv's, else PATH's
            spy = subprocess.Popen([str(exe) if exe.exists() else "py-spy", "record", "--pid",
                                    str(d.proc.pid), "-d", str(int(args.seconds)), "-o",
                                    args.profile, "--format", "raw", "--threads"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.time()
        admitted, rejected, took = submit_all(d.url, txs, args.seconds, rate=args.offered)
        t1 = time.time()
        time.sleep(2.5)  # let the last blocks land
        if spy is not None:
            spy.wait(30)
        included = included_between(d.url, int(t0) + 1, int(t1))
        window = int(t1) - int(t0)
        print(f"\n== tps: one node, one witness, 1-s blocks, {args.accounts} accounts ==")
        print(f"offered                 {len(txs)} pre-signed txs, {took:.1f} s of submission")
        print(f"admitted/s              {admitted / took:,.0f}  (rejected {rejected})")
        inc = included / max(1, window)
        print(f"included/s              {inc:,.0f}  (target >= 12,000)")
        print(verify_note(vrate))
        print(f"ratio included/verify   {inc / vrate:.2f}  (target >= 0.70)")
        print(f"node RSS                {d.rss_mb():.0f} MB")
        # whether a tx's signature is checked more than once on submit -> block (it must
        # not be: tests/test_verify_once.py); over the whole run, setup txs included
        m = metrics(d.url)
        checks = {p: m.get(f'muxer_tx_signature_checks_total{{path="{p}"}}', 0.0)
                  for p in ("tx", "block")}
        in_blocks = max(1, included_between(d.url, 0, time.time() + 1))
        print(f"signature checks        {checks['tx']:,.0f} tx path + {checks['block']:,.0f} "
              f"block path for {in_blocks:,} txs in blocks "
              f"({(checks['tx'] + checks['block']) / in_blocks:.2f} per tx)")
    finally:
        d.stop()


def write_blocks(c: dict[str, Any], blocks: int) -> None:
    """Extend a stored chain with empty blocks through the real Chain (batched, no fsync)."""
    genesis = load_genesis(c["data"] / GENESIS_FILE)
    key = PrivateKey(bytes.fromhex(Path(c["wkey"]).read_text().strip()))
    store = LevelDBStore(str(c["data"] / DB_DIR))
    try:
        ledger = Ledger(store, genesis.params, genesis.genesis_time)
        chain = Chain(store, ledger, genesis, lambda slot: key.address)
        chain.sync = False  # bulk set-up only; the node always syncs
        for i in range(blocks):
            chain.build_block(key, genesis.genesis_time + (i + 1), (), [])
        chain.set_final(chain.head.id)
    finally:
        store.close()


def part_restart(args: argparse.Namespace, root: Path, vrate: float) -> None:
    results = {}
    for blocks in (10_000, 100_000):
        t_g = int(time.time()) - blocks - 10
        c = make_chain(root / f"r{blocks}", 10, genesis_time=t_g)
        print(f"writing {blocks} blocks ...", flush=True)
        write_blocks(c, blocks)
        d = Daemon(c["data"], None, root / f"r{blocks}.log")
        d.start()
        head = rpc(d.url, "chain_info")["head_height"]
        times = []
        for _ in range(args.restarts):
            d.kill()
            t0 = time.monotonic()
            d.start()
            while rpc(d.url, "chain_info")["head_height"] < head:
                time.sleep(0.001)
            times.append(time.monotonic() - t0)
        d.stop()
        results[blocks] = sorted(times)[len(times) // 2]
        print(f"restart with {blocks:>7} blocks: median {results[blocks]:.2f} s "
              f"over {len(times)} kills (target <= 2 s)")
    print(f"ratio 100k/10k          {results[100_000] / results[10_000]:.2f}  (target <= 1.5)")
    print(verify_note(vrate))


def part_memory(args: argparse.Namespace, root: Path, vrate: float) -> None:
    c = make_chain(root / "mem", args.memory_accounts)
    d = Daemon(c["data"], c["wkey"], root / "mem.log")
    d.start()
    try:
        chain_id = bytes.fromhex(rpc(d.url, "chain_info")["chain_id"])
        setup_society(d.url, chain_id, c["accounts"])
        done = 0
        step = 200_000
        while done < args.memory_txs:
            n = min(step, args.memory_txs - done)
            txs = sign_all(chain_id, load_items(c["accounts"][done % 997:] + c["accounts"],
                                                n), int(time.time()) + 3000)
            admitted, _rej, took = submit_all(d.url, txs, 3600)
            time.sleep(3)
            done += n
            print(f"{done:>8} txs submitted ({admitted / took:,.0f}/s admitted): "
                  f"RSS {d.rss_mb():.0f} MB", flush=True)
        print(f"\n== memory after {done} txs over {args.memory_accounts} accounts ==")
        print(f"node RSS                {d.rss_mb():.0f} MB  (target <= 200 MB)")
        print(verify_note(vrate))
    finally:
        d.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["all", "tps", "restart", "memory"], default="all")
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--offered", type=int, default=14000, help="pre-signed txs per second")
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--memory-txs", type=int, default=1_000_000)
    ap.add_argument("--memory-accounts", type=int, default=100_000)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--profile", default="", help="py-spy raw profile of the node (tps part)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="muxer-bench-"))
    vrate = verify_rate(2.0)
    try:
        if args.part in ("all", "tps"):
            part_tps(args, root, vrate)
        if args.part in ("all", "restart"):
            part_restart(args, root, vrate)
        if args.part in ("all", "memory"):
            part_memory(args, root, vrate)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
