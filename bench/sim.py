"""The deterministic simulation over many seeds (tests/sim.py is the harness).

    python -m bench.sim                         # every scenario, default seed counts
    python -m bench.sim --part partitions --seeds 200
    python -m bench.sim --part steady21 --slots-21 500
    python -m bench.sim --part partitions --seed 1234   # replay one seed

Each part runs the scenario functions of tests/test_sim.py with their assertions, on
seeds disjoint from the ones `make test` uses (from --first-seed on), and prints per part:
seeds run, failures with their seeds (each replays exactly: same seed, same outcome),
wall seconds, chain slots simulated per wall second, and that rate next to the
single-thread Ed25519 verify rate measured in the same run (bench/common.py), because
absolute times on shared machines drift. `steady21` is the issue's 21 witnesses x 500
slots, which takes minutes of wall time and so is not part of `make test`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import verify_note, verify_rate
from tests import test_sim as scenarios


@dataclass(frozen=True)
class Part:
    name: str
    run: Callable[[int, Path], object]
    seeds: int  # default number of seeds
    slots: int  # chain slots per seed, about (for the rate)


def _steady21(slots: int) -> Callable[[int, Path], object]:
    return lambda seed, d: scenarios.twenty_one_witnesses(seed, d, slots)


def parts(slots_21: int) -> list[Part]:
    return [
        Part("steady4", scenarios.test_four_witnesses_500_slots, 5, 500),
        Part("steady21", _steady21(slots_21), 1, slots_21),
        Part("offline", scenarios.test_one_witness_offline, 10, 120),
        Part("partitions", scenarios.test_partitions_heal, 100, 70),
        Part("lossy", scenarios.test_delays_drops_reordering, 10, 160),
        Part("equivocation", scenarios.test_equivocating_witness, 10, 80),
        Part("crash", scenarios.test_crash_and_restart, 10, 90),
        Part("crash_forks", scenarios.test_crash_restart_with_side_blocks, 10, 90),
        Part("election", scenarios.test_vote_witness_election, 10, 70),
        Part("election_split", scenarios.test_election_across_partition, 30, 75),
        Part("election_crash", scenarios.test_election_with_crash, 30, 80),
    ]


def run_part(part: Part, seeds: list[int], root: Path) -> tuple[list[int], float]:
    failed: list[int] = []
    started = time.perf_counter()
    for seed in seeds:
        with tempfile.TemporaryDirectory(dir=root, prefix=f"{part.name}-{seed}-") as d:
            try:
                part.run(seed, Path(d))
            except BaseException as exc:  # report every failing seed, then go on
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failed.append(seed)
                print(f"  FAIL {part.name} seed {seed}:", file=sys.stderr)
                traceback.print_exception(exc, limit=-3, file=sys.stderr)
    return failed, time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", action="append", help="run only these parts (repeatable)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per part (default: each "
                    "part's own count)")
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=None, help="run exactly this one seed")
    ap.add_argument("--slots-21", type=int, default=500)
    args = ap.parse_args()
    table = parts(args.slots_21)
    chosen = [p for p in table if not args.part or p.name in args.part]
    unknown = set(args.part or []) - {p.name for p in table}
    if unknown:
        ap.error(f"unknown part(s) {sorted(unknown)}; choose from {[p.name for p in table]}")
    rate = verify_rate()
    print(verify_note(rate))
    shm = Path("/dev/shm")
    root = shm if shm.is_dir() else Path(tempfile.gettempdir())
    total_failed = 0
    for part in chosen:
        if args.seed is not None:
            seeds = [args.seed]
        else:
            n = args.seeds if args.seeds is not None else part.seeds
            seeds = list(range(args.first_seed, args.first_seed + n))
        failed, wall = run_part(part, seeds, root)
        total_failed += len(failed)
        slots_per_s = len(seeds) * part.slots / wall
        print(f"{part.name:15s} seeds {len(seeds):4d}  failed {len(failed):3d} {failed[:20]}"
              f"  wall {wall:7.1f} s  {slots_per_s:7.1f} slots/s"
              f"  ({slots_per_s / rate * 1000:.2f} slots per 1000 verifies)", flush=True)
    sys.exit(1 if total_failed else 0)


if __name__ == "__main__":
    main()
