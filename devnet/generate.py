"""``generate``: a random testnet as a scenario file, reproducible from its seed.

    python -m devnet generate --seed S --out FILE [--max-nodes N] [--duration S]

One ``random.Random(seed)`` draws, in a fixed order: the node count (3..max_nodes), the
witness count, the block interval, a topology (1-4 regions with random one-way delays,
jitter, loss and bandwidth, written inline as ``[devnet.topology]``), a load (rate, op
mix) and a schedule of perturbations filling ``duration`` seconds. Each perturbation is a
begin step, a wait, an end step, and a ``finality_resumes`` check; the run ends with the
other two invariants. The file is written by a small deterministic TOML writer (no time,
no path, no dict-order accident in it), so the same seed and options give the same bytes
on any machine; ``scenario FILE --fresh`` runs it, and the ``[devnet] seed`` also seeds
the genesis keys and the link proxy's random draws.

Perturbations are chosen so that, when each one ENDS, the network can finalise again (the
generator never kills more than a third of the witnesses at once): what the run checks is
that it does so within 10 slots, that no two final blocks ever conflict, and that every tx
that was final stays final on every node.
"""

from __future__ import annotations

import json
import random
from typing import Any

__all__ = ["dump_toml", "generate_scenario"]

REGION_NAMES = ["us-east", "us-west", "eu", "apac", "sa", "africa"]
PERTURBATIONS = ("kill", "restart", "pause", "disconnect", "partition", "link", "clock")


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)  # the shortest repr that reads back the same: the same everywhere
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def dump_toml(doc: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for what this module makes: scalars, lists, tables, arrays of
    tables (keys in insertion order)."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    arrays: list[tuple[str, list[dict[str, Any]]]] = []
    for k, v in doc.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            arrays.append((k, v))
        else:
            lines.append(f"{k} = {_value(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, t in tables:
        name = f"{prefix}{k}"
        out += f"\n[{name}]\n" + dump_toml(t, f"{name}.")
    for k, arr in arrays:
        name = f"{prefix}{k}"
        for t in arr:
            out += f"\n[[{name}]]\n" + dump_toml(t, f"{name}.")
    return out


def _topology(rng: random.Random, seed: int, nodes: int) -> dict[str, Any]:
    k = rng.randint(1, min(4, nodes))
    names = REGION_NAMES[:k]
    regions = []
    for name in names:
        regions.append({"name": name, "bandwidth_mbit": rng.choice([10, 50, 100, 1000]),
                        "delay_ms": round(rng.uniform(0.1, 2.0), 2),
                        "jitter_ms": round(rng.uniform(0.0, 0.5), 2)})
    links = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            delay = round(rng.uniform(10, 140), 1)
            links.append({"from": a, "to": b, "delay_ms": delay,
                          "jitter_ms": round(delay * rng.uniform(0.0, 0.1), 1),
                          "loss_pct": rng.choice([0.0, 0.0, 0.5, 1.0, 2.0])})
    doc: dict[str, Any] = {"name": f"generated-{seed}",
                           "source": "random (python -m devnet generate)",
                           "region": regions}
    if links:
        doc["link"] = links
    return doc


def _wait(seconds: float) -> dict[str, Any]:
    return {"kind": "wait", "seconds": round(seconds, 1)}


def _perturbation(rng: random.Random, kind: str, nodes: list[str], witnesses: list[str],
                  hold: float, regions: list[str]) -> list[dict[str, Any]]:
    node = rng.choice(witnesses)
    label = f"{kind} for {hold:g} s"
    if kind == "kill":
        return [{"kind": "kill", "node": node, "signal": "KILL", "label": label},
                _wait(hold), {"kind": "start", "node": node}]
    if kind == "restart":
        return [{"kind": "restart", "node": node, "label": label}]
    if kind == "pause":
        return [{"kind": "pause", "node": node, "label": label}, _wait(hold),
                {"kind": "resume", "node": node}]
    if kind == "disconnect":
        return [{"kind": "disconnect", "node": node, "mode": rng.choice(["drop", "reset"]),
                 "label": label}, _wait(hold), {"kind": "connect", "node": node}]
    if kind == "partition":
        shuffled = nodes[:]
        rng.shuffle(shuffled)
        cut = rng.randint(1, len(nodes) - 1)
        groups = [sorted(shuffled[:cut], key=lambda n: int(n[1:])),
                  sorted(shuffled[cut:], key=lambda n: int(n[1:]))]
        return [{"kind": "partition", "groups": "/".join(",".join(g) for g in groups),
                 "mode": rng.choice(["drop", "reset"]), "label": label},
                _wait(hold), {"kind": "heal"}]
    if kind == "link":
        a = rng.choice([*regions, node])
        b = rng.choice([*(r for r in regions if r != a), "all"])
        return [{"kind": "link", "a": a, "b": b, "delay": f"{rng.randint(100, 400)}ms",
                 "jitter": f"{rng.randint(0, 50)}ms", "loss": f"{rng.choice([1, 2, 5])}%",
                 "label": label}, _wait(hold),
                {"kind": "link", "a": a, "b": b, "reset": True}]
    if kind == "clock":
        offset = round(rng.uniform(-0.4, 0.4), 2)
        return [{"kind": "clock", "node": node, "offset": offset, "label": label},
                _wait(hold), {"kind": "clock", "node": node, "offset": 0.0}]
    raise ValueError(kind)


def generate_scenario(seed: int, *, max_nodes: int = 21, duration: float = 120.0) -> str:
    """The scenario file's text for ``seed`` (same arguments, same bytes)."""
    rng = random.Random(seed)
    max_nodes = max(3, min(21, max_nodes))
    n = rng.randint(3, max_nodes)
    witnesses = rng.randint(max(3, (n + 1) // 2), n)
    interval = rng.choice([1, 1, 2])
    topo = _topology(rng, seed, n)
    regions = [r["name"] for r in topo["region"]]
    names = [f"n{i + 1}" for i in range(n)]
    wnames = names[:witnesses]
    tps = rng.choice([2, 5, 10, 20])
    mix = {"transfer": rng.randint(2, 6), "pledge": rng.randint(0, 2),
           "vote": rng.randint(0, 2), "give": rng.randint(0, 1)}
    mix_text = ",".join(f"{k}:{v}" for k, v in mix.items() if v)

    steps: list[dict[str, Any]] = [
        {"kind": "wait", "label": "finality is advancing", "until": "final_advance", "by": 1,
         "timeout": 60},
        {"kind": "load", "label": f"background load, {tps} tx/s", "name": "bg", "tps": tps,
         "duration": round(duration + 5, 1), "mix": mix_text, "background": True,
         "drain": 40, "seed": seed},
    ]
    t = 0.0
    count = 0
    while t < duration:
        kind = rng.choice(PERTURBATIONS)
        hold = float(rng.randint(2, 8) * interval)
        gap = float(rng.randint(1, 4))
        steps.append(_wait(gap))
        steps += _perturbation(rng, kind, names, wnames, hold, regions)
        steps.append({"kind": "assert", "check": "finality_resumes", "within_slots": 10})
        count += 1
        t += gap + hold + 10 * interval / 2  # the resume check takes a few slots
    steps += [
        {"kind": "wait", "load": "bg", "label": "the load finishes and drains"},
        {"kind": "assert", "check": "no_conflicting_final"},
        {"kind": "assert", "check": "final_txs_kept", "load": "bg", "timeout": 60},
    ]
    doc: dict[str, Any] = {
        "description": f"generated testnet, seed {seed}: {n} nodes, {witnesses} witnesses, "
                       f"{len(regions)} region(s), {interval} s blocks, {count} "
                       f"perturbation(s), {tps} tx/s",
        "invariants": ["no_conflicting_final", "finality_resumes", "final_txs_kept"],
        "generated": {"seed": seed, "max_nodes": max_nodes, "duration": duration},
        "devnet": {"nodes": n, "witnesses": witnesses, "block_interval": interval,
                   "accounts": 20, "seed": seed, "min_nodes": n, "topology": topo},
        "step": steps,
    }
    header = (f"# Generated by: python -m devnet generate --seed {seed} --max-nodes "
              f"{max_nodes} --duration {duration:g}\n"
              f"# Run it:       python -m devnet scenario FILE --fresh\n"
              f"# The same command writes these same bytes; see docs/research.md.\n\n")
    return header + dump_toml(doc)
