"""``report``: plots and a Markdown summary from the samples in ``<dir>/metrics.jsonl``
(written once a second by ``up``, ``status --watch``, ``load`` and ``report --seconds``) and
the load results in ``<dir>/load/``. Uses matplotlib with the Agg backend (no display).

The wide-area part (devnet/analysis.py computes it; docs/research.md explains each figure):
finality latency per region, block propagation time to each node, missed slots per
witness, reorganisations and their depth, bytes in and out per node and message type.
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
    lines += _widearea(m, samples, out.parent, plt, images)
    for title, img in images:
        lines += ["", f"## {title}", "", f"![{title}]({img})"]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def _q(xs: list[float], q: float, digits: int = 2) -> str:
    from devnet.analysis import quantile

    return _fmt(quantile(xs, q), digits)


def _boxplot(plt: Any, data: dict[str, list[float]], ylabel: str, title: str, where: Path,
             name: str, images: list[tuple[str, str]]) -> None:
    """One box per key with values (whiskers p1..p99), saved as ``name``."""
    keys = [k for k, xs in data.items() if xs]
    if not keys:
        return
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(keys) + 3), 4))
    ax.boxplot([data[k] for k in keys], tick_labels=keys, whis=(1, 99))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(where / name, dpi=100)
    plt.close(fig)
    images.append((title, name))


def _widearea(m: Manifest, samples: list[dict[str, Any]], where: Path, plt: Any,
              images: list[tuple[str, str]]) -> list[str]:
    """The wide-area sections (tables here, plots appended to ``images``)."""
    from devnet import analysis

    lines: list[str] = []
    topo = m.extra.get("topology") or {}
    chain = analysis.blocks(m)
    lines += ["", "## Topology", "",
              f"`{topo.get('name', 'loopback')}`" + (f" (source: {topo['source']})"
                                                     if topo.get("source") else "")
              + f"; link seed {m.extra.get('seed')}; "
              + ("network namespaces" if m.extra.get("netns") else "loopback") + ".", "",
              "| region | nodes | bandwidth Mbit/s | delay ms (within) |", "|---|---|---|---|"]
    for r, v in (topo.get("regions") or {}).items():
        lines.append(f"| {r} | {', '.join(v['nodes'])} | {_fmt(v.get('bandwidth_mbit'), 0)} |"
                     f" {_fmt(v.get('delay_ms'))} |")

    # finality latency per region
    per_node = analysis.finality_latency(m, samples, chain)
    regions = analysis.by_region(m, per_node)
    lines += ["", "## Finality latency per region", "",
              "Slots from a block's slot start until the node's final height reached it "
              "(resolution: the sampling period).", "",
              "| region | blocks x nodes | p50 slots | p99 slots | max |", "|---|---|---|---|---|"]
    for r, xs in regions.items():
        lines.append(f"| {r} | {len(xs)} | {_q(xs, 0.5)} | {_q(xs, 0.99)} | "
                     f"{_fmt(max(xs) if xs else None)} |")
    _boxplot(plt, regions, "finality latency (slots)",
             "Finality latency per region (whiskers p1..p99)", where, "finality_regions.png",
             images)

    # propagation
    prop = analysis.propagation(m)
    lines += ["", "## Block propagation to each node", "",
              "Milliseconds after its slot began that a peer's block joined the node's chain "
              "(node log, `applied late_ms`).", "",
              "| node | region | blocks | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|---|"]
    for e in m.nodes:
        xs = prop.get(e.name, [])
        lines.append(f"| {e.name} | {e.region} | {len(xs)} | {_q(xs, 0.5, 0)} | "
                     f"{_q(xs, 0.99, 0)} | {_fmt(max(xs) if xs else None, 0)} |")
    _boxplot(plt, prop, "ms after slot start", "Block propagation time to each node", where,
             "propagation.png", images)

    # missed slots and reorgs
    ms = analysis.missed_slots(m, chain)
    rg = analysis.reorgs(m)
    lines += ["", "## Missed slots per witness", "",
              f"{ms['blocks']} final blocks over {ms['slots']} slots: {ms.get('missed', 0)} "
              "missed (expected per witness: whole rounds, slots // witnesses).", "",
              "| witness | produced | missed |", "|---|---|---|"]
    for name, v in ms["per_witness"].items():
        lines.append(f"| {name} | {v['produced']} | {v['missed']} |")
    lines += ["", "## Reorganisations", "", "| node | reorgs | max depth | depths |",
              "|---|---|---|---|"]
    for e in m.nodes:
        d = rg.get(e.name, [])
        lines.append(f"| {e.name} | {len(d)} | {max(d) if d else 0} | "
                     f"{', '.join(map(str, d[:20])) or '-'} |")

    # bytes per node and message type
    traffic = analysis.bytes_by_node(m)
    kinds = sorted({k for v in traffic.values() for w in v.values() for k in w})
    lines += ["", "## Bytes per node (p2p, through the link proxy)", "",
              "| node | out | in | " + " | ".join(f"out {k}" for k in kinds) + " |",
              "|---|---|---|" + "---|" * len(kinds)]
    for e in m.nodes:
        t = traffic.get(e.name, {"out": {}, "in": {}})
        lines.append(f"| {e.name} | {sum(t['out'].values())} | {sum(t['in'].values())} | "
                     + " | ".join(str(t["out"].get(k, 0)) for k in kinds) + " |")
    if kinds:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
        names = [e.name for e in m.nodes]
        for ax, way in ((ax1, "out"), (ax2, "in")):
            bottom = [0.0] * len(names)
            for i, k in enumerate(kinds):
                vals = [traffic.get(n, {}).get(way, {}).get(k, 0) / 1e6 for n in names]
                ax.bar(names, vals, bottom=bottom, color=plt.cm.tab20(i % 20), label=k)
                bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
            ax.set_title(f"bytes {way} per node (MB)")
        ax2.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        fig.savefig(where / "bytes.png", dpi=100)
        plt.close(fig)
        images.append(("Bytes per node and message type", "bytes.png"))
    return lines
