"""A tx signature is checked once per node, whichever path sees the tx first: the tx path
(submitted and gossiped txs) and the block path (a peer's block) share what passed
(muxernode/node.py ``CHECKED_KEPT``), and only for the very same bytes: a copy of a tx with
another signature is checked again, and refused.

Two real nodes over LevelDB in tmp dirs (tests/pair_helpers.py): A produces, B receives;
``muxer_tx_signature_checks_total`` counts the checks actually made."""

from __future__ import annotations

from pathlib import Path

from consensus.block import Block
from consensus.crypto import sha256
from consensus.tx import decode_tx
from muxernode.node import Node
from tests.pair_helpers import open_pair, transfer


def checks(n: Node, path: str) -> float:
    return float(n.metrics.signature_checks.labels(path)._value.get())


async def test_each_signature_is_checked_once_per_node(tmp_path: Path) -> None:
    pair = open_pair(tmp_path)
    a, b, payer = pair.a, pair.b, pair.payers[0]
    assert a.witness_key is not None
    wkey = a.witness_key
    try:
        fee = a.params.base_fee

        async def a_block(slot: int, raws: list[bytes]) -> Block:
            pair.clock.t = a.slot_time(slot)
            assert all("tx_id" in r for r in await a.submit_txs(raws))
            block = a.produce(slot)
            assert len(block.txs) == len(raws)
            return block

        # tx path first: B checked T's signature (its gossiped copy, say) but has not
        # admitted it yet when A's block with T arrives: the block path does not check it
        t = transfer(payer, a.chain_id, fee, 1)
        assert await b._verify([decode_tx(t, 10_000)]) == [True]
        assert (checks(b, "tx"), checks(b, "block")) == (1, 0)
        block = await a_block(1, [t])
        assert await b.accept_block(block) and b.chain.head.id == block.id
        assert (checks(b, "tx"), checks(b, "block")) == (1, 0)

        # block path first: the tx path's later check of the same bytes is skipped
        u = transfer(payer, a.chain_id, fee, 2)
        block = await a_block(2, [u])
        assert await b.accept_block(block) and b.chain.head.id == block.id
        assert (checks(b, "tx"), checks(b, "block")) == (1, 1)
        assert await b._verify([decode_tx(u, 10_000)]) == [True]
        assert (checks(b, "tx"), checks(b, "block")) == (1, 1)

        # the same tx id with another signature is checked, and the block refused
        v = transfer(payer, a.chain_id, fee, 3)
        assert await b._verify([decode_tx(v, 10_000)]) == [True]
        good = await a_block(3, [v])
        forged_tx = decode_tx(v[:-1] + bytes([v[-1] ^ 1]), 10_000)
        assert forged_tx.tx_id == good.txs[0].tx_id and forged_tx.raw != v
        forged = Block.build(wkey, a.chain_id, good.height, good.previous_id,
                             good.timestamp, [forged_tx], [], sha256(b"any state"))
        before = checks(b, "block")
        assert await b.accept_block(forged) is False
        assert checks(b, "block") == before + 1
        assert await b.accept_block(good) and b.chain.head.id == good.id
        assert checks(b, "block") == before + 1  # the honest copy: checked on the tx path
    finally:
        pair.close()
