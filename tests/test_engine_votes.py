"""The consensus engine keeps each tree block's slot and votes (consensus/engine.py): a
pop during a fork switch recounts the chain view from them instead of decoding the main
chain's blocks again. The recount must give what the store gives: checked against a
node reopened on the same data (its engine rebuilds from the stored blocks), on real
LevelDB, with a witness that votes every slot (its votes ride in the next blocks)."""

from __future__ import annotations

from pathlib import Path

from muxernode.config import NodeConfig
from muxernode.node import Node
from tests.pair_helpers import open_pair


async def test_a_recount_from_the_tree_equals_the_one_from_the_stored_blocks(
        tmp_path: Path) -> None:
    pair = open_pair(tmp_path)
    a, b, clock = pair.a, pair.b, pair.clock
    try:
        for slot in range(1, 9):
            clock.t = a.slot_time(slot)
            block = a.produce(slot)
            a.cast_vote(slot)
            assert await b.accept_block(block)
        blocks = [b.chain.get_block(b.chain.block_id_at(h) or b"")
                  for h in range(1, b.chain.head.height + 1)]
        assert sum(len(x.votes) for x in blocks if x is not None) >= 6  # votes included
        before = (b.consensus.chain_view.final, b.consensus.chain_view.justified)
        # what a pop does (Consensus._follow_pop) on a chain that did not change: the
        # same view again, from memory (no block is read from the store)
        reads: list[bytes] = []
        real_get = b.chain.get_block

        def counted(block_id: bytes) -> object:
            reads.append(block_id)
            return real_get(block_id)

        b.chain.get_block = counted  # type: ignore[assignment,method-assign]
        try:
            b.consensus._recount_chain_view()
        finally:
            b.chain.get_block = real_get  # type: ignore[method-assign]
        after = (b.consensus.chain_view.final, b.consensus.chain_view.justified)
        assert after == before and after[0].slot > 0
        assert reads == []
        data = b.data_dir
    finally:
        pair.close()
    again = Node(data, NodeConfig(rpc_port=0), now=clock, inline_verify=True,
                 serve_rpc=False)
    try:
        assert (again.consensus.chain_view.final, again.consensus.chain_view.justified
                ) == after
    finally:
        again.close()
