"""``--sweep k=v1,v2 ...``: the grid of rule values, one full run per point.

Each point is a run with the same seed and population (only the rules change), so the
differences between points are the rules' doing. The result is sweep.json (every point's
headline figures, keys sorted), sweep.md (a table) and sweep.png: honest coverage against
the worst attacker type's expected value, the trade-off a society creator chooses on.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from .agents import Society
from .model import ATTACKER_TYPES, Config, rules_text, with_rule
from .report import build_report

__all__ = ["point_summary", "run_sweep", "write_sweep"]


def point_summary(report: dict[str, Any]) -> dict[str, Any]:
    a = report["attackers"]
    return {
        "honest.approved_share": report["honest"]["approved_share"],
        "honest.funded_share": report["honest"]["funded_share"],
        "honest.funded_share_of_amount": report["honest"]["funded_share_of_amount"],
        "honest.time_to_first_gift_days.median":
            report["honest"]["time_to_first_gift_days"]["median"],
        "attackers.worst_expected_value": a["worst_expected_value"],
        **{f"attackers.{t}.expected_value": a[t]["expected_value"] for t in ATTACKER_TYPES},
        "escrow.idle_share": report["escrow"]["idle_share"],
        "targets.all": report["targets"]["all"],
    }


def run_sweep(base: Config, grid: list[tuple[str, list[Any]]],
              progress: Any = None) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    for values in itertools.product(*(v for _, v in grid)):
        rules = base.rules
        for (name, _), v in zip(grid, values, strict=True):
            rules = with_rule(rules, name, v)
        cfg = replace(base, rules=rules)
        soc = Society(cfg)
        soc.run()
        report = build_report(soc)
        point = {"rules": {n: v for (n, _), v in zip(grid, values, strict=True)},
                 "rules_arg": rules_text(rules), **point_summary(report)}
        points.append(point)
        if progress is not None:
            progress(point)
    return points


def write_sweep(points: list[dict[str, Any]], grid: list[tuple[str, list[Any]]],
                out: Path, base: Config, plots: bool = True) -> list[str]:
    doc = {"seed": base.seed, "members": base.members, "months": base.months,
           "attackers_pledge_share": base.attackers,
           "grid": {n: v for n, v in grid}, "points": points}
    (out / "sweep.json").write_text(json.dumps(doc, sort_keys=True, indent=1) + "\n")
    names = [n for n, _ in grid]
    lines = ["# Rule sweep", "",
             f"seed {base.seed}, {base.members} members, {base.months} months, attackers "
             f"{base.attackers:.0%} of the pledging.", "",
             "| " + " | ".join(names) + " | approved | funded (of limit) | funded (of amount) "
             "| first gift (d) | worst EV (MUX) | worst type | targets |",
             "|" + "---|" * (len(names) + 7)]

    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)

    for p in points:
        lines.append("| " + " | ".join(str(p["rules"][n]) for n in names) + " | "
                     f"{f(p['honest.approved_share'])} | {f(p['honest.funded_share'])} | "
                     f"{f(p['honest.funded_share_of_amount'])} | "
                     f"{f(p['honest.time_to_first_gift_days.median'])} | "
                     f"{f(p['attackers.worst_expected_value'])} | {_worst(p)} | "
                     f"{'met' if p['targets.all'] else 'missed'} |")
    pngs = _plot(points, names, out) if plots else []
    lines += [""] + [f"![{p}]({p})" for p in pngs]
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    return pngs


def _short(name: str, value: Any) -> str:
    """A point's label: durations in days."""
    if name.endswith("_s") and isinstance(value, int) and value % 86400 == 0:
        return f"{value // 86400}d"
    return str(value)


def _worst(p: dict[str, Any]) -> str:
    evs = [(p[f"attackers.{t}.expected_value"], t) for t in ATTACKER_TYPES
           if p[f"attackers.{t}.expected_value"] is not None]
    return max(evs)[1] if evs else "-"


def _plot(points: list[dict[str, Any]], names: list[str], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no sweep plot")
        return []
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for p in points:
        x, y = p["honest.funded_share_of_amount"], p["attackers.worst_expected_value"]
        if x is None or y is None:
            continue
        ax.scatter([x], [y], c="C2" if p["targets.all"] else "C3")
        ax.annotate(" ".join(_short(n, p["rules"][n]) for n in names), (x, y), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.axhline(0, c="k", lw=0.8)
    ax.set_xlabel("honest losses covered (received / amount asked)")
    ax.set_ylabel("worst attacker type's expected value (MUX)")
    ax.set_title("Honest coverage against fraud profit (green: targets met)\n"
                 + ", ".join(names), fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=80)
    plt.close(fig)
    return ["sweep.png"]
