"""RPC intake adapts to how late peers' blocks arrive (muxernode/intake.py
``TxIntake.adapt``): late blocks cut the share of the mempool's room open to new RPC txs
(multiplicatively, to a floor), blocks in time give it back (additively); the refused txs
get ``mempool_full`` before any signature check. And the gossip path's batching: the
batches queued meanwhile are checked together, every tx once. Two real nodes over
LevelDB in tmp dirs sharing a clock: A produces, B follows and takes the RPC txs."""

from __future__ import annotations

from pathlib import Path

import trio

from consensus.tx import decode_tx
from muxernode.config import NodeConfig
from muxernode.node import INTAKE_CUT, INTAKE_MIN, INTAKE_STEP, LATE_S, ON_TIME_S, Node
from tests.pair_helpers import open_pair, transfer


async def test_late_blocks_cut_the_rpc_intake_and_blocks_in_time_restore_it(
        tmp_path: Path) -> None:
    # B's room for RPC txs: max(block_txs, 3 s of recent blocks' txs) x intake share
    pair = open_pair(tmp_path, b_config=NodeConfig(rpc_port=0, block_txs=100))
    a, b, clock, payer = pair.a, pair.b, pair.clock, pair.payers[0]
    slot = 0

    async def a_block(late: float) -> None:
        nonlocal slot
        slot += 1
        clock.t = a.slot_time(slot)
        block = a.produce(slot)
        clock.t = a.slot_time(slot) + late  # when it reaches B
        assert await b.accept_block(block) and b.chain.head.id == block.id

    try:
        fee = b.params.base_fee
        interval = b.params.block_interval_s
        assert b.intake == 1.0
        await a_block(LATE_S * interval + 0.2)
        assert b.intake == INTAKE_CUT
        for _ in range(20):
            await a_block(LATE_S * interval + 0.2)
        assert b.intake == INTAKE_MIN
        metric = b.metrics.intake._value.get()
        assert metric == INTAKE_MIN
        # between the two thresholds: no change
        await a_block((LATE_S + ON_TIME_S) / 2 * interval)
        assert b.intake == INTAKE_MIN
        # the share left: 100 x 0.1 = 10 of 50 txs admitted, the rest refused unchecked
        raws = [transfer(payer, b.chain_id, fee, memo=f"m{i}") for i in range(50)]
        checks = b.metrics.signature_checks.labels("tx")._value.get()
        results = await b.submit_txs(raws, relay=False)
        admitted = [r for r in results if "tx_id" in r]
        refused = [r for r in results if "error" in r]
        assert len(admitted) == int(100 * INTAKE_MIN) and len(refused) == 40
        assert {r["error"]["data"]["reason"] for r in refused} == {"mempool_full"}
        assert b.metrics.signature_checks.labels("tx")._value.get() == checks + 10
        # blocks in time give it back, a step each
        await a_block(0.05)
        assert abs(b.intake - (INTAKE_MIN + INTAKE_STEP)) < 1e-9
        for _ in range(30):
            await a_block(0.05)
        assert b.intake == 1.0
        results = await b.submit_txs(raws[10:], relay=False)
        assert all("tx_id" in r for r in results)
    finally:
        pair.close()


def _checks(node: Node) -> float:
    return float(node.metrics.signature_checks.labels("tx")._value.get())


async def test_a_tx_twice_in_one_call_is_checked_once_and_answered_at_both_places(
        tmp_path: Path) -> None:
    pair = open_pair(tmp_path)
    b, payer = pair.b, pair.payers[0]
    try:
        fee = b.params.base_fee
        one, two = (transfer(payer, b.chain_id, fee, memo=m) for m in ("x", "y"))
        checks = _checks(b)
        results = await b.submit_txs([one, two, one], relay=False, gossip=True)
        assert results[0] == results[2] and "tx_id" in results[0] and "tx_id" in results[1]
        assert _checks(b) == checks + 2 and len(b.mempool) == 2
    finally:
        pair.close()


async def test_queued_gossip_batches_are_admitted_together_with_their_own_verdicts(
        tmp_path: Path) -> None:
    # three peers' batches queued before the gossip loop runs: it takes them as one call
    # (overlapping txs checked once), and what each peer sent gets its own verdict
    pair = open_pair(tmp_path)
    b, payer = pair.b, pair.payers[0]
    try:
        fee = b.params.base_fee
        txs = [transfer(payer, b.chain_id, fee, memo=f"g{i}") for i in range(7)]
        forged = bytearray(transfer(payer, b.chain_id, fee, memo="forged"))
        forged[-1] ^= 1
        b.tx_intake.queue_gossip(b"p1", txs[:5])
        b.tx_intake.queue_gossip(b"p2", [*txs[3:], bytes(forged)])
        b.tx_intake.queue_gossip(b"p3", txs[:1])
        b.tx_intake.close_gossip()
        checks = _checks(b)
        with trio.fail_after(10):
            await b.tx_intake.gossip_loop()
        ids = {decode_tx(t, 10_000).tx_id for t in txs}
        assert {tx.tx_id for tx in b.mempool.pending()} == ids
        assert _checks(b) == checks + 8  # 7 distinct txs and the forged one, once each
    finally:
        pair.close()


async def test_a_gossiped_tx_a_recent_block_carries_is_refused_before_its_check(
        tmp_path: Path) -> None:
    # the recent blocks' tx ids are kept in memory (no store read per offered id); a pop
    # takes its block's txs out again
    pair = open_pair(tmp_path)
    a, b, clock, payer = pair.a, pair.b, pair.clock, pair.payers[0]
    try:
        fee = b.params.base_fee
        raw = transfer(payer, b.chain_id, fee, memo="carried")
        tx_id = decode_tx(raw, 10_000).tx_id
        assert "tx_id" in (await a.submit_txs([raw], relay=False))[0]
        clock.t = a.slot_time(1)
        block = a.produce(1)
        assert [t.tx_id for t in block.txs] == [tx_id]
        assert a.tx_intake.recently_included(tx_id)  # the producer's own block too
        assert not b.tx_intake.recently_included(tx_id)
        assert await b.accept_block(block)
        assert b.tx_intake.recently_included(tx_id)
        checks = _checks(b)
        result = (await b.submit_txs([raw], relay=False, gossip=True))[0]
        assert result["error"]["data"]["reason"] == "duplicate"
        assert _checks(b) == checks and len(b.mempool) == 0
        assert b.chain.final.height == 0  # no votes: the block can be popped
        b.chain.pop_block()
        assert not b.tx_intake.recently_included(tx_id)
    finally:
        pair.close()
