"""The society simulation at the issue's size: 2000 members over 36 months (target <= 5 min).

    python -m bench.society                       # the CLI's default rules
    python -m bench.society --rules approval_bp=1000 --members 2000 --months 36
    python -m bench.society --stores              # also time the store choices, smaller run

Prints the wall and CPU time, where it goes (signing with the real build_tx, applying in
the ledger, the rest: the agents, blocks, digest), txs per second, the issue's targets as
measured, and the raw verify rate of the same run (bench/common.py), because absolute
times on shared machines drift. ``--stores`` runs a smaller society twice, on
storage.kv.MemoryKV (the driver's store) and on a real LevelDB in a temp dir, to show
why the driver uses the first.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from bench.common import verify_note, verify_rate
from devnet.society import Config, Society, build_report, parse_rules
from storage.kv import KVStore, MemoryKV
from storage.leveldb import LevelDBStore

TARGET_S = 300.0


def _run(cfg: Config, kv: KVStore | None = None) -> tuple[Society, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    soc = Society(cfg, kv)
    soc.run()
    return soc, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=2000)
    ap.add_argument("--months", type=int, default=36)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rules", default="")
    ap.add_argument("--stores", action="store_true")
    args = ap.parse_args()
    cfg = Config(seed=args.seed, members=args.members, months=args.months,
                 rules=parse_rules(args.rules))
    soc, wall, cpu = _run(cfg)
    report = build_report(soc)
    d = soc.driver
    print(f"society {args.members} members x {args.months} months, rules "
          f"'{args.rules or 'defaults'}': wall {wall:.1f} s (target <= {TARGET_S:.0f} s: "
          f"{'met' if wall <= TARGET_S else 'MISSED'}), cpu {cpu:.1f} s")
    print(f"  {d.height} blocks, {d.txs:,} txs accepted ({sum(d.rejected.values()):,} "
          f"rejected), {d.scheduled:,} standing-pledge executions; {d.txs / wall:,.0f} tx/s")
    rest = wall - d.sign_s - d.apply_s - d.commit_s
    print(f"  signing {d.sign_s:.1f} s ({d.sign_s / max(1, d.txs) * 1e6:.0f} us/tx), ledger "
          f"apply_tx {d.apply_s:.1f} s, blocks (begin/end_block with the state digest, "
          f"store) {d.commit_s:.1f} s, the agents {rest:.1f} s")
    h, a, tg = report["honest"], report["attackers"], report["targets"]
    print(f"  honest approved {h['approved_share']} (>= 0.95: {tg['honest_approved']}), "
          f"funded {h['funded_share']} (>= 0.80: {tg['honest_funded']}), worst attacker EV "
          f"{a['worst_expected_value']} MUX (< 0: {tg['fraud_unprofitable']})")
    if args.stores:
        small = Config(seed=args.seed, members=500, months=12, rules=cfg.rules)
        _, memory_s, _ = _run(small, MemoryKV())
        with tempfile.TemporaryDirectory() as tmp:
            db = LevelDBStore(tmp)
            try:
                _, level_s, _ = _run(small, db)
            finally:
                db.close()
        print(f"  stores, 500 members x 12 months: MemoryKV {memory_s:.1f} s, "
              f"LevelDB {level_s:.1f} s")
    print(verify_note(verify_rate(1.0)))


if __name__ == "__main__":
    main()
