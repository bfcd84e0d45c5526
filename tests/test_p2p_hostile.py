"""Hostile peers (issue 6): every kind of bad input over p2p, each with its outcome.

Two settings:

- Raw bytes and message-level abuse run over real trio TCP sockets on 127.0.0.1 against a
  ``Network`` with the dict-backed ``StoreHandler`` of test_p2p_helpers (an item starting
  with b"bad" is invalid). An honest ``Network`` is connected to the same victim the
  whole time, and a ``Heartbeat`` gossips a block from the victim to it and a tx from it
  to the victim every few milliseconds during and after each attack: the assertion is
  that every beat arrives, and quickly.
- Content that needs real chain validation (bad signatures, wrong witness or slot, wrong
  state digest, votes from non-witnesses, replays, malleated copies of honest blocks)
  runs in the deterministic simulation (tests/sim.py): four real Nodes with LevelDB over
  simulated links in virtual time, plus a hostile host that completes the handshake with
  its own node key and then sends crafted frames.

Each test asserts what the protocol says must happen: disconnect and ban (the points
table is p2p.network.PENALTIES), or no penalty for what an honest peer could also send,
and that the victim's state stays under its caps (``assert_bounded``).
"""

from __future__ import annotations

import contextlib
import random
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
import trio
import trio.testing

from consensus.block import Block, decode_block
from consensus.codec import encode
from consensus.crypto import PrivateKey, sha256
from consensus.tx import SignedTx, build_tx
from consensus.vote import Vote
from muxernode.node import P2PAdapter
from p2p.frames import MAX_FRAME, encode_frame, frame
from p2p.handshake import sign_ack
from p2p.messages import (
    MAX_GET_BLOCKS,
    MAX_INV_IDS,
    BlockRange,
    Blocks,
    Bye,
    GetBlocks,
    GetData,
    GetHeads,
    Heads,
    Hello,
    HelloAck,
    Inv,
    Kind,
    Message,
    NotFound,
    Peers,
    PeersReq,
    Ping,
    Pong,
    Txs,
    Votes,
    encode_message,
)
from p2p.network import PENALTIES, Network, fit_items
from p2p.peer import HANDSHAKE_MAX_FRAME
from p2p.transport import MemoryNetwork
from tests.sim import GENESIS_TIME, P2P_PORT, Faults, Sim, SimConfig, run_sim
from tests.test_p2p_helpers import (
    CHAIN,
    OTHER_CHAIN,
    RawPeer,
    StoreHandler,
    key,
    make_node,
    running,
    until,
)
from tests.test_sim import assert_converged

LOCAL = "127.0.0.1"
VICTIM, HONEST = 1, 2  # node key indices; attackers use 100 and up


# --- the scene: a victim, an honest peer, and a heartbeat of gossip between them ----------


@dataclass
class Heartbeat:
    """Gossip in both directions: a block announced by the victim must reach the honest
    peer, and a tx announced by the honest peer must reach the victim. One beat at a time;
    ``latencies`` holds how long each took (a beat that takes over 5 s fails the test)."""

    victim: Network
    vh: StoreHandler
    honest: Network
    hh: StoreHandler
    every: float = 0.02
    latencies: list[float] = field(default_factory=list)

    async def beat(self) -> None:
        n = len(self.latencies)
        t0 = trio.current_time()
        bid = self.vh.add(Kind.BLOCK, b"beat-block-%d" % n)
        tid = self.hh.add(Kind.TX, b"beat-tx-%d" % n)
        self.victim.announce(Kind.BLOCK, [bid])
        self.honest.announce(Kind.TX, [tid])
        with trio.fail_after(5):
            await until(lambda: self.hh.has(Kind.BLOCK, bid) and self.vh.has(Kind.TX, tid),
                        step=0.002)
        self.latencies.append(trio.current_time() - t0)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started()
        while True:
            await self.beat()
            await trio.sleep(self.every)

    def check(self, min_beats: int, max_latency: float = 1.0) -> None:
        assert len(self.latencies) >= min_beats, self.latencies
        assert max(self.latencies) < max_latency, max(self.latencies)


@dataclass
class Scene:
    victim: Network
    vh: StoreHandler
    honest: Network
    hh: StoreHandler
    port: int
    heart: Heartbeat
    nursery: trio.Nursery

    async def attacker(self, i: int, chain: bytes = CHAIN) -> RawPeer:
        stream = await trio.open_tcp_stream(LOCAL, self.port)
        return RawPeer(stream, key(i), chain=chain)

    async def joined(self, i: int) -> RawPeer:
        """An attacker past the handshake, registered at the victim."""
        raw = await self.attacker(i)
        await raw.handshake()
        await until(lambda: key(i).public_key in self.victim.peer_ids())
        return raw

    def peer(self, i: int) -> Any:
        return self.victim._peers.get(key(i).public_key)


@asynccontextmanager
async def scene(**cfg: Any) -> AsyncIterator[Scene]:
    """A victim with an honest peer connected and a heartbeat running, for at most 30 s."""
    victim, vh = make_node(VICTIM, peer_exchange=False, **cfg)
    with trio.fail_after(30):
        async with running(victim) as (port,):
            honest, hh = make_node(HONEST, seeds=[(LOCAL, port)], peer_exchange=False,
                                   listen_port=None)
            async with running(honest), trio.open_nursery() as nursery:
                await until(lambda: victim.peer_ids() == [honest.node_id])
                heart = Heartbeat(victim, vh, honest, hh)
                await heart.beat()  # gossip works before the attack
                await nursery.start(heart.run)
                try:
                    yield Scene(victim, vh, honest, hh, port, heart, nursery)
                    # and after it: a few more beats, with the honest peer still there
                    base = len(heart.latencies)
                    await until(lambda: len(heart.latencies) >= base + 3)
                    assert honest.node_id in victim.peer_ids()
                    assert victim.node_id in honest.peer_ids()
                    assert not victim.is_banned(honest.node_id)
                    assert honest.counters["misbehaviour_points"] == 0
                    assert_bounded(victim)
                finally:
                    nursery.cancel_scope.cancel()
    assert victim.counters["internal_errors"] == 0 == honest.counters["internal_errors"]


