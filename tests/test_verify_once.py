"""A tx signature is checked once per node, whichever path sees the tx first: the tx path
(submitted and gossiped txs) and the block path (a peer's block) share what passed
(muxernode/node.py ``CHECKED_KEPT``), and only for the very same bytes: a copy of a tx with
another signature is checked again, and refused.

Two real nodes over LevelDB in tmp dirs with clocks of their own: A produces, B receives;
``muxer_tx_signature_checks_total`` counts the checks actually made."""

from __future__ import annotations

from pathlib import Path

from consensus.block import Block
from consensus.codec import encode
from consensus.crypto import TAG_TX, PrivateKey, sha256
from consensus.tx import decode_tx, tapos_of
from muxernode.config import NodeConfig
from muxernode.node import Node, init_data_dir
from tests.procs import accounts, make_genesis

GENESIS_TIME = 1_700_000_000


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def transfer(key: PrivateKey, chain_id: bytes, fee: int, amount: int) -> bytes:
    ref_height, ref_prefix = tapos_of(0, chain_id)
    unsigned = [1, ref_height, ref_prefix, GENESIS_TIME + 3000, key.public_key, fee,
                [1, PrivateKey(sha256(b"payee")).address, amount, "once"]]
    return encode([unsigned, key.sign(TAG_TX + chain_id + encode(unsigned))])


def checks(n: Node, path: str) -> float:
    return float(n.metrics.signature_checks.labels(path)._value.get())


async def test_each_signature_is_checked_once_per_node(tmp_path: Path) -> None:
    gdir = tmp_path / "genesis"
    genesis = make_genesis(gdir, witnesses=1, accounts=1, seed=8, genesis_time=GENESIS_TIME)
    for name in ("a", "b"):
        init_data_dir(genesis, tmp_path / name)
    wkey = PrivateKey(bytes.fromhex((gdir / "w1.key").read_text().strip()))
    payer = PrivateKey(bytes.fromhex(accounts(gdir)[0]["secret"]))
    clock_a, clock_b = Clock(GENESIS_TIME), Clock(GENESIS_TIME)
    a = Node(tmp_path / "a", NodeConfig(rpc_port=0), now=clock_a, witness_key=wkey,
             inline_verify=True, serve_rpc=False)
    b = Node(tmp_path / "b", NodeConfig(rpc_port=0), now=clock_b, inline_verify=True,
             serve_rpc=False)
    try:
        fee = a.params.base_fee

        async def a_block(slot: int, raws: list[bytes]) -> Block:
            clock_a.t = clock_b.t = a.slot_time(slot)
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
        a.close()
        b.close()
