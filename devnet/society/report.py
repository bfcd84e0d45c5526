"""report.json, report.md and the plots of one society run.

Every figure is computed from the ledger's final state and the simulation's record of each
claim; amounts are in MUX (floats of at most 5 decimals, exact for integer units), shares
in [0, 1] rounded to 6 decimals, durations in days. Keys are sorted and the report holds no
path, clock time or run duration, so the same seed and arguments give the same bytes.
The keys are documented in docs/society-economics.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from muxernode import ledger as L
from muxernode.ops import OP_NAMES, RULE_NAMES_V2

from .agents import HONEST, NEEDY, Case, Society
from .model import ATTACKER_TYPES, MUX, Config, rules_text

__all__ = ["TARGETS", "build_report", "gini", "meets_targets", "write_json", "write_markdown",
           "write_plots"]

# the targets
TARGETS = {"honest_approved_share": 0.95, "honest_funded_share": 0.80, "fraud_ev_below": 0.0}


def mux(units: float) -> float:
    return round(units / MUX, 5)


def share(x: float) -> float:
    return round(float(x), 6)


def gini(values: list[int]) -> float:
    """Gini coefficient of non-negative values (0: equal, -> 1: one holds everything)."""
    xs = sorted(values)
    n, total = len(xs), sum(xs)
    if n == 0 or total == 0:
        return 0.0
    weighted = sum((i + 1) * x for i, x in enumerate(xs))
    return (2 * weighted) / (n * total) - (n + 1) / n


def _quantile(xs: list[int], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return float(s[min(len(s) - 1, int(q * len(s)))])


def _bonds_burned(cases: list[Case]) -> int:
    """Closed claims whose bond was burned: rejected, or withdrawn after receiving or with
    votes recorded (the ledger's 11.6, docs/protocol.md)."""
    return sum(c.outcome != "open" and not c.bond_back for c in cases)


def _claims_summary(cases: list[Case], bond: int) -> dict[str, Any]:
    closed = [c for c in cases if c.outcome != "open"]
    return {
        "filed": len(cases),
        "open_at_end": len(cases) - len(closed),
        "approved": sum(c.outcome == "approved" for c in closed),
        "rejected": sum(c.outcome == "rejected" for c in closed),
        "withdrawn": sum(c.outcome == "withdrawn" for c in closed),
        "bonds_burned": mux(bond * _bonds_burned(closed)),
        "bonds_saved_by_withdrawing": mux(bond * sum(c.outcome == "withdrawn" and c.bond_back
                                                     for c in closed)),
    }


def build_report(soc: Society) -> dict[str, Any]:
    cfg: Config = soc.cfg
    rules = cfg.rules
    bond = rules.claim_bond
    t_end = soc.driver.time
    by_kind: dict[str, list[Case]] = {}
    for c in soc.cases:
        by_kind.setdefault(c.kind, []).append(c)

    # --- honest claims ---
    honest = by_kind.get(HONEST, [])
    closed = [c for c in honest if c.outcome != "open"]
    limit = sum(c.limit for c in closed)
    approved = [c for c in closed if c.outcome == "approved"]
    waits = [c.first_gift_day - c.opened_day for c in closed if c.first_gift_day >= 0]
    members = [a for a in soc.agents if a.kind == HONEST]
    honest_r: dict[str, Any] = {
        "members": len(members),
        "incidents": dict(soc.incidents),
        "claims": _claims_summary(honest, bond),
        "approved_share": share(len(approved) / len(closed)) if closed else None,
        "funded_share": share(sum(c.received for c in closed) / limit) if limit else None,
        "funded_share_of_amount": (share(sum(c.received for c in closed)
                                         / sum(c.amount for c in closed)) if closed else None),
        "fully_funded_share": (share(sum(c.received >= c.limit for c in closed) / len(closed))
                               if closed else None),
        "limit_share_of_amount": (share(limit / sum(c.amount for c in closed))
                                  if closed else None),
        "received": mux(sum(c.received for c in closed)),
        "time_to_first_gift_days": {
            "median": _quantile(waits, 0.5), "p90": _quantile(waits, 0.9),
            "mean": round(sum(waits) / len(waits), 3) if waits else None,
            "never": len(closed) - len(waits),
        },
        "bribes_received": mux(sum(a.bribes_received for a in members)),
        "bribed_votes": soc.bribed_votes,
    }

    # --- attackers ---
    attackers: dict[str, Any] = {}
    for t in ATTACKER_TYPES:
        agents = [a for a in soc.agents if a.kind == t]
        cases = by_kind.get(t, [])
        pledged = 0
        karma_end = 0
        for a in agents:
            m = soc._member(a)
            if m is not None:
                pledged += int(m[L.M_PLEDGED])
                karma_end += soc.karma(a, t_end)
        delta = sum(soc.balance(a) - a.funds for a in agents)
        bribes = sum(a.bribes_paid for a in agents)
        received = sum(c.received for c in cases)
        summary = _claims_summary(cases, bond)
        held = bond * summary["open_at_end"]
        burned = bond * _bonds_burned(cases)
        # balance_end = funds - pledged - fees - bonds (burned or still held) + received
        fees = -delta - pledged - burned - held + received
        ev = delta - bribes
        # the attacking parties: a sybil operator owns many accounts, others one each
        parties = (len({a.group for a in agents}) if t == "sybil" else len(agents))
        attackers[t] = {
            "accounts": len(agents),
            "parties": parties,
            "claims": summary,
            "received": mux(received),
            "received_from_honest": mux(sum(c.from_honest for c in cases)),
            "pledged": mux(pledged),
            "fees": mux(fees),
            "bonds_held_at_end": mux(held),
            "bribes_paid": mux(bribes),
            "karma_committed": mux(sum(c.karma for c in cases)),
            "karma_at_end": mux(karma_end),
            "net": mux(ev),
            "expected_value": mux(ev / parties) if parties else None,
        }
    worst = max((a["expected_value"] for a in attackers.values()
                 if a["expected_value"] is not None), default=None)

    # --- charity, karma, escrow, coverage ---
    needy = by_kind.get(NEEDY, [])
    samples = soc.samples
    last = samples[-1] if samples else {}
    s = soc.society()
    report: dict[str, Any] = {
        "run": {"seed": cfg.seed, "members": cfg.members, "months": cfg.months,
                "attackers_pledge_share": cfg.attackers,
                "rules": {n: getattr(rules, n) for n in RULE_NAMES_V2},
                "rules_arg": rules_text(rules),
                "behaviour": {k: v for k, v in sorted(vars(cfg.behaviour).items())}},
        "honest": honest_r,
        "attackers": {
            **attackers,
            "worst_expected_value": worst,
            "karma_share_mean": (share(sum(x["attacker_karma_share"] for x in samples)
                                       / len(samples)) if samples else None),
            "karma_share_max": (share(max(x["attacker_karma_share"] for x in samples))
                                if samples else None),
        },
        "charity": {
            "genuine": {**_claims_summary(needy, bond),
                        "received": mux(sum(c.received for c in needy)),
                        "funded_share": (share(sum(c.received for c in needy)
                                               / max(1, sum(c.limit for c in needy)))
                                         if needy else None)},
            "charity_escrow_end": mux(int(s[L.S_CHARITY])),
        },
        "karma": {
            "gini": share(gini(last.get("karma", []))),
            "gini_by_month": [share(gini(x["karma"])) for x in samples],
            "top_decile_share": share(_top_share(last.get("karma", []), 0.1)),
            "total_end": mux(int(last.get("total_karma", 0))),
        },
        "escrow": {
            "idle_share": share(last.get("escrow_idle_share", 0.0)),
            "idle_share_by_month": [share(x["escrow_idle_share"]) for x in samples],
            "total_end": mux(int(s[L.S_ESCROW])),
            "pledged_total": mux(int(last.get("pledged_total", 0))),
        },
        "coverage": {
            "ratio_by_month": [share(x["coverage_ratio"]) for x in samples],
            "ratio_end": share(last.get("coverage_ratio", 0.0)),
        },
        "series": {
            "month": [x["month"] for x in samples],
            "honest_approved_share": [share(x["honest_approved_share"]) for x in samples],
            "honest_funded_share": [share(x["honest_funded_share"]) for x in samples],
            "attacker_karma_share": [share(x["attacker_karma_share"]) for x in samples],
            "members": [x["members"] for x in samples],
        },
        "ledger": {
            "blocks": soc.driver.height,
            "txs": soc.driver.txs,
            "txs_by_op": {OP_NAMES[k]: v for k, v in sorted(soc.driver.by_op.items())},
            "standing_pledge_executions": soc.driver.scheduled,
            "rejections": dict(sorted(soc.driver.rejected.items())),
        },
        "samples": {"time_to_first_gift_days": sorted(waits),
                    "karma_end": [mux(k) for k in last.get("karma", [])]},
    }
    report["targets"] = meets_targets(report)
    return report


def _top_share(values: list[int], top: float) -> float:
    xs = sorted(values, reverse=True)
    total = sum(xs)
    if not total:
        return 0.0
    return sum(xs[: max(1, int(len(xs) * top))]) / total


def meets_targets(report: dict[str, Any]) -> dict[str, Any]:
    h = report["honest"]
    worst = report["attackers"]["worst_expected_value"]
    ok_a = h["approved_share"] is not None and h["approved_share"] >= TARGETS[
        "honest_approved_share"]
    ok_f = h["funded_share"] is not None and h["funded_share"] >= TARGETS["honest_funded_share"]
    ok_ev = worst is None or worst < TARGETS["fraud_ev_below"]
    return {"honest_approved": ok_a, "honest_funded": ok_f, "fraud_unprofitable": ok_ev,
            "all": ok_a and ok_f and ok_ev, "thresholds": dict(TARGETS)}


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, sort_keys=True, indent=1) + "\n")


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def write_markdown(report: dict[str, Any], path: Path, plots: list[str],
                   advice: str | None = None) -> None:
    h, a, run = report["honest"], report["attackers"], report["run"]
    tg = report["targets"]
    lines = [
        "# Society simulation",
        "",
        f"seed {run['seed']}, {run['members']} members, {run['months']} months, attackers "
        f"{run['attackers_pledge_share']:.0%} of the pledging; rules "
        f"`{run['rules_arg'] or 'the CLI defaults'}`.",
        "",
        "## Targets",
        "",
        "| target | value | met |",
        "|---|---|---|",
        f"| honest claims approved >= 95 % | {_fmt(h['approved_share'])} | "
        f"{'yes' if tg['honest_approved'] else 'NO'} |",
        f"| honest claims funded (received / limit) >= 80 % | {_fmt(h['funded_share'])} | "
        f"{'yes' if tg['honest_funded'] else 'NO'} |",
        f"| every attacker type's expected value < 0 | worst {_fmt(a['worst_expected_value'])}"
        f" MUX | {'yes' if tg['fraud_unprofitable'] else 'NO'} |",
        "",
    ]
    if advice:
        lines += [advice, ""]
    lines += [
        "## Honest members",
        "",
        f"{h['members']} honest members, {h['incidents']['total']} incidents "
        f"({h['incidents']['in_observation']} in the observation period, "
        f"{h['incidents']['while_open']} while a claim was open), "
        f"{h['claims']['filed']} claims: {h['claims']['approved']} approved, "
        f"{h['claims']['rejected']} rejected, {h['claims']['open_at_end']} open at the end. "
        f"Funded {_fmt(h['funded_share'])} of the limits ({_fmt(h['funded_share_of_amount'])} "
        f"of the amounts asked); time to first gift median "
        f"{_fmt(h['time_to_first_gift_days']['median'])} days, p90 "
        f"{_fmt(h['time_to_first_gift_days']['p90'])}.",
        "",
        "## Attackers (MUX; expected value per attacking party)",
        "",
        "| type | parties | claims | approved | withdrawn | received | from honest | pledged "
        "| bonds burned | bribes | expected value |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in ATTACKER_TYPES:
        x = a[t]
        c = x["claims"]
        lines.append(f"| {t} | {x['parties']} | {c['filed']} | {c['approved']} | "
                     f"{c['withdrawn']} | {_fmt(x['received'])} | "
                     f"{_fmt(x['received_from_honest'])} | {_fmt(x['pledged'])} | "
                     f"{_fmt(c['bonds_burned'])} | {_fmt(x['bribes_paid'])} | "
                     f"{_fmt(x['expected_value'])} |")
    lines += [
        "",
        f"Attackers' share of the karma: mean {_fmt(a['karma_share_mean'])}, max "
        f"{_fmt(a['karma_share_max'])}.",
        "",
        "## Society",
        "",
        f"Karma Gini {_fmt(report['karma']['gini'])} (top decile holds "
        f"{_fmt(report['karma']['top_decile_share'])}); escrow left idle "
        f"{_fmt(report['escrow']['idle_share'])} of everything pledged; coverage ratio "
        f"(escrow / (benefit_ratio x total karma)) {_fmt(report['coverage']['ratio_end'])}. "
        f"Genuine outside charity requests: {report['charity']['genuine']['filed']}, "
        f"funded {_fmt(report['charity']['genuine']['funded_share'])}.",
        "",
        f"Ledger: {report['ledger']['blocks']} blocks, {report['ledger']['txs']} txs, "
        f"{report['ledger']['standing_pledge_executions']} standing-pledge executions, "
        f"rejections {report['ledger']['rejections'] or 'none'}.",
        "",
    ]
    lines += [f"![{p}]({p})" for p in plots]
    path.write_text("\n".join(lines) + "\n")


def write_plots(report: dict[str, Any], out: Path, prefix: str = "") -> list[str]:
    """The PNGs next to report.md; [] with a message when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib, or "
              "pip install -e '.[bench]')")
        return []
    names: list[str] = []
    s = report["series"]

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / f"{prefix}{name}", dpi=80)
        plt.close(fig)
        names.append(f"{prefix}{name}")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(s["month"], s["honest_approved_share"], label="approved (share of claims)")
    ax.plot(s["month"], s["honest_funded_share"], label="funded (received / limit)")
    ax.axhline(0.95, ls=":", c="C0")
    ax.axhline(0.80, ls=":", c="C1")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("month")
    ax.set_title("Honest claims closed so far")
    ax.legend(loc="lower right")
    save(fig, "honest.png")

    waits = report["samples"]["time_to_first_gift_days"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if waits:
        ax.hist(waits, bins=range(0, max(waits) + 2))
    ax.set_xlabel("days from claim to first gift")
    ax.set_ylabel("honest claims")
    ax.set_title("Time to first gift")
    save(fig, "first-gift.png")

    att = report["attackers"]
    types = [t for t in ATTACKER_TYPES if att[t]["expected_value"] is not None]
    evs = [att[t]["expected_value"] for t in types]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(types, evs, color=["C3" if v >= 0 else "C2" for v in evs])
    ax.axhline(0, c="k", lw=0.8)
    ax.set_ylabel("MUX per attacking party")
    ax.set_title("Fraud expected value (received - pledged - bonds - fees - bribes)")
    ax.tick_params(axis="x", labelrotation=20)
    save(fig, "fraud-ev.png")

    karma = report["samples"]["karma_end"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(8, 3.5))
    if karma:
        total = sum(karma) or 1.0
        cum, acc = [0.0], 0.0
        for k in karma:  # sorted ascending
            acc += k
            cum.append(acc / total)
        ax.plot([i / len(karma) for i in range(len(karma) + 1)], cum, label="karma")
        ax.plot([0, 1], [0, 1], ls=":", c="k", label="equal")
        bx.hist(karma, bins=40)
    ax.set_title(f"Lorenz curve (Gini {report['karma']['gini']:.3f})")
    ax.set_xlabel("share of members")
    ax.set_ylabel("share of karma")
    ax.legend(fontsize=8)
    bx.set_title("Karma at the end")
    bx.set_xlabel("karma (in whole MUX, as amounts)")
    bx.set_ylabel("members")
    save(fig, "karma.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(s["month"], report["karma"]["gini_by_month"], label="karma Gini")
    ax.plot(s["month"], report["escrow"]["idle_share_by_month"], label="escrow idle / pledged")
    ax.plot(s["month"], report["coverage"]["ratio_by_month"],
            label="coverage: escrow / (ratio x karma)")
    ax.plot(s["month"], s["attacker_karma_share"], label="attackers' karma share")
    ax.set_xlabel("month")
    ax.set_title("The society over time")
    ax.legend(fontsize=8)
    save(fig, "society.png")
    return names
