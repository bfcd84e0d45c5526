"""Ledger application throughput, in memory (issue: protocol core and the MUXER ledger).

Applies a mix of transfers, pledges, votes and gives across 10k members for at least
--seconds of pure application time and prints applied tx/s next to the single-thread
Ed25519 verify rate measured in the same run. Target: applied/verify >= 3.

Then the same with a version-2 mix (issue 12): a third of the txs are ops 10-18 (asset
transfers, pledges into a BTC society with a charity split, comments, standing pledges,
gifts and votes in BTC, proxy changes) and five proxies of 1000 delegators each vote on
each of five claims; target: its ratio >= 0.9 of the v1 mix's. And two timings: one proxy vote
counting 1000 delegators (<= 20 ms) and 1000 standing-pledge executions in one block
(<= 50 ms).

Signing is setup, not measured: the ledger never verifies (the node verifies once, on
admission). When the pre-signed txs run out, application restarts from a copy of the
post-setup state so every measured tx is a fresh, valid one. The ledger runs as in a node:
the daemon's cycle-collector thresholds, the record cache bounded after each block as the
chain follower bounds it. The mixes take turns round by round, and each rate is printed
also per second of this thread's CPU time (what the load of other jobs leaves out).

The state digest's share is measured apart (``digest_cost``): the first round's block
changes are replayed through the MuHash3072 update alone and through the additive v1 sum
it replaced, so the per-tx cost of the secure digest prints next to the old one.
"""

from __future__ import annotations

import argparse
import gc
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
from muxernode.daemon import GC_THRESHOLDS
from muxernode.follower import CACHE_ENTRIES
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


BTC_SOCIETY = "bench-btc"
BTC_RULES = [*RULES, "BTC", 1000, 10]
PROXIES = 5
DELEGATORS = 1000  # per proxy: the protocol's maximum (11.4)
V2_SHARE = 1 / 3  # of the v2 mix's txs are ops 10-18


class Bench:
    """A ledger over a MemoryKV driven block by block, and the signer of its txs."""

    def __init__(self, members: int, rng: random.Random) -> None:
        self.keys = [PrivateKey(rng.randbytes(32)) for _ in range(members)]
        self.witness = PrivateKey(bytes([1]) * 32)
        self.genesis = parse_genesis(
            {
                "chain_name": "bench",
                "genesis_time": T0,
                "params": {"block_interval_s": 1, "base_fee": 10, "max_tx_lifetime_s": 3600},
                "witnesses": [{"name": "w1", "address": self.witness.address_text,
                               "signing_key": self.witness.public_key.hex()}],
                "balances": [{"address": k.address_text, "amount": 10**12} for k in self.keys],
            }
        )
        self.prefix = int.from_bytes(self.genesis.chain_id[:4], "big")
        self.kv = MemoryKV()
        self.ledger = Ledger(self.kv, self.genesis.params, T0)
        self.kv.write(self.ledger.init_genesis(self.genesis).changes)
        self.now = T0
        self.recorded: list[Changes] = []
        self.changed = 0  # state entries changed by the counted blocks (digest excluded)

    def tapos(self, num: int) -> int | None:
        return self.prefix if num == 0 else None

    def tx(self, key: PrivateKey, op: list[Any], expiration: int) -> SignedTx:
        return build_tx(key, self.genesis.chain_id, op, ref_block_num=0,
                        ref_block_prefix=self.prefix, expiration=expiration, fee=10)

    def run_block(self, txs: list[SignedTx], record: bool = False,
                  at: int | None = None, count: bool = False) -> int:
        self.now = at if at is not None else self.now + 1
        self.ledger.begin_block(BlockContext(0, self.now, self.witness.address, self.tapos))
        ok = 0
        for t in txs:
            try:
                self.ledger.apply_tx(t)
                ok += 1
            except Rejected:
                pass
        result = self.ledger.end_block()
        self.kv.write(result.changes)
        # bounded as the node bounds its chain ledger's record cache after each block (the
        # digest then recomputes the old element of a record evicted since its last change)
        self.ledger.state.trim_cache(CACHE_ENTRIES)
        if record:
            self.recorded.append((result.changes, result.undo))
        if count:  # what the digest pays for: one update per changed state entry
            digest = STATE_PREFIX + DIGEST_KEY
            self.changed += sum(1 for k in result.changes
                                if k.startswith(STATE_PREFIX) and k != digest)
        return ok

    def restart(self, base: dict[bytes, bytes], base_now: int) -> None:
        self.kv = MemoryKV(base)
        self.ledger = Ledger(self.kv, self.genesis.params, T0)
        self.now = base_now


