"""Subscriptions through a reorganisation, in the deterministic simulation (tests/sim.py).

Four real nodes, a 2|2 partition in which both sides extend their own branch, then the
heal: one side switches branches. A subscriber on every node's event hub (the hub the
node's WebSocket serves; the simulation runs no RPC server) must see its heads in chain
order, the switch marked ``"reorg": true``, the last head equal to the node's head, and
its final blocks one per height, in order, each the node's block at that height.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from muxernode.events import Subscriber
from tests.sim import Faults, Sim, SimConfig, run_sim, same_chain, wait_for


def drain(sub: Subscriber) -> dict[str, list[dict[str, Any]]]:
    """Every notification queued for ``sub``, by subscription id, in order."""
    out: dict[str, list[dict[str, Any]]] = {}
    while (text := sub.pop()) is not None:
        params = json.loads(text)["params"]
        out.setdefault(params["subscription"], []).append(params["result"])
    return out


async def split_and_heal(sim: Sim) -> dict[str, Any]:
    everyone = [0, 1, 2, 3]
    subs = []
    for i in everyone:
        hub = sim.node(i).app_service.hub
        sub = Subscriber(max_unread=10**6)
        subs.append((sub, hub.subscribe(sub, "heads", None), hub.subscribe(sub, "final", None)))
    await sim.run_until_slot(6)
    sim.partition([0, 1], [2, 3])
    await sim.run_until_slot(14, 0.9)
    sim.heal()
    await wait_for(sim, "convergence", lambda: same_chain(sim, everyone), max_slots=60)
    await sim.run_until_slot(sim.current_slot() + 3, 0.9)
    out: dict[str, Any] = {}
    for i, (sub, heads_sid, final_sid) in enumerate(subs):
        chain = sim.node(i).chain
        got = drain(sub)
        heads, finals = got.get(heads_sid, []), got.get(final_sid, [])
        out[str(i)] = {"heads": heads, "finals": finals, "head": chain.head.id.hex(),
                       "final_ids": {f["height"]: chain.block_id_at(f["height"])
                                     for f in finals}}
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_heads_in_chain_order_through_a_reorg(seed: int, tmp_path: Path) -> None:
    cfg = SimConfig(witnesses=4, faults=Faults(delay=(0.005, 0.03)))
    _res, seen = run_sim(seed, cfg, split_and_heal, tmp_path)
    reorgs = 0
    for i, got in seen.items():
        heads = got["heads"]
        assert heads, f"node {i} announced no head"
        for prev, cur in itertools.pairwise(heads):
            if cur.get("reorg"):
                reorgs += 1
                assert cur["height"] <= prev["height"] + 1
            else:
                assert cur["height"] == prev["height"] + 1, (i, prev, cur)
        assert heads[-1]["id"] == got["head"], f"node {i}: the last head is not the head"
        heights = [f["height"] for f in got["finals"]]
        assert heights == list(range(heights[0], heights[0] + len(heights))), heights
        for f in got["finals"]:
            assert got["final_ids"][f["height"]].hex() == f["id"]
    assert reorgs >= 1, "after the heal one side switches branches"