def assert_bounded(net: Network) -> None:
    """Every table of the network under its cap."""
    cfg = net.config
    assert len(net._conns) <= cfg.max_inbound + cfg.max_outbound
    assert len(net._peers) <= cfg.max_inbound + cfg.max_outbound
    assert len(net._book) <= cfg.max_addresses
    assert len(net._inflight) <= len(net._peers) * cfg.max_inflight
    for peer in net._conns:
        assert len(peer.known) <= cfg.known_cap
        assert sum(len(r) for r in peer.requested.values()) <= cfg.max_inflight
        assert peer.queued_bytes <= cfg.queue_bytes
        assert peer.send_ch.statistics().current_buffer_used <= cfg.queue_msgs
        assert peer.decoder.buffered <= MAX_FRAME + 65536
        assert len(peer.inv_pending) <= MAX_INV_IDS


async def read_all(raw: RawPeer, into: list[Message]) -> None:
    """Keep reading (an attacker that reads is not disconnected as a slow peer) until the
    victim hangs up."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while (msg := await raw.recv()) is not None:
            into.append(msg)


async def closed_with(raw: RawPeer) -> list[Message]:
    """Everything the victim sent until it hung up (it must hang up within 5 s)."""
    out: list[Message] = []
    with trio.fail_after(5):
        await read_all(raw, out)
    return out


def banned_for(net: Network, i: int, reason: str, msgs: list[Message]) -> None:
    assert net.is_banned(key(i).public_key)
    assert key(i).public_key not in net.peer_ids()
    assert msgs and msgs[-1] == Bye(f"banned: {reason}"), msgs[-3:]


async def refused_again(sc: Scene, i: int) -> None:
    """A banned key is refused at its next HELLO."""
    raw = await sc.attacker(i)
    async with raw.stream:
        await raw.send(raw.hello())
        assert await closed_with(raw) == [Bye("banned")]


# --- raw bytes ---------------------------------------------------------------------------


async def test_random_bytes_before_the_handshake() -> None:
    """Unauthenticated garbage: refused, nothing banned (the claimed key is unproven), no
    slot held once the connection is gone."""
    rng = random.Random(6)
    async with scene(handshake_timeout=0.5) as sc:
        async def one(n: int) -> None:
            stream = await trio.open_tcp_stream(LOCAL, sc.port)
            raw = RawPeer(stream, key(100 + n))
            async with stream:
                data = rng.randbytes(rng.choice((1, 3, 50, 3000, 70_000)))
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(data)
                    await stream.send_eof()  # short inputs: the victim sees EOF
                await closed_with(raw)

        async with trio.open_nursery() as nursery:
            for n in range(24):
                nursery.start_soon(one, n)
        await until(lambda: len(sc.victim._conns) == 1)
        assert sc.victim.counters["handshake_failures"] == 24
        assert sc.victim.counters["bans"] == 0
        assert not sc.victim._banned_ids and not sc.victim._banned_addrs
        assert sc.victim.peer_ids() == [sc.honest.node_id]
    sc.heart.check(min_beats=5)


async def test_random_bytes_after_the_handshake_ban() -> None:
    rng = random.Random(7)
    async with scene() as sc:
        for n in range(5):
            raw = await sc.joined(100 + n)
            async with raw.stream:
                await raw.stream.send_all(rng.randbytes(200 + n * 1000))
                msgs = await closed_with(raw)
            assert sc.victim.is_banned(key(100 + n).public_key)
            assert msgs[-1] in (Bye("banned: oversized_frame"),
                                Bye("banned: malformed_message"))
        await refused_again(sc, 100)
        assert sc.victim.counters["bans"] == 5
    sc.heart.check(min_beats=5)


async def test_truncated_frames() -> None:
    async with scene(idle_timeout=1.0, ping_interval=0.2) as sc:
        # half a frame, then EOF: the connection ends; no offence, nothing held
        stream = await trio.open_tcp_stream(LOCAL, sc.port)
        raw = RawPeer(stream, key(100))
        await raw.handshake()
        async with stream:
            await stream.send_all(encode_frame(Txs([b"x" * 1000]))[:-300])
            await stream.send_eof()
            await closed_with(raw)
        await until(lambda: sc.peer(100) is None)
        assert not sc.victim.is_banned(key(100).public_key)

        # a frame that announces 4 MiB and stalls after 100 KiB: dropped as idle (the
        # trickle of a partial frame is not a sign of life), buffer released
        raw = await sc.joined(101)
        async with raw.stream:
            await raw.stream.send_all(MAX_FRAME.to_bytes(4, "big") + bytes(100_000))
            await until(lambda: sc.peer(101) is not None
                        and sc.peer(101).decoder.buffered >= 100_000)
            msgs = await closed_with(raw)
            assert Bye("idle_timeout") in msgs
        assert sc.victim.counters["idle_timeouts"] == 1
        assert not sc.victim.is_banned(key(101).public_key)

        # a frame cut short (10 bytes announced, 3 sent) and then a whole frame: the
        # stream is out of step, the "body" is PING plus the next frame's bytes, which is
        # not one msgpack value: malformed, banned
        raw = await sc.joined(102)
        async with raw.stream:
            cut = (10).to_bytes(4, "big") + encode_message(Ping(1))
            await raw.stream.send_all(cut + encode_frame(Ping(7)))
            banned_for(sc.victim, 102, "malformed_message", await closed_with(raw))
    sc.heart.check(min_beats=10)


@pytest.mark.parametrize(("prefix", "reason"), [
    ((MAX_FRAME + 1).to_bytes(4, "big"), "oversized_frame"),
    (b"\xff\xff\xff\xff", "oversized_frame"),
    (b"\x00\x00\x00\x00", "oversized_frame"),  # an empty frame is refused the same way
])
async def test_bad_length_prefixes(prefix: bytes, reason: str) -> None:
    async with scene() as sc:
        # before the handshake the limit is 4 KiB, and an inbound stranger is not banned
        raw = await sc.attacker(100)
        async with raw.stream:
            await raw.stream.send_all((HANDSHAKE_MAX_FRAME + 1).to_bytes(4, "big"))
            msgs = await closed_with(raw)
            assert isinstance(msgs[-1], Bye) and "malformed handshake" in msgs[-1].reason
        assert not sc.victim.is_banned(key(100).public_key)
        # after it: banned on the prefix alone, before any body is buffered
        raw = await sc.joined(101)
        async with raw.stream:
            await raw.stream.send_all(prefix)
            banned_for(sc.victim, 101, reason, await closed_with(raw))
        assert sc.victim.counters["bans"] == 1


# --- valid frames, invalid content ---------------------------------------------------------

ID = sha256(b"some id")


def _body(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("frames", "reason"), [
    ([frame(_body([99]))], "malformed_message"),  # unknown type
    ([frame(_body([3, {"a": 1}]))], "malformed_message"),  # a map
    ([frame(_body([5, 0, [b"short"]]))], "malformed_message"),  # INV id of 5 bytes
    ([frame(_body([10, 1, 0]))], "malformed_message"),  # GET_BLOCKS count 0
    ([frame(_body([7, []]))], "malformed_message"),  # empty TXS
    ([frame(b"\x92\x03")], "malformed_message"),  # truncated msgpack
    ([frame(_body([3, 1]) + b"\x00")], "malformed_message"),  # trailing bytes
    ([encode_frame(Hello(1, CHAIN, key(100).public_key, ID, 0, 0, ID))] * 2,
     "unexpected_message"),  # HELLO again: 50 + 50
    ([encode_frame(BlockRange(1, [b"b"]))] * 2, "unexpected_message"),  # unasked-for
    ([encode_frame(Txs([b"bad-1", b"ok", b"bad-2", b"bad-3", b"bad-4"]))], "invalid_tx"),
    ([encode_frame(Votes([b"bad-v%d" % i for i in range(4)]))], "invalid_vote"),
    ([encode_frame(Blocks([b"bad-b1"])), encode_frame(Blocks([b"bad-b2"]))],
     "invalid_block"),
])
async def test_invalid_content_bans(frames: list[bytes], reason: str) -> None:
    async with scene() as sc:
        raw = await sc.joined(100)
        async with raw.stream:
            await raw.stream.send_all(b"".join(frames))
            banned_for(sc.victim, 100, reason, await closed_with(raw))
        await refused_again(sc, 100)
        assert sc.victim.counters["bans"] == 1


async def test_below_the_threshold_stays_connected() -> None:
    """Three invalid txs are 75 points: suspicious, not yet proof; the peer stays."""
    async with scene() as sc:
        raw = await sc.joined(100)
        async with raw.stream:
            await raw.send(Txs([b"bad-1", b"bad-2", b"bad-3"]))
            await until(lambda: sc.peer(100).score == 3 * PENALTIES["invalid_tx"])
            await raw.send(Ping(1))
            while not isinstance(await raw.recv(), Pong):
                pass
            assert not sc.victim.is_banned(key(100).public_key)


# --- the handshake: wrong chain, replays, impersonation ------------------------------------


async def test_wrong_chain_and_version() -> None:
    async with scene() as sc:
        for kw, reason in (({"chain_id": OTHER_CHAIN}, "wrong_chain"),
                           ({"version": 7}, "wrong_version 7, want 1")):
            raw = await sc.attacker(100)
            async with raw.stream:
                await raw.send(raw.hello(**kw))
                assert await closed_with(raw) == [Bye(reason)]
        # a peer of another chain that gets past HELLO (it lies about the chain id) cannot
        # sign for ours: its proof is over its own chain id
        raw = await sc.attacker(101, chain=OTHER_CHAIN)
        async with raw.stream:
            await raw.send(raw.hello(chain_id=CHAIN))
            theirs = await raw.recv()
            assert isinstance(theirs, Hello) and isinstance(await raw.recv(), HelloAck)
            await raw.send(HelloAck(sign_ack(raw.key, OTHER_CHAIN, raw.nonce,
                                             theirs.node_pubkey, theirs.nonce)))
            assert (await closed_with(raw))[-1] == Bye("bad_signature")
        assert sc.victim.peer_ids() == [sc.honest.node_id]
        assert sc.victim.counters["handshake_failures"] == 3
        assert sc.victim.counters["bans"] == 0  # inbound strangers: nothing provable


async def test_replayed_and_impersonated_handshakes() -> None:
    async with scene() as sc:
        # record a valid proof on one connection ...
        first = await sc.attacker(100)
        async with first.stream:
            theirs = await first.handshake()
        # ... replayed on the next: the victim's nonce is fresh, so the proof is stale
        again = await sc.attacker(100)
        async with again.stream:
            again.nonce = first.nonce
            await again.send(again.hello())
            assert isinstance(await again.recv(), Hello)
            assert isinstance(await again.recv(), HelloAck)
            await again.send(HelloAck(sign_ack(key(100), CHAIN, first.nonce,
                                               theirs.node_pubkey, theirs.nonce)))
            assert (await closed_with(again))[-1] == Bye("bad_signature")
        # claiming the honest peer's key without its private key: refused, and the honest
        # peer is neither banned nor disconnected (nobody can get it banned this way)
        fake = await sc.attacker(101)
        async with fake.stream:
            await fake.send(fake.hello(node_pubkey=key(HONEST).public_key))
            assert isinstance(await fake.recv(), Hello)
            assert isinstance(await fake.recv(), HelloAck)
            await fake.send(HelloAck(bytes(64)))
            assert (await closed_with(fake))[-1] == Bye("bad_signature")
        assert not sc.victim.is_banned(key(HONEST).public_key)
        assert sc.honest.node_id in sc.victim.peer_ids()


# --- floods of valid but useless messages --------------------------------------------------


async def test_flood_of_known_inventory() -> None:
    """INVs of ids the victim has: no GET_DATA, nothing in flight, known set capped."""
    async with scene(known_cap=5000) as sc:
        ids = [sc.vh.add(Kind.TX, b"known-%d" % i) for i in range(MAX_INV_IDS)]
        raw = await sc.joined(100)
        got: list[Message] = []
        async with raw.stream:
            sc.nursery.start_soon(read_all, raw, got)
            data = encode_frame(Inv(Kind.TX, ids))
            for _ in range(200):  # 800k ids, 27 MiB
                await raw.stream.send_all(data)
            await until(lambda: sc.victim.counters["msg_in_inv"] >= 201)
            peer = sc.peer(100)
            assert peer is not None and len(peer.known) <= 5000
            # nothing asked of the attacker (the heartbeat's own tx may be in flight)
            assert not any(e.peer is peer or peer in e.alternates
                           for e in sc.victim._inflight.values())
            assert not any(e.item_id in set(ids) for e in sc.victim._inflight.values())
            assert not any(isinstance(m, GetData) for m in got)
            assert not sc.victim.is_banned(key(100).public_key)
            assert_bounded(sc.victim)
    sc.heart.check(min_beats=5)


async def test_flood_of_unknown_inventory_never_delivered() -> None:
    """Announce-and-withhold at scale: requests capped per peer, released on disconnect."""
    async with scene(max_inflight=3000, request_timeout=60.0) as sc:
        raw = await sc.joined(100)
        got: list[Message] = []
        rng = random.Random(9)
        async with raw.stream:
            sc.nursery.start_soon(read_all, raw, got)
            for kind in Kind:  # the cap is per peer, across kinds
                for _ in range(3):
                    await raw.send(Inv(kind, [rng.randbytes(32) for _ in range(MAX_INV_IDS)]))
            await until(lambda: sc.victim.counters["inflight_full"] > 0
                        and sc.victim.counters["msg_in_inv"] >= 10)
            peer = sc.peer(100)
            assert sum(len(r) for r in peer.requested.values()) <= 3000
            assert 0 < len(sc.victim._inflight) <= 3000 + 8  # + the heartbeat's own
            assert_bounded(sc.victim)
        await until(lambda: sc.peer(100) is None)
        # all released with the connection (the heartbeat's own tx may be in flight)
        assert len(sc.victim._inflight) <= 8
        assert not any(e.peer is peer for e in sc.victim._inflight.values())
    sc.heart.check(min_beats=5)


async def test_item_messages_do_not_rescan_the_whole_request_table() -> None:
    """With thousands of ids requested from a peer, each small TXS it sends costs the
    victim a bounded number of lookups, not one per id in flight."""
    async with scene(max_inflight=16_000) as sc:
        calls = [0]
        has = sc.vh.has

        def counting_has(kind: Kind, item_id: bytes) -> bool:
            calls[0] += 1
            return has(kind, item_id)

        sc.vh.has = counting_has  # type: ignore[method-assign]
        raw = await sc.joined(100)
        got: list[Message] = []
        rng = random.Random(10)
        async with raw.stream:
            sc.nursery.start_soon(read_all, raw, got)
            for _ in range(3):
                await raw.send(Inv(Kind.TX, [rng.randbytes(32) for _ in range(MAX_INV_IDS)]))
            await until(lambda: len(sc.peer(100).requested[Kind.TX]) == 3 * MAX_INV_IDS)
            before = calls[0]
            for n in range(200):
                await raw.send(Txs([b"useless-%d" % n]))
            await until(lambda: sc.victim.counters["msg_in_txs"] >= 200)
            per_message = (calls[0] - before) / 200
            assert per_message < 1000, per_message  # was 12,288: every id in flight
    sc.heart.check(min_beats=5)


@pytest.mark.parametrize("make", [
    lambda n: Ping(n),
    lambda n: GetBlocks(10**9 + n, 500),  # blocks of nothing
    lambda n: GetHeads(),
    lambda n: NotFound(Kind.TX, [sha256(b"%d" % n)]),  # for ids never asked
    lambda n: Pong(n),  # unsolicited
    lambda n: Heads(n, ID, 0),
    lambda n: Peers([("10.9.9.9", 1 + n % 1000)]),  # unsolicited: ignored
    lambda n: PeersReq(),
], ids=["ping", "get_blocks_of_nothing", "get_heads", "notfound", "pong", "heads", "peers",
        "peers_req"])
async def test_floods_of_useless_messages(make: Callable[[int], Message]) -> None:
    """Valid messages in bulk: answered or ignored, never scored, rate-limited, and the
    honest peer's gossip keeps flowing meanwhile."""
    # 1,000/s: well below what the node reads even on a busy machine, so the limit (not
    # the machine) decides the pace, and the test shows the limit at work
    async with scene(rate_msgs=1000.0, burst_msgs=200.0) as sc:
        raw = await sc.joined(100)
        got: list[Message] = []
        async with raw.stream:
            sc.nursery.start_soon(read_all, raw, got)
            data = b"".join(encode_frame(make(n)) for n in range(2000))
            counter = "msg_in_" + type(make(0)).__name__.lower()
            done = sc.victim.counters[counter] + 2000
            t0 = trio.current_time()
            await raw.stream.send_all(data)
            await until(lambda: sc.victim.counters[counter] >= done)
            # 200 of burst, then 1,000/s: the rest waited (TCP pushed back on the sender)
            assert trio.current_time() - t0 >= 1.7
            assert sc.victim.counters["rate_limited"] > 0
            assert sc.peer(100) is not None and sc.peer(100).score == 0
            assert not sc.victim._book  # unsolicited PEERS taught nothing
            assert_bounded(sc.victim)
    assert sc.victim.counters["bans"] == 0
    sc.heart.check(min_beats=10)