def setup(b: Bench, exp: int) -> tuple[list[bytes], list[bytes], list[PrivateKey]]:
    """Societies in MUX and in BTC, everyone a member of both, 50 claims in each, 1000
    voters on five of them; PROXIES proxies with DELEGATORS delegators each. Returns the
    claim ids voted on in MUX and in BTC, and the proxies."""
    keys = b.keys
    b.run_block([b.tx(keys[0], [2, SOCIETY, "Bench", "benchmark society", RULES], exp),
                 b.tx(keys[0], [10, "BTC", 8, 2**62, "bench IOU"], exp)])
    b.run_block([b.tx(keys[0], [2, BTC_SOCIETY, "Bench BTC", "in BTC", BTC_RULES], exp)]
                + [b.tx(keys[0], [11, "BTC", k.address, 10**12, ""], exp) for k in keys])
    b.run_block([b.tx(k, [3, soc, f"m{i}"], exp) for i, k in enumerate(keys)
                 for soc in (SOCIETY, BTC_SOCIETY)])
    b.run_block([b.tx(k, [4, soc, 10**9], exp) for k in keys for soc in (SOCIETY, BTC_SOCIETY)])
    claimants = keys[:50]
    ids = []
    for soc in (SOCIETY, BTC_SOCIETY):
        claims = [b.tx(k, [5, soc, 10**15, 4 * 10**8, "bench", "", bytes(32)], exp)
                  for k in claimants]
        assert b.run_block(claims) == len(claims)
        voters = keys[50:1050]
        assert b.run_block([b.tx(v, [6, c.tx_id, 1], exp) for v in voters
                            for c in claims[:5]]) > 0
        ids.append([c.tx_id for c in claims[:5]])
    proxies = keys[1050:1050 + PROXIES]
    start = 1050 + PROXIES
    need = start + PROXIES * DELEGATORS
    assert len(keys) >= need, f"--members must be at least {need} for the proxies"
    for i, p in enumerate(proxies):
        group = keys[start + i * DELEGATORS: start + (i + 1) * DELEGATORS]
        assert b.run_block([b.tx(d, [14, SOCIETY, p.address], exp) for d in group]) == len(group)
    return ids[0], ids[1], proxies


def v1_op(rng: random.Random, i: int, members: list[PrivateKey], claim_ids: list[bytes]
          ) -> list[Any]:
    r = rng.random()
    if r < 0.4:
        return [1, members[rng.randrange(len(members))].address, 1000 + i, ""]
    if r < 0.6:
        return [4, SOCIETY, 100 + i]
    if r < 0.8:
        return [6, claim_ids[rng.randrange(len(claim_ids))], rng.choice((1, 1, -1))]
    return [7, claim_ids[rng.randrange(len(claim_ids))], 1 + i % 1000]


