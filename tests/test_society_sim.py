"""The society simulation (devnet/society, issue 17): small runs over the real ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from devnet.society import (
    Behaviour,
    Config,
    ConfigError,
    Society,
    build_report,
    parse_rules,
    parse_sweep,
)
from devnet.society.model import ATTACKER_TYPES, DEFAULT_RULES
from muxernode.state import recompute_digest
from storage.kv import MemoryKV

# a short observation period so that a 6-month run has claims of every kind
SMALL = ["--members", "60", "--months", "6", "--rules", "observation_s=30d"]


def _cli(*args: str) -> Any:
    from devnet.__main__ import main

    return CliRunner().invoke(main, ["society", *args], catch_exceptions=False)


def _run(**kw: Any) -> dict[str, Any]:
    cfg = Config(**{"members": 60, "months": 6, "behaviour": Behaviour(incident_rate=0.6),
                    "rules": parse_rules("observation_s=30d"), **kw})
    soc = Society(cfg)
    soc.run()
    return build_report(soc)


def test_report_deterministic_across_out_dirs_and_has_every_attacker(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "nested" / "b"
    scen = tmp_path / "busy.toml"
    scen.write_text("incident_rate = 0.6  # enough honest claims in six months\n")
    r1 = _cli("--seed", "7", *SMALL, "--scenario", str(scen), "--out", str(a))
    assert r1.exit_code == 0, r1.output
    r2 = _cli("--seed", "7", *SMALL, "--scenario", str(scen), "--out", str(b), "--no-plots")
    assert r2.exit_code == 0, r2.output
    raw = (a / "report.json").read_bytes()
    assert raw == (b / "report.json").read_bytes()
    assert str(tmp_path).encode() not in raw
    report = json.loads(raw)
    for t in ATTACKER_TYPES:
        x = report["attackers"][t]
        assert x["accounts"] > 0 and x["claims"]["filed"] > 0, t
        assert isinstance(x["expected_value"], float)
    assert report["honest"]["claims"]["filed"] > 0
    assert 0.0 <= report["honest"]["approved_share"] <= 1.0
    assert 0.0 <= report["honest"]["funded_share"] <= 1.0
    ops = report["ledger"]["txs_by_op"]
    for name in ("join", "pledge", "claim", "vote", "give", "standing_pledge", "set_proxy",
                 "charity_request", "withdraw_claim"):
        assert ops.get(name, 0) > 0, name
    assert report["ledger"]["standing_pledge_executions"] > 0
    md = (a / "report.md").read_text()
    assert "## Targets" in md and "vote_buyer" in md
    pytest.importorskip("matplotlib")
    for png in ("honest.png", "fraud-ev.png", "first-gift.png", "society.png", "karma.png"):
        assert (a / png).stat().st_size > 1000
        assert not (b / png).exists()


def test_another_seed_gives_another_run() -> None:
    assert _run(seed=1)["honest"] != _run(seed=2)["honest"]


def test_stricter_approval_approves_fewer_claims() -> None:
    lax = _run(rules=parse_rules("observation_s=30d,approval_bp=1"))
    strict = _run(rules=parse_rules("observation_s=30d,approval_bp=10000"))

    def approved(r: dict[str, Any]) -> int:
        return int(r["honest"]["claims"]["approved"]) + sum(
            int(r["attackers"][t]["claims"]["approved"]) for t in ATTACKER_TYPES)

    assert approved(lax) > 0
    # net approval of all the society's karma is out of reach: nothing passes
    assert approved(strict) == 0
    assert strict["honest"]["funded_share"] == 0.0 < lax["honest"]["funded_share"]


def test_no_attackers_means_no_attacker_claims() -> None:
    r = _run(attackers=0.0)
    for t in ATTACKER_TYPES:
        if t != "charity":  # outside charity requesters come whatever the members are
            assert r["attackers"][t]["accounts"] == 0
    assert r["attackers"]["karma_share_max"] == 0.0


def test_ledger_store_matches_its_digest_after_a_run() -> None:
    soc = Society(Config(members=40, months=4, rules=parse_rules("observation_s=20d")))
    soc.run()
    kv = soc.driver.kv
    assert recompute_digest(kv) == soc.driver.ledger.state_digest()
    # the run's store, kept sorted lazily over thousands of writes, iterates exactly as a
    # store built at once from the same data
    mem = MemoryKV(dict(kv.iterate(b"")))
    for prefix in (b"", b"Sm", b"Sn", b"Sc", b"St"):
        assert list(kv.iterate(prefix)) == list(mem.iterate(prefix))


def test_memory_kv_writes_and_deletes_after_its_first_iteration() -> None:
    kv = MemoryKV()
    assert list(kv.iterate(b"")) == []  # from here on writes are merged in lazily
    kv.write({b"b": b"1", b"a": b"2", b"c": b"3"})
    kv.write({b"b": None, b"d": b"4", b"a": b"5", b"zz": None})
    assert list(kv.iterate(b"")) == [(b"a", b"5"), (b"c", b"3"), (b"d", b"4")]
    assert kv.get(b"b") is None and len(kv) == 3
    kv.write({b"b": b"6"})  # written again after its delete: listed once
    assert [k for k, _ in kv.iterate(b"")] == [b"a", b"b", b"c", b"d"]
    kv.write({k: None for k in (b"a", b"b", b"c")})  # tombstones compacted
    kv.write({b"c": b"7", b"ca": b"8"})
    assert list(kv.iterate(b"c")) == [(b"c", b"7"), (b"ca", b"8")]
    assert list(kv.iterate(b"")) == list(MemoryKV(dict(kv.iterate(b""))).iterate(b""))


def test_parse_rules_and_sweep() -> None:
    r = parse_rules("approval_bp=1000, observation_s=30d,claim_bond=50MUX")
    assert (r.approval_bp, r.observation_s, r.claim_bond) == (1000, 30 * 86400, 50 * 100_000)
    assert r.benefit_ratio == DEFAULT_RULES.benefit_ratio
    assert parse_sweep(("approval_bp=100,300", "waiting_s=1d")) == [
        ("approval_bp", [100, 300]), ("waiting_s", [86400])]
    for bad in ("nope=1", "approval_bp", "approval_bp=x", "approval_bp=0",
                "waiting_s=40d"):
        with pytest.raises(ConfigError):
            parse_rules(bad)
    for bad_sweep in (("approval_bp=",), ("asset=MUX",), ("a=1",),
                      ("approval_bp=1", "approval_bp=2")):
        with pytest.raises(ConfigError):
            parse_sweep(bad_sweep)


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    for args in (["--rules", "approval_bp=0"], ["--rules", "bogus=1"],
                 ["--sweep", "approval_bp="]):
        r = _cli(*args, "--out", str(tmp_path))
        assert r.exit_code == 2
        assert "Error:" in r.output and "Traceback" not in r.output
    scen = tmp_path / "s.toml"
    scen.write_text("incident_rate = 'often'\n")
    r = _cli("--scenario", str(scen), "--out", str(tmp_path))
    assert r.exit_code == 2 and "incident_rate" in r.output


def test_sweep_writes_every_point(tmp_path: Path) -> None:
    r = _cli("--members", "30", "--months", "3", "--rules", "observation_s=20d",
             "--sweep", "approval_bp=100,10000", "--out", str(tmp_path), "--no-plots")
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert [p["rules"]["approval_bp"] for p in doc["points"]] == [100, 10000]
    strict = doc["points"][1]
    assert strict["honest.funded_share"] in (0.0, None)
    assert "| 10000 |" in (tmp_path / "sweep.md").read_text()


def test_scenario_weights_select_attackers(tmp_path: Path) -> None:
    scen = tmp_path / "ring.toml"
    scen.write_text("ring_size = 4\n[weights]\nring = 1.0\n")
    from devnet.society.model import load_scenario

    b = load_scenario(scen)
    soc = Society(Config(members=40, months=2, behaviour=b))
    kinds = {a.kind for a in soc.agents}
    assert "ring" in kinds and not kinds & {"fraudster", "sybil", "vote_buyer", "opportunist"}
