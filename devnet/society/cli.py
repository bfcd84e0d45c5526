"""``python -m devnet society``: the click command (registered in devnet/__main__.py)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from .model import (
    RECOMMENDED_RULES,
    Behaviour,
    Config,
    ConfigError,
    load_scenario,
    parse_rules,
    parse_sweep,
)

__all__ = ["society"]


def advice(met: bool, rules_arg: str) -> str | None:
    """What report.md says when the targets are missed: the rules that met them."""
    if met:
        return None
    if rules_arg == RECOMMENDED_RULES:
        return ("The targets are missed with the rules docs/society-economics.md recommends "
                f"(`--rules {RECOMMENDED_RULES}`): this seed or size differs from its runs.")
    return ("The targets are missed with these rules. The rules that met them in the runs of "
            f"docs/society-economics.md: `--rules {RECOMMENDED_RULES}` (run it with them to "
            "compare).")


@click.command()
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--members", type=click.IntRange(8, 100_000), default=200, show_default=True)
@click.option("--months", type=click.IntRange(1, 600), default=12, show_default=True)
@click.option("--attackers", "attackers", type=click.FloatRange(0.0, 0.9), default=0.2,
              show_default=True, help="Attackers' share of the pledging (so of the karma "
              "they earn).")
@click.option("--rules", "rules_arg", default="", help="Society rules over the CLI defaults, "
              "k=v,... (names of protocol 4.1/11.2; 30d, 50MUX accepted).")
@click.option("--scenario", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="TOML file of behaviour parameters (docs/society-economics.md).")
@click.option("--sweep", "sweeps", multiple=True, help="k=v1,v2,...: run the grid (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--no-plots", is_flag=True, help="Skip the PNGs.")
def society(seed: int, members: int, months: int, attackers: float, rules_arg: str,
            scenario: Path | None, sweeps: tuple[str, ...], out: Path, no_plots: bool) -> None:
    """Agent-based simulation of a mutual-aid society over the real ledger, in process."""
    # the ledger and matplotlib load only when this command runs, not for every devnet call
    from .agents import Society
    from .report import build_report, write_json, write_markdown, write_plots
    from .sweep import run_sweep, write_sweep

    try:
        rules = parse_rules(rules_arg)
        behaviour = load_scenario(scenario) if scenario is not None else Behaviour()
        grid = parse_sweep(sweeps)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    cfg = Config(seed=seed, members=members, months=months, attackers=attackers, rules=rules,
                 behaviour=behaviour)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if grid:
        def show(p: dict[str, object]) -> None:
            click.echo(f"{p['rules']}: approved {p['honest.approved_share']} funded "
                       f"{p['honest.funded_share']} worst EV "
                       f"{p['attackers.worst_expected_value']} MUX")

        points = run_sweep(cfg, grid, show)
        write_sweep(points, grid, out, cfg, plots=not no_plots)
        click.echo(f"wrote {out / 'sweep.json'} ({len(points)} runs, "
                   f"{time.perf_counter() - started:.1f} s)")
        return
    soc = Society(cfg)

    def month(m: int) -> None:
        if m % 6 == 0 and m < months:
            click.echo(f"month {m}/{months}, {soc.driver.txs:,} txs, "
                       f"{time.perf_counter() - started:.0f} s", err=True)

    soc.run(month)
    report = build_report(soc)
    write_json(report, out / "report.json")
    plots = [] if no_plots else write_plots(report, out)
    write_markdown(report, out / "report.md", plots,
                   advice(report["targets"]["all"], report["run"]["rules_arg"]))
    h, a = report["honest"], report["attackers"]
    click.echo(f"honest approved {h['approved_share']} funded {h['funded_share']}; worst "
               f"attacker EV {a['worst_expected_value']} MUX; targets "
               f"{'met' if report['targets']['all'] else 'missed'}; "
               f"{report['ledger']['txs']} txs in {time.perf_counter() - started:.1f} s")
    click.echo(f"wrote {out / 'report.json'}")