def v2_op(rng: random.Random, i: int, members: list[PrivateKey], btc_ids: list[bytes],
          claim_ids: list[bytes]) -> list[Any]:
    """Ops 10-18 in the proportions a society of an asset would send them."""
    r = rng.random()
    if r < 0.25:
        return [12, "BTC", members[rng.randrange(len(members))].address, 1000 + i, ""]
    if r < 0.45:
        return [4, BTC_SOCIETY, 100 + i]  # a pledge split into escrow and charity escrow
    if r < 0.60:
        return [18, claim_ids[rng.randrange(len(claim_ids))], f"comment {i}"]
    if r < 0.75:
        return [13, BTC_SOCIETY, 100 + i, 86_400 * (1 + i % 30)]
    if r < 0.85:
        return [7, btc_ids[rng.randrange(len(btc_ids))], 1 + i % 1000]  # a gift in BTC
    if r < 0.95:
        return [6, btc_ids[rng.randrange(len(btc_ids))], rng.choice((1, -1))]
    # set or clear a proxy among members who are nobody's proxy or delegator
    return [14, BTC_SOCIETY, members[rng.randrange(len(members))].address if i % 2 else b""]


def measure(b: Bench, mixes: list[list[SignedTx]], seconds: float, block_txs: int,
            base: dict[bytes, bytes], base_now: int
            ) -> list[tuple[float, float, int, int, float]]:
    """Per mix (applied tx/s, applied tx per CPU second, applied, rejected), rerunning each
    from the base state until ``seconds`` of application time are measured for it. The
    mixes take turns, one round each, so that the load of other jobs on the machine falls
    on all of them alike (their ratio is a target); this thread's CPU time, which that load
    leaves out, gives the second rate. The first mix's first round is recorded for
    ``digest_cost``. The last item: changed state entries per applied tx, in the first
    round (counted outside the timed part)."""
    applied = [0] * len(mixes)
    rejected = [0] * len(mixes)
    elapsed = [0.0] * len(mixes)
    cpu = [0.0] * len(mixes)
    changed = [0.0] * len(mixes)
    rounds = 0
    while min(elapsed) < seconds and rounds < 1000:
        rounds += 1
        for m, mix in enumerate(mixes):
            b.restart(base, base_now)
            if rounds == 1:
                b.changed = 0
                first = 0
                for i in range(0, len(mix), block_txs):
                    first += b.run_block(mix[i: i + block_txs], count=True)
                changed[m] = b.changed / max(1, first)
                b.restart(base, base_now)
            for i in range(0, len(mix), block_txs):
                block = mix[i: i + block_txs]
                cpu_start = time.thread_time()
                start = time.perf_counter()
                ok = b.run_block(block, record=m == 0 and rounds == 1)
                elapsed[m] += time.perf_counter() - start
                cpu[m] += time.thread_time() - cpu_start
                applied[m] += ok
                rejected[m] += len(block) - ok
    return [(applied[m] / elapsed[m], applied[m] / cpu[m], applied[m], rejected[m], changed[m])
            for m in range(len(mixes))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--txs", type=int, default=60_000, help="distinct pre-signed txs per mix")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--block-txs", type=int, default=2000)
    args = ap.parse_args()
    rng = random.Random(42)

    print(f"setup: {args.members} members, signing 2 x {args.txs} txs ...", flush=True)
    b = Bench(args.members, rng)
    exp = T0 + 3000
    claim_ids, btc_ids, proxies = setup(b, exp)
    # the mixes' senders: neither claimants, proxies nor delegators (so the set_proxy ops
    # of the v2 mix stay valid), and the v1 senders the same accounts
    free = b.keys[50:1050] + b.keys[1050 + PROXIES * (DELEGATORS + 1):]
    v1_mix: list[SignedTx] = []
    v2_mix: list[SignedTx] = []
    for i in range(args.txs):
        e = exp + 1 + i % 500  # distinct expirations keep the mix realistic for pruning
        v1_mix.append(b.tx(free[rng.randrange(len(free))], v1_op(rng, i, free, claim_ids), e))
        k = free[rng.randrange(len(free))]
        if rng.random() < V2_SHARE:
            op = v2_op(rng, i, free, btc_ids, claim_ids)
        else:
            op = v1_op(rng, i, free, claim_ids)
        v2_mix.append(b.tx(k, op, e))
    # the proxies vote: each on each of the claims, counting its 1000 delegators
    votes = [(p, c) for c in claim_ids for p in proxies]
    step = max(1, len(v2_mix) // len(votes))
    for j, (p, c) in enumerate(votes):
        v2_mix[j * step] = b.tx(p, [6, c, 1], exp + 1 + j % 500)
    base = dict(b.kv._data)  # the post-setup state, to restart from
    base_now = b.now

    # the cycle collector as a node runs it (muxernode.daemon): setup's objects frozen,
    # the daemon's thresholds. At CPython's defaults its full collections over the bench's
    # heap cost the v2 mix 26 % more CPU per tx (a proxy vote allocates 1000 vote records)
    # and the v1 mix 4 %: a cost of the bench's process, not of the node's ledger
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    print("measuring verify rate ...", flush=True)
    vrate = verify_rate(2.0)
    print(f"applying each mix for {args.seconds:.0f} s ...", flush=True)
    (rate1, cpu1, applied1, rejected1, keys1), (rate2, cpu2, applied2, rejected2, keys2) = measure(
        b, [v1_mix, v2_mix], args.seconds, args.block_txs, base, base_now)
    print()
    print(f"members                 {args.members} (gc thresholds {GC_THRESHOLDS}, the daemon's)")
    print(f"v1 mix: txs applied     {applied1} (+{rejected1} rejected)")
    print(f"ledger applied tx/s     {rate1:,.0f}   ({cpu1:,.0f} per CPU second: "
          f"{1e6 / cpu1:.1f} us of CPU per tx)")
    print(verify_note(vrate))
    print(f"ratio applied/verify    {rate1 / vrate:.2f}   (target >= 3.00)")
    print(f"v2 mix: txs applied     {applied2} (+{rejected2} rejected); a third ops 10-18, "
          f"{PROXIES} proxies of {DELEGATORS} delegators voting on {len(claim_ids)} claims")
    print(f"ledger applied tx/s     {rate2:,.0f}   ({cpu2:,.0f} per CPU second: "
          f"{1e6 / cpu2:.1f} us of CPU per tx)")
    print(f"ratio applied/verify    {rate2 / vrate:.2f}   v2/v1 {rate2 / rate1:.2f} "
          f"(target >= 0.90; in CPU time {cpu2 / cpu1:.2f})")
    print(f"changed state entries   {keys1:.2f} per tx in the v1 mix, {keys2:.2f} in the v2 mix "
          "(each costs the digest ~7 us)")
    digest_cost(b.recorded, len(v1_mix), 1e6 / cpu1)
    proxy_vote_time(b, base, base_now, proxies[0], claim_ids, exp)
    standing_pledges_time(rng)


def proxy_vote_time(b: Bench, base: dict[bytes, bytes], base_now: int, proxy: PrivateKey,
                    claim_ids: list[bytes], exp: int) -> None:
    """One proxy vote counting its 1000 delegators: apply, and apply + the block's commit."""
    b.restart(base, base_now)
    apply_s: list[float] = []
    block_s: list[float] = []
    cpu_s: list[float] = []  # this thread's CPU time: what the other jobs' load leaves out
    for j in range(10):
        tx = b.tx(proxy, [6, claim_ids[j % len(claim_ids)], 1 if j % 2 else -1], exp + j)
        b.now += 1
        b.ledger.begin_block(BlockContext(0, b.now, b.witness.address, b.tapos))
        cpu = time.thread_time()
        start = time.perf_counter()
        b.ledger.apply_tx(tx)
        applied = time.perf_counter()
        b.kv.write(b.ledger.end_block().changes)
        done = time.perf_counter()
        apply_s.append(applied - start)
        block_s.append(done - start)
        cpu_s.append(time.thread_time() - cpu)
    apply_s.sort()
    block_s.sort()
    cpu_s.sort()
    print(f"proxy vote, {DELEGATORS} delegators  median {apply_s[5] * 1e3:5.1f} ms to apply, "
          f"{block_s[5] * 1e3:5.1f} ms with its block's commit (target <= 20 ms; "
          f"CPU {cpu_s[5] * 1e3:.1f} ms)")


def standing_pledges_time(rng: random.Random, runs: int = 5) -> None:
    """1000 standing pledges due in one block: the executions at the block's start, and
    with the block's commit; the median of ``runs`` such blocks, one interval apart (each
    executes all 1000 again)."""
    n = 1000
    b = Bench(n, rng)
    exp = T0 + 3000
    interval = 100
    rules = [interval, 3844, 1, 0, 0, 1_000_000, 1000, 1000, 1]
    b.run_block([b.tx(b.keys[0], [2, SOCIETY, "Bench", "standing pledges", rules], exp)])
    b.run_block([b.tx(k, [3, SOCIETY, f"m{i}"], exp) for i, k in enumerate(b.keys)])
    set_at = b.now + 1
    assert b.run_block([b.tx(k, [13, SOCIETY, 1000, interval], exp) for k in b.keys]) == n
    exec_s: list[float] = []
    block_s: list[float] = []
    cpu_s: list[float] = []
    for run in range(runs):
        b.now = set_at + (run + 1) * interval
        cpu = time.thread_time()
        start = time.perf_counter()
        b.ledger.begin_block(BlockContext(0, b.now, b.witness.address, b.tapos))
        executed = time.perf_counter()
        b.kv.write(b.ledger.end_block().changes)
        done = time.perf_counter()
        assert len(b.ledger.last_scheduled) == n
        exec_s.append(executed - start)
        block_s.append(done - start)
        cpu_s.append(time.thread_time() - cpu)
    exec_s.sort()
    block_s.sort()
    cpu_s.sort()
    print(f"standing pledges        {n} executed in one block: median of {runs} "
          f"{exec_s[runs // 2] * 1e3:5.1f} ms, {block_s[runs // 2] * 1e3:5.1f} ms with the "
          f"commit (target <= 50 ms; CPU {cpu_s[runs // 2] * 1e3:.1f} ms)")


def digest_cost(blocks: list[Changes], txs: int, tx_us: float) -> None:
    """The state digest's update alone, in CPU time per tx (tx_us: a tx's), over the blocks'
    recorded changes: the MuHash3072 of v2 as State.commit does it (the old entry's element
    kept from its last commit, one inverse per block) next to the additive v1 sum it
    replaced (which kept the old entry's hash too). Warm: every old entry's element or hash
    is cached, as on a node whose record cache holds the active accounts; cold: a key's
    first change computes it, as this bench's fresh ledger does in each round."""
    skip = STATE_PREFIX + DIGEST_KEY
    n = len(STATE_PREFIX)
    entries = [[(k[n:], undo[k], new) for k, new in changes.items() if k != skip]
               for changes, undo in blocks]
    keys = sum(len(b) for b in entries) / txs
    print(f"state digest per tx     (v1 mix, {keys:.2f} changed keys per tx; CPU time, of the "
          "v1 mix's CPU per tx, which includes the cold figure)")
    for name, cached in (("warm", True), ("cold", False)):
        v2 = _replay(entries, cached, element, _v2_block) * 1e6 / txs
        v1 = _replay(entries, cached, _v1_hash, _v1_block) * 1e6 / txs
        print(f"  {name}                  v2 MuHash3072 {v2:5.1f} us ({v2 / tx_us:.0%} of a tx),"
              f" was v1 additive {v1:4.1f} us")


def _replay(entries: list[list[tuple[bytes, bytes | None, bytes | None]]], cached: bool,
            of: Callable[[bytes], Any], block: Callable[[Any, list[tuple[Any, Any]]], Any]
            ) -> float:
    """CPU seconds (this thread's) to fold every block's (old, new) entries into the
    scheme's accumulator."""
    kept: dict[bytes, Any] = {}
    if cached:
        for b in entries:
            for k, old, _ in b:
                if old is not None:
                    kept.setdefault(k + old, of(entry_bytes(k, old)))
    start = time.thread_time()
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
    return time.thread_time() - start


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
