"""Generated testnets (``python -m devnet generate``) run with ``scenario --fresh``: the
same seed writes the same bytes, and each run prints held for its three invariants (no two
conflicting final blocks, finality resumes within 10 slots after each perturbation, every
final tx still final on every node). Two small seeds (3 nodes, ~12 s of perturbations:
well under a minute each); the 20-seed table is bench/widearea.py's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_devnet import devnet, log_tails, stop_everything


@pytest.mark.parametrize("seed", [3, 8])
def test_generated_testnet_holds_its_invariants(seed: int, tmp_path: Path) -> None:
    file = tmp_path / f"gen-{seed}.toml"
    devnet("generate", "--seed", str(seed), "--out", str(file), "--max-nodes", "3",
           "--duration", "12")
    again = tmp_path / "again.toml"
    devnet("generate", "--seed", str(seed), "--out", str(again), "--max-nodes", "3",
           "--duration", "12")
    assert file.read_bytes() == again.read_bytes()
    d = tmp_path / "net"
    try:
        res = devnet("scenario", str(file), "--fresh", "--dir", str(d), "--timeout", "60",
                     timeout=170, check=False)
        out = res.stdout
        for name in ("no_conflicting_final", "finality_resumes", "final_txs_kept"):
            assert f"invariant {name}: held" in out, f"{out}\n{res.stderr}\n{log_tails(d)}"
        assert res.returncode == 0 and "scenario passed" in out
    finally:
        stop_everything(d)
