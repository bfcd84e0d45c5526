"""Wide-area figures of a devnet run, for ``report`` and bench/widearea.py (no plotting).

Sources, all things the devnet already has (it drives nodes only through RPC and files):

- ``metrics.jsonl`` samples: each node's final height over time (``report --seconds``
  and ``status --watch`` sample once a second; ``sample_finals`` here samples faster);
- the chain, read over RPC (``get_block``): each block's slot start (its timestamp) and
  producer;
- node logs: ``event=applied ... late_ms=N`` (how long after its slot began a block joined
  that node's chain: its propagation time to that node) and ``event=switched popped=N`` (a
  reorganisation that undid N blocks);
- the link proxy's ``state.json``: bytes per ordered pair of nodes and message type.

Finality latency of block h at node X = the first time X's final height was >= h, minus
the start of h's slot, in slots. Its resolution is the sampling period.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from devnet import cluster, procs, proxy
from devnet.load import percentile
from devnet.manifest import Manifest, NodeEntry
from devnet.rpc import NodeRpc, NodeUnreachable, RpcError

__all__ = [
    "blocks",
    "bytes_by_node",
    "finality_latency",
    "missed_slots",
    "propagation",
    "quantile",
    "reorgs",
    "sample_finals",
]

_APPLIED = re.compile(r"event=applied height=(\d+) .*?late_ms=(-?\d+)")
_SWITCHED = re.compile(r"event=switched popped=(\d+)")


def quantile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank quantile (q in 0..1) of values in any order; None for no values."""
    return percentile(sorted(values), q)


def sample_finals(m: Manifest, seconds: float, *, every: float = 0.25,
                  out: list[dict[str, Any]] | None = None,
                  record: bool = False) -> list[dict[str, Any]]:
    """Poll every node's final height ``every`` seconds for ``seconds`` (bounded) and
    return samples like metrics.jsonl's ({"t", "nodes": {name: {"final_height"}}});
    ``record`` also appends a full status (peers, mempool, /metrics) to metrics.jsonl once
    a second (for ``report``). Between those, one ``chain_info`` per node on a client kept
    for the whole sampling: a full status of 21 nodes four times a second (a new client,
    a batch and a /metrics page each) cost the machine more CPU than the load it measures."""
    samples = out if out is not None else []
    deadline = time.monotonic() + seconds
    clients = {e.name: NodeRpc(e.rpc_url, timeout=1.5) for e in m.nodes}
    last_full = float("-inf")
    try:
        with ThreadPoolExecutor(max_workers=max(1, len(m.nodes))) as pool:
            for _ in range(int(seconds / max(every, 0.01)) + 2):  # bounded in count and time
                t0 = time.monotonic()
                if t0 >= deadline:
                    break
                if record and t0 - last_full >= 1.0:
                    last_full = t0
                    st = cluster.collect_status(m)
                    cluster.append_sample(m, st, "widearea")
                    t, nodes = st["time"], {n["name"]: {k: n[k] for k in (
                        "final_height", "head_height")} for n in st["nodes"]}
                else:
                    heights = list(pool.map(lambda e: _heights(e, clients[e.name]), m.nodes))
                    # stamped once every node answered, as collect_status does
                    t = time.time()
                    nodes = {e.name: h for e, h in zip(m.nodes, heights, strict=True)}
                samples.append({"t": t, "nodes": nodes})
                time.sleep(max(0.0, every - (time.monotonic() - t0)))
    finally:
        for c in clients.values():
            c.close()
    return samples


def _heights(e: NodeEntry, rpc: NodeRpc) -> dict[str, int | None]:
    """A node's final and head height, both None when it does not answer (or is paused)."""
    if procs.node_paused(e):
        return {"final_height": None, "head_height": None}
    try:
        info = rpc.call("chain_info")
        return {"final_height": int(info["final_height"]),
                "head_height": int(info["head_height"])}
    except (NodeUnreachable, RpcError, KeyError, TypeError, ValueError):
        return {"final_height": None, "head_height": None}


def blocks(m: Manifest, top: int | None = None) -> dict[int, dict[str, Any]]:
    """height -> {"timestamp", "witness", "id"} for 1..top (default: the highest final
    height) from the first node that answers; {} if none does."""
    for e in m.nodes:
        try:
            with NodeRpc(e.rpc_url, timeout=20.0) as rpc:
                h = int(top if top is not None else rpc.call("chain_info")["final_height"])
                if h <= 0:
                    return {}
                answers = rpc.batch([("get_block", [i]) for i in range(1, h + 1)])
        except (NodeUnreachable, RpcError, KeyError, TypeError, ValueError):
            continue
        return {i: {"timestamp": a["timestamp"], "witness": a["witness"], "id": a["id"]}
                for i, a in enumerate(answers, 1) if isinstance(a, dict) and "timestamp" in a}
    return {}