async def test_connection_flood() -> None:
    """More connections than inbound slots, none of which ever speaks: the extra ones are
    refused at once, the rest time out; the honest peer's connection is never touched."""
    async with scene(max_inbound=8, handshake_timeout=0.5) as sc:
        streams = []
        for _ in range(20):
            streams.append(await trio.open_tcp_stream(LOCAL, sc.port))
        await until(lambda: sc.victim.counters["inbound_refused_full"] >= 13)
        assert len(sc.victim._conns) <= 8
        await until(lambda: len(sc.victim._conns) == 1)  # handshake timeouts
        for s in streams:
            await s.aclose()
        assert sc.victim.peer_ids() == [sc.honest.node_id]
    sc.heart.check(min_beats=5)


class CopyingHandler(StoreHandler):
    """Hands out a fresh copy of each item per read, as a database does (LevelDB returns
    new bytes per get); StoreHandler's shared references would hide a copy per id."""

    def get_items(self, kind: Kind, ids: list[bytes]) -> list[bytes]:
        return [bytes(bytearray(raw)) for raw in super().get_items(kind, ids)]


async def test_get_data_amplification_is_bounded() -> None:
    """GET_DATA naming one big item 4096 times: answered once, and memory stays small."""
    async with scene() as sc:
        big = b"B" * 16 * 1024
        copying = CopyingHandler()
        copying.items = sc.vh.items  # same store, copying reads
        sc.victim.handler = copying
        bid = copying.add(Kind.BLOCK, big)
        raw = await sc.joined(100)
        got: list[Message] = []
        async with raw.stream:
            sc.nursery.start_soon(read_all, raw, got)
            tracemalloc.start()
            try:
                await raw.send(GetData(Kind.BLOCK, [bid] * MAX_INV_IDS))
                await until(lambda: any(isinstance(m, Blocks) for m in got))
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            await raw.send(Ping(1))
            await until(lambda: any(isinstance(m, Pong) for m in got))
            blocks = [r for m in got if isinstance(m, Blocks) for r in m.raws]
            assert blocks == [big]  # one copy of the item, not 4096
            assert peak < 8 * 1024 * 1024, peak  # 4096 copies would be 64 MiB
    sc.heart.check(min_beats=3)


