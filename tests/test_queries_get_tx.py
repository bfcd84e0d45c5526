"""get_tx finds an included tx through its block's id map (muxernode/queries.py
``TX_MAPS``): right status and height for every tx of several blocks, more blocks than
the maps kept, on a real node over LevelDB."""

from __future__ import annotations

from hashlib import sha256
from pathlib import Path

from consensus.tx import tx_id_of
from muxernode.queries import TX_MAPS
from tests.pair_helpers import open_pair, transfer


async def test_get_tx_of_many_blocks_through_the_maps(tmp_path: Path) -> None:
    pair = open_pair(tmp_path, accounts_n=1)
    a = pair.a
    try:
        fee = a.params.base_fee
        payer = pair.payers[0]
        where: dict[bytes, int] = {}
        blocks = TX_MAPS + 3
        for slot in range(1, blocks + 1):
            raws = [transfer(payer, a.chain_id, fee, 1, f"s{slot}.{i}") for i in range(5)]
            assert all("tx_id" in r for r in await a.submit_txs(raws, relay=False))
            pair.clock.t = a.slot_time(slot)
            block = a.produce(slot)
            assert len(block.txs) == 5
            for raw in raws:
                where[tx_id_of(raw)] = block.height
        # every tx, oldest blocks last (their maps were dropped meanwhile) and twice
        for _ in range(2):
            for tx_id, height in sorted(where.items(), key=lambda kv: -kv[1]):
                got = await a.queries.get_tx(tx_id)
                assert got["status"] in ("included", "final") and got["height"] == height
                assert got["tx_id"] == tx_id.hex() and got["fee"] == fee
        assert len(a.queries._tx_maps) <= TX_MAPS
        unknown = await a.queries.get_tx(sha256(b"never sent").digest())
        assert unknown["status"] == "unknown"
    finally:
        pair.close()