def finality_latency(m: Manifest, samples: list[dict[str, Any]],
                     chain: dict[int, dict[str, Any]]) -> dict[str, list[float]]:
    """node -> finality latencies in slots, for blocks whose slot began after the first
    sample (so the moment they became final was observed)."""
    if not samples or not chain:
        return {}
    interval = float(m.block_interval_s)
    t_first = samples[0]["t"]
    out: dict[str, list[float]] = {}
    for e in m.nodes:
        lat: list[float] = []
        done = 0  # heights up to here have a latency
        for s in samples:
            f = s["nodes"].get(e.name, {}).get("final_height")
            if not isinstance(f, int) or f <= done:
                continue
            for h in range(done + 1, f + 1):
                b = chain.get(h)
                if b is not None and b["timestamp"] >= t_first:
                    lat.append(max(0.0, (s["t"] - b["timestamp"]) / interval))
            done = f
        out[e.name] = lat
    return out


def by_region(m: Manifest, per_node: dict[str, list[float]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for e in m.nodes:
        out.setdefault(e.region or "local", []).extend(per_node.get(e.name, []))
    return out


def _log_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def propagation(m: Manifest) -> dict[str, list[float]]:
    """node -> ms after its slot began that each peer's block joined its chain."""
    out: dict[str, list[float]] = {}
    for e in m.nodes:
        out[e.name] = [float(mt.group(2)) for line in _log_lines(e.log)
                       if (mt := _APPLIED.search(line))]
    return out


def reorgs(m: Manifest) -> dict[str, list[int]]:
    """node -> the depth (blocks undone) of each reorganisation it made."""
    out: dict[str, list[int]] = {}
    for e in m.nodes:
        out[e.name] = [int(mt.group(1)) for line in _log_lines(e.log)
                       if (mt := _SWITCHED.search(line)) and int(mt.group(1)) > 0]
    return out


def missed_slots(m: Manifest, chain: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per witness: blocks produced and slots missed over the final chain.

    Slots in the window = (last timestamp - first) / interval + 1; every active witness
    owns one slot per round of len(witnesses) slots, so each is expected to produce
    slots // witnesses blocks: missed = expected - produced (at least 0). The total
    (slots - blocks) is exact; a witness's share is exact over whole rounds."""
    if not chain:
        return {"slots": 0, "blocks": 0, "per_witness": {}}
    heights = sorted(chain)
    t0, t1 = chain[heights[0]]["timestamp"], chain[heights[-1]]["timestamp"]
    slots = int((t1 - t0) // m.block_interval_s) + 1
    witnesses = [e.witness for e in m.nodes if e.witness]
    produced = dict.fromkeys(witnesses, 0)
    for h in heights:
        w = chain[h]["witness"]
        produced[w] = produced.get(w, 0) + 1
    expected = slots // max(1, len(produced))  # whole rounds: no witness is blamed for
    name_of = {e.witness: e.name for e in m.nodes if e.witness}  # a partial round
    per = {name_of.get(w, w[:12]): {"produced": p, "missed": max(0, expected - p)}
           for w, p in produced.items()}
    return {"slots": slots, "blocks": len(heights), "missed": max(0, slots - len(heights)),
            "per_witness": per}


def bytes_by_node(m: Manifest) -> dict[str, dict[str, dict[str, int]]]:
    """node -> {"out": {msg type: bytes}, "in": {...}} from the proxy's counters (the p2p
    bytes between nodes; RPC does not go through the proxy)."""
    st = proxy.read_state(m.proxy_dir) or {}
    out: dict[str, dict[str, dict[str, int]]] = {e.name: {"out": {}, "in": {}}
                                                 for e in m.nodes}
    for key, tally in (st.get("traffic") or {}).items():
        a, _, b = key.partition(">")
        for kind, n in tally.items():
            for node, way in ((a, "out"), (b, "in")):
                d = out.setdefault(node, {"out": {}, "in": {}})[way]
                d[kind] = d.get(kind, 0) + int(n)
    return out


def save(m: Manifest, name: str, doc: dict[str, Any]) -> Path:
    path = m.dir / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path
