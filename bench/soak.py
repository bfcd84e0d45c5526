"""Soak: flood one node over RPC and p2p for --minutes (10) and watch its resident memory.

    python -m bench.soak [--minutes 10] [--tps 300]

One witness daemon (1-s blocks, 1,000 accounts) takes at once, for the whole run:

RPC  valid transfers at --tps (pre-signed); the same txs again (duplicates); txs with a
     broken signature; junk bodies (not JSON, wrong shapes, unknown methods, deep nesting);
     bodies over the size limit (413); batches of 10,000 calls; reads (get_tx, get_block,
     chain_info) as a wallet or explorer would poll them.
p2p  peers that complete the handshake with a fresh node key and then send: pings,
     inventories of random ids (the node asks for them; nobody answers), GET_BLOCKS of
     ranges it does not have, HEADS and PEERS requests (valid but useless); and peers
     that send garbage after the handshake, truncated frames or oversized length prefixes
     (each is banned; the next one comes with a new key).

Every 15 s it prints the node's RSS (and its two parts: anon, the process's own memory,
and file, pages of mapped files), head, mempool size and the flood counters. The verdict:
memory is flat if the median anon RSS over the last two minutes is within 10 % (or 20 MB)
of the median over minutes 2-4 (start-up, caches and the mempool fill in the first two),
and the node kept producing blocks and answering throughout. It also prints the
least-squares trend after minute 2 in MB/min, for anon and for the whole RSS.

Why anon: LevelDB reads its table files through mmap, so the pages of them that reads
touch (bloom filters and index blocks of every table, recent blocks) show up in the RSS as
file pages. They are the kernel's page cache, clean and dropped first under memory
pressure, and they grow with the database, not with the flood; the process's own memory
(heap, arenas, stacks) is what a leak or an unbounded queue would grow.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.common import verify_note, verify_rate
from bench.node import Daemon, load_items, make_chain, metrics, rpc, setup_society, sign_all
from consensus.crypto import PrivateKey
from devnet.cluster import free_ports
from p2p import PROTOCOL_VERSION, FrameDecoder, decode_message, encode_frame
from p2p.handshake import sign_ack
from p2p.messages import GetBlocks, GetHeads, Hello, HelloAck, Inv, Kind, Message, PeersReq, Ping

SAMPLE_S = 15.0


@dataclass
class Counts:
    rpc: dict[str, int] = field(default_factory=dict)
    p2p: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, table: dict[str, int], key: str, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n


# --- RPC flood -----------------------------------------------------------------------------


def _call(method: str, *params: Any, id_: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": list(params)}


async def rpc_flood(url: str, txs: list[str], tps: float, until: float, counts: Counts,
                    seed: int) -> None:
    rng = random.Random(seed)
    per_tick = max(1, int(tps / 10))
    pos = 0
    seen_ids: list[str] = []
    deep = "[" * 100_000 + "]" * 100_000
    junk_bodies = [b"{", b"\xff\xfe", b"[]", b'{"jsonrpc": "2.0"}', b"null", deep.encode(),
                   json.dumps(_call("no_such_method")).encode(),
                   json.dumps(_call("get_block", "x", 1, 2)).encode()]
    big = b'{"jsonrpc": "2.0", "id": 1, "method": "submit_tx", "params": ["' + \
        b"00" * (1 << 20) + b'"]}'
    many = json.dumps([_call("chain_info", id_=i) for i in range(10_000)]).encode()
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(timeout=30) as http:
        tick = 0
        start = trio.current_time()
        while trio.current_time() < until:
            tick += 1
            try:
                # valid load, re-submitted duplicates and broken signatures
                if pos < len(txs):
                    chunk = txs[pos:pos + per_tick]
                    pos += per_tick
                    r = await http.post(url, json=_call("submit_txs", chunk))
                    for item in r.json().get("result", []):
                        if "tx_id" in item:
                            counts.add(counts.rpc, "admitted")
                            if len(seen_ids) < 50_000:
                                seen_ids.append(item["tx_id"])
                        else:
                            reason = item.get("error", {}).get("data", {}).get("reason", "?")
                            counts.add(counts.rpc, f"refused_{reason}")
                    if tick % 5 == 0:
                        await http.post(url, json=_call("submit_txs", chunk))  # duplicates
                        counts.add(counts.rpc, "duplicates", len(chunk))
                    bad = [t[:-2] + ("00" if t[-2:] != "00" else "11") for t in chunk[:20]]
                    await http.post(url, json=_call("submit_txs", bad))
                    counts.add(counts.rpc, "bad_signature", len(bad))
                # junk and oversized bodies
                body = rng.choice(junk_bodies)
                await http.post(url, content=body, headers=headers)
                counts.add(counts.rpc, "junk")
                if tick % 50 == 0:
                    r = await http.post(url, content=big, headers=headers)
                    counts.add(counts.rpc, f"big_{r.status_code}")
                if tick % 100 == 0:
                    await http.post(url, content=many, headers=headers)
                    counts.add(counts.rpc, "batch_10000")
                # reads, as wallets and explorers poll
                if seen_ids:
                    ids = [rng.choice(seen_ids) for _ in range(20)]
                    await http.post(url, json=[_call("get_tx", t, id_=i)
                                               for i, t in enumerate(ids)])
                await http.post(url, json=_call("chain_info"))
                counts.add(counts.rpc, "reads", 21)
            except httpx.HTTPError as exc:
                counts.add(counts.rpc, f"http_error_{type(exc).__name__}")
            await trio.sleep_until(start + tick / 10)


# --- p2p flood -----------------------------------------------------------------------------


async def _handshake(stream: trio.SocketStream, chain_id: bytes, key: PrivateKey,
                     decoder: FrameDecoder) -> bool:
    nonce = os.urandom(32)
    await stream.send_all(encode_frame(Hello(PROTOCOL_VERSION, chain_id, key.public_key,
                                             nonce, 0, 0, chain_id)))
    got: list[Any] = []
    with trio.move_on_after(5):
        while len(got) < 2:
            data = await stream.receive_some(65536)
            if not data:
                return False
            got.extend(decode_message(b) for b in decoder.feed(data))
    if len(got) < 2 or not isinstance(got[0], Hello) or not isinstance(got[1], HelloAck):
        return False
    theirs = got[0]
    await stream.send_all(encode_frame(HelloAck(
        sign_ack(key, chain_id, nonce, theirs.node_pubkey, theirs.nonce))))
    return True


async def _joined(port: int, chain_id: bytes, rng: random.Random, counts: Counts,
                  pause: float) -> trio.SocketStream | None:
    """A connection past the handshake with a fresh key, or None (after ``pause``)."""
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        counts.add(counts.p2p, "connect_refused")
        await trio.sleep(pause)
        return None
    try:
        if await _handshake(stream, chain_id, PrivateKey(rng.randbytes(32)), FrameDecoder()):
            return stream
        counts.add(counts.p2p, "handshake_refused")
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        counts.add(counts.p2p, "handshake_broken")
    await stream.aclose()
    await trio.sleep(pause)
    return None


async def _drain(stream: trio.SocketStream) -> None:
    """Read and drop whatever the node sends, so its writes never block on us."""
    try:
        while await stream.receive_some(65536):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def useless_peer(port: int, chain_id: bytes, until: float, counts: Counts,
                       seed: int) -> None:
    """Valid messages that ask for what does not exist, at a steady rate."""
    rng = random.Random(seed)
    while trio.current_time() < until:
        stream = await _joined(port, chain_id, rng, counts, 1.0)
        if stream is None:
            continue
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(_drain, stream)
            counts.add(counts.p2p, "useless_sessions")
            try:
                for _ in range(600):  # ~60 s per connection, then a new one
                    if trio.current_time() >= until:
                        break
                    ids = [rng.randbytes(32) for _ in range(100)]
                    kind = rng.choice([Kind.TX, Kind.BLOCK, Kind.VOTE])
                    msgs: list[Message] = [Ping(rng.getrandbits(63)), Inv(kind, ids),
                            GetBlocks(10**9 + rng.randrange(1000), 500), GetHeads(),
                            PeersReq()]
                    await stream.send_all(b"".join(encode_frame(m) for m in msgs))
                    counts.add(counts.p2p, "useless_msgs", len(msgs))
                    await trio.sleep(0.1)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                counts.add(counts.p2p, "useless_dropped")
            nursery.cancel_scope.cancel()


async def hostile_peer(port: int, chain_id: bytes, until: float, counts: Counts,
                       seed: int) -> None:
    """Garbage after the handshake; each attempt with a new key (the old one is banned)."""
    rng = random.Random(seed)
    attacks = ["garbage", "oversized_prefix", "truncated", "bad_msgpack"]
    while trio.current_time() < until:
        attack = rng.choice(attacks)
        stream = await _joined(port, chain_id, rng, counts, 0.5)
        if stream is None:
            continue
        async with stream:
            try:
                if attack == "garbage":
                    await stream.send_all(rng.randbytes(4096))
                elif attack == "oversized_prefix":
                    await stream.send_all((64 << 20).to_bytes(4, "big") + rng.randbytes(512))
                elif attack == "truncated":
                    await stream.send_all((1000).to_bytes(4, "big") + rng.randbytes(100))
                else:
                    await stream.send_all((6).to_bytes(4, "big") + b"\xc1" * 6)
                counts.add(counts.p2p, f"hostile_{attack}")
                with trio.move_on_after(3):  # the node should close on us
                    while await stream.receive_some(65536):
                        pass
                    counts.add(counts.p2p, "hostile_closed_by_node")
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                counts.add(counts.p2p, "hostile_closed_by_node")
        await trio.sleep(0.2)


# --- the run -------------------------------------------------------------------------------


async def watch(d: Daemon, until: float, samples: list[tuple[float, float, float, int, float]],
                counts: Counts) -> None:
    t0 = trio.current_time()
    # ldb: LevelDB's own estimate of its memory (memtables, block cache; part of anon);
    # tables: its table files (read through mmap: their pages are in file, not anon)
    print(f"{'min':>5} {'RSS MB':>7} {'anon':>6} {'file':>6} {'ldb':>5} {'tables':>6}"
          f" {'head':>6} {'final':>6} {'mempool':>8} {'peers':>6} {'banned':>7}"
          f" {'admitted':>9} {'p2p msgs':>9}", flush=True)
    while trio.current_time() < until:
        await trio.sleep(SAMPLE_S)
        try:
            info = await trio.to_thread.run_sync(rpc, d.url, "chain_info")
            m = await trio.to_thread.run_sync(metrics, d.url)
        except (httpx.HTTPError, RuntimeError) as exc:
            counts.errors.append(f"node did not answer: {exc}")
            continue
        rss, anon, file = d.rss_mb(), d.rss_mb("RssAnon"), d.rss_mb("RssFile")
        minute = (trio.current_time() - t0) / 60
        ldb = m.get("muxer_leveldb_memory_bytes", 0.0) / 1e6
        samples.append((minute, rss, anon, info["head_height"], ldb))
        print(f"{minute:5.1f} {rss:7.1f} {anon:6.1f} {file:6.1f} {ldb:5.1f}"
              f" {int(m.get('muxer_leveldb_table_files', -1)):>6} {info['head_height']:>6}"
              f" {info['final_height']:>6}"
              f" {int(m.get('muxer_mempool_txs', -1)):>8} {int(m.get('muxer_peers', -1)):>6}"
              f" {int(m.get('muxer_peers_banned', -1)):>7} {counts.rpc.get('admitted', 0):>9}"
              f" {counts.p2p.get('useless_msgs', 0):>9}", flush=True)


def memory_trend(samples: list[tuple[float, float]], minutes: float
                 ) -> tuple[float, float, float]:
    """(median RSS over minutes 2-4, median over the last 2 minutes, least-squares slope
    in MB/min after minute 2). Medians, because the RSS of a node under a flood swings by
    tens of MB from one sample to the next (a 10,000-call batch, a 1 MiB body in flight):
    one sample at either end would decide the verdict by chance."""
    if not samples:
        return 0.0, 0.0, 0.0
    settled = [(m, r) for m, r in samples if m >= 2.0] or samples
    first = [r for m, r in settled if m <= 4.0] or [settled[0][1]]
    last = [r for m, r in settled if m >= minutes - 2.0] or [settled[-1][1]]
    slope = 0.0
    if len(settled) >= 2:
        mx = statistics.fmean(m for m, _ in settled)
        my = statistics.fmean(r for _, r in settled)
        var = sum((m - mx) ** 2 for m, _ in settled)
        if var > 0:
            slope = sum((m - mx) * (r - my) for m, r in settled) / var
    return statistics.median(first), statistics.median(last), slope


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--tps", type=float, default=300.0)
    ap.add_argument("--useless-peers", type=int, default=4)
    ap.add_argument("--hostile-peers", type=int, default=2)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="muxer-soak-"))
    print(verify_note(verify_rate(2.0)), flush=True)
    c = make_chain(root, 1000)
    port = free_ports(1)[0]
    d = Daemon(c["data"], c["wkey"], root / "node.log")
    d.extra = ["--p2p", f"127.0.0.1:{port}"]
    d.config_text = "[limits]\nverify_threads = 2\n"  # every other limit at its default
    d.start()
    try:
        chain_id = bytes.fromhex(rpc(d.url, "chain_info")["chain_id"])
        setup_society(d.url, chain_id, c["accounts"])
        seconds = args.minutes * 60
        n = int(args.tps * seconds)
        print(f"signing {n:,} txs ...", flush=True)
        txs = sign_all(chain_id, load_items(c["accounts"], n), int(time.time()) + 3000)
        counts = Counts()
        samples: list[tuple[float, float, float, int, float]] = []
        rss0 = d.rss_mb()
        print(f"flooding for {args.minutes:g} min; RSS at start {rss0:.1f} MB", flush=True)

        async def run() -> None:
            until = trio.current_time() + seconds
            async with trio.open_nursery() as nursery:
                nursery.start_soon(rpc_flood, d.url, txs, args.tps, until, counts, 1)
                for i in range(args.useless_peers):
                    nursery.start_soon(useless_peer, port, chain_id, until, counts, 100 + i)
                for i in range(args.hostile_peers):
                    nursery.start_soon(hostile_peer, port, chain_id, until, counts, 200 + i)
                nursery.start_soon(watch, d, until, samples, counts)

        trio.run(run)
        alive = d.proc is not None and d.proc.poll() is None
        print("\n== flood ==")
        print("rpc:", json.dumps(dict(sorted(counts.rpc.items()))))
        print("p2p:", json.dumps(dict(sorted(counts.p2p.items()))))
        if counts.errors:
            print(f"{len(counts.errors)} samples without an answer; first: {counts.errors[0]}")
        heads = [smp[3] for smp in samples]
        producing = len(heads) >= 2 and heads[-1] > heads[0]
        print("\n== memory ==")
        flat = True
        for name, col in (("anon RSS", 2), ("RSS", 1), ("LevelDB", 4)):
            series = [(smp[0], float(smp[col])) for smp in samples]
            base, end, slope = memory_trend(series, args.minutes)
            limit = max(base * 1.10, base + 20.0)
            print(f"{name:<8} median over minutes 2-4 {base:.1f} MB, over the last 2 minutes"
                  f" {end:.1f} MB, peak {max((r for _, r in series), default=end):.1f} MB;"
                  f" trend after minute 2 {slope:+.2f} MB/min"
                  + {2: f" (flat if <= {limit:.1f} MB)",
                     1: " (file pages included: see the docstring)",
                     4: " (its own estimate: memtables and block cache, part of anon)"}[col])
            if col == 2:
                flat = end <= limit
        print(f"verdict: memory {'FLAT' if flat else 'GREW'}; node "
              f"{'alive' if alive else 'DEAD'}; blocks "
              f"{'kept coming' if producing else 'STOPPED'}")
        if not (flat and alive and producing):
            raise SystemExit(1)
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
