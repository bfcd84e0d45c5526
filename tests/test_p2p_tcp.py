"""The Network over real trio TCP sockets on 127.0.0.1 (port 0), each test time-bounded."""

from __future__ import annotations

import trio

from p2p.messages import Kind
from p2p.network import Network
from tests.test_p2p_helpers import key, make_node, running, until

LOCAL = "127.0.0.1"


def connected(net: Network, *others: Network) -> bool:
    ids = set(net.peer_ids())
    return all(o.node_id in ids for o in others)


async def test_gossip_through_a_line_reaches_each_node_once() -> None:
    # a -> b <- c, and nothing else: a and c may keep one outbound peer each
    b, hb = make_node(2, peer_exchange=False)
    with trio.fail_after(10):
        async with running(b) as (pb,):
            a, ha = make_node(1, seeds=[(LOCAL, pb)], max_outbound=1, peer_exchange=False)
            c, hc = make_node(3, seeds=[(LOCAL, pb)], max_outbound=1, peer_exchange=False)
            async with running(a, c):
                await until(lambda: connected(b, a, c) and connected(a, b) and connected(c, b))
                ids = [ha.add(Kind.TX, b"tx-%d" % i) for i in range(300)]
                a.announce(Kind.TX, ids)
                await until(lambda: all(hc.has(Kind.TX, i) for i in ids))
                await trio.sleep(0.2)  # let any duplicate delivery show up
                assert [p["node_id"] for p in c.peers_info()] == [b.node_id.hex()]
    # every node got every tx exactly once; the origin never got its own back
    assert len(hb.received) == len(hc.received) == 300
    assert set(hb.received.values()) == {1} == set(hc.received.values())
    assert not ha.received
    # many ids per message: one INV, one GET_DATA, one TXS per hop
    assert b.counters["msg_in_inv"] == 1 and b.counters["msg_in_txs"] == 1
    assert a.counters["msg_in_getdata"] == 1 and c.counters["msg_in_inv"] == 1
    assert hb.calls == [(Kind.TX, a.node_id, 300)]
    assert all(n.counters["internal_errors"] == 0 for n in (a, b, c))


async def test_sync_a_block_range() -> None:
    a, _ = make_node(1, blocks=30)
    with trio.fail_after(10):
        async with running(a) as (pa,):
            b, hb = make_node(2, seeds=[(LOCAL, pa)])
            async with running(b):
                await until(lambda: hb.heads.get(a.node_id) == 30)  # HEADS after handshake
                (info,) = b.peers_info()
                assert info["head_height"] == 30 and info["direction"] == "out"
                assert info["address"] == f"{LOCAL}:{pa}"
                verdicts = await b.request_blocks(a.node_id, 1, 20)
                assert verdicts == [True] * 20
                assert await b.request_blocks(a.node_id, 21, 500) == [True] * 10
                assert await b.request_blocks(a.node_id, 31, 5) == []
    assert set(hb.received) == {b"block-%d" % h for h in range(1, 31)}
    assert b.counters["blocks_synced"] == 30


async def test_peer_exchange_dials_learned_addresses() -> None:
    hub, _ = make_node(2)
    with trio.fail_after(10):
        async with running(hub) as (ph,):
            a, _ = make_node(1, seeds=[(LOCAL, ph)])
            c, _ = make_node(3, seeds=[(LOCAL, ph)])
            async with running(a, c):
                # a and c only know the hub; PEERS from it makes them find each other
                await until(lambda: connected(a, hub, c) and connected(c, hub, a))
                assert a.counters["msg_in_peers"] >= 1
                assert hub.counters["msg_in_peersreq"] >= 2


async def test_ban_after_invalid_data() -> None:
    b, hb = make_node(2)
    with trio.fail_after(10):
        async with running(b) as (pb,):
            a, ha = make_node(1, seeds=[(LOCAL, pb)])
            async with running(a):
                await until(lambda: connected(b, a))
                bad = [ha.add(Kind.TX, b"bad-%d" % i) for i in range(4)]
                a.announce(Kind.TX, bad)  # b's handler judges them invalid: 4 x 25 points
                await until(lambda: b.is_banned(a.node_id))
                await until(lambda: b.peers_info() == [])
                # a keeps redialing with backoff; b refuses the banned key every time
                await until(lambda: a.counters["handshake_failures"] >= 2)
                assert b.peers_info() == [] and b.counters["bans"] == 1
                assert b.counters["items_invalid"] == 4
    assert not any(hb.has(Kind.TX, i) for i in bad)


async def test_reconnect_after_a_peer_restarts() -> None:
    b, _ = make_node(2)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            pb = await nursery.start(b.run)
            a, _ = make_node(1, seeds=[(LOCAL, pb)])
            async with running(a):
                await until(lambda: connected(a, b))
                b.stop()  # the node goes away ...
                await until(lambda: a.peers_info() == [])
                await until(lambda: a.counters["dial_failures"] >= 2)  # backing off
                # ... and comes back on the same port with the same key
                b2, _ = make_node(2, listen_port=pb)
                await nursery.start(b2.run)
                await until(lambda: connected(a, b2))
                assert a.counters["handshakes"] == 2
                b2.stop()
    assert b2.node_id == key(2).public_key == b.node_id
