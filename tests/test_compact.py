"""Compact blocks (p2p/compact.py, docs/p2p.md "Compact blocks").

The codec and the rebuild over real blocks of real signed txs (sans-IO); the relay between
real Networks over memory streams in virtual time (a full pool, a partial pool with one
GET_BLOCK_TXN round trip); hostile senders driven by hand (malformed compact blocks, wrong
short ids, a peer that never answers the missing txs, a wrong-sized answer, a lying body
hash); and four real nodes in the simulation relaying every block compactly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from consensus.block import Block, decode_block
from consensus.crypto import PrivateKey, sha256
from consensus.tx import SignedTx, build_tx
from p2p.compact import (
    PendingBlock,
    assemble,
    make_compact,
    salt_key,
    short_id,
    split_block,
    start_rebuild,
    with_prefilled,
)
from p2p.messages import (
    SHORT_ID_LEN,
    Blocks,
    BlockTxn,
    Bye,
    CmpctBlock,
    GetBlockTxn,
    GetData,
    Kind,
    MessageError,
    SendCmpct,
    decode_message,
    encode_message,
)
from p2p.network import Network
from p2p.transport import MemoryNetwork
from tests.ledger_helpers import op_transfer
from tests.sim import Faults, Sim, SimConfig, run_sim
from tests.test_p2p_helpers import CHAIN, RawPeer, StoreHandler, key, make_node, running, until

PORT = 9000
WITNESS = PrivateKey(bytes([3]) * 32)


def txs(n: int, salt: int = 0) -> list[SignedTx]:
    signer = PrivateKey(bytes([9]) * 32)
    return [build_tx(signer, CHAIN, op_transfer(bytes(20), 1 + i, f"m{salt}"),
                     ref_block_num=1, ref_block_prefix=2, expiration=10_000 + i, fee=10)
            for i in range(n)]


def block_of(body: list[SignedTx], height: int = 5) -> Block:
    return Block.build(WITNESS, CHAIN, height, sha256(b"parent"), 1_000 + height, body, [],
                       sha256(b"state"))


# --- the codec and the rebuild (sans-IO) -------------------------------------------------


def test_split_and_assemble_are_inverse_and_the_compact_form_is_small() -> None:
    body = txs(300)
    block = block_of(body)
    header, signature, tx_raws, votes = split_block(block.raw)
    assert tx_raws == [t.raw for t in body] and signature == block.signature
    assert sha256(header) == block.id
    assert assemble(header, signature, tx_raws, votes) == block.raw
    msg, kept = make_compact(block.raw, [t.tx_id for t in body], nonce=7)
    assert kept == tx_raws and msg.tx_count == 300 and msg.body_hash == sha256(block.raw)
    wire = encode_message(msg)
    assert decode_message(wire) == msg
    assert len(wire) < 0.1 * len(block.raw)  # 6 bytes per tx instead of ~150


def test_short_ids_are_salted_by_header_and_nonce() -> None:
    body = txs(4)
    a, b = block_of(body, 5), block_of(body, 6)
    tx_id = body[0].tx_id
    ids = {short_id(salt_key(h, n), tx_id)
           for h in (split_block(a.raw)[0], split_block(b.raw)[0]) for n in (1, 2)}
    assert len(ids) == 4 and all(len(i) == SHORT_ID_LEN for i in ids)


def pool_of(body: list[SignedTx]) -> list[tuple[bytes, bytes]]:
    return [(t.tx_id, t.raw) for t in body]


def test_rebuild_from_a_full_pool_is_byte_identical() -> None:
    body = txs(200)
    block = block_of(body)
    msg, _ = make_compact(block.raw, [t.tx_id for t in body], nonce=11)
    rebuild = start_rebuild(msg, pool_of(txs(50, salt=1) + body[::-1]))  # extra, reordered
    assert rebuild.missing == [] and rebuild.block_id == block.id
    raw = rebuild.block()
    assert raw == block.raw
    again = decode_block(raw, 2**21)
    assert again.id == block.id and again.tx_root == block.tx_root


def test_missing_txs_are_asked_by_index_and_filled() -> None:
    body = txs(20)
    block = block_of(body)
    msg, kept = make_compact(block.raw, [t.tx_id for t in body], nonce=3)
    rebuild = start_rebuild(msg, pool_of([t for i, t in enumerate(body) if i % 3]))
    assert rebuild.missing == list(range(0, 20, 3))
    assert rebuild.block() is None
    assert not rebuild.fill([kept[0]])  # the wrong number of txs
    assert rebuild.fill([kept[i] for i in rebuild.missing])
    assert rebuild.block() == block.raw


def test_prefilled_txs_need_no_pool() -> None:
    body = txs(10)
    block = block_of(body)
    msg, kept = make_compact(block.raw, [t.tx_id for t in body], nonce=4)
    full = with_prefilled(msg, kept, [0, 7])
    assert decode_message(encode_message(full)) == full
    rebuild = start_rebuild(full, pool_of([t for i, t in enumerate(body) if i not in (0, 7)]))
    assert rebuild.missing == [] and rebuild.block() == block.raw


def test_a_short_id_named_twice_is_asked_not_guessed() -> None:
    body = txs(6)
    block = block_of(body)
    msg, _ = make_compact(block.raw, [t.tx_id for t in body], nonce=5)
    ids = msg.short_ids
    twice = CmpctBlock(msg.header, msg.signature, msg.nonce,
                       ids[:SHORT_ID_LEN] * 2 + ids[2 * SHORT_ID_LEN:], msg.votes,
                       msg.body_hash)
    rebuild = start_rebuild(twice, pool_of(body))
    assert rebuild.missing == [0, 1]


def test_a_collision_gives_other_bytes_and_no_block() -> None:
    # A pool tx whose short id equals a block tx's (forced here by naming the other tx's id
    # at index 2, as a 2**-48 collision would) rebuilds the wrong bytes: the body hash
    # catches it, so the node never sees a block that would fail its tx root.
    body = txs(5)
    other = txs(1, salt=2)[0]
    block = block_of(body)
    msg, _ = make_compact(block.raw, [t.tx_id for t in body], nonce=9)
    key_ = salt_key(msg.header, msg.nonce)
    sids = bytearray(msg.short_ids)
    sids[2 * SHORT_ID_LEN:3 * SHORT_ID_LEN] = short_id(key_, other.tx_id)
    forged = CmpctBlock(msg.header, msg.signature, msg.nonce, bytes(sids), msg.votes,
                        msg.body_hash)
    rebuild = start_rebuild(forged, pool_of([*body, other]))
    assert rebuild.missing == [] and rebuild.block() is None


@pytest.mark.parametrize("fields", [
    [b"h" * 600, bytes(64), 1, b"", b"\x90", bytes(32), []],  # header too long
    [b"", bytes(64), 1, b"", b"\x90", bytes(32), []],  # empty header
    [b"h", bytes(63), 1, b"", b"\x90", bytes(32), []],  # short signature
    [b"h", bytes(64), -1, b"", b"\x90", bytes(32), []],  # negative nonce
    [b"h", bytes(64), 1, bytes(7), b"\x90", bytes(32), []],  # not whole short ids
    [b"h", bytes(64), 1, bytes(6 * 32769), b"\x90", bytes(32), []],  # too many txs
    [b"h", bytes(64), 1, b"", b"", bytes(32), []],  # no votes array
    [b"h", bytes(64), 1, b"", b"\x90", bytes(31), []],  # short body hash
    [b"h", bytes(64), 1, b"", b"\x90", bytes(32)],  # a field missing
    [b"h", bytes(64), 1, bytes(12), b"\x90", bytes(32), [[2, b"tx"]]],  # index past n
    [b"h", bytes(64), 1, bytes(12), b"\x90", bytes(32), [[1, b"a"], [0, b"b"]]],  # order
    [b"h", bytes(64), 1, bytes(12), b"\x90", bytes(32), [[0, b""]]],  # empty tx
    [b"h", bytes(64), 1, bytes(12), b"\x90", bytes(32), [[0]]],  # no tx
    [b"h", bytes(64), 1, bytes(6), b"\x90", bytes(32), [[0, b"a"], [0, b"a"]]],  # > n
])
def test_malformed_compact_blocks_are_refused(fields: list[Any]) -> None:
    from consensus.codec import encode
    with pytest.raises(MessageError):
        decode_message(encode([CmpctBlock.TYPE, *fields]))


@pytest.mark.parametrize("msg", [
    [GetBlockTxn.TYPE, bytes(32), []],
    [GetBlockTxn.TYPE, bytes(32), [3, 2]],
    [GetBlockTxn.TYPE, bytes(32), [1, 1]],
    [GetBlockTxn.TYPE, bytes(32), [40_000]],
    [GetBlockTxn.TYPE, bytes(31), [1]],
    [BlockTxn.TYPE, bytes(32), []],
    [BlockTxn.TYPE, bytes(32), [b""]],
    [BlockTxn.TYPE, bytes(32), ["str"]],
])
def test_malformed_block_txn_messages_are_refused(msg: list[Any]) -> None:
    from consensus.codec import encode
    with pytest.raises(MessageError):
        decode_message(encode(msg))


# --- between real Networks (memory streams, virtual time) --------------------------------


class PoolHandler(StoreHandler):
    """A StoreHandler with a mempool; blocks are known by their block id (H(header))."""

    def __init__(self) -> None:
        super().__init__()
        self.pool: dict[bytes, bytes] = {}

    def add(self, kind: Kind, raw: bytes) -> bytes:
        if kind is not Kind.BLOCK:
            return super().add(kind, raw)
        bid = sha256(split_block(raw)[0])
        self.items[kind][bid] = raw
        return bid

    def pool_txs(self) -> list[tuple[bytes, bytes]]:
        return list(self.pool.items())


def pool_node(mem: MemoryNetwork, i: int, **kw: Any) -> tuple[Network, PoolHandler]:
    net, _ = make_node(i, transport=mem.transport(f"n{i}"), listen_port=PORT, **kw)
    handler = PoolHandler()
    handler.relay = False
    handler.net = net
    net.handler = handler
    return net, handler


async def test_peers_rebuild_from_their_pools(autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    a, ha = pool_node(mem, 1)
    b, hb = pool_node(mem, 2, seeds=[("n1", PORT)])
    c, hc = pool_node(mem, 3, seeds=[("n1", PORT)])
    body = txs(400)
    block = block_of(body)
    hb.pool = dict(pool_of(body))
    hc.pool = dict(pool_of(body[100:]))  # lacks the first 100
    with trio.fail_after(60):
        async with running(a, b, c):
            await until(lambda: len(a.peer_ids()) == 2)
            ha.add(Kind.BLOCK, block.raw)
            a.push_block(block.id, block.raw, [t.tx_id for t in body])
            await until(lambda: hb.received[block.raw] == 1 and hc.received[block.raw] == 1)
    # byte-identical, delivered once each; b needed no round trip, c one
    assert b.counters["compact_rebuilt"] == 1 and b.counters["msg_in_blocktxn"] == 0
    assert c.counters["compact_rebuilt"] == 1 and c.counters["compact_txs_missing"] == 100
    assert a.counters["compact_txs_sent"] == 100
    assert not b.counters["msg_in_blocks"] and not c.counters["msg_in_blocks"]
    full = len(block.raw)
    assert b.counters["bytes_in_cmpctblock"] < 0.05 * full
    relayed_c = c.counters["bytes_in_cmpctblock"] + c.counters["bytes_in_blocktxn"]
    assert relayed_c < 0.4 * full  # a quarter of the txs, and the short ids
    assert a.counters["misbehaviour_points"] == 0


async def test_txs_whose_inv_has_not_left_are_prefilled(
        autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    a, ha = pool_node(mem, 1, inv_interval=30.0)  # tx INVs wait in their batch
    b, hb = pool_node(mem, 2, seeds=[("n1", PORT)])
    body = txs(50)
    block = block_of(body)
    hb.pool = dict(pool_of(body[:40]))
    with trio.fail_after(60):
        async with running(a, b):
            await until(lambda: len(a.peer_ids()) == 1 and len(b.peer_ids()) == 1)
            await until(lambda: b.node_id in a.compact.wants)
            for t in body[40:]:
                ha.add(Kind.TX, t.raw)
            a.announce(Kind.TX, [t.tx_id for t in body[40:]])  # queued, not sent
            a.push_block(block.id, block.raw, [t.tx_id for t in body])
            await until(lambda: hb.received[block.raw] == 1)
    assert a.counters["compact_prefilled"] == 10
    assert b.counters["compact_txs_missing"] == 0 and not b.counters["msg_in_blocktxn"]


async def test_compact_blocks_off_pushes_full_blocks(
        autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    a, _ = pool_node(mem, 1, compact_blocks=False)
    b, hb = pool_node(mem, 2, seeds=[("n1", PORT)])
    body = txs(10)
    block = block_of(body)
    with trio.fail_after(60):
        async with running(a, b):
            await until(lambda: len(a.peer_ids()) == 1)
            a.push_block(block.id, block.raw, [t.tx_id for t in body])
            await until(lambda: hb.received[block.raw] == 1)
    assert b.counters["msg_in_blocks"] == 1 and not b.counters["msg_in_cmpctblock"]


# --- hostile senders, driven by hand ------------------------------------------------------


async def _victim_and_raw(mem: MemoryNetwork, net: Network) -> RawPeer:
    stream = await mem.transport("raw50").connect("n1", PORT)
    raw = RawPeer(stream, key(50))
    await raw.handshake()
    await until(lambda: len(net.peers_info()) == 1)
    return raw


async def next_of(raw: RawPeer, cls: type[Any]) -> Any:
    while True:
        msg = await raw.recv()
        assert msg is not None, f"closed before a {cls.__name__}"
        if isinstance(msg, cls):
            return msg


async def test_only_peers_that_ask_get_compact_blocks(
        autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    net, _ = pool_node(mem, 1)
    body = txs(5)
    blocks = [block_of(body, h) for h in (20, 21)]
    with trio.fail_after(60):
        async with running(net):
            raw = await _victim_and_raw(mem, net)
            async with raw.stream:
                assert isinstance(await next_of(raw, SendCmpct), SendCmpct)
                net.push_block(blocks[0].id, blocks[0].raw, [t.tx_id for t in body])
                assert (await next_of(raw, Blocks)).raws == [blocks[0].raw]
                await raw.send(SendCmpct())
                await until(lambda: net.counters["msg_in_sendcmpct"] == 1)
                net.push_block(blocks[1].id, blocks[1].raw, [t.tx_id for t in body])
                got = await next_of(raw, CmpctBlock)
                assert sha256(got.header) == blocks[1].id
                assert got.body_hash == sha256(blocks[1].raw)


async def test_a_malformed_compact_block_bans(autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    net, _ = pool_node(mem, 1)
    from consensus.codec import encode
    from p2p.frames import MAX_FRAME
    with trio.fail_after(60):
        async with running(net):
            raw = await _victim_and_raw(mem, net)
            async with raw.stream:
                body = encode([CmpctBlock.TYPE, b"h", bytes(64), 1, bytes(7), b"\x90",
                               bytes(32)])
                assert len(body) < MAX_FRAME
                await raw.stream.send_all(len(body).to_bytes(4, "big") + body)
                bye = await next_of(raw, Bye)
                assert bye.reason.startswith("banned")
    assert net.counters["misbehaviour_points"] >= 100


async def test_wrong_short_ids_and_a_silent_peer_fall_back_to_the_full_block(
        autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    net, handler = pool_node(mem, 1)
    body = txs(30)
    block = block_of(body)
    handler.pool = dict(pool_of(body))
    msg, _ = make_compact(block.raw, [t.tx_id for t in body], nonce=1)
    wrong = CmpctBlock(msg.header, msg.signature, msg.nonce, os.urandom(len(msg.short_ids)),
                       msg.votes, msg.body_hash)
    with trio.fail_after(60):
        async with running(net):
            raw = await _victim_and_raw(mem, net)
            async with raw.stream:
                await raw.send(wrong)
                ask = await next_of(raw, GetBlockTxn)
                assert ask.block_id == block.id and ask.indexes == list(range(30))
                t0 = trio.current_time()
                # never answered: after compact_timeout the victim asks for the full block
                full = await next_of(raw, GetData)
                assert full.kind is Kind.BLOCK and full.ids == [block.id]
                assert trio.current_time() - t0 >= net.config.compact_timeout - 0.05
                await raw.send(Blocks([block.raw]))
                await until(lambda: handler.received[block.raw] == 1)
                # the late answer costs nothing but its bytes
                await raw.send(BlockTxn(block.id, [t.raw for t in body]))
                await until(lambda: net.counters["compact_unsolicited"] == 1)
    assert net.counters["compact_timeouts"] == 1
    assert net.counters["misbehaviour_points"] == 0


async def test_a_wrong_sized_answer_is_penalized_and_a_lying_hash_is_not(
        autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    net, handler = pool_node(mem, 1)
    body = txs(8)
    block = block_of(body)
    handler.pool = dict(pool_of(body[2:]))
    msg, _ = make_compact(block.raw, [t.tx_id for t in body], nonce=1)
    with trio.fail_after(60):
        async with running(net):
            raw = await _victim_and_raw(mem, net)
            async with raw.stream:
                await raw.send(msg)
                ask = await next_of(raw, GetBlockTxn)
                assert ask.indexes == [0, 1]
                await raw.send(BlockTxn(block.id, [body[0].raw]))  # one of two
                assert (await next_of(raw, GetData)).ids == [block.id]
                assert net.counters["misbehaviour_points"] == 50
                # another block whose body hash is a lie: the rebuild fails the hash and
                # the full block is asked for, with no points (a collision looks the same)
                other = block_of(body, 9)
                lie, _ = make_compact(other.raw, [t.tx_id for t in body], nonce=2)
                lie = CmpctBlock(lie.header, lie.signature, lie.nonce, lie.short_ids,
                                 lie.votes, sha256(b"not the block"))
                handler.pool = dict(pool_of(body))
                await raw.send(lie)
                assert (await next_of(raw, GetData)).ids == [other.id]
    assert net.counters["compact_mismatches"] == 1
    assert net.counters["misbehaviour_points"] == 50


async def test_a_flood_of_compact_blocks_is_held_to_the_rebuild_budget(
        autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    net, handler = pool_node(mem, 1)
    body = txs(4)
    handler.pool = dict(pool_of(txs(500, salt=3)))  # every rebuild hashes 500 ids
    with trio.fail_after(60):
        async with running(net):
            raw = await _victim_and_raw(mem, net)
            async with raw.stream:
                for h in range(100):
                    m, _ = make_compact(block_of(body, 10 + h).raw,
                                        [t.tx_id for t in body], nonce=h)
                    await raw.send(m)
                await until(lambda: net.counters["compact_received"] == 100)
    # a burst of 2 x compact_rate is rebuilt, the rest taken as INVs (full fetches), and
    # at most MAX_PENDING wait for their txs at once
    rebuilt = net.counters["compact_txs"] // 4
    assert rebuilt <= 2 * net.config.compact_rate + 1
    assert net.counters["compact_over_budget"] >= 100 - rebuilt
    assert len(net.compact.pending) <= 8
    assert isinstance(next(iter(net.compact.pending.values()))[1], PendingBlock)


# --- real nodes in the simulation ---------------------------------------------------------


def test_four_nodes_relay_every_block_compactly(tmp_path: Path) -> None:
    cfg = SimConfig(witnesses=4, faults=Faults(delay=(0.005, 0.05)))

    async def scenario(sim: Sim) -> None:
        sim.nursery.start_soon(lambda: sim.transfer_load(every_slots=1, until_slot=35))
        await sim.run_until_slot(40)
        sim.check()
        sim.check_common_digests()

    res, _ = run_sim(1, cfg, scenario, tmp_path)
    assert not res.misbehaviour()
    for n, stats in res.p2p.items():
        assert stats.get("compact_rebuilt", 0) >= 25, (n, stats)
        assert stats.get("msg_in_blocks", 0) <= 2, (n, stats)  # no full pushes
    assert all(f.height >= 30 for f in res.finals.values())
