"""A running node re-checks its mempool after a new head a chunk at a time
(muxernode/follower.py ``recheck_loop``, ``RECHECK_CHUNK``): right after a block only the
first chunk is done, the rest follows between the node's other work, and the pool ends as
a whole re-check leaves it. Two real nodes over LevelDB in tmp dirs: A produces, B holds
a pool larger than a chunk, part of which A's block makes invalid."""

from __future__ import annotations

from pathlib import Path

import trio

from muxernode.node import RECHECK_CHUNK
from tests.pair_helpers import open_pair, transfer


async def test_a_running_node_rechecks_its_pool_a_chunk_at_a_time(tmp_path: Path) -> None:
    pair = open_pair(tmp_path, accounts_n=2)
    a, b, clock = pair.a, pair.b, pair.clock
    payer, other = pair.payers[:2]
    try:
        fee = b.params.base_fee
        balance = b.ledger.state.get(b"a" + payer.address)[0]
        n = 2 * RECHECK_CHUNK + 50
        # B's pool: n small transfers from payer (each valid on B's view), then n from
        # another account that nothing spends
        mine = [transfer(payer, b.chain_id, fee, 1, f"p{i}") for i in range(n)]
        theirs = [transfer(other, b.chain_id, fee, 1, f"o{i}") for i in range(n)]
        assert all("tx_id" in r for r in await b.submit_txs(mine + theirs, relay=False))
        assert len(b.mempool) == 2 * n
        # A's block spends all but 10 txs' worth of payer's balance another way
        keep = 10
        spend = transfer(payer, a.chain_id, fee, balance - fee - keep * (fee + 1), "all")
        assert "tx_id" in (await a.submit_txs([spend], relay=False))[0]
        clock.t = a.slot_time(1)
        block = a.produce(1)
        assert len(block.txs) == 1

        async with trio.open_nursery() as nursery:
            b._nursery = nursery  # as in Node.run: re-checks go to recheck_loop
            nursery.start_soon(b.recheck_loop)
            assert await b.accept_block(block) and b.chain.head.id == block.id
            # only the first chunk so far: the rest waits, still in the pool
            assert b.mempool.unchecked == 2 * n - RECHECK_CHUNK
            assert len(b.mempool) > n + keep
            with trio.fail_after(10):
                while b.mempool.unchecked:
                    await trio.sleep(0.01)
            b.stop()
            b._recheck_wakeup.set()
        # as a whole re-check: payer's first `keep` txs stay, every other account's too
        left = {tx.raw for tx in b.mempool.pending()}
        assert left == set(mine[:keep]) | set(theirs)
        assert b.mempool.dropped == n - keep
    finally:
        b._nursery = None
        pair.close()
