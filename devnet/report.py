"""``report``: plots and a Markdown summary from the samples in ``<dir>/metrics.jsonl``
(written once a second by ``up``, ``status --watch``, ``load`` and ``report --seconds``) and
the load results in ``<dir>/load/``. Uses matplotlib with the Agg backend (no display).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from devnet import cluster
from devnet.manifest import DevnetError, Manifest

__all__ = ["read_samples", "sample_for", "write_report"]


def read_samples(m: Manifest) -> list[dict[str, Any]]:
    path = m.dir / "metrics.jsonl"
    out: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if isinstance(doc, dict) and isinstance(doc.get("nodes"), dict):
            out.append(doc)
    out.sort(key=lambda d: d.get("t", 0))
    return out


def sample_for(m: Manifest, seconds: float, *, on_sample: Any = None) -> int:
    """Append one sample per second for ``seconds``; returns how many were written."""
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        st = cluster.collect_status(m)
        cluster.append_sample(m, st, "report")
        n += 1
        if on_sample is not None:
            on_sample(st)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    return n


def latest_load(m: Manifest) -> tuple[Path, dict[str, Any]] | None:
    d = m.dir / "load"
    files = sorted(d.glob("*.json"), key=lambda p: p.stat().st_mtime) if d.is_dir() else []
    for p in reversed(files):
        try:
            return p, json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return None


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def write_report(m: Manifest, out: Path | None = None) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DevnetError("report needs matplotlib: pip install -e '.[bench]' (the bench "
                          "extra, which `make install` installs)") from None

    samples = read_samples(m)
    if not samples:
        raise DevnetError(f"no samples in {m.dir / 'metrics.jsonl'}: run `python -m devnet "
                          f"report --seconds 30 --dir {m.dir}` (or keep `up` running) first")
    out = out or (m.dir / "report.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = samples[0]["t"]
    names = sorted({n for s in samples for n in s["nodes"]},
                   key=lambda n: (len(n), n))
    images: list[tuple[str, str]] = []

    def series(key: str, name: str) -> tuple[list[float], list[float]]:
        # NaN where the node had no value (stopped, unreachable): the line breaks there
        xs, ys = [], []
        for s in samples:
            v = s["nodes"].get(name, {}).get(key)
            xs.append(s["t"] - t0)
            ys.append(float("nan") if v is None else float(v))
        return xs, ys

    # heights
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, name in enumerate(names):
        color = f"C{i % 10}"
        ax.plot(*series("head_height", name), color=color, label=f"{name} head")
        ax.plot(*series("final_height", name), color=color, linestyle="--",
                label=f"{name} final")
    cut_x = [s["t"] - t0 for s in samples if s.get("cut")]
    if cut_x:
        ax.scatter(cut_x, [0] * len(cut_x), marker="|", color="red", label="links cut")
    ax.set_xlabel("seconds")
    ax.set_ylabel("height")
    ax.set_title("Head (solid) and final (dashed) height per node")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(out.parent / "heights.png", dpi=100)
    plt.close(fig)
    images.append(("Heights", "heights.png"))

    # tx rate and mempool
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for i, name in enumerate(names):
        ax1.plot(*series("tx_rate", name), color=f"C{i % 10}", label=name)
        ax2.plot(*series("mempool", name), color=f"C{i % 10}", label=name)
    ax1.set_ylabel("included tx/s (node, 10 s)")
    ax2.set_ylabel("mempool txs")
    ax2.set_xlabel("seconds")
    ax1.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out.parent / "txrate.png", dpi=100)
    plt.close(fig)
    images.append(("Transactions", "txrate.png"))

    load = latest_load(m)
    if load is not None:
        _path, res = load
        lat = res.get("latencies_s") or []
        if lat:
            fig, ax = plt.subplots(figsize=(9, 4))
            ax.hist(lat, bins=min(50, max(5, len(lat) // 10)), color="C0")
            for q, style in (("p50", "--"), ("p99", ":")):
                v = res["latency_s"].get(q)
                if v is not None:
                    ax.axvline(v, color="black", linestyle=style, label=f"{q} {v:.2f} s")
            ax.set_xlabel("submission to final (s)")
            ax.set_ylabel("txs")
            ax.set_title(f"Latency of load {res.get('name')!r}")
            ax.legend()
            fig.tight_layout()
            fig.savefig(out.parent / "latency.png", dpi=100)
            plt.close(fig)
            images.append(("Latency", "latency.png"))
        per = res.get("per_second") or []
        if per:
            fig, ax = plt.subplots(figsize=(9, 4))
            ax.plot([p[0] for p in per], [p[1] for p in per], label="accepted / s")
            ax.plot([p[0] for p in per], [p[2] for p in per], label="final / s")
            ax.axhline(res.get("target_tps", 0), color="grey", linestyle=":", label="target")
            ax.set_xlabel("seconds since the load started")
            ax.set_ylabel("tx/s")
            ax.legend()
            fig.tight_layout()
            fig.savefig(out.parent / "load.png", dpi=100)
            plt.close(fig)
            images.append(("Load", "load.png"))

    last = samples[-1]
    lines = [
        "# Devnet report",
        "",
        f"- directory: `{m.dir}`",
        f"- chain id: `{m.chain_id}`",
        f"- block interval: {m.block_interval_s} s; nodes: {len(m.nodes)}; "
        f"witnesses: {sum(1 for n in m.nodes if n.witness)}",
        f"- samples: {len(samples)} over {samples[-1]['t'] - t0:.0f} s "
        f"(from {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(t0))})",
        "",
        "## Nodes at the last sample",
        "",
        "| node | running | head | final | peers | mempool | tx/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        n = last["nodes"].get(name, {})
        lines.append(f"| {name} | {n.get('running')} | {_fmt(n.get('head_height'))} | "
                     f"{_fmt(n.get('final_height'))} | {_fmt(n.get('peers'))} | "
                     f"{_fmt(n.get('mempool'))} | {_fmt(n.get('tx_rate'), 1)} |")
    if load is not None:
        path, res = load
        lat = res.get("latency_s", {})
        rej = res.get("rejected", {})
        lines += [
            "",
            f"## Load `{res.get('name')}` ({path.name})",
            "",
            "| target tx/s | duration | accepted | achieved tx/s | final | rejected | "
            "unreachable | p50 | p90 | p99 | max |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {_fmt(res.get('target_tps'), 1)} | {_fmt(res.get('window_s'), 1)} s | "
            f"{res.get('accepted')} | {_fmt(res.get('achieved_tps'), 1)} | {res.get('final')} | "
            f"{sum(rej.values())} | {res.get('unreachable')} | {_fmt(lat.get('p50'))} s | "
            f"{_fmt(lat.get('p90'))} s | {_fmt(lat.get('p99'))} s | {_fmt(lat.get('max'))} s |",
            "",
            f"Mix: {res.get('mix')}; ops sent: {res.get('ops')}.",
        ]
        if rej:
            lines.append(f"Rejections by op:reason: {rej}.")
    for title, img in images:
        lines += ["", f"## {title}", "", f"![{title}]({img})"]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