async def test_answers_count_against_the_requesters_byte_rate() -> None:
    """GET_BLOCKS is 20 bytes and its answer up to 4 MiB: the answers are charged to the
    asker's byte rate, so a flood of requests is throttled by what it costs us."""
    async with scene(rate_bytes=4 * 2**20, burst_bytes=2 * 2**20) as sc:
        sc.vh.chain = [b"genesis"] + [bytes([h]) * 20_000 for h in range(1, 51)]
        raw = await sc.joined(100)
        got: list[Message] = []
        async with raw.stream:
            sc.nursery.start_soon(read_all, raw, got)
            t0 = trio.current_time()
            await raw.stream.send_all(b"".join(encode_frame(GetBlocks(1, 500))
                                               for _ in range(10)))
            await until(lambda: sum(isinstance(m, BlockRange) for m in got) == 10)
            # 10 MiB of answers to 200 bytes of requests: 2 MiB of burst, then 4 MiB/s
            assert trio.current_time() - t0 >= 1.5
            assert all(len(m.raws) == 50 for m in got if isinstance(m, BlockRange))
            assert sc.victim.counters["rate_limited"] > 0 and sc.peer(100).score == 0
    sc.heart.check(min_beats=10)


async def test_ban_tables_are_capped() -> None:
    """Fresh keys are free: banning key after key must not grow the ban table forever."""
    async with scene(max_bans=5) as sc:
        for n in range(8):
            raw = await sc.joined(100 + n)
            async with raw.stream:
                await raw.stream.send_all(frame(b"\xc1"))
                banned_for(sc.victim, 100 + n, "malformed_message", await closed_with(raw))
        assert len(sc.victim._banned_ids) == 5
        assert sc.victim.counters["bans_evicted"] == 3 and sc.victim.counters["bans"] == 8
        assert not sc.victim.is_banned(key(100).public_key)  # the oldest bans made room
        assert all(sc.victim.is_banned(key(100 + n).public_key) for n in range(3, 8))


