"""Ledger application throughput, in memory (issue: protocol core and the MUXER ledger).

Applies a mix of transfers, pledges, votes and gives across 10k members for at least
--seconds of pure application time and prints applied tx/s next to the single-thread
Ed25519 verify rate measured in the same run. Target: applied/verify >= 3.

Signing is setup, not measured: the ledger never verifies (the node verifies once, on
admission). When the pre-signed txs run out, application restarts from a copy of the
post-setup state so every measured tx is a fresh, valid one.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from bench.common import verify_note, verify_rate
from consensus.app import BlockContext
from consensus.crypto import PrivateKey
from consensus.errors import Rejected
from consensus.genesis import parse_genesis
from consensus.tx import SignedTx, build_tx
from muxernode.ledger import Ledger
from storage.kv import MemoryKV

SOCIETY = "bench"
RULES = [86400, 3844, 1, 0, 0, 1_000_000, 1000, 1000, 1]
T0 = 1_767_225_600


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--txs", type=int, default=60_000, help="distinct pre-signed txs")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--block-txs", type=int, default=2000)
    args = ap.parse_args()
    rng = random.Random(42)

    print(f"setup: {args.members} members, signing {args.txs} txs ...", flush=True)
    keys = [PrivateKey(rng.randbytes(32)) for _ in range(args.members)]
    witness = PrivateKey(bytes([1]) * 32)
    genesis = parse_genesis(
        {
            "chain_name": "bench",
            "genesis_time": T0,
            "params": {"block_interval_s": 1, "base_fee": 10, "max_tx_lifetime_s": 3600},
            "witnesses": [{"name": "w1", "address": witness.address_text,
                           "signing_key": witness.public_key.hex()}],
            "balances": [{"address": k.address_text, "amount": 10**12} for k in keys],
        }
    )
    prefix = int.from_bytes(genesis.chain_id[:4], "big")

    def tapos(num: int) -> int | None:
        return prefix if num == 0 else None

    def tx(key: PrivateKey, op: list[Any], expiration: int) -> SignedTx:
        return build_tx(key, genesis.chain_id, op, ref_block_num=0, ref_block_prefix=prefix,
                        expiration=expiration, fee=10)

    kv = MemoryKV()
    ledger = Ledger(kv, genesis.params, T0)
    kv.write(ledger.init_genesis(genesis).changes)
    now = [T0]

    def run_block(txs: list[SignedTx]) -> int:
        now[0] += 1
        ledger.begin_block(BlockContext(0, now[0], witness.address, tapos))
        ok = 0
        for t in txs:
            try:
                ledger.apply_tx(t)
                ok += 1
            except Rejected:
                pass
        kv.write(ledger.end_block().changes)
        return ok

    exp = T0 + 3000
    run_block([tx(keys[0], [2, SOCIETY, "Bench", "benchmark society", RULES], exp)])
    run_block([tx(k, [3, SOCIETY, f"m{i}"], exp) for i, k in enumerate(keys)])
    run_block([tx(k, [4, SOCIETY, 10**9], exp) for k in keys])
    claimants = keys[:50]
    claims = [tx(k, [5, SOCIETY, 10**15, 4 * 10**8, "bench", "", bytes(32)], exp)
              for k in claimants]
    assert run_block(claims) == len(claims)
    voters = keys[50:1050]
    assert run_block([tx(v, [6, c.tx_id, 1], exp) for v in voters for c in claims[:5]]) > 0
    members = keys[50:]
    claim_ids = [c.tx_id for c in claims[:5]]

    mix: list[SignedTx] = []
    for i in range(args.txs):
        k = members[rng.randrange(len(members))]
        r = rng.random()
        e = exp + 1 + i % 500  # distinct expirations keep the mix realistic for pruning
        if r < 0.4:
            op: list[Any] = [1, members[rng.randrange(len(members))].address, 1000 + i, ""]
        elif r < 0.6:
            op = [4, SOCIETY, 100 + i]
        elif r < 0.8:
            op = [6, claim_ids[rng.randrange(len(claim_ids))], rng.choice((1, 1, -1))]
        else:
            op = [7, claim_ids[rng.randrange(len(claim_ids))], 1 + i % 1000]
        mix.append(tx(k, op, e))
    base = dict(kv._data)  # the post-setup state, to restart from
    base_now = now[0]

    print("measuring verify rate ...", flush=True)
    vrate = verify_rate(2.0)
    print(f"applying for {args.seconds:.0f} s ...", flush=True)
    applied = rejected = 0
    elapsed = 0.0
    rounds = 0
    while elapsed < args.seconds and rounds < 1000:
        rounds += 1
        kv = MemoryKV(base)
        ledger = Ledger(kv, genesis.params, T0)
        now[0] = base_now
        for i in range(0, len(mix), args.block_txs):
            block = mix[i : i + args.block_txs]
            start = time.perf_counter()
            ok = run_block(block)
            elapsed += time.perf_counter() - start
            applied += ok
            rejected += len(block) - ok
    rate = applied / elapsed
    print()
    print(f"members                 {args.members}")
    print(f"txs applied             {applied} (+{rejected} rejected) in {elapsed:.2f} s")
    print(f"ledger applied tx/s     {rate:,.0f}")
    print(verify_note(vrate))
    print(f"ratio applied/verify    {rate / vrate:.2f}   (target >= 3.00)")


if __name__ == "__main__":
    main()
