"""Rich rendering of the devnet status (the live table of ``up`` and ``status``)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

__all__ = ["status_table"]


def _n(x: Any, fmt: str = "{}") -> str:
    return "-" if x is None else fmt.format(x)


def status_table(status: dict[str, Any], *, title: str | None = None) -> Table:
    chain = status.get("chain_id", "")[:16]
    t = Table(title=title or f"devnet {status.get('dir')}  chain {chain}…",
              title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    regions = any(n.get("region") for n in status["nodes"])  # a topology: show regions
    cols = [("node", "left"), *([("region", "left")] if regions else []), ("state", "left"),
            ("pid", "right"), ("witness", "left"), ("height", "right"), ("final", "right"),
            ("lag", "right"), ("peers", "right"), ("mempool", "right"), ("tx/s", "right")]
    for col, just in cols:
        t.add_column(col, justify=just, no_wrap=True, min_width=len(col))  # type: ignore[arg-type]
    for n in status["nodes"]:
        if not n["running"]:
            state = "[red]stopped[/red]"
        elif n.get("paused"):
            state = "[yellow]paused[/yellow]"
        elif not n["reachable"]:
            state = "[yellow]no rpc[/yellow]"
        else:
            state = "[green]up[/green]"
        lag = None
        if n["head_height"] is not None and n["final_height"] is not None:
            lag = n["head_height"] - n["final_height"]
        t.add_row(
            n["name"], *((n.get("region") or "-",) if regions else ()), state, _n(n["pid"]),
            (n["witness"] or "")[:8] + ("…" if n["witness"] else "-"),
            _n(n["head_height"]), _n(n["final_height"]), _n(lag), _n(n["peers"]),
            _n(n["mempool"]), _n(n["tx_rate"], "{:.1f}"),
        )
    p = status.get("proxy", {})
    cut = p.get("cut") or []
    cut_text = ", ".join("|".join(c) for c in cut) if cut else "none"
    if p.get("isolated"):
        cut_text += f"; disconnected: {', '.join(p['isolated'])}"
    t.caption = (f"proxy {'pid ' + str(p.get('pid')) if p.get('running') else 'NOT RUNNING'}; "
                 f"links cut: {cut_text}" + (f" ({p.get('mode')})" if cut else ""))
    t.caption_justify = "left"
    return t