class _BigChain:
    """A chain of 1 MiB blocks that counts its reads (only what P2PAdapter touches)."""

    def __init__(self, height: int) -> None:
        self.head = SimpleNamespace(height=height)
        self.reads = 0

    def block_id_at(self, height: int) -> bytes:
        return height.to_bytes(32, "big")

    def get_block_raw(self, block_id: bytes) -> bytes:
        self.reads += 1
        return bytes(2**20)


def test_the_node_reads_one_frame_of_blocks_per_request() -> None:
    """The node's side of GET_BLOCKS: 500 blocks of 1 MiB would be 500 MiB read for an
    answer of one 4 MiB frame; it stops reading at a frame's worth."""
    chain = _BigChain(500)
    adapter = P2PAdapter(SimpleNamespace(chain=chain))  # type: ignore[arg-type]
    raws = adapter.get_blocks(1, 500)
    assert len(raws) == chain.reads == 4
    assert len(next(fit_items(raws, MAX_GET_BLOCKS))) == 3  # of which 3 fit the frame
    small = _BigChain(3)
    assert len(P2PAdapter(SimpleNamespace(chain=small)).get_blocks(2, 500)) == 2  # type: ignore[arg-type]


# --- slow attacks, in virtual time (memory streams, MockClock) ------------------------------

VPORT = 9000


async def test_announce_and_withhold(autojump_clock: trio.testing.MockClock) -> None:
    """A peer announces an item first and never delivers it: the item comes from the next
    announcer after request_timeout. The withholder is not scored: it cannot be told from
    a slow peer (docs/p2p.md, known limits)."""
    mem = MemoryNetwork()
    victim, vh = make_node(1, transport=mem.transport("n1"), listen_port=VPORT, tick=1.0,
                           peer_exchange=False)
    honest, hh = make_node(2, transport=mem.transport("n2"), seeds=[("n1", VPORT)],
                           listen_port=None, tick=1.0, peer_exchange=False)
    iid = hh.add(Kind.BLOCK, b"withheld")
    got: list[Message] = []
    with trio.fail_after(600):
        async with running(victim), trio.open_nursery() as nursery:
            raw = RawPeer(await mem.transport("evil").connect("n1", VPORT), key(100))
            await raw.handshake()
            nursery.start_soon(read_all, raw, got)
            await raw.send(Inv(Kind.BLOCK, [iid]))  # first, so the victim asks us
            await until(lambda: any(isinstance(m, GetData) for m in got))
            async with running(honest):
                await until(lambda: honest.node_id in victim.peer_ids())
                t0 = trio.current_time()
                honest.announce(Kind.BLOCK, [iid])
                await until(lambda: vh.has(Kind.BLOCK, iid))
                waited = trio.current_time() - t0
            nursery.cancel_scope.cancel()
    assert victim.config.request_timeout - 3 <= waited <= victim.config.request_timeout + 2
    assert victim.counters["request_timeouts"] == 1 == victim.counters["refetches"]
    assert victim.counters["misbehaviour_points"] == 0


