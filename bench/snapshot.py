"""Snapshots of a large state: export, the size, and a new node's check and import, next to
replaying the same chain (the CPU floor of a full sync: every block applied, no network).

Builds a chain in a LevelDB data directory in-process: a genesis with --accounts funded
accounts and one witness, then --txs transfers in blocks of --block-txs, each block
carrying the witness's vote for the previous link so that every block becomes final the
way the node finalizes (a supermajority link (B, s) -> s + 1; one witness is a
supermajority of one). Then it times ``muxernode snapshot export``, ``muxernode init
--snapshot`` (a subprocess, whose peak RSS is its own), and the replay of the whole chain
that a node without a snapshot would do. The p2p state sync of the issue (chunks fetched
from peers) is not written yet; this measures the parts it would be made of.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import verify_note, verify_rate
from consensus.chain import Chain
from consensus.crypto import PrivateKey
from consensus.genesis import load_genesis, parse_genesis
from consensus.schedule import Schedule, slot_at
from consensus.tx import build_tx
from consensus.vote import Vote
from muxernode.ledger import Ledger
from muxernode.snapshot import export_snapshot, replayed_state
from storage import schema
from storage.leveldb import LevelDBStore

T0 = 1_767_225_600
_PEAK_WRAPPER = """
import runpy, sys
sys.argv = ["muxernode", *sys.argv[1:]]
try:
    runpy.run_module("muxernode.daemon", run_name="__main__")
finally:
    status = open("/proc/self/status").read()
    sys.stderr.write("VmHWM" + status.split("VmHWM:")[1].split("kB")[0] + "\\n")
