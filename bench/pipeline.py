"""A node's CPU per tx, stage by stage, in one process (issue: many nodes).

    python -m bench.pipeline [--txs 2000] [--rounds 5] [--profile STAGE]

bench.network says how much CPU a node spends per final tx; this says where. Two real
nodes (LevelDB in a temp dir, signatures checked inline, no sockets): A is the witness, B
follows. Each round offers --txs fresh txs (transfers and pledges, as bench.network) and
times, per tx:

  rpc       A.submit_txs: decode, static op checks, signature check, mempool admission
  gossip    B.submit_txs(gossip=True): the same on the path of a gossiped tx
  produce   A.produce: build (apply every tx), commit, the mempool's re-check
  block     B.accept_blocks: decode the block (its txs known), apply, commit, re-check
  recheck   B's mempool re-check after a block that left half its txs pending
            (B holds 2 x --txs, A's block carries --txs of them)

next to the signature check alone (libsodium, the same txs), which every node pays once
per tx on the rpc or gossip path. The sum of the stages is what a node of bench.network
spends per tx in Python besides the network (which this leaves out), so the figures show
which stage to make cheaper. --profile STAGE prints cProfile's top functions of a stage.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from bench.common import node_verify_rate
from bench.node import RULES, SOCIETY, _cli, load_items
from consensus.crypto import PrivateKey
from consensus.tx import build_tx, decode_tx
from muxernode.config import NodeConfig
from muxernode.daemon import GC_THRESHOLDS
from muxernode.node import Node, init_data_dir, verify_batch

GENESIS_TIME = 1_700_000_000
STAGES = ("verify", "rpc", "gossip", "produce", "block", "recheck")


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def sign(chain_id: bytes, items: list[tuple[str, list[Any]]], expiration: int) -> list[bytes]:
    prefix = int.from_bytes(chain_id[:4], "big")
    return [build_tx(PrivateKey(bytes.fromhex(secret)), chain_id, op, ref_block_num=0,
                     ref_block_prefix=prefix, expiration=expiration, fee=10).raw
            for secret, op in items]


class Pair:
    """Node A (the only witness) and node B, each on its own LevelDB, clocks shared."""

    def __init__(self, root: Path, accounts: int, txs: int) -> None:
        gdir = root / "genesis"
        _cli("genesis", "new", "--out", str(gdir), "--witnesses", "1", "--accounts",
             str(accounts), "--block-interval", "1", "--seed", "5", "--genesis-time",
             str(GENESIS_TIME), "--maintenance-interval", "100000000")
        for name in ("a", "b"):
            init_data_dir(gdir / "genesis.json", root / name)
        self.accounts: list[dict[str, str]] = json.loads((gdir / "accounts.json").read_text())
        self.clock = Clock(GENESIS_TIME)
        wkey = PrivateKey(bytes.fromhex((gdir / "w1.key").read_text().strip()))
        # big enough for one round's backlog, as a loaded node's block size is
        config = NodeConfig(rpc_port=0, block_txs=max(txs, 2000))
        self.a = Node(root / "a", config, now=self.clock, witness_key=wkey,
                      inline_verify=True, serve_rpc=False)
        self.b = Node(root / "b", config, now=self.clock, inline_verify=True,
                      serve_rpc=False)
        self.slot = 0
        self.expiration = GENESIS_TIME + 3000

    def close(self) -> None:
        self.a.close()
        self.b.close()

    async def block(self) -> int:
        """A produces the next slot's block, B takes it: the number of txs it carried."""
        self.slot += 1
        self.clock.t = self.a.slot_time(self.slot)
        block = self.a.produce(self.slot)
        assert (await self.b.accept_blocks([block.raw])) == [True]
        assert self.b.chain.head.id == block.id
        return len(block.txs)

    async def setup(self) -> None:
        """The society every pledge goes to, joined by every account (blocks of setup)."""
        chain_id = self.a.chain_id
        first = sign(chain_id, [(self.accounts[0]["secret"],
                                 [2, SOCIETY, "Bench", "bench", RULES])], self.expiration)
        joins = sign(chain_id, [(a["secret"], [3, SOCIETY, a["name"]])
                                for a in self.accounts], self.expiration)
        for raws in (first, joins):
            assert all("tx_id" in r for r in await self.a.submit_txs(raws, relay=False))
            while len(self.a.mempool):
                await self.block()