async def test_a_peer_that_stops_reading(autojump_clock: trio.testing.MockClock) -> None:
    """Over streams without buffers, a peer that never reads blocks our writer mid-frame:
    dropped after send_timeout, not banned (a stalled peer proves nothing)."""
    mem = MemoryNetwork(lockstep=True)
    victim, _ = make_node(1, transport=mem.transport("n1"), listen_port=VPORT, tick=1.0,
                          peer_exchange=False)
    with trio.fail_after(600):
        async with running(victim):
            raw = RawPeer(await mem.transport("evil").connect("n1", VPORT), key(100))
            async with raw.stream:
                await raw.handshake()
                await until(lambda: key(100).public_key in victim.peer_ids())
                t0 = trio.current_time()
                await until(lambda: key(100).public_key not in victim.peer_ids())
                took = trio.current_time() - t0
    cfg = victim.config
    assert cfg.send_timeout <= took < min(cfg.idle_timeout, cfg.send_timeout + 2)
    assert victim.counters["slow_peer_disconnects"] == 1 and victim.counters["bans"] == 0


async def test_address_book_flooding(autojump_clock: trio.testing.MockClock) -> None:
    """Answers to our PEERS_REQ stuffed with addresses that lead nowhere: at most 100
    taken per answer, the book never above max_addresses."""
    mem = MemoryNetwork()
    victim, _ = make_node(1, transport=mem.transport("n1"), listen_port=VPORT, tick=1.0,
                          peers_interval=5.0, max_addresses=50)
    got: list[Message] = []
    answered = 0
    with trio.fail_after(600):
        async with running(victim), trio.open_nursery() as nursery:
            raw = RawPeer(await mem.transport("evil").connect("n1", VPORT), key(100))
            await raw.handshake()
            nursery.start_soon(read_all, raw, got)

            async def asked_more_than(n: int) -> None:
                await until(lambda: sum(isinstance(m, PeersReq) for m in got) > n)

            async def read_answers(n: int) -> None:
                await until(lambda: victim.counters["msg_in_peers"] == n)

            for k in range(12):
                await asked_more_than(k)
                await raw.send(Peers([(f"10.{k}.{n // 250}.{n % 250}", 7000)
                                      for n in range(1000)]))
                answered += 1
                await read_answers(k + 1)
                assert len(victim._book) <= 50
            assert victim.counters["dials"] > 0 and victim.counters["dial_failures"] > 0
            assert victim._peers[key(100).public_key].score == 0
            nursery.cancel_scope.cancel()
    assert answered == 12


# --- content that needs a real chain: real Nodes in the simulation -------------------------

ATTACKER_HOST = "10.0.0.66"
FAST = Faults(delay=(0.001, 0.002))


