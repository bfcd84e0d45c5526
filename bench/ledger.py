"""Ledger application throughput, in memory (issue: protocol core and the MUXER ledger).

Applies a mix of transfers, pledges, votes and gives across 10k members for at least
--seconds of pure application time and prints applied tx/s next to the single-thread
Ed25519 verify rate measured in the same run. Target: applied/verify >= 3.

Signing is setup, not measured: the ledger never verifies (the node verifies once, on
admission). When the pre-signed txs run out, application restarts from a copy of the
post-setup state so every measured tx is a fresh, valid one.

The state digest's share is measured apart (``digest_cost``): the first round's block
changes are replayed through the MuHash3072 update alone and through the additive v1 sum
it replaced, so the per-tx cost of the secure digest prints next to the old one.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from bench.common import verify_note, verify_rate
from consensus.app import BlockContext
from consensus.crypto import PrivateKey
from consensus.errors import Rejected
from consensus.genesis import parse_genesis
from consensus.tx import SignedTx, build_tx
from muxernode.ledger import Ledger
from muxernode.state import (
    DIGEST_KEY,
    STATE_PREFIX,
    MuHash3072,
    digest_bytes,
    element,
    entry_bytes,
)
from storage.kv import MemoryKV

SOCIETY = "bench"
RULES = [86400, 3844, 1, 0, 0, 1_000_000, 1000, 1000, 1]
T0 = 1_767_225_600
# a block's (changes, undo), store keys to new and old encodings
Changes = tuple[Mapping[bytes, bytes | None], Mapping[bytes, bytes | None]]


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

    recorded: list[Changes] = []

    def run_block(txs: list[SignedTx], record: bool = False) -> int:
        now[0] += 1
        ledger.begin_block(BlockContext(0, now[0], witness.address, tapos))
        ok = 0
        for t in txs:
            try:
                ledger.apply_tx(t)
                ok += 1
            except Rejected:
                pass
        result = ledger.end_block()
        kv.write(result.changes)
        if record:
            recorded.append((result.changes, result.undo))
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
            ok = run_block(block, record=rounds == 1)
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
    digest_cost(recorded, len(mix), 1e6 / rate)


def digest_cost(blocks: list[Changes], txs: int, tx_us: float) -> None:
    """The state digest's update alone, per tx, over the blocks' recorded changes: the
    MuHash3072 of v2 as State.commit does it (the old entry's element kept from its last
    commit, one inverse per block) next to the additive v1 sum it replaced (which kept the
    old entry's hash too). Warm: every old entry's element or hash is cached, as on a node
    whose record cache holds the active accounts; cold: a key's first change computes it,
    as this bench's fresh ledger does in each round."""
    skip = STATE_PREFIX + DIGEST_KEY
    n = len(STATE_PREFIX)
    entries = [[(k[n:], undo[k], new) for k, new in changes.items() if k != skip]
               for changes, undo in blocks]
    keys = sum(len(b) for b in entries) / txs
    print(f"state digest per tx     ({keys:.2f} changed keys per tx; the rate above is v2 cold)")
    for name, cached in (("warm", True), ("cold", False)):
        v2 = _replay(entries, cached, element, _v2_block) * 1e6 / txs
        v1 = _replay(entries, cached, _v1_hash, _v1_block) * 1e6 / txs
        print(f"  {name}                  v2 MuHash3072 {v2:5.1f} us ({v2 / tx_us:.0%} of a tx),"
              f" was v1 additive {v1:4.1f} us")


def _replay(entries: list[list[tuple[bytes, bytes | None, bytes | None]]], cached: bool,
            of: Callable[[bytes], Any], block: Callable[[Any, list[tuple[Any, Any]]], Any]
            ) -> float:
    """Seconds to fold every block's (old, new) entries into the scheme's accumulator."""
    kept: dict[bytes, Any] = {}
    if cached:
        for b in entries:
            for k, old, _ in b:
                if old is not None:
                    kept.setdefault(k + old, of(entry_bytes(k, old)))
    start = time.perf_counter()
    acc: Any = None
    for b in entries:
        pairs = []
        for k, old, new in b:
            old_e = None
            if old is not None:
                old_e = kept.get(k + old)
                if old_e is None:
                    old_e = of(entry_bytes(k, old))
            new_e = None
            if new is not None:
                new_e = of(entry_bytes(k, new))
                if not cached:
                    kept[k + new] = new_e  # the next change of this key finds it
            pairs.append((old_e, new_e))
        acc = block(acc, pairs)
    return time.perf_counter() - start


def _v2_block(acc: Any, pairs: list[tuple[Any, Any]]) -> Any:
    mh = MuHash3072() if acc is None else MuHash3072(acc)
    for old_e, new_e in pairs:
        if old_e is not None:
            mh.remove_element(old_e)
        if new_e is not None:
            mh.insert_element(new_e)
    value = mh.value()
    digest_bytes(value)
    return value


def _v1_block(acc: Any, pairs: list[tuple[Any, Any]]) -> int:
    total: int = acc or 0
    for old_h, new_h in pairs:
        total += (new_h or 0) - (old_h or 0)
    total %= 1 << 256
    hashlib.sha256(b"MUXER/state/v1" + total.to_bytes(32, "big")).digest()
    return total


def _v1_hash(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest(), "big")


if __name__ == "__main__":
    main()
