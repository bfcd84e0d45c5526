"""Sync from final blocks (muxernode/sync.py ``BlockSync.final_by_votes``; docs/security.md).

Real nodes in the simulation: four witnesses make a chain with txs, then a fresh observer
syncs it. By default it checks no tx signature of the blocks the synced ranges' own votes
make final (counted by the node's signature metric and by its sync counters); with
``verify_all_signatures`` it checks every one. The vote count itself is tried on the
synced chain with its votes removed or their signatures broken: nothing is trusted then,
so every block is verified in full.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from consensus.block import Block
from consensus.vote import Vote
from muxernode import sync
from muxernode.node import Node
from tests.sim import Faults, Sim, SimConfig, run_sim, wait_for

OBSERVER = 4
LOAD_UNTIL = 20  # slots with txs; the chain is final well past them when the observer joins


def block_checks(node: Node) -> float:
    value = node.metrics.registry.get_sample_value("muxer_tx_signature_checks_total",
                                                   {"path": "block"})
    return value or 0.0


async def load(sim: Sim) -> None:
    """Ten transfers a slot to node 0, until LOAD_UNTIL."""
    k = 0
    while sim.current_slot() < LOAD_UNTIL:
        await sim.run_until_slot(sim.current_slot() + 1, 0.3)
        raws = [sim.make_tx(i % 4, [1, sim.account_keys[(i + 1) % 4].address, 1000 + k + i,
                                    ""], salt=i % 7) for i in range(10)]
        k += 10
        await sim.submit(0, raws)


def chain_blocks(node: Node) -> list[Block]:
    chain = node.chain
    out: list[Block] = []
    for h in range(1, chain.head.height + 1):
        bid = chain.block_id_at(h)
        block = chain.get_block(bid) if bid is not None else None
        assert block is not None
        out.append(block)
    return out


def sync_observer(seed: int, root: Path, *, verify_all: bool) -> dict[str, Any]:
    cfg = SimConfig(witnesses=4, observers=1, accounts=4, faults=Faults(delay=(0.005, 0.02)))

    async def scenario(sim: Sim) -> dict[str, Any]:
        sim.nursery.start_soon(load, sim)
        await sim.run_until_slot(LOAD_UNTIL + 10)
        await sim.start(OBSERVER)
        node = sim.node(OBSERVER)
        node.config.verify_all_signatures = verify_all
        await wait_for(sim, "observer synced",
                       lambda: node.chain.final.height >= LOAD_UNTIL + 5, max_slots=40)
        synced = chain_blocks(node)
        out: dict[str, Any] = {
            "txs": sum(len(b.txs) for b in synced),
            "trusted": node.block_sync.txs_trusted,
            "checked": node.block_sync.txs_checked,
            "block_checks": block_checks(node),
            "digest": node.chain.head.id == sim.node(0).chain.block_id_at(
                node.chain.head.height),
        }
        # the vote count over the synced chain, fed again from our final block: with the
        # votes removed or their signatures broken, nothing is final by them
        node.chain.final = node.chain.genesis_ref
        window = synced[:LOAD_UNTIL + 5]
        out["recount"] = len(node.block_sync.final_by_votes(window))
        out["no_votes"] = len(node.block_sync.final_by_votes(
            [Block(b.header(), b.signature, b.txs, []) for b in window]))

        def broken(v: Vote) -> Vote:
            sig = bytes([v.signature[0] ^ 1]) + v.signature[1:]
            return dataclasses.replace(v, signature=sig)

        out["bad_votes"] = len(node.block_sync.final_by_votes(
            [Block(b.header(), b.signature, b.txs, [broken(v) for v in b.votes])
             for b in window]))
        return out

    res, out = run_sim(seed, cfg, scenario, root, start=range(4))
    assert not res.misbehaviour()
    return out


@pytest.mark.parametrize("verify_all", [False, True])
def test_a_syncing_node_skips_the_signatures_of_final_blocks(tmp_path: Path,
                                                             verify_all: bool) -> None:
    out = sync_observer(1, tmp_path, verify_all=verify_all)
    assert out["txs"] >= 10 * (LOAD_UNTIL - 5)
    assert out["digest"]  # the observer's chain is the witnesses' chain
    if verify_all:
        assert out["trusted"] == 0
        assert out["checked"] >= out["txs"]
        assert out["block_checks"] >= out["txs"]  # every tx signature checked
    else:
        assert out["trusted"] >= out["txs"] - 10  # all but a block at the tail at most
        assert out["block_checks"] <= out["txs"] - out["trusted"]
    # the recount trusts all but the last blocks of the window; no votes or bad ones:
    # nothing
    assert out["recount"] >= LOAD_UNTIL
    assert out["no_votes"] == 0 and out["bad_votes"] == 0


def test_the_unfinal_end_of_each_range_waits_for_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ranges of 4 blocks: a range's last blocks are never final by its own votes; far
    # behind the head they are kept back and made final by the next range's votes, so
    # no tx signature of the synced chain is checked at all (without the tail kept back,
    # the last two or three blocks of every range were)
    monkeypatch.setattr(sync, "SYNC_BATCH", 4)
    out = sync_observer(2, tmp_path, verify_all=False)
    assert out["txs"] >= 10 * (LOAD_UNTIL - 5) and out["digest"]
    assert out["trusted"] == out["txs"] and out["block_checks"] == 0