class Hostile:
    """Hostile connections to simulated nodes: each completes the handshake with a node
    key of its own (fresh keys are free, which is what a banned attacker does), keeps
    reading, and sends whatever the scenario crafts."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.n = 0
        self.got: dict[bytes, list[Message]] = {}

    async def connect(self, target: int) -> RawPeer:
        self.n += 1
        k = PrivateKey(sha256(b"hostile/%d" % self.n))
        stream = await self.sim.net.transport(ATTACKER_HOST).connect(
            self.sim.nodes[target].host, P2P_PORT)
        raw = RawPeer(stream, k, chain=self.sim.genesis.chain_id)
        with trio.fail_after(5):
            await raw.handshake()
        net = self.sim.node(target).network
        assert net is not None
        await until(lambda: k.public_key in net.peer_ids())
        got = self.got[k.public_key] = []
        self.sim.nursery.start_soon(read_all, raw, got)
        return raw

    def banned(self, target: int, raw: RawPeer) -> bool:
        net = self.sim.node(target).network
        return net is not None and net.is_banned(raw.key.public_key)

    def score(self, target: int, raw: RawPeer) -> int:
        net = self.sim.node(target).network
        peer = net._peers.get(raw.key.public_key) if net is not None else None
        return -1 if peer is None else int(peer.score)


def witness_key(sim: Sim, address: bytes) -> PrivateKey:
    return next(k for k in sim.witness_keys if k.address == address)


def honest_scores(sim: Sim, i: int) -> dict[int, int]:
    """The misbehaviour score node i holds against each honest node it is connected to."""
    net = sim.node(i).network
    assert net is not None
    ids = {sim.node(j).node_key.public_key: j for j in range(len(sim.nodes))
           if j != i and sim.nodes[j].node is not None}
    return {ids[pid]: p.score for pid, p in net._peers.items() if pid in ids}


def honest_banned(sim: Sim, i: int) -> list[int]:
    net = sim.node(i).network
    assert net is not None
    return [j for j in range(len(sim.nodes)) if j != i and sim.nodes[j].node is not None
            and net.is_banned(sim.node(j).node_key.public_key)]


def next_block(sim: Sim, i: int, signer: PrivateKey, *, slot: int | None = None,
               digest: bytes = b"", txs: list[SignedTx] | None = None) -> Block:
    """A block on node i's head for ``slot`` (default: the next one) signed by ``signer``;
    the state digest is wrong unless given (each wrong one distinct, so distinct ids)."""
    head = sim.node(i).chain.head
    s = head.slot + 1 if slot is None else slot
    return Block.build(signer, sim.genesis.chain_id, head.height + 1, head.id,
                       GENESIS_TIME + s * sim.params.block_interval_s, txs or [], [],
                       digest or sha256(b"wrong digest %d" % random.Random(s).random()))


async def content_attacks(sim: Sim) -> dict[str, Any]:
    """Each attack from its own connection to node 0; the outcome checked as it lands."""
    victim = sim.node(0)
    hostile = Hostile(sim)
    cid = sim.genesis.chain_id
    out: dict[str, Any] = {}
    sim.nursery.start_soon(lambda: sim.transfer_load(every_slots=1, until_slot=40))

    async def settle(pred: Callable[[], bool], what: str) -> None:
        with trio.fail_after(5):  # virtual seconds: a few slots
            await until(pred, step=0.05)
        out[what] = True

    await sim.run_until_slot(5, 0.5)
    # txs with bad signatures, and a tx signed for another chain: 25 points each, 4 ban
    raw = await hostile.connect(0)
    bad = [sim.make_tx(a, [1, sim.account_keys[(a + 1) % 4].address, 5, ""], salt=90 + a)
           for a in range(3)]
    bad = [t[:-1] + bytes([t[-1] ^ 1]) for t in bad]
    tapos = (0, int.from_bytes(cid[:4], "big"))
    other = build_tx(sim.account_keys[0], sha256(b"another chain"),
                     [1, sim.account_keys[1].address, 5, ""], ref_block_num=tapos[0],
                     ref_block_prefix=tapos[1], expiration=int(sim.now()) + 100, fee=10)
    await raw.send(Txs([*bad, other.raw]))
    await settle(lambda: hostile.banned(0, raw), "bad_tx_signatures_banned")

    # blocks: from a witness not scheduled for the slot, and for a slot not after the
    # parent's, then one with a wrong state digest from the scheduled witness: each 50
    await sim.run_until_slot(sim.current_slot() + 1, 0.5)
    raw = await hostile.connect(0)
    head = victim.chain.head
    scheduled = victim.witness_for_slot(head.slot + 1)
    wrong = next(k for k in sim.witness_keys if k.address != scheduled)
    b1 = next_block(sim, 0, wrong)
    b2 = next_block(sim, 0, witness_key(sim, victim.witness_for_slot(head.slot)),
                    slot=head.slot)
    await raw.send(Blocks([b1.raw]))
    await settle(lambda: hostile.score(0, raw) == 50, "wrong_witness_50")
    await raw.send(Blocks([b2.raw]))
    await settle(lambda: hostile.banned(0, raw), "wrong_slot_banned")
    assert b1.id in victim.bad_blocks and b2.id in victim.bad_blocks  # the id is bad

    await sim.run_until_slot(sim.current_slot() + 1, 0.5)
    raw = await hostile.connect(0)
    head = victim.chain.head
    b3 = next_block(sim, 0, witness_key(sim, victim.witness_for_slot(head.slot + 1)))
    await raw.send(Blocks([b3.raw]))
    await settle(lambda: hostile.score(0, raw) == 50 and b3.id in victim.bad_blocks,
                 "wrong_digest_50")
    # the same bad block again (a replay of an invalid one) costs the same again
    await raw.send(Blocks([b3.raw]))
    await settle(lambda: hostile.banned(0, raw), "bad_block_replay_banned")

    # votes from keys that are no witnesses: not counted, not kept, not relayed; not
    # scored either (docs/p2p.md: an honest node on a fork that switched voter sets
    # relays such votes), and cheap: refused before any signature check
    await sim.run_until_slot(sim.current_slot() + 1, 0.5)
    raw = await hostile.connect(0)
    head, final = victim.chain.head, victim.chain.final
    pool = len(victim.consensus.vote_pool)
    strangers = [Vote.sign(PrivateKey(sha256(b"stranger%d" % n)), cid, final.id,
                           final.slot, head.id, sim.current_slot()) for n in range(300)]
    for _ in range(5):
        await raw.send(Votes([v.raw for v in strangers]))
    await settle(lambda: victim.network is not None
                 and victim.network.counters["msg_in_votes"] >= 5, "stranger_votes_read")
    assert hostile.score(0, raw) == 0
    assert not any(v.hash in victim.consensus.vote_pool for v in strangers)
    assert len(victim.consensus.vote_pool) <= pool + 8  # only honest votes came in
    out["stranger_votes_ignored"] = True

    # votes claiming a witness with a bad signature: 25 each
    raw = await hostile.connect(0)
    forged = [Vote(final.id, final.slot, head.id, sim.current_slot(), k.address,
                   bytes([n]) * 64) for n, k in enumerate(sim.witness_keys)]
    await raw.send(Votes([v.raw for v in forged]))
    await settle(lambda: hostile.banned(0, raw), "forged_votes_banned")

    # replays of what the victim itself pushed: nothing happens, nobody is scored
    await sim.run_until_slot(sim.current_slot() + 2, 0.5)
    raw = await hostile.connect(0)
    await sim.run_until_slot(sim.current_slot() + 2, 0.5)
    pushed = hostile.got[raw.key.public_key]
    blocks = [r for m in pushed if isinstance(m, Blocks) for r in m.raws]
    votes = [r for m in pushed if isinstance(m, Votes) for r in m.raws]
    assert blocks and votes
    head = victim.chain.head
    for _ in range(20):
        await raw.send(Blocks(blocks))
        await raw.send(Votes(votes))
    await trio.sleep(0.5)
    assert hostile.score(0, raw) == 0 and victim.chain.head.height >= head.height
    out["replays_harmless"] = True

    # many connections under fresh keys, each telling its head: the node's table of
    # peers' heads keeps only live peers (it grew by one entry per key before)
    for n in range(150):
        raw = await hostile.connect(0)
        await raw.send(Heads(10**6 + n, sha256(b"h%d" % n), 0))
        await raw.stream.aclose()
    await trio.sleep(0.5)
    assert len(victim.peer_heads) <= 2 * len(sim.nodes) + 64 + 1
    out["peer_heads_bounded"] = True

    await sim.run_until_slot(45)
    out["honest_scores"] = {i: honest_scores(sim, i) for i in range(4)}
    out["honest_banned"] = {i: honest_banned(sim, i) for i in range(4)}
    return out


def test_content_attacks_on_a_real_node(tmp_path: Path) -> None:
    cfg = SimConfig(witnesses=4, faults=Faults(delay=(0.005, 0.02)))
    res, out = run_sim(31, cfg, content_attacks, tmp_path)
    for what in ("bad_tx_signatures_banned", "wrong_witness_50", "wrong_slot_banned",
                 "wrong_digest_50", "bad_block_replay_banned", "stranger_votes_ignored",
                 "forged_votes_banned", "replays_harmless", "peer_heads_bounded"):
        assert out.get(what), what
    # nobody honest was scored or banned, and the victim kept up with the chain: blocks
    # and votes kept flowing to and from it through every attack
    assert all(s == 0 for scores in out["honest_scores"].values() for s in scores.values())
    assert not any(out["honest_banned"].values())
    assert_converged(res, honest=False)
    assert res.max_lag(from_slot=SimConfig().warmup_slots) <= 2
    assert res.finals[0].slot >= 42


async def malleated_copies(sim: Sim) -> dict[str, Any]:
    """The witness's signature and the txs' signatures are not part of a block id. A
    hostile peer that gets each block first (fast links to a source node and to the
    victim, while the victim's honest links are slow) sends the victim copies with a
    garbage witness signature or a garbage tx signature, ahead of the honest copies; later
    with the honest links slower than a slot, so that the copies arrive as orphans."""
    victim, source = 4, 1
    vhost = sim.nodes[victim].host
    for i in range(4):
        sim.net.set_faults(sim.nodes[i].host, vhost, Faults(delay=(0.3, 0.35)))
    for i in (victim, source):
        sim.net.set_faults(ATTACKER_HOST, sim.nodes[i].host, FAST)
    sim.nursery.start_soon(lambda: sim.transfer_load(every_slots=1, until_slot=28))
    hostile = Hostile(sim)
    await sim.run_until_slot(4, 0.5)
    spy = await hostile.connect(source)
    seen: list[Block] = []
    sent = {"sig": 0, "tx_sig": 0, "orphan_tx_sig": 0}
    judged: list[int] = []  # the score each copy's sender got
    phase = ["head"]

    def malleate(block: Block, what: str) -> bytes:
        txs = [[t.unsigned(), t.signature] for t in block.txs]
        sig = block.signature
        if what == "sig":
            sig = bytes(64)
        else:
            txs[0][1] = bytes(64)
        votes = [v.obj() for v in block.votes]
        return encode([block.header(), sig, txs, votes])

    async def send_copy(block: Block, what: str) -> None:
        # one fresh connection per copy, closed once the copy is judged, so the copies'
        # senders neither pile up in the victim's inbound slots nor reach a ban
        raw = await hostile.connect(victim)
        await raw.send(Blocks([malleate(block, what)]))
        sent[what] += 1
        with trio.move_on_after(3):
            await until(lambda: hostile.score(victim, raw) != 0, step=0.01)
        judged.append(hostile.score(victim, raw))
        await raw.stream.aclose()

    async def inject() -> None:
        done: set[bytes] = set()
        while True:
            await trio.sleep(0.005)
            for m in hostile.got[spy.key.public_key]:
                if not isinstance(m, Blocks):
                    continue
                for r in m.raws:
                    block = decode_block(r, sim.params.max_block_bytes)
                    if block.id in done:
                        continue
                    done.add(block.id)
                    seen.append(block)
                    if phase[0] == "head":
                        what = "sig" if (len(done) % 2 or not block.txs) else "tx_sig"
                    elif phase[0] == "orphan" and block.txs:
                        what = "orphan_tx_sig"
                    else:
                        continue
                    sim.nursery.start_soon(send_copy, block, what)

    sim.nursery.start_soon(inject)
    await sim.run_until_slot(13)
    # slower than a slot: each copy arrives before its parent
    phase[0] = "orphan"
    for i in range(4):
        sim.net.set_faults(sim.nodes[i].host, vhost, Faults(delay=(1.3, 1.35)))
    await sim.run_until_slot(24)
    phase[0] = "off"  # honest copies win the race again from here: no more copies
    for i in range(4):
        sim.net.set_faults(sim.nodes[i].host, vhost, Faults(delay=(0.005, 0.02)))
    await sim.run_until_slot(32, 0.9)
    v, s = sim.node(victim).chain, sim.node(source).chain
    # every final block the victim holds is the honest one, byte for byte
    stored = [v.get_block_raw(v.block_id_at(h) or b"") == s.get_block_raw(
        s.block_id_at(h) or b"") for h in range(1, min(v.final.height, s.final.height) + 1)]
    return {"sent": sent, "stored_honest": stored, "victim_final": v.final.height,
            "source_final": s.final.height, "honest_scores": honest_scores(sim, victim),
            "honest_banned": honest_banned(sim, victim), "seen": len(seen),
            "bad_ids": [b.id for b in seen if b.id in sim.node(victim).bad_blocks],
            "judged": judged}


def test_malleated_copies_do_not_poison_honest_blocks(tmp_path: Path) -> None:
    cfg = SimConfig(witnesses=4, observers=1, faults=Faults(delay=(0.005, 0.02)))
    res, out = run_sim(32, cfg, malleated_copies, tmp_path)
    sent = out["sent"]
    assert sent["sig"] >= 3 and sent["tx_sig"] >= 3 and sent["orphan_tx_sig"] >= 3, sent
    # the honest blocks were taken despite the copies that came first; nobody honest was
    # scored for relaying them, and the victim's store holds the honest bytes
    assert out["bad_ids"] == []
    assert out["honest_scores"] and all(x == 0 for x in out["honest_scores"].values())
    assert out["honest_banned"] == []
    assert out["stored_honest"] and all(out["stored_honest"])
    assert out["victim_final"] >= out["source_final"] - 2
    assert_converged(res, honest=False)
    # and the sender of every copy was scored for it (50, an invalid block)
    assert out["judged"] == [PENALTIES["invalid_block"]] * sum(sent.values())
