"""The Network over in-memory streams in virtual time (MockClock, autojump).

Handshake outcomes are checked from the outside with a RawPeer that speaks the wire protocol
by hand; gossip, keepalive, limits and duplicate handling run between real Network objects.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from consensus.crypto import sha256
from p2p.frames import MAX_FRAME, encode_frame, frame
from p2p.handshake import sign_ack
from p2p.messages import (
    Blocks,
    Bye,
    GetBlocks,
    GetData,
    Heads,
    Hello,
    HelloAck,
    Inv,
    Kind,
    Peers,
    Ping,
    Pong,
)
from p2p.network import Network, PeerUnavailable
from p2p.peer import TokenBucket
from p2p.transport import MemoryNetwork
from tests.test_p2p_helpers import (
    OTHER_CHAIN,
    RawPeer,
    StoreHandler,
    key,
    make_node,
    running,
    until,
)

PORT = 9000


def mem_node(mem: MemoryNetwork, i: int, **kw: Any) -> tuple[Network, StoreHandler]:
    return make_node(i, transport=mem.transport(f"n{i}"), listen_port=PORT, **kw)


async def raw_connect(mem: MemoryNetwork, host: str, i: int = 50, **kw: object) -> RawPeer:
    stream = await mem.transport(f"raw{i}").connect(host, PORT)
    return RawPeer(stream, key(i), **kw)  # type: ignore[arg-type]


@asynccontextmanager
async def registered_raw_peer(mem: MemoryNetwork, net: Network) -> AsyncIterator[RawPeer]:
    """A RawPeer past the handshake with node n1, once n1 has registered it."""
    raw = await raw_connect(mem, "n1")
    async with raw.stream:
        await raw.handshake()
        await until(lambda: len(net.peers_info()) == 1)
        yield raw


# --- handshake ---------------------------------------------------------------------------


async def test_handshake_success(autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    net, _ = mem_node(mem, 1, blocks=7)
    with trio.fail_after(60):
        async with running(net):
            raw = await raw_connect(mem, "n1")
            async with raw.stream:
                theirs = await raw.handshake()
                assert theirs.node_pubkey == key(1).public_key
                assert theirs.listen_port == PORT and theirs.head_height == 7
                first = [await raw.recv(), await raw.recv()]
                assert any(isinstance(m, Heads) and m.head_height == 7 for m in first)
                await until(lambda: len(net.peers_info()) == 1)
                (info,) = net.peers_info()
                assert info == {"node_id": key(50).public_key.hex(),
                                "address": info["address"], "direction": "in",
                                "head_height": 0, "lowest_block": 1, "pruned": False}
                assert info["address"].startswith("raw50:")
                assert net.counters["handshakes"] == 1


@pytest.mark.parametrize(("hello_kw", "reason"), [
    ({"chain_id": OTHER_CHAIN}, "wrong_chain"),
    ({"version": 2}, "wrong_version"),
    ({"node_pubkey": key(1).public_key}, "self_connection"),
])
async def test_handshake_refusals(autojump_clock: trio.testing.MockClock,
                                  hello_kw: dict[str, object], reason: str) -> None:
    mem = MemoryNetwork()
    net, _ = mem_node(mem, 1)
    with trio.fail_after(60):
        async with running(net):
            raw = await raw_connect(mem, "n1")
            async with raw.stream:
                await raw.send(raw.hello(**hello_kw))
                msgs = await raw.drain()  # the listener says why, then hangs up
                assert len(msgs) == 1 and isinstance(msgs[0], Bye)
                assert msgs[0].reason.startswith(reason)
            assert net.peers_info() == []
            assert net.counters["handshake_failures"] == 1
            # an inbound stranger's claims are unproven: nothing gets banned
            assert not net.is_banned(key(1).public_key) and net.counters["bans"] == 0


async def test_handshake_bad_signature(autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    net, _ = mem_node(mem, 1)
    with trio.fail_after(60):
        async with running(net):
            raw = await raw_connect(mem, "n1")
            async with raw.stream:
                await raw.send(raw.hello())
                theirs = await raw.recv()
                assert isinstance(theirs, Hello)
                assert isinstance(await raw.recv(), HelloAck)
                # signs its own nonce instead of the listener's: a replayable proof
                await raw.send(HelloAck(sign_ack(raw.key, raw.chain, raw.nonce,
                                                 theirs.node_pubkey, raw.nonce)))
                msgs = await raw.drain()
                assert [m for m in msgs if isinstance(m, Bye)] == [Bye("bad_signature")]
            assert net.peers_info() == []


async def test_handshake_timeout_and_oversized_hello(
        autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    net, _ = mem_node(mem, 1)
    with trio.fail_after(60):
        async with running(net):
            silent = await raw_connect(mem, "n1", 51)
            async with silent.stream:
                assert await silent.drain() == []  # closed after handshake_timeout
            big = await raw_connect(mem, "n1", 52)
            async with big.stream:
                # a 5000-byte frame before the handshake is refused on its prefix alone
                await big.stream.send_all((5000).to_bytes(4, "big"))
                msgs = await big.drain()
                assert isinstance(msgs[0], Bye) and "malformed" in msgs[0].reason
            assert net.counters["handshake_failures"] == 2


async def test_self_connection_detected_and_never_redialed(
        autojump_clock: trio.testing.MockClock) -> None:
    # Two listeners holding the same node key: to each, the other IS itself.
    mem = MemoryNetwork()
    a, _ = mem_node(mem, 1, seeds=[("n2", PORT)], tick=1.0)
    b, _ = make_node(1, transport=mem.transport("n2"), listen_port=PORT, tick=1.0)
    with trio.fail_after(600):
        async with running(b, a):
            await trio.sleep(300)
            assert a.counters["self_connections"] == 1 and a.counters["dials"] == 1
            assert a.peers_info() == [] and b.peers_info() == []


async def test_lockstep_streams_do_not_deadlock(autojump_clock: trio.testing.MockClock) -> None:
    # lockstep streams have no buffer: any design that needs both sides to write before
    # either reads would hang here
    mem = MemoryNetwork(lockstep=True)
    a, ha = mem_node(mem, 1)
    b, hb = mem_node(mem, 2, seeds=[("n1", PORT)])
    with trio.fail_after(120):
        async with running(a, b):
            await until(lambda: len(a.peers_info()) == 1 == len(b.peers_info()))
            ids = [ha.add(Kind.TX, b"tx-%d" % i) for i in range(50)]
            a.announce(Kind.TX, ids)
            await until(lambda: all(hb.has(Kind.TX, i) for i in ids))


# --- gossip in virtual time --------------------------------------------------------------


async def test_three_nodes_in_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    """The same Network as over TCP, wired through memory streams, under MockClock: ten
    virtual minutes of keepalive in a fraction of a second, then gossip through a line."""
    mem = MemoryNetwork()
    # production timers (tick 1 s, 15 s pings): virtual time makes them cheap
    opts: dict[str, Any] = dict(peer_exchange=False, tick=1.0, inv_interval=0.05)
    a, ha = mem_node(mem, 1, max_outbound=1, seeds=[("n2", PORT)], **opts)
    b, hb = mem_node(mem, 2, **opts)
    c, hc = mem_node(mem, 3, max_outbound=1, seeds=[("n2", PORT)], **opts)
    wall = time.monotonic()
    with trio.fail_after(3600):
        async with running(a, b, c):
            await until(lambda: len(b.peers_info()) == 2)
            start = trio.current_time()
            await trio.sleep(600)  # 40 ping intervals: nobody times out
            assert trio.current_time() - start >= 600
            assert len(b.peers_info()) == 2 and b.counters["idle_timeouts"] == 0
            assert b.counters["msg_in_ping"] >= 2 * 39
            ids = [ha.add(Kind.TX, b"tx-%d" % i) for i in range(200)]
            a.announce(Kind.TX, ids)
            await until(lambda: all(hc.has(Kind.TX, i) for i in ids))
            await trio.sleep(5)
    assert time.monotonic() - wall < 10
    assert set(hb.received.values()) == {1} == set(hc.received.values())
    assert len(hb.received) == len(hc.received) == 200 and not ha.received
    assert b.counters["msg_in_inv"] == 1 and b.counters["msg_in_txs"] == 1


async def test_diamond_fetches_once_and_refetches_on_notfound(
        autojump_clock: trio.testing.MockClock) -> None:
    # d is dialed by b and c. b announces an id it does not have (NOTFOUND); c has it.
    mem = MemoryNetwork()
    d, hd = mem_node(mem, 4)
    b, _ = mem_node(mem, 2, seeds=[("n4", PORT)], peer_exchange=False)
    c, hc = mem_node(mem, 3, seeds=[("n4", PORT)], peer_exchange=False)
    with trio.fail_after(600):
        async with running(d, b, c):
            await until(lambda: len(d.peers_info()) == 2)
            iid = hc.add(Kind.BLOCK, b"block-x")
            b.announce(Kind.BLOCK, [iid])  # b lies first ...
            await trio.sleep(0)
            c.announce(Kind.BLOCK, [iid])  # ... c has it
            await until(lambda: hd.has(Kind.BLOCK, iid))
            await trio.sleep(5)
            assert hd.received[b"block-x"] == 1
            assert d.counters["refetches"] == 1 and d.counters["msg_in_notfound"] == 1
            assert d.counters["getdata_ids_sent"] == 1  # the first ask, then one refetch


async def test_duplicate_dials_leave_one_connection(
        autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    a, _ = mem_node(mem, 1, seeds=[("n2", PORT)])
    b, _ = mem_node(mem, 2, seeds=[("n1", PORT)])
    with trio.fail_after(600):
        async with running(a, b):
            await trio.sleep(120)
            (ia,) = a.peers_info()
            (ib,) = b.peers_info()
            # the surviving connection is the one dialed by the smaller node key
            low_is_a = key(1).public_key < key(2).public_key
            assert ia["direction"] == ("out" if low_is_a else "in")
            assert ib["direction"] == ("in" if low_is_a else "out")
            assert a.counters["handshakes"] <= 2 and a.counters["disconnects"] <= 1


# --- keepalive, limits, misbehaviour -----------------------------------------------------


async def test_keepalive_timeout_drops_a_silent_peer(
        autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    net, _ = mem_node(mem, 1)
    with trio.fail_after(600):
        async with running(net):
            raw = await raw_connect(mem, "n1")
            async with raw.stream:
                await raw.handshake()
                t0 = trio.current_time()
                msgs = await raw.drain()  # never answers: read until the node hangs up
                waited = trio.current_time() - t0
            cfg = net.config
            assert cfg.idle_timeout <= waited < cfg.idle_timeout + 1
            pings = [m for m in msgs if isinstance(m, Ping)]
            # pings at 15 s and 30 s; at 45 s the silence is over the limit
            assert len(pings) == int(cfg.idle_timeout // cfg.ping_interval) - 1
            assert msgs[-1] == Bye("idle_timeout")
            assert net.counters["idle_timeouts"] == 1 and net.peers_info() == []


async def test_rate_limit_throttles_a_flood(autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    net, _ = mem_node(mem, 1, rate_msgs=10.0, burst_msgs=10.0)
    with trio.fail_after(600):
        async with running(net):
            raw = await raw_connect(mem, "n1")
            async with raw.stream:
                await raw.handshake()
                t0 = trio.current_time()
                await raw.stream.send_all(b"".join(encode_frame(Ping(i)) for i in range(60)))
                pongs = 0
                while pongs < 60:
                    pongs += isinstance(await raw.recv(), Pong)
                elapsed = trio.current_time() - t0
            # 10 msgs of burst, then 10/s: the node read the flood over ~5 s, dropping nothing
            assert 4.5 <= elapsed < 10
            assert net.counters["rate_limited"] > 0 and net.counters["bans"] == 0


async def test_a_burst_of_requests_is_answered_not_dropped(
        autojump_clock: trio.testing.MockClock) -> None:
    """A peer that sends a burst of pings in one write and reads every answer keeps its
    connection: the node writes the answers as fast as it reads the requests. (The queue
    here holds 64 frames and the burst is 1,000; the node used to parse the whole burst
    before its writer had a turn, filled the queue and dropped the peer as slow.)"""
    mem = MemoryNetwork()
    net, _ = mem_node(mem, 1, queue_msgs=64, rate_msgs=1000.0, burst_msgs=1000.0)
    with trio.fail_after(600):
        async with running(net), registered_raw_peer(mem, net) as raw:
            pongs = 0

            async def read_pongs() -> None:
                nonlocal pongs
                while pongs < 1000 and (m := await raw.recv()) is not None:
                    pongs += isinstance(m, Pong)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_pongs)
                await raw.stream.send_all(
                    b"".join(encode_frame(Ping(i)) for i in range(1000)))
            assert pongs == 1000
            assert net.counters["slow_peer_disconnects"] == 0
            assert len(net.peers_info()) == 1


def test_token_bucket(autojump_clock: trio.testing.MockClock) -> None:
    async def main() -> None:
        bucket = TokenBucket(rate=2.0, burst=4.0)
        assert [bucket.debit(1) for _ in range(4)] == [0.0] * 4
        assert bucket.debit(1) == pytest.approx(0.5)
        await trio.sleep(10)
        assert bucket.debit(4) == 0.0  # refilled, but only up to the burst

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_oversized_frame_bans(autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    net, _ = mem_node(mem, 1)
    with trio.fail_after(60):
        async with running(net):
            raw = await raw_connect(mem, "n1")
            async with raw.stream:
                await raw.handshake()
                await raw.stream.send_all((MAX_FRAME + 1).to_bytes(4, "big"))
                msgs = await raw.drain()
                assert msgs[-1] == Bye("banned: oversized_frame")
            assert net.is_banned(key(50).public_key)
            again = await raw_connect(mem, "n1")  # the banned key is refused at once
            async with again.stream:
                await again.send(again.hello())
                assert await again.drain() == [Bye("banned")]


async def test_malformed_message_and_unexpected_hello_score(
        autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    net, _ = mem_node(mem, 1)
    with trio.fail_after(60):
        async with running(net):
            raw = await raw_connect(mem, "n1")
            async with raw.stream:
                await raw.handshake()
                await raw.send(raw.hello())  # 50 points
                await trio.sleep(1)
                assert net.peers_info() != [] and not net.is_banned(key(50).public_key)
                await raw.stream.send_all(frame(b"\xc1"))  # not msgpack: 100 more
                msgs = await raw.drain()
                assert msgs[-1] == Bye("banned: malformed_message")
            assert net.counters["misbehaviour_points"] == 150


async def test_slow_reader_is_disconnected_not_waited_for(
        autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork(lockstep=True)
    net, h = mem_node(mem, 1, queue_msgs=8)
    ids = [h.add(Kind.TX, b"t%d" % i) for i in range(4)]
    with trio.fail_after(600):
        async with running(net):
            raw = await raw_connect(mem, "n1")
            async with raw.stream:
                await raw.handshake()
                # ask for data again and again without ever reading the answers
                with pytest.raises(trio.BrokenResourceError):  # until it hangs up on us
                    for _ in range(100):
                        await raw.send(GetData(Kind.TX, ids))
                await until(lambda: net.peers_info() == [])
            assert net.counters["slow_peer_disconnects"] == 1
            assert net.counters["bans"] == 0


async def test_gossip_is_dropped_for_a_full_queue(
        autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork(lockstep=True)
    net, h = mem_node(mem, 1, queue_msgs=8)
    with trio.fail_after(600):
        async with running(net), registered_raw_peer(mem, net) as raw:
            for i in range(20):
                net.announce(Kind.BLOCK, [h.add(Kind.BLOCK, b"b%d" % i)])
            assert net.counters["gossip_dropped"] > 0
            assert len(net.peers_info()) == 1  # gossip loss never disconnects
            got: list[Inv] = []
            while len(got) < 2:
                m = await raw.recv()
                if isinstance(m, Inv):
                    got.append(m)


async def test_request_blocks_errors(autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    a, _ = mem_node(mem, 1, blocks=3)
    with trio.fail_after(600):
        async with running(a):
            with pytest.raises(PeerUnavailable):
                await a.request_blocks(key(9).public_key, 1, 10)
            raw = await raw_connect(mem, "n1")
            async with raw.stream:
                await raw.handshake()
                await until(lambda: len(a.peers_info()) == 1)
                # the raw peer never answers GET_BLOCKS: the request times out, peer dropped
                with pytest.raises(PeerUnavailable, match="timeout"):
                    await a.request_blocks(key(50).public_key, 1, 10)
                msgs = await raw.drain()
                assert GetBlocks(1, 10) in msgs
            assert a.counters["request_timeouts"] == 1


async def test_request_blocks_from_a_callback_is_refused(
        autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    a, _ = mem_node(mem, 1, blocks=3)
    b, hb = mem_node(mem, 2, seeds=[("n1", PORT)])
    errors: list[RuntimeError] = []

    async def hook(peer_id: bytes) -> None:
        # on_head runs in b's reader task for a: a nested request would wait on itself
        try:
            await b.request_blocks(peer_id, 1, 3)
        except RuntimeError as exc:
            errors.append(exc)

    hb.on_head_hook = hook
    with trio.fail_after(600):
        async with running(a, b):
            await until(lambda: bool(errors))
            assert "deadlock" in str(errors[0])
            # from a task of its own the same call works, through handler.on_blocks
            assert await b.request_blocks(key(1).public_key, 1, 3) == [True] * 3
            assert await b.request_blocks(key(1).public_key, 2, 500) == [True] * 2
            assert await b.request_blocks(key(1).public_key, 9, 5) == []
    assert sha256(b"block-1") in hb.items[Kind.BLOCK]
    assert b.counters["internal_errors"] == 0


async def test_dialing_another_chain_bans_that_address(
        autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    b, _ = mem_node(mem, 2, chain=OTHER_CHAIN, tick=1.0)
    a, _ = mem_node(mem, 1, seeds=[("n2", PORT)], tick=1.0)
    with trio.fail_after(7200):
        async with running(b, a):
            await trio.sleep(600)
            assert a.counters["dials"] == 1 and a.counters["bans"] == 1
            assert a.peers_info() == [] == b.peers_info()
            await trio.sleep(a.config.ban_seconds)  # the ban runs out on the injected clock
            assert a.counters["dials"] == 2


async def test_inbound_limit(autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    net, _ = mem_node(mem, 1, max_inbound=1)
    with trio.fail_after(60):
        async with running(net):
            first = await raw_connect(mem, "n1", 50)
            async with first.stream:
                await first.handshake()
                second = await raw_connect(mem, "n1", 51)
                async with second.stream:
                    assert await second.drain() == [Bye("too_many_peers")]
                assert net.counters["inbound_refused_full"] == 1
                assert len(net.peers_info()) == 1


async def test_ban_expires_and_unsolicited_peers_are_ignored(
        autojump_clock: trio.testing.MockClock) -> None:
    mem = MemoryNetwork()
    net, _ = mem_node(mem, 1, tick=1.0)
    with trio.fail_after(7200):
        async with running(net):
            raw = await raw_connect(mem, "n1")
            async with raw.stream:
                await raw.handshake()
                # the node sent PEERS_REQ after the handshake: one answer is taken ...
                await raw.send(Peers([("evil", 1)]))
                await raw.send(Peers([("evil", 2)]))  # ... and a second, unasked one is not
                await until(lambda: net.counters["msg_in_peers"] == 2)
                assert net.counters["unsolicited_peers"] == 1
                assert ("evil", 1) in net._book and ("evil", 2) not in net._book
                net.ban(key(50).public_key, "test")
                assert (await raw.drain())[-1] == Bye("banned: test")
            await trio.sleep(net.config.ban_seconds + 1)
            assert not net.is_banned(key(50).public_key)
            again = await raw_connect(mem, "n1")
            async with again.stream:
                await again.handshake()
                await until(lambda: len(net.peers_info()) == 1)


async def test_blocks_votes_and_heads_overtake_queued_gossip(
        autojump_clock: trio.testing.MockClock) -> None:
    """The priority lane: a new block (and vote, and head) pushed while tx gossip waits in
    a peer's queue is sent before that gossip, not after it."""
    mem = MemoryNetwork(lockstep=True)  # the writer blocks until the reader reads
    net, h = mem_node(mem, 1, queue_msgs=64)
    with trio.fail_after(600):
        async with running(net), registered_raw_peer(mem, net) as raw:
            for i in range(10):  # queued behind each other: nobody reads yet
                net.announce(Kind.BLOCK, [h.add(Kind.BLOCK, b"old%d" % i)])
            bid = h.add(Kind.BLOCK, b"new block")
            net.push(Kind.BLOCK, [(bid, b"new block")])
            net.broadcast_head()
            order: list[str] = []
            while len([o for o in order if o == "inv"]) < 10:
                m = await raw.recv()
                if isinstance(m, Inv):
                    order.append("inv")
                elif isinstance(m, Blocks):
                    assert m.raws == [b"new block"]
                    order.append("block")
                elif isinstance(m, Heads):
                    order.append("heads")
            # at most the Inv being written when the push came goes first (a HEADS
            # queued at the handshake may precede it)
            invs = [i for i, o in enumerate(order) if o == "inv"]
            at = order.index("block")
            assert at < invs[1], order
            assert order[at + 1] == "heads", order
            assert order.count("block") == 1
