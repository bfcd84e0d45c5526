"""Pruning keeps the data directory flat: a node with ``--keep-blocks 1000`` next to an
archive node, over the same chain of --blocks blocks (default 200,000).

Each node's chain is built in-process in a LevelDB data directory (as bench/snapshot.py
does): one witness, a few transfers per block (--block-txs), each block carrying the
witness's vote for the previous link, so that every block becomes final the way the node
finalizes; the history index is on, as on a default node. The pruned one runs the node's
own policy (``muxernode.pruner.Pruner``: a batch every PRUNE_INTERVAL_S of chain time, a
compaction of the pruned key ranges after every COMPACT_AFTER blocks pruned), inline
rather than in a worker thread. The data directory's size is printed for both at several
chain lengths; the target is a pruned size flat in chain length while the archive one
grows: from height 2**16 on (the height index keeps that many ids for TaPoS, so it grows
until then) its figures spread by at most one LevelDB write buffer (the log of recent
writes, up to 4 MiB, that is not yet a table).
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import verify_note, verify_rate
from consensus.chain import TAPOS_WINDOW, Chain
from consensus.crypto import PrivateKey
from consensus.genesis import Genesis, parse_genesis
from consensus.schedule import Schedule, slot_at
from consensus.tx import build_tx, tapos_of
from consensus.vote import Vote
from muxernode.history import HistoryIndex
from muxernode.ledger import Ledger
from muxernode.pruner import PRUNED_PREFIXES, Pruner
from storage import schema
from storage.leveldb import WRITE_BUFFER, LevelDBStore

T0 = 1_767_225_600
LIFETIME_S = 600


def genesis_doc(witness: PrivateKey, senders: list[PrivateKey], t0: int = T0,
                lifetime_s: int = LIFETIME_S) -> dict[str, object]:
    return {
        "chain_name": "bench-prune", "genesis_time": t0,
        "params": {"block_interval_s": 1, "active_witnesses": 1, "base_fee": 10,
                   "max_tx_lifetime_s": lifetime_s},
        "witnesses": [{"name": "w1", "address": witness.address_text,
                       "signing_key": witness.public_key.hex()}],
        "balances": [{"address": k.address_text, "amount": 10**15} for k in senders],
    }


class ChainGrower:
    """Blocks of a few transfers each on a chain in a LevelDB store, each block voting
    for the previous link, so that the block before the previous one becomes final."""

    def __init__(self, store: LevelDBStore, genesis: Genesis, witness: PrivateKey,
                 senders: list[PrivateKey], seed: int = 1, history: bool = True) -> None:
        self.genesis = genesis
        self.witness = witness
        self.senders = senders
        self.rng = random.Random(seed)
        sched = Schedule(genesis.chain_id, [(1, [witness.address])])
        self.chain = Chain(store, Ledger(store, genesis.params, genesis.genesis_time),
                           genesis, sched.witness_at)
        self.chain.sync = False  # bulk set-up
        self.history: HistoryIndex | None = None
        if history:
            self.history = HistoryIndex(store, lambda _cid: None, b"bench")
            self.history.start(self.chain.head.height)
            self.chain.indexers.append(self.history)
        self.nonce = 0
        self.refs: list[tuple[bytes, int]] = []

    def grow(self, blocks: int, block_txs: int) -> None:
        chain = self.chain
        g = self.genesis
        for _ in range(blocks):
            t = chain.head.timestamp + 1
            ref_num, ref_prefix = tapos_of(chain.head.height, chain.head.id)
            txs = []
            for _ in range(block_txs):
                self.nonce += 1
                to = self.senders[self.rng.randrange(len(self.senders))].address
                txs.append(build_tx(self.senders[self.nonce % len(self.senders)], g.chain_id,
                                    [1, to, self.nonce, ""], ref_block_num=ref_num,
                                    ref_block_prefix=ref_prefix, fee=10,
                                    expiration=t + min(300, g.params.max_tx_lifetime_s)))
            votes = []
            if len(self.refs) >= 2:
                (sid, ss), (tid, ts) = self.refs[-2], self.refs[-1]
                votes.append(Vote.sign(self.witness, g.chain_id, sid, ss, tid, ts))
            block, dropped = chain.build_block(self.witness, t, txs, votes)
            if dropped:
                raise RuntimeError(f"{len(dropped)} txs rejected in block {block.height}")
            self.refs.append((block.id, slot_at(g.genesis_time, 1, t)))
            del self.refs[:-2]
            if votes:
                chain.set_final(votes[0].source_id)


def new_chain(data: Path, seed: int, t0: int = T0, lifetime_s: int = LIFETIME_S,
              history: bool = True) -> tuple[LevelDBStore, ChainGrower]:
    """A data directory (genesis.json and db) with its genesis written; the grower."""
    import json

    rng = random.Random(seed)
    witness = PrivateKey(rng.randbytes(32))
    senders = [PrivateKey(rng.randbytes(32)) for _ in range(200)]
    doc = genesis_doc(witness, senders, t0, lifetime_s)
    genesis = parse_genesis(doc)
    data.mkdir(parents=True)
    (data / "genesis.json").write_text(json.dumps(doc))
    store = LevelDBStore(str(data / "db"))
    schema.check_schema(store)
    Chain.initialize(store, Ledger(store, genesis.params, t0), genesis)
    return store, ChainGrower(store, genesis, witness, senders, seed, history)


def run(root: Path, blocks: int, keep: int, block_txs: int, points: int,
        out: Callable[[str], None] = print) -> list[tuple[int, int, int]]:
    """(height, archive bytes, pruned bytes) at ``points`` chain lengths."""
    a_store, archive = new_chain(root / "archive", seed=7)
    p_store, pruned = new_chain(root / "pruned", seed=7)
    pruner = Pruner(pruned.chain, keep)
    if pruned.history is not None:
        pruned.history.pruning = True
    step = max(1, blocks // points)
    rows = []
    done = 0
    while done < blocks:
        n = min(step, blocks - done)
        archive.grow(n, block_txs)
        for _ in range(n):  # one block, then what one second of the node's loop does
            pruned.grow(1, block_txs)
            for _ in range(16):
                if pruner.step() < 64:
                    break
            if pruner.compaction_due:
                for prefix in PRUNED_PREFIXES:
                    pruner.compact(p_store, prefix)
                pruner.compacted()
        done += n
        a_size, p_size = a_store.size_on_disk(), p_store.size_on_disk()
        rows.append((done, a_size, p_size))
        out(f"  height {done:>7,}: archive {a_size / 2**20:8.1f} MiB   "
            f"pruned (keep {keep}) {p_size / 2**20:6.1f} MiB   "
            f"lowest block {pruned.chain.lowest_block:,}")
    a_store.close()
    p_store.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--blocks", type=int, default=200_000)
    ap.add_argument("--keep", type=int, default=1000)
    ap.add_argument("--block-txs", type=int, default=3)
    ap.add_argument("--points", type=int, default=8, help="chain lengths to print sizes at")
    ap.add_argument("--dir", default=None, help="where to build (default: a temp dir)")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-prune-"))
    for name in ("archive", "pruned"):
        shutil.rmtree(root / name, ignore_errors=True)
    vrate = verify_rate()
    print(f"bench.prune: {args.blocks:,} blocks of {args.block_txs} transfers, "
          f"--keep-blocks {args.keep} vs an archive node, in {root}")
    started = time.perf_counter()
    rows = run(root, args.blocks, args.keep, args.block_txs, args.points)
    elapsed = time.perf_counter() - started
    # The height index keeps the last 2**16 ids (TaPoS): it fills up to that height, so
    # flatness is judged from there on (or over the second half of a shorter run).
    span = [r for r in rows if r[0] >= TAPOS_WINDOW] or rows[len(rows) // 2:]
    (h1, a1, _p1), (h2, a2, p2) = span[0], span[-1]
    lo, hi = min(r[2] for r in span), max(r[2] for r in span)
    flat = hi - lo <= WRITE_BUFFER
    print(f"pruned size from height {h1:,} to {h2:,}: {lo / 2**20:.1f} .. {hi / 2**20:.1f} MiB "
          f"(target: flat, spread <= one LevelDB write buffer, {WRITE_BUFFER / 2**20:.0f} MiB "
          f"of log not yet a table: {'met' if flat else 'missed'})")
    print(f"archive size over the same span: {a1 / 2**20:.1f} -> {a2 / 2**20:.1f} MiB "
          f"({(a2 / a1 - 1) * 100:+.1f} %); pruned / archive at {h2:,}: {p2 / a2:.3f}")
    rate = 2 * args.blocks / elapsed
    print(f"elapsed {elapsed:.1f} s ({rate:,.0f} blocks/s built, both nodes; "
          f"{rate / vrate:.3f} blocks per verify); {verify_note(vrate)}")
    shutil.rmtree(root / "archive", ignore_errors=True)
    shutil.rmtree(root / "pruned", ignore_errors=True)


if __name__ == "__main__":
    main()