class Timer:
    def __init__(self, profile: str | None) -> None:
        self.stage = profile
        self.profile = cProfile.Profile() if profile else None

    async def __call__(self, stage: str, fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
        """CPU seconds ``fn`` took, and its result (profiled if it is the chosen stage)."""
        on = self.profile is not None and stage == self.stage
        t = time.process_time()
        if on:
            assert self.profile is not None
            self.profile.enable()
        out = await fn()
        if on:
            assert self.profile is not None
            self.profile.disable()
        return time.process_time() - t, out


async def one_round(pair: Pair, timed: Timer, r: int, n: int) -> dict[str, float]:
    """One round's CPU seconds per tx by stage (see the module's docstring)."""
    a, b = pair.a, pair.b
    out: dict[str, float] = {}
    items = load_items(pair.accounts[r % 7:] + pair.accounts, 2 * n)
    raws = sign(a.chain_id, items, pair.expiration - r)
    first, second = raws[:n], raws[n:]
    t = time.process_time()
    verify_batch([decode_tx(x, 10_000) for x in first], a.chain_id, {})
    out["verify"] = (time.process_time() - t) / n
    dt, res = await timed("rpc", lambda: a.submit_txs(first, relay=False))
    assert all("tx_id" in x for x in res), res[:3]
    out["rpc"] = dt / n
    dt, res = await timed("gossip", lambda: b.submit_txs(first + second, relay=False,
                                                         gossip=True))
    assert all("tx_id" in x for x in res), res[:3]
    out["gossip"] = dt / (2 * n)
    pair.slot += 1
    pair.clock.t = a.slot_time(pair.slot)
    dt, block = await timed("produce", lambda: _produce(a, pair.slot))
    assert len(block.txs) == n
    out["produce"] = dt / n
    # B's re-check after this block: `second` (n txs) stays pending
    recheck: list[float] = []
    real = b.mempool.on_new_head

    def spy(*xs: Any, **kw: Any) -> None:
        # the re-check runs inside the block stage: --profile recheck profiles it here
        prof = timed.profile if timed.stage == "recheck" else None
        t0 = time.process_time()
        if prof is not None:
            prof.enable()
        real(*xs, **kw)
        if prof is not None:
            prof.disable()
        recheck.append(time.process_time() - t0)

    b.mempool.on_new_head = spy  # type: ignore[method-assign]
    try:
        dt, ok = await timed("block", lambda: b.accept_blocks([block.raw]))
    finally:
        b.mempool.on_new_head = real  # type: ignore[method-assign]
    assert ok == [True] and b.chain.head.id == block.id and len(b.mempool) == n
    out["block"] = (dt - sum(recheck)) / n
    out["recheck"] = sum(recheck) / n
    # drain: A takes `second` too, B follows (not measured)
    assert all("tx_id" in x for x in await a.submit_txs(second, relay=False))
    while len(a.mempool):
        await pair.block()
    return out


async def run(args: argparse.Namespace, root: Path) -> dict[str, list[float]]:
    pair = Pair(root, args.accounts, args.txs)
    sums: dict[str, list[float]] = {k: [] for k in STAGES}
    try:
        await pair.setup()
        # the daemon's collector settings: a stage's figure must not depend on which
        # stage a collection happens to fall in
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        timed = Timer(args.profile)
        for r in range(args.rounds):
            for k, v in (await one_round(pair, timed, r, args.txs)).items():
                sums[k].append(v)
        if timed.profile is not None:
            pstats.Stats(timed.profile).sort_stats("tottime").print_stats(30)
    finally:
        pair.close()
    return sums


async def _produce(node: Node, slot: int) -> Any:
    return node.produce(slot)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--txs", type=int, default=2000, help="txs per round (one block)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--profile", choices=STAGES[1:],
                    help="print cProfile's top functions of this stage over all rounds")
    args = ap.parse_args()
    print(f"node verify/s (libsodium, 1 thread): {node_verify_rate():,.0f}")
    with tempfile.TemporaryDirectory(prefix="muxer-pipe-") as tmp:
        sums = trio.run(run, args, Path(tmp))
    print(f"\n== CPU per tx by stage, {args.txs} txs per block, median of {args.rounds} "
          "rounds (us) ==")
    med = {k: sorted(v)[len(v) // 2] * 1e6 for k, v in sums.items()}
    for k, v in med.items():
        print(f"  {k:8} {v:7.1f}")
    # what a follower pays per tx besides the network: its signature check is inside
    # the gossip stage; rpc and produce are the witness's and the entry node's share
    follower = med["gossip"] + med["block"] + med["recheck"]
    print(f"  follower (gossip + block + recheck): {follower:.1f} us, of which the "
          f"signature check {med['verify']:.1f} us")


if __name__ == "__main__":
    main()
