"""State sync over p2p of a large state, next to a full sync (replay) of the same chain.

Builds (or reuses, cached under /tmp) the chain of bench.snapshot: --accounts funded
accounts and --txs transfers, every block final. Exports its final state as a served
snapshot file (1 MiB chunks, what a node serves), then in this process runs two peers on
127.0.0.1 (real TCP, p2p.Network) serving it, and in a child process (so that its peak
memory is its own) a fresh node: ``state_sync`` from both peers in parallel (every chunk
hashed, the votes, the digest), then the node opened on the synced directory and the
blocks above the snapshot applied through the node's own block path, until it is at the
source's head. Printed: that time (target <= 60 s), the replay of the whole chain from
genesis that a node without state sync does (the CPU floor of a full sync: no network),
the snapshot's size and the child's peak RSS.

    python -m bench.statesync            # 100k accounts, 1M txs (builds once, ~minutes)
    python -m bench.statesync --small    # 2k accounts, 20k txs
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import trio

from bench.common import verify_note, verify_rate
from bench.snapshot import build_chain, timed_replay
from consensus.crypto import PrivateKey
from consensus.genesis import load_genesis
from muxernode.snapshot import export_snapshot
from muxernode.statesync import SnapshotFiles, _Handler, state_sync
from p2p import Network, P2PConfig
from p2p.messages import MAX_SNAPSHOT_CHUNK
from storage import schema
from storage.leveldb import LevelDBStore

TARGET_S = 60.0
PEERS = 2


def _cached_chain(root: Path, accounts: int, txs: int, block_txs: int) -> Path:
    src = root / "node"
    if (root / "BUILT").exists():
        print(f"reusing the chain built in {src}", flush=True)
        return src
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    print(f"building a chain: {accounts:,} accounts, {txs:,} txs (cached in {root}) ...",
          flush=True)
    start = time.perf_counter()
    final = build_chain(src, accounts, txs, block_txs, 7)
    print(f"  built in {time.perf_counter() - start:.1f} s, final height {final}", flush=True)
    (root / "BUILT").write_text("ok\n")
    return src


def _head(data: Path) -> int:
    store = LevelDBStore(str(data / "db"), create=False)
    try:
        raw = store.get(schema.META_HEAD)
        assert raw is not None
        height: int = msgpack.unpackb(raw)[0]
        return height
    finally:
        store.close()


def client(data: Path, src: Path, ports: list[int]) -> None:
    """The child: join by state sync, open the node, apply the blocks above, report."""
    from muxernode.config import NodeConfig
    from muxernode.node import Node

    genesis = load_genesis(data / "genesis.json")
    start = time.perf_counter()
    res = trio.run(lambda: state_sync(data, genesis, [("127.0.0.1", p) for p in ports],
                                      timeout=300))
    synced_s = time.perf_counter() - start
    # the blocks above the snapshot, as block sync would hand them over (read from the
    # source's store: this measures the node's work, the network's is the sync's above)
    store = LevelDBStore(str(src / "db"), create=False)
    try:
        head = msgpack.unpackb(store.get(schema.META_HEAD))[0]
        raws = []
        for h in range(res.manifest.block.height + 1, head + 1):
            bid = store.get(schema.height_key(h))
            raw = store.get(schema.block_key(bid)) if bid is not None else None
            assert raw is not None
            raws.append(raw)
    finally:
        store.close()
    node = Node(data, NodeConfig(), serve_rpc=False)
    try:
        verdicts = trio.run(node.accept_blocks, raws) if raws else []
        at_head = node.chain.head.height
    finally:
        node.close()
    total_s = time.perf_counter() - start
    status = Path("/proc/self/status").read_text()
    peak_kib = int(status.split("VmHWM:")[1].split("kB")[0])
    print(json.dumps({"synced_s": synced_s, "total_s": total_s, "height": res.manifest.block.height,
                      "head": at_head, "source_head": head, "accepted": sum(verdicts),
                      "entries": res.manifest.entries, "chunks": len(res.manifest.chunks),
                      "peak_kib": peak_kib, "stats": res.stats}))


async def _serve_and_sync(snap: Path, genesis_path: Path, data: Path, src: Path
                          ) -> dict[str, Any]:
    genesis = load_genesis(genesis_path)
    files = [SnapshotFiles(genesis) for _ in range(PEERS)]
    try:
        async with trio.open_nursery() as nursery:
            ports = []
            for f in files:
                f.add(snap)
                net = Network(PrivateKey.generate(), genesis.chain_id,
                              _Handler(genesis.chain_id),
                              config=P2PConfig(listen_host="127.0.0.1", listen_port=0))
                net.state_sync = f
                ports.append(await nursery.start(net.run))
            done = await trio.run_process(
                [sys.executable, "-m", "bench.statesync", "--client", str(data), str(src),
                 *map(str, ports)], capture_stdout=True, check=False)
            nursery.cancel_scope.cancel()
    finally:
        for f in files:
            f.close()
    if done.returncode != 0:
        raise SystemExit(f"the state-syncing child failed (exit {done.returncode})")
    out: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--txs", type=int, default=1_000_000)
    ap.add_argument("--block-txs", type=int, default=5_000)
    ap.add_argument("--small", action="store_true", help="2,000 accounts, 20,000 txs")
    ap.add_argument("--client", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from muxernode.logs import setup_logging

    setup_logging("text", "warning")  # bans and failures, in words
    if args.client:
        client(Path(args.client[0]), Path(args.client[1]), [int(p) for p in args.client[2:]])
        return
    if args.small:
        args.accounts, args.txs, args.block_txs = 2_000, 20_000, 1_000
    root = Path(f"/tmp/muxer-bench-statesync-{args.accounts}-{args.txs}-{args.block_txs}")
    src = _cached_chain(root, args.accounts, args.txs, args.block_txs)
    vrate = verify_rate(2.0)
    genesis_path = src / "genesis.json"
    snap = root / "served.snap"
    start = time.perf_counter()
    m = export_snapshot(src, snap, max_chunk=MAX_SNAPSHOT_CHUNK)
    export_s = time.perf_counter() - start

    data = root / "joiner"
    shutil.rmtree(data, ignore_errors=True)
    from muxernode.node import init_data_dir

    init_data_dir(genesis_path, data)
    r = trio.run(_serve_and_sync, snap, genesis_path, data, src)
    if r["head"] != r["source_head"]:
        raise SystemExit(f"the joined node is at {r['head']}, the source at {r['source_head']}")

    entries, replay_s = timed_replay(src, m.block.height)
    size = snap.stat().st_size
    total = r["total_s"]
    print()
    print(f"accounts / txs              {args.accounts:,} / {args.txs:,} (final height "
          f"{m.block.height}, head {_head(src)}, {m.entries:,} state entries)")
    print(f"snapshot                    {size / 2**20:,.1f} MiB in {len(m.chunks)} chunks "
          f"(<= 1 MiB each, as served); export {export_s:.1f} s (once per served height)")
    print(f"state sync to serving head  {total:.1f} s  (target <= {TARGET_S:.0f} s: "
          f"{'met' if total <= TARGET_S else 'MISSED'}); of which the sync from {PEERS} "
          f"peers {r['synced_s']:.1f} s, {r['stats']['bytes'] / 2**20:,.1f} MiB")
    print(f"full sync (replay)          {replay_s:.1f} s  ({entries:,} entries: applying every "
          f"block from genesis, without network)")
    print(f"ratio replay / state sync   {replay_s / total:.1f}")
    print(f"peak RSS of the joining node {r['peak_kib'] / 1024:,.0f} MiB")
    print(verify_note(vrate))


if __name__ == "__main__":
    main()