"""


def build_chain(data: Path, accounts: int, txs: int, block_txs: int, seed: int) -> int:
    """The data directory of a chain of ``txs`` transfers; returns its final height."""
    rng = random.Random(seed)
    witness = PrivateKey(rng.randbytes(32))
    senders = [PrivateKey(rng.randbytes(32)) for _ in range(min(accounts, 2000))]
    others = [rng.randbytes(20) for _ in range(accounts - len(senders))]
    doc = {
        "chain_name": "bench-snapshot", "genesis_time": T0,
        "params": {"block_interval_s": 1, "active_witnesses": 1, "base_fee": 10,
                   "max_tx_lifetime_s": 3600, "max_block_bytes": 8 * 1024 * 1024},
        "witnesses": [{"name": "w1", "address": witness.address_text,
                       "signing_key": witness.public_key.hex()}],
        "balances": [{"address": k.address_text, "amount": 10**15} for k in senders]
        + [{"address": "mx" + a.hex(), "amount": 10**6} for a in others],
    }
    genesis = parse_genesis(doc)
    data.mkdir(parents=True)
    (data / "genesis.json").write_text(json.dumps(doc))
    store = LevelDBStore(str(data / "db"))
    schema.check_schema(store)
    Chain.initialize(store, Ledger(store, genesis.params, T0), genesis)
    sched = Schedule(genesis.chain_id, [(1, [witness.address])])
    chain = Chain(store, Ledger(store, genesis.params, T0), genesis, sched.witness_at)
    chain.sync = False  # bulk set-up
    receivers = [k.address for k in senders] + others
    nonce = 0
    refs: list[tuple[bytes, int]] = []  # (block id, slot) of the blocks so far
    t = T0
    done = 0
    while done < txs:
        t += 1
        n = min(block_txs, txs - done)
        batch = []
        for _ in range(n):
            nonce += 1
            # TaPoS on genesis (prefix of the chain id) and a distinct amount per tx:
            # every tx id is new, every transfer valid
            batch.append(build_tx(senders[nonce % len(senders)], genesis.chain_id,
                                  [1, receivers[rng.randrange(len(receivers))], nonce, ""],
                                  ref_block_num=0,
                                  ref_block_prefix=int.from_bytes(genesis.chain_id[:4], "big"),
                                  expiration=min(t + 3000, T0 + 3500), fee=10))
        votes = []
        if len(refs) >= 2:  # the witness's vote for the link (B[-2], s) -> (B[-1], s + 1)
            (sid, ss), (tid, ts) = refs[-2], refs[-1]
            if ts == ss + 1:
                votes.append(Vote.sign(witness, genesis.chain_id, sid, ss, tid, ts))
        block, dropped = chain.build_block(witness, t, batch, votes)
        if dropped:
            raise RuntimeError(f"{len(dropped)} txs rejected while building block {block.height}")
        done += n
        refs.append((block.id, slot_at(T0, 1, t)))
        if votes:
            chain.set_final(votes[0].source_id)
        if t - T0 > 3300:
            raise SystemExit("more blocks than one TaPoS lifetime: raise --block-txs")
    final = chain.final.height
    store.close()
    return final



def timed_replay(data_dir: Path, height: int) -> tuple[int, float]:
    """Replay the chain of ``data_dir`` (its genesis.json and db/) to ``height``: the state
    entries and the seconds taken, the CPU floor of a full sync (no network)."""
    genesis = load_genesis(data_dir / "genesis.json")
    store = LevelDBStore(str(data_dir / "db"), create=False)
    try:
        start = time.perf_counter()
        entries = sum(1 for _ in replayed_state(store, genesis, height))
        return entries, time.perf_counter() - start
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--txs", type=int, default=1_000_000)
    ap.add_argument("--block-txs", type=int, default=5_000)
    ap.add_argument("--dir", default=None, help="where to build (default: a temp dir)")
    args = ap.parse_args()
    if args.block_txs < 1 or -(-args.txs // args.block_txs) < 3:
        # a block is final once the next block carries the witness's vote for the link
        # after it: two blocks leave only genesis final, and genesis is not exported
        ap.error(f"--txs {args.txs} in blocks of --block-txs {args.block_txs} make fewer than "
                 "3 blocks, and nothing beyond genesis becomes final: lower --block-txs")
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-snapshot-"))
    shutil.rmtree(root / "node", ignore_errors=True)
    shutil.rmtree(root / "fresh", ignore_errors=True)
    print(f"building a chain: {args.accounts:,} accounts, {args.txs:,} txs ...", flush=True)
    start = time.perf_counter()
    final = build_chain(root / "node", args.accounts, args.txs, args.block_txs, 7)
    print(f"  built in {time.perf_counter() - start:.1f} s, final height {final}", flush=True)
    vrate = verify_rate(2.0)

    snap = root / "state.snap"
    start = time.perf_counter()
    m = export_snapshot(root / "node", snap)
    export_s = time.perf_counter() - start

    start = time.perf_counter()
    # the child reports its own peak (VmHWM: since its exec, unlike wait4's ru_maxrss,
    # which counts the forked copy of this large process too)
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_WRAPPER, "init", "--genesis",
         str(root / "node" / "genesis.json"), "--data-dir", str(root / "fresh"),
         "--snapshot", str(snap)], capture_output=True, text=True, check=False)
    import_s = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"init --snapshot failed: {done.stdout}{done.stderr}")
    peak_kib = int(done.stderr.rsplit("VmHWM", 1)[1].split()[0])

    entries, replay_s = timed_replay(root / "node", m.block.height)

    size = snap.stat().st_size
    print()
    print(f"accounts / txs          {args.accounts:,} / {args.txs:,} "
          f"(final height {m.block.height}, {m.entries:,} state entries)")
    print(f"snapshot                {size / 2**20:,.1f} MiB in {len(m.chunks)} chunks "
          f"(<= 4 MiB each), {len(m.votes)} final vote(s)")
    print(f"export                  {export_s:.1f} s")
    print(f"init --snapshot         {import_s:.1f} s (check every chunk, the votes and the "
          f"digest; write the store), peak RSS {peak_kib / 1024:,.0f} MiB")
    print(f"replay of the chain     {replay_s:.1f} s ({entries:,} entries: a full sync's "
          f"application alone, without network or signature checks)")
    print(f"ratio replay/import     {replay_s / import_s:.1f}")
    print(verify_note(vrate))
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
