"""The p2p network of one node: connections, handshake, gossip, sync, peer exchange, bans.

Rules (docs/p2p.md explains each limit and what it defends):

- A connection is a Peer. The dialer sends HELLO; the listener answers HELLO + HELLO_ACK; the
  dialer answers HELLO_ACK. Each ACK signs the other side's fresh nonce (handshake.py). Until
  then frames are capped at HANDSHAKE_MAX_FRAME and the whole exchange at handshake_timeout.
- A proven peer is registered under its node key. Never two connections per node key: of two,
  keep the one dialed by the smaller node key (both ends compute the same answer, so a
  simultaneous dial in both directions leaves exactly one connection).
- Per registered peer three tasks run: the reader (decode, rate-limit, dispatch, call the
  handler), the writer (drain the bounded send queue) and keepalive (PING; drop on silence),
  plus a small INV batcher. Handler callbacks run in the reader, so a peer waits for us to
  process its data before we read more from it: back-pressure, not unbounded buffering.
- Gossip (INV, PING, HEADS pushes) is dropped for a peer whose queue is filling up; requests
  and answers (GET_DATA, items, BLOCK_RANGE, PONG, ...) are never dropped: a peer that cannot
  take them is disconnected.
- Misbehaviour adds points to the peer's score; at ban_threshold the node key and the peer's
  address are banned for ban_seconds. Before a key is proven, only an address we dialed
  ourselves is ever banned, so nobody can get an honest node banned by claiming its key.
- Time is trio.current_time() only (MockClock works); randomness is the injected rng only.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from typing import Any, Protocol, TypeVar

import trio

from consensus.crypto import PrivateKey
from p2p.compact import CompactRelay
from p2p.frames import MAX_FRAME, FrameError, encode_frame
from p2p.handshake import sign_ack, verify_ack
from p2p.messages import (
    MAX_GET_BLOCKS,
    MAX_INV_IDS,
    MAX_ITEMS,
    NONCE_LEN,
    STATE_SYNC_TYPES,
    BlockRange,
    Blocks,
    BlockTxn,
    Bye,
    Chunk,
    CmpctBlock,
    CmpctSeen,
    GetBlocks,
    GetBlockTxn,
    GetChunk,
    GetData,
    GetHeads,
    GetSnapshot,
    Heads,
    Hello,
    HelloAck,
    Inv,
    Kind,
    Message,
    MessageError,
    NotFound,
    Peers,
    PeersReq,
    Ping,
    Pong,
    SendCmpct,
    SnapshotOffer,
    Txs,
    Votes,
    decode_message,
    serves_from,
)
from p2p.peer import Peer, RangeRequest, inv_key
from p2p.transport import TcpTransport, Transport

__all__ = [
    "PENALTIES",
    "PROTOCOL_VERSION",
    "Network",
    "NodeKey",
    "P2PConfig",
    "P2PHandler",
    "PeerUnavailable",
    "StateSyncHandler",
]

log = logging.getLogger("p2p")

PROTOCOL_VERSION = 1
NodeKey = PrivateKey

RECV_BYTES = 65536
WRITE_BATCH_BYTES = 256 * 1024  # frames joined into one write (a big frame goes whole)
LINGER = 1.0  # seconds a closing connection may take to flush its queue and BYE
MAX_ALTERNATES = 8  # other announcers remembered per in-flight id, to re-ask on failure
MAX_SHARED_ADDRESSES = 100  # addresses per PEERS answer we send
MAX_LEARNED_PER_MSG = 100  # addresses we take from one PEERS answer
# Room left in a frame for the message header around a list of items (type, from_height,
# array header) and per item (bin header), so chunks never exceed MAX_FRAME.
FRAME_OVERHEAD = 64
ITEM_OVERHEAD = 5
# After items arrive, the oldest FACTOR x items + SLACK open requests of that peer are
# checked for release (see _on_items): honest answers come in request order, so this finds
# them, while a peer sending one item per message cannot make us scan all its requests.
RELEASE_SCAN_FACTOR = 2
RELEASE_SCAN_SLACK = 64

# Misbehaviour points; ban_threshold (default 100) bans. An invalid tx or vote can only come
# from a faulty or hostile peer (honest nodes verify before they relay), but one bad tx is
# not proof of hostility the way a malformed frame is, so it takes a few.
PENALTIES: dict[str, int] = {
    "invalid_tx": 25,
    "invalid_vote": 25,
    "invalid_block": 50,
    "unexpected_message": 50,  # HELLO after the handshake, an unasked-for BLOCK_RANGE
    "malformed_message": 100,
    "oversized_frame": 100,
    "wrong_chain": 100,
    "bad_handshake_signature": 100,
}

_M = TypeVar("_M", bound=Message)

_INVALID = {Kind.TX: "invalid_tx", Kind.BLOCK: "invalid_block", Kind.VOTE: "invalid_vote"}
_DATA_TYPES: dict[Kind, type[Txs] | type[Blocks] | type[Votes]] = {
    Kind.TX: Txs, Kind.BLOCK: Blocks, Kind.VOTE: Votes,
}


class P2PHandler(Protocol):
    """What the network needs from the node. The node owns validity; p2p owns transport.

    Async callbacks run in the sending peer's reader task: the peer's next message waits
    until they return. They must not call ``Network.request_blocks`` themselves (it would
    wait for an answer that this very task has to read); start a task for that instead.
    """

    def head(self) -> tuple[int, bytes, int]:
        """(head_height, head_id, final_height) of the local chain."""
        ...

    def has(self, kind: Kind, item_id: bytes) -> bool:
        """True if we have the item, or know it is bad: either way, do not fetch it."""
        ...

    def get_items(self, kind: Kind, ids: list[bytes]) -> list[bytes]:
        """The raw encodings of the items we have among ``ids`` (others are left out)."""
        ...

    def get_blocks(self, from_height: int, count: int) -> list[bytes]:
        """Raw blocks of our chain from from_height on, at most count, in height order.
        Only one frame (MAX_FRAME) of them is sent: stop reading once past that."""
        ...

    async def on_txs(self, peer_id: bytes, raws: list[bytes]) -> list[bool]:
        """Process gossiped txs; per item, False iff it is invalid in itself (bad encoding or
        signature) — not merely unwanted (duplicate, mempool full). False adds misbehaviour.
        Relaying new valid items is the node's call: ``Network.announce``."""
        ...

    async def on_blocks(self, peer_id: bytes, raws: list[bytes]) -> list[bool]:
        """Process blocks (gossip or sync); per item, False iff the block is invalid."""
        ...

    async def on_votes(self, peer_id: bytes, raws: list[bytes]) -> list[bool]:
        """Process finality votes; per item, False iff the vote is invalid in itself."""
        ...

    async def on_head(self, peer_id: bytes, head_height: int, head_id: bytes,
                      final_height: int) -> None:
        """A peer told us its head (once after the handshake, then on every change)."""
        ...

    # Optional (a handler without it serves every block):
    #   def served_blocks(self) -> tuple[int, int]:
    #       """(lowest height whose block we serve, keep_blocks or 0), for HELLO."""


class StateSyncHandler(Protocol):
    """State sync's side of the network (muxernode/statesync.py): it answers GET_SNAPSHOT
    and GET_CHUNK, and takes the answers to its own requests (Network.send). Both run in
    the peer's reader task, so they must be quick (a cached manifest, one chunk read)."""

    def answer(self, peer_id: bytes, msg: GetSnapshot | GetChunk
               ) -> SnapshotOffer | Chunk:
        ...

    def on_answer(self, peer_id: bytes, msg: SnapshotOffer | Chunk) -> bool:
        """False: we did not ask this peer for it (the peer is penalized)."""
        ...


class PeerUnavailable(Exception):
    """A request could not be answered: the peer is gone, closing, or did not answer."""


@dataclass
class P2PConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int | None = 0  # None: do not listen (outbound only)
    seeds: list[tuple[str, int]] = field(default_factory=list)
    max_inbound: int = 32
    max_outbound: int = 8
    peer_exchange: bool = True
    handshake_timeout: float = 10.0
    connect_timeout: float = 10.0
    ping_interval: float = 15.0
    idle_timeout: float = 45.0  # no message at all for this long: the peer is gone
    request_timeout: float = 30.0  # a GET_DATA / GET_BLOCKS not answered by then fails
    send_timeout: float = 30.0  # one frame that takes longer to write: the peer is stalled
    inv_interval: float = 0.05  # tx INVs are batched for this long (blocks/votes: never)
    queue_msgs: int = 1024  # send queue slots per peer
    queue_bytes: int = 32 * 1024 * 1024  # send queue bytes per peer before disconnecting
    gossip_queue_bytes: int = 4 * 1024 * 1024  # gossip dropped above this (or half the slots)
    rate_msgs: float = 500.0  # per-peer token bucket for messages we read ...
    burst_msgs: float = 1000.0
    rate_bytes: float = 16 * 1024 * 1024  # ... and for the bytes in them
    burst_bytes: float = 32 * 1024 * 1024
    known_cap: int = 20_000  # inventory ids remembered per peer
    max_inflight: int = 16_384  # ids requested from one peer and not yet received
    ban_threshold: int = 100
    ban_seconds: float = 3600.0
    max_bans: int = 10_000  # banned keys (and, apart, addresses) remembered; oldest out
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_addresses: int = 1000
    max_dial_failures: int = 8  # a learned (not seed) address is forgotten after this many
    peers_interval: float = 60.0  # ask for addresses this often while short of outbound peers
    tick: float = 1.0  # housekeeping period
    compact_blocks: bool = True  # push new blocks as CMPCT_BLOCK (docs/p2p.md)
    compact_timeout: float = 2.0  # missing txs not answered by then: fetch the full block
    compact_rate: float = 4.0  # compact-block rebuilds per second per peer (burst 2x)


@dataclass
class _AddrInfo:
    host: str
    port: int
    seed: bool = False
    failures: int = 0
    next_try: float = 0.0
    node_id: bytes | None = None  # the node last proven at this address
    last_success: float | None = None
    is_self: bool = False


@dataclass
class _Inflight:
    peer: Peer
    kind: Kind
    item_id: bytes
    deadline: float
    alternates: list[Peer]


class _Refused(Exception):
    """The handshake or registration refused a connection."""

    def __init__(self, reason: str, *, bye: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.bye = bye


class _Closed(Exception):
    """The connection ended (EOF, BYE, handler failure)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _chunks(seq: list[bytes], n: int) -> Iterator[list[bytes]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def fit_items(raws: Iterable[bytes], max_items: int = MAX_ITEMS,
              budget: int = MAX_FRAME - FRAME_OVERHEAD) -> Iterator[list[bytes]]:
    """Split raw items into lists that each encode within one frame. An item too large for
    any frame is skipped (it could never be sent; the node's own limits are far smaller).
    ``raws`` is consumed lazily, one frame ahead at most."""
    chunk: list[bytes] = []
    size = 0
    for raw in raws:
        cost = len(raw) + ITEM_OVERHEAD
        if cost > budget:
            continue
        if chunk and (size + cost > budget or len(chunk) >= max_items):
            yield chunk
            chunk, size = [], 0
        chunk.append(raw)
        size += cost
    if chunk:
        yield chunk


class Network:
    """One node's p2p endpoint. ``await nursery.start(net.run)`` returns the bound port."""

    def __init__(self, key: NodeKey, chain_id: bytes, handler: P2PHandler, *,
                 version: int = PROTOCOL_VERSION, config: P2PConfig | None = None,
                 transport: Transport | None = None, rng: random.Random | None = None) -> None:
        if len(chain_id) != 32:
            raise ValueError("chain_id is 32 bytes")
        self.key = key
        self.chain_id = chain_id
        self.handler = handler
        self.version = version
        self.config = config or P2PConfig()
        self.transport: Transport = transport or TcpTransport()
        # Simulation injects random.Random(seed); the default is the OS CSPRNG, because the
        # handshake nonces must be unpredictable on a real network.
        self.rng: random.Random = rng if rng is not None else random.SystemRandom()
        self.counters: Counter[str] = Counter()
        self.listen_addr: tuple[str, int] | None = None
        self._peers: dict[bytes, Peer] = {}  # registered, by node key
        self._conns: set[Peer] = set()  # every live connection, handshaking ones too
        self._book: dict[tuple[str, int], _AddrInfo] = {}
        self._dialing: set[tuple[str, int]] = set()  # outbound slots in use
        self._banned_ids: dict[bytes, float] = {}
        self._banned_addrs: dict[tuple[str, int], float] = {}
        self._inflight: dict[bytes, _Inflight] = {}  # insertion order == deadline order
        self._reader_tasks: set[trio.lowlevel.Task] = set()
        self._wakeup = trio.Event()
        self._last_peers_req = -float("inf")
        self._nursery: trio.Nursery | None = None
        self.state_sync: StateSyncHandler | None = None  # the node sets it; None: no snapshots
        self.compact = CompactRelay(self)
        for host, port in self.config.seeds:
            self._book[(host, port)] = _AddrInfo(host, port, seed=True)

    # --- public API -----------------------------------------------------------------------

    @property
    def node_id(self) -> bytes:
        return self.key.public_key

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Listen (unless listen_port is None), dial seeds and learned peers, until stop()."""
        if self._nursery is not None:
            raise RuntimeError("Network.run is already running")
        cfg = self.config
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                port = 0
                if cfg.listen_port is not None:
                    self.listen_addr = await nursery.start(
                        partial(self.transport.serve, cfg.listen_host, cfg.listen_port,
                                self._accept))
                    port = self.listen_addr[1]
                    log.info("p2p_listening", extra={"kv": {
                        "addr": f"{self.listen_addr[0]}:{port}", "node": self.node_id[:8]}})
                nursery.start_soon(self._dial_loop)
                nursery.start_soon(self._housekeeping_loop)
                task_status.started(port)
        finally:
            self._nursery = None

    def stop(self) -> None:
        """Close every connection and stop listening; run() returns."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def announce(self, kind: Kind, ids: Iterable[bytes]) -> None:
        """Tell every peer that does not know them yet that we have these items."""
        kind = Kind(kind)
        pairs = [(i, inv_key(kind, i)) for i in ids]
        if not pairs:
            return
        for peer in list(self._peers.values()):
            known = peer.known
            new_pairs = [(i, key) for i, key in pairs if key not in known]
            if not new_pairs:
                continue
            new = [i for i, _ in new_pairs]
            for _i, key in new_pairs:
                known.add(key)
            if kind is Kind.TX and self.config.inv_interval > 0:
                # txs are many and small: batch them per peer for inv_interval
                peer.inv_pending.extend(new)
                if len(peer.inv_pending) >= MAX_INV_IDS:
                    self._flush_inv(peer)
                else:
                    peer.inv_ready.set()
            else:
                for chunk in _chunks(new, MAX_INV_IDS):
                    if self._enqueue(peer, Inv(kind, chunk), must=False):
                        self.counters["inv_ids_sent"] += len(chunk)

    def push(self, kind: Kind, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Send items ``(id, raw)`` straight to every peer not known to have them.

        For blocks and votes: an INV/GET_DATA round trip per hop costs a good part of a
        slot, and a late block forks the next producer. Like gossip, a push is dropped for
        a peer whose queue is filling up (it catches up by sync and by later blocks)."""
        kind = Kind(kind)
        cls = _DATA_TYPES[kind]
        items = list(items)
        for peer in list(self._peers.values()):
            new = [raw for i, raw in items if inv_key(kind, i) not in peer.known]
            if not new:
                continue
            for i, _raw in items:
                peer.known.add(inv_key(kind, i))
            for chunk in fit_items(new):
                if self._enqueue(peer, cls(chunk), must=False, urgent=True):
                    self.counters["items_pushed"] += len(chunk)

    def push_block(self, block_id: bytes, raw: bytes, tx_ids: list[bytes]) -> None:
        """A new block to every peer that lacks it, compactly (p2p/compact.py): its txs
        as short ids the peers rebuild from their mempools. ``tx_ids`` in block order."""
        self.compact.push(block_id, raw, tx_ids)

    def broadcast_txs(self, tx_ids: Iterable[bytes]) -> None:
        self.announce(Kind.TX, tx_ids)

    def broadcast_blocks(self, block_ids: Iterable[bytes]) -> None:
        self.announce(Kind.BLOCK, block_ids)

    def broadcast_votes(self, vote_ids: Iterable[bytes]) -> None:
        self.announce(Kind.VOTE, vote_ids)

    def broadcast_head(self) -> None:
        """Push our head (HEADS) to every peer; call when the head or final block changes."""
        height, head_id, final = self.handler.head()
        for peer in list(self._peers.values()):
            self._enqueue(peer, Heads(height, head_id, final), must=False, urgent=True)

    def request_heads(self, peer_id: bytes) -> None:
        """Ask a peer for its head; the answer arrives through handler.on_head."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            self._enqueue(peer, GetHeads(), must=True)

    async def request_blocks(self, peer_id: bytes, from_height: int, count: int
                             ) -> list[bool]:
        """Sync: fetch blocks from_height.. (at most count, capped at MAX_GET_BLOCKS) from a
        peer. They go through handler.on_blocks like gossip; the result is its verdict per
        block, so len(result) says how far the peer's answer reached (it may send fewer,
        e.g. at its head or to fit a frame). Raises PeerUnavailable on disconnect/timeout."""
        if trio.lowlevel.current_task() in self._reader_tasks:
            raise RuntimeError("request_blocks from a handler callback would deadlock; "
                               "run it in a task of its own")
        peer = self._peers.get(peer_id)
        if peer is None:
            raise PeerUnavailable("not connected")
        count = max(1, min(count, MAX_GET_BLOCKS))
        async with peer.range_lock:
            if peer.close_reason is not None:
                raise PeerUnavailable(peer.close_reason)
            req = RangeRequest(from_height, count)
            peer.range_request = req
            try:
                if not self._enqueue(peer, GetBlocks(from_height, count), must=True):
                    raise PeerUnavailable(peer.close_reason or "closing")
                self.counters["block_requests"] += 1
                with trio.move_on_after(self.config.request_timeout):
                    await req.arrived.wait()
                if not req.arrived.is_set():
                    self.counters["request_timeouts"] += 1
                    peer.close("sync_timeout")
                    raise PeerUnavailable("timeout")
                await req.done.wait()
                if req.result is None:
                    raise PeerUnavailable(peer.close_reason or "disconnected")
                return req.result
            finally:
                peer.range_request = None

    def report(self, peer_id: bytes, points: int, reason: str) -> None:
        """The node found a peer misbehaving outside a callback: add points to its score."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            self._penalize(peer, reason, points)

    def send(self, peer_id: bytes, msg: Message) -> bool:
        """Queue a request for a peer (state sync's GET_SNAPSHOT / GET_CHUNK); False if the
        peer is not connected or cannot take it (then it is disconnected)."""
        peer = self._peers.get(peer_id)
        return peer is not None and self._enqueue(peer, msg, must=True)

    def disconnect(self, peer_id: bytes, reason: str = "requested") -> None:
        peer = self._peers.get(peer_id)
        if peer is not None:
            peer.close(reason, bye=True)

    def ban(self, peer_id: bytes, reason: str = "requested",
            seconds: float | None = None) -> None:
        """Ban a node key (and the listen address of its connection, if connected) for
        ``seconds`` (default: the config's ban_seconds)."""
        peer = self._peers.get(peer_id)
        addr = peer.listen_addr if peer is not None else None
        if peer is not None:
            self._ban_peer(peer, reason)
        else:
            self._banned_ids[peer_id] = trio.current_time() + self.config.ban_seconds
        if seconds is not None:  # an operator's own duration replaces the default
            until = trio.current_time() + seconds
            self._banned_ids[peer_id] = until
            if addr is not None and addr in self._banned_addrs:
                self._banned_addrs[addr] = until

    def unban(self, node_id: bytes) -> bool:
        """Lift a ban on a node key and on the addresses last proven to be that node's.
        True iff the key was banned."""
        was = self.is_banned(node_id)
        self._banned_ids.pop(node_id, None)
        for addr, info in self._book.items():
            if info.node_id == node_id:
                self._banned_addrs.pop(addr, None)
                info.next_try = 0.0  # dial it again soon rather than after a backoff
        self._wake()
        return was

    def is_banned(self, node_id: bytes) -> bool:
        until = self._banned_ids.get(node_id)
        return until is not None and until > trio.current_time()

    def add_address(self, host: str, port: int) -> None:
        """Learn an address to dial (as if a peer had told us about it)."""
        self._learn([(host, port)])

    def peer_ids(self) -> list[bytes]:
        return sorted(self._peers)

    def serves_from(self, peer_id: bytes) -> int | None:
        """The lowest height whose block a connected peer serves (its HELLO, moved up with
        its head if it prunes); None if not connected."""
        p = self._peers.get(peer_id)
        if p is None:
            return None
        return serves_from(p.lowest_block, p.keep_blocks, p.head_height)

    def peers_info(self) -> list[dict[str, Any]]:
        """For the RPC ``peers`` method (protocol section 9); ``lowest_block`` and
        ``pruned`` say which blocks the peer serves (docs/p2p.md, HELLO)."""
        return [
            {"node_id": p.node_id.hex(), "address": p.address, "direction": p.direction,
             "head_height": p.head_height, "lowest_block": self.serves_from(nid),
             "pruned": p.keep_blocks > 0 or p.lowest_block > 1}
            for nid, p in sorted(self._peers.items())
        ]

    def stats(self) -> dict[str, int]:
        """Counters for metrics, plus current gauges."""
        now = trio.current_time()
        out = dict(self.counters)
        out["peers"] = len(self._peers)
        out["peers_in"] = sum(1 for p in self._peers.values() if p.direction == "in")
        out["peers_out"] = sum(1 for p in self._peers.values() if p.direction == "out")
        out["banned"] = sum(1 for t in self._banned_ids.values() if t > now)
        out["addresses"] = len(self._book)
        out["inflight"] = len(self._inflight)
        return out

    # --- connections ----------------------------------------------------------------------

    def _wake(self) -> None:
        self._wakeup.set()

    async def _accept(self, stream: trio.abc.Stream, host: str, port: int) -> None:
        async with stream:
            inbound = sum(1 for c in self._conns if c.direction == "in")
            if inbound >= self.config.max_inbound:
                # counted with handshaking connections, so a flood of half-open handshakes
                # cannot exceed the inbound budget either
                self.counters["inbound_refused_full"] += 1
                await self._send_bye(stream, "too_many_peers")
                return
            await self._connection(stream, "in", host, port, dialed=None)

    async def _dial(self, addr: tuple[str, int]) -> None:
        self.counters["dials"] += 1
        try:
            try:
                with trio.fail_after(self.config.connect_timeout):
                    stream = await self.transport.connect(*addr)
            except (OSError, trio.TooSlowError) as exc:
                self.counters["dial_failures"] += 1
                log.debug("p2p_dial_failed", extra={"kv": {
                    "addr": f"{addr[0]}:{addr[1]}", "error": type(exc).__name__}})
                self._dial_done(addr, ok=False)
                return
            ok = await self._connection(stream, "out", addr[0], addr[1], dialed=addr)
            self._dial_done(addr, ok=ok)
        finally:
            self._dialing.discard(addr)
            self._wake()

    def _dial_done(self, addr: tuple[str, int], *, ok: bool) -> None:
        info = self._book.get(addr)
        if info is None:
            return
        now = trio.current_time()
        if ok:
            # a session happened: redial soon if it dropped (the peer may just have restarted)
            info.failures = 0
            info.last_success = now
        else:
            info.failures += 1
            if not info.seed and info.failures > self.config.max_dial_failures:
                del self._book[addr]
                return
        info.next_try = now + self._backoff(info.failures)

    def _backoff(self, failures: int) -> float:
        """Exponential, bounded by backoff_max, jittered into [d/2, d] so that many nodes
        that lost the same peer do not all redial it in the same instant."""
        d = min(self.config.backoff_max, self.config.backoff_base * (1 << min(failures, 32)))
        return d * (0.5 + 0.5 * self.rng.random())

    async def _connection(self, stream: trio.abc.Stream, direction: str, host: str,
                          port: int, *, dialed: tuple[str, int] | None) -> bool:
        """Run one connection to its end; True iff it got past the handshake."""
        cfg = self.config
        peer = Peer(stream, direction, host, port, dialed=dialed, known_cap=cfg.known_cap,
                    queue_msgs=cfg.queue_msgs, rate_msgs=cfg.rate_msgs,
                    burst_msgs=cfg.burst_msgs, rate_bytes=cfg.rate_bytes,
                    burst_bytes=cfg.burst_bytes)
        self._conns.add(peer)
        registered = False
        try:
            async with stream, trio.open_nursery() as writer_nursery:
                # The writer lives outside peer.cancel_scope: closing the peer stops the
                # reader at once, but lets the writer flush what is queued plus a BYE.
                with peer.cancel_scope:
                    try:
                        with trio.fail_after(cfg.handshake_timeout):
                            await self._handshake(peer)
                        self._register(peer)
                    except _Refused as exc:
                        self.counters["handshake_failures"] += 1
                        peer.close(exc.reason, bye=exc.bye)
                    except trio.TooSlowError:
                        self.counters["handshake_failures"] += 1
                        peer.close("handshake_timeout")
                    except (FrameError, MessageError) as exc:
                        self.counters["handshake_failures"] += 1
                        self._ban_dialed(peer, "malformed_message")
                        peer.close(f"malformed handshake: {exc}", bye=True)
                    except _Closed as exc:
                        self.counters["handshake_failures"] += 1
                        peer.close(exc.reason)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self.counters["handshake_failures"] += 1
                        peer.close("connection_lost")
                    else:
                        registered = True
                        writer_nursery.start_soon(self._writer, peer)
                        try:
                            await self._serve_peer(peer)
                        finally:
                            self._unregister(peer)
                reason = peer.close_reason or "closed"
                if not registered:
                    log.info("p2p_handshake_failed", extra={"kv": {
                        "addr": f"{host}:{port}", "dir": direction, "reason": reason}})
                    if peer.send_bye and not peer.writing:
                        await self._send_bye(stream, reason)
                elif peer.send_bye:
                    with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
                        peer.send_ch.send_nowait(encode_frame(Bye(reason[:200])))
                    peer.send_ch.close()  # the writer ends once the queue is drained
                    with trio.move_on_after(LINGER):
                        await peer.writer_done.wait()
                writer_nursery.cancel_scope.cancel()
        finally:
            self._conns.discard(peer)
            peer.send_ch.close()
            peer.recv_ch.close()
        return registered

    async def _send_bye(self, stream: trio.abc.Stream, reason: str) -> None:
        """Best effort: tell the peer why, without waiting long for a peer that won't read."""
        with trio.move_on_after(LINGER):
            try:
                await stream.send_all(encode_frame(Bye(reason[:200])))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    # --- handshake ------------------------------------------------------------------------

    async def _handshake(self, peer: Peer) -> None:
        own_nonce = self.rng.randbytes(NONCE_LEN)
        height, head_id, _final = self.handler.head()
        port = self.listen_addr[1] if self.listen_addr else 0
        served = getattr(self.handler, "served_blocks", None)
        lowest, keep = (1, 0) if served is None else served()
        hello = Hello(self.version, self.chain_id, self.node_id, own_nonce, port, height,
                      head_id, lowest, keep)
        if peer.direction == "out":
            await self._send_direct(peer, encode_frame(hello))
            theirs = await self._expect(peer, Hello)
            self._check_hello(peer, theirs)
            ack = await self._expect(peer, HelloAck)
            self._check_ack(peer, theirs, ack, own_nonce)
            await self._send_direct(peer, encode_frame(HelloAck(
                sign_ack(self.key, self.chain_id, own_nonce, theirs.node_pubkey,
                         theirs.nonce))))
        else:
            theirs = await self._expect(peer, Hello)
            self._check_hello(peer, theirs)
            # HELLO and ACK in one write: a single round trip, and no deadlock on streams
            # without buffers (the dialer is reading by now)
            await self._send_direct(peer, encode_frame(hello) + encode_frame(HelloAck(
                sign_ack(self.key, self.chain_id, own_nonce, theirs.node_pubkey,
                         theirs.nonce))))
            ack = await self._expect(peer, HelloAck)
            self._check_ack(peer, theirs, ack, own_nonce)
        peer.node_id = theirs.node_pubkey
        peer.listen_port = theirs.listen_port
        peer.head_height = theirs.head_height
        peer.head_id = theirs.head_id
        peer.lowest_block, peer.keep_blocks = theirs.lowest_block, theirs.keep_blocks

    async def _send_direct(self, peer: Peer, data: bytes) -> None:
        peer.writing = True  # if cancelled mid-write the stream is unusable: no BYE after
        await peer.stream.send_all(data)
        peer.writing = False
        self.counters["bytes_out"] += len(data)

    async def _expect(self, peer: Peer, cls: type[_M]) -> _M:
        msg = await self._read(peer)
        if isinstance(msg, Bye):
            # The listener judges first. Believing it costs nothing: a liar can only keep us
            # from dialing it, which it could do by refusing anyway.
            if msg.reason == "self_connection":  # our own key came back: we dialed ourselves
                self._mark_self(peer)
            elif msg.reason == "wrong_chain":  # do not redial another network every minute
                self._ban_dialed(peer, "wrong_chain")
            raise _Refused(f"peer refused: {msg.reason}", bye=False)
        if not isinstance(msg, cls):
            raise _Refused(f"expected {cls.__name__}, got {type(msg).__name__}")
        return msg

    def _check_hello(self, peer: Peer, hello: Hello) -> None:
        if hello.version != self.version:
            raise _Refused(f"wrong_version {hello.version}, want {self.version}")
        if hello.chain_id != self.chain_id:
            self._ban_dialed(peer, "wrong_chain")
            raise _Refused("wrong_chain")
        if hello.node_pubkey == self.node_id:
            self._mark_self(peer)
            raise _Refused("self_connection")
        if self.is_banned(hello.node_pubkey):
            raise _Refused("banned")

    def _mark_self(self, peer: Peer) -> None:
        self.counters["self_connections"] += 1
        if peer.dialed is not None and peer.dialed in self._book:
            self._book[peer.dialed].is_self = True  # never dial it again

    def _check_ack(self, peer: Peer, hello: Hello, ack: HelloAck, own_nonce: bytes) -> None:
        if not verify_ack(ack.signature, self.chain_id, hello.node_pubkey, hello.nonce,
                          self.node_id, own_nonce):
            self._ban_dialed(peer, "bad_handshake_signature")
            raise _Refused("bad_signature")

    def _register(self, peer: Peer) -> None:
        nid = peer.node_id
        addr = peer.listen_addr
        if addr is not None and self._addr_banned(addr):
            raise _Refused("banned")
        existing = self._peers.get(nid)
        if existing is not None:
            self.counters["duplicate_connections"] += 1
            if not self._prefer(peer, existing):
                if peer.dialed is not None and peer.dialed in self._book:
                    self._book[peer.dialed].node_id = nid  # it is connected already
                raise _Refused("duplicate")
            existing.close("duplicate", bye=True)
        else:
            same_dir = sum(1 for p in self._peers.values() if p.direction == peer.direction)
            limit = (self.config.max_inbound if peer.direction == "in"
                     else self.config.max_outbound)
            if same_dir >= limit:
                raise _Refused("too_many_peers")
        self._peers[nid] = peer
        peer.registered = True
        peer.decoder.max_frame = MAX_FRAME
        self.counters["handshakes"] += 1
        if addr is not None:
            info = self._book.get(addr)
            if info is None and (peer.direction == "out" or len(self._book)
                                 < self.config.max_addresses):
                info = self._book[addr] = _AddrInfo(addr[0], addr[1])
            if info is not None:
                info.node_id = nid
                info.failures = 0
                info.last_success = trio.current_time()
        log.info("p2p_peer_connected", extra={"kv": {
            "node": nid[:8], "addr": peer.address, "dir": peer.direction,
            "head": peer.head_height}})

    def _prefer(self, new: Peer, old: Peer) -> bool:
        """Of two connections to one node, keep the one dialed by the smaller node key; if
        one node dialed both, keep the older. Both ends reach the same verdict."""
        def dialer(p: Peer) -> bytes:
            return self.node_id if p.direction == "out" else p.node_id
        if dialer(new) == dialer(old):
            return False
        return dialer(new) < dialer(old)

    def _unregister(self, peer: Peer) -> None:
        if self._peers.get(peer.node_id) is peer:
            del self._peers[peer.node_id]
        peer.registered = False
        self._release([inv_key(k, i) for k, ids in peer.requested.items() for i in ids],
                      refetch=True)
        if peer.range_request is not None:  # result stays None: PeerUnavailable
            peer.range_request.arrived.set()
            peer.range_request.done.set()
        self.counters["disconnects"] += 1
        log.info("p2p_peer_disconnected", extra={"kv": {
            "node": peer.node_id[:8], "addr": peer.address, "dir": peer.direction,
            "reason": peer.close_reason or "closed", "score": peer.score}})
        self._wake()

    # --- per-peer tasks -------------------------------------------------------------------

    async def _serve_peer(self, peer: Peer) -> None:
        task = trio.lowlevel.current_task()
        peer.reader_task = task
        self._reader_tasks.add(task)
        try:
            self._enqueue(peer, Heads(*self.handler.head()), must=True)
            if self.config.peer_exchange:
                self._request_peers(peer)
            self.compact.hello(peer)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keepalive, peer)
                nursery.start_soon(self._inv_batcher, peer)
                await self._reader(peer)
                nursery.cancel_scope.cancel()
        finally:
            self._reader_tasks.discard(task)

    async def _read(self, peer: Peer) -> Message:
        while (body := peer.decoder.next_frame()) is None:
            data = await peer.stream.receive_some(RECV_BYTES)
            if not data:
                raise _Closed("eof")
            self.counters["bytes_in"] += len(data)
            peer.decoder.add(data)
        if peer.registered:
            # The byte rate counts what the peer sends us and what we sent in answer to its
            # requests: a 20-byte GET_BLOCKS can cost us 4 MiB, and a flood of them must be
            # throttled by the 4 MiB, not by the 20 bytes.
            owed, peer.answer_bytes = peer.answer_bytes, 0
            wait = max(peer.msg_bucket.debit(1), peer.byte_bucket.debit(len(body) + owed))
            if wait > 0:
                self.counters["rate_limited"] += 1
                await trio.sleep(wait)
        msg = decode_message(body)
        self.counters["frames_in"] += 1
        name = type(msg).__name__.lower()
        self.counters["msg_in_" + name] += 1
        self.counters["bytes_in_" + name] += len(body)
        peer.last_recv = trio.current_time()
        return msg

    async def _reader(self, peer: Peer) -> None:
        try:
            while True:
                msg = await self._read(peer)
                await self._dispatch(peer, msg)
                peer.last_recv = trio.current_time()  # a slow handler is not a silent peer
                # Let the writer run when it has something to send: frames already
                # received are parsed without a checkpoint, so a burst of requests would
                # otherwise fill the answer queue before the writer got one turn.
                if peer.queued_bytes:
                    await trio.lowlevel.checkpoint()
        except _Closed as exc:
            peer.close(exc.reason)
        except FrameError as exc:
            self._penalize(peer, "oversized_frame", detail=str(exc))
            peer.close("bad_frame", bye=True)
        except MessageError as exc:
            self._penalize(peer, "malformed_message", detail=exc.reason)
            peer.close("malformed_message", bye=True)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            peer.close("connection_lost")
        except Exception:
            # A bug here or in the handler must not take the whole node down with it, and
            # is not the peer's fault: log it and drop this one connection.
            self.counters["internal_errors"] += 1
            log.exception("p2p_internal_error", extra={"kv": {"node": peer.node_id[:8]}})
            peer.close("internal_error")

    async def _writer(self, peer: Peer) -> None:
        try:
            async for data in peer.recv_ch:
                # One write for everything waiting (up to WRITE_BATCH_BYTES): the reader
                # parses many frames per receive, and a writer that wrote one frame per
                # turn fell behind a peer's burst of pings until the queue filled and the
                # peer was dropped as slow although it read everything.
                frames = list(peer.urgent)  # the priority lane goes first
                peer.urgent.clear()
                frames.append(data)
                size = sum(map(len, frames))
                while size < WRITE_BATCH_BYTES:
                    try:
                        more = peer.recv_ch.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    frames.append(more)
                    size += len(more)
                if not await self._send_frames(peer, frames, size):
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            peer.close("connection_lost")
        finally:
            peer.writer_done.set()

    async def _send_frames(self, peer: Peer, frames: list[bytes], size: int) -> bool:
        with trio.move_on_after(self.config.send_timeout) as scope:
            await peer.stream.send_all(b"".join(frames))
        if scope.cancelled_caught:  # stopped mid-frame: the stream is unusable now
            self.counters["slow_peer_disconnects"] += 1
            peer.close("send_timeout")
            return False
        peer.queued_bytes -= size
        sent = sum(1 for f in frames if f)  # empty ones only woke the writer
        self.counters["frames_out"] += sent
        self.counters["bytes_out"] += size
        return True

    async def _keepalive(self, peer: Peer) -> None:
        cfg = self.config
        while True:
            now = trio.current_time()
            if now >= peer.last_recv + cfg.idle_timeout:
                self.counters["idle_timeouts"] += 1
                peer.close("idle_timeout", bye=True)
                return
            if now >= peer.last_ping + cfg.ping_interval:
                peer.ping_nonce = self.rng.getrandbits(64)
                peer.last_ping = now
                self._enqueue(peer, Ping(peer.ping_nonce), must=False)
                continue
            await trio.sleep_until(min(peer.last_recv + cfg.idle_timeout,
                                       peer.last_ping + cfg.ping_interval))

    async def _inv_batcher(self, peer: Peer) -> None:
        while True:
            await peer.inv_ready.wait()
            await trio.sleep(self.config.inv_interval)
            peer.inv_ready = trio.Event()
            self._flush_inv(peer)

    def _flush_inv(self, peer: Peer) -> None:
        pending, peer.inv_pending = peer.inv_pending, []
        for chunk in _chunks(pending, MAX_INV_IDS):
            if self._enqueue(peer, Inv(Kind.TX, chunk), must=False):
                self.counters["inv_ids_sent"] += len(chunk)

    def _enqueue(self, peer: Peer, msg: Message, *, must: bool, urgent: bool = False) -> bool:
        """Queue a message for the writer. Gossip (must=False) is dropped when the queue is
        filling; anything else that does not fit disconnects the peer: it cannot keep up,
        and silently losing an answer would leave the other side waiting for it.

        ``urgent`` gossip (new blocks, votes, heads) goes to the priority lane, which the
        writer sends before the next frame of the queue; it counts toward the same bytes."""
        if peer.close_reason is not None:
            return False
        data = encode_frame(msg)
        cfg = self.config
        if urgent:
            if peer.queued_bytes + len(data) > cfg.gossip_queue_bytes:
                self.counters["gossip_dropped"] += 1
                return False
            peer.urgent.append(data)
            peer.queued_bytes += len(data)
            # wake an idle writer; a full queue means it is busy and looks at the lane
            # before its next frame anyway
            with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError,
                                     trio.BrokenResourceError):
                peer.send_ch.send_nowait(b"")
            return True
        used = peer.send_ch.statistics().current_buffer_used
        if not must:
            if (peer.queued_bytes + len(data) > cfg.gossip_queue_bytes
                    or used >= cfg.queue_msgs // 2):
                self.counters["gossip_dropped"] += 1
                return False
        elif peer.queued_bytes + len(data) > cfg.queue_bytes or used >= cfg.queue_msgs:
            self.counters["slow_peer_disconnects"] += 1
            peer.close("send_queue_full")
            return False
        try:
            peer.send_ch.send_nowait(data)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            peer.close("send_queue_full")
            return False
        peer.queued_bytes += len(data)
        return True

    # --- dispatch -------------------------------------------------------------------------

    async def _dispatch(self, peer: Peer, msg: Message) -> None:
        if isinstance(msg, Ping):
            self._enqueue(peer, Pong(msg.nonce), must=True)
        elif isinstance(msg, Pong):
            if msg.nonce == peer.ping_nonce:
                peer.rtt = trio.current_time() - peer.last_ping
        elif isinstance(msg, Inv):
            self._on_inv(peer, msg)
        elif isinstance(msg, GetData):
            queued = peer.queued_bytes
            self._on_get_data(peer, msg)
            peer.answer_bytes += peer.queued_bytes - queued
        elif isinstance(msg, Txs):
            await self._on_items(peer, Kind.TX, msg.raws)
        elif isinstance(msg, Blocks):
            await self._on_items(peer, Kind.BLOCK, msg.raws)
        elif isinstance(msg, Votes):
            await self._on_items(peer, Kind.VOTE, msg.raws)
        elif isinstance(msg, NotFound):
            mine = peer.requested[msg.kind]
            self._release([inv_key(msg.kind, i) for i in msg.ids if i in mine], refetch=True)
        elif isinstance(msg, GetBlocks):
            raws = self.handler.get_blocks(msg.from_height, min(msg.count, MAX_GET_BLOCKS))
            if not raws and msg.from_height <= self.handler.head()[0]:
                # blocks we lack (a pruned node): an empty range, never a score
                self.counters["block_ranges_unserved"] += 1
            fitting = next(fit_items(raws[: msg.count], MAX_GET_BLOCKS), [])
            queued = peer.queued_bytes
            self._enqueue(peer, BlockRange(msg.from_height, fitting), must=True)
            peer.answer_bytes += peer.queued_bytes - queued
        elif isinstance(msg, BlockRange):
            await self._on_block_range(peer, msg)
        elif isinstance(msg, GetHeads):
            self._enqueue(peer, Heads(*self.handler.head()), must=True)
        elif isinstance(msg, Heads):
            peer.head_height, peer.head_id = msg.head_height, msg.head_id
            peer.final_height = msg.final_height
            await self.handler.on_head(peer.node_id, msg.head_height, msg.head_id,
                                       msg.final_height)
        elif isinstance(msg, PeersReq):
            self._enqueue(peer, Peers(self._share_addresses(peer)), must=True)
        elif isinstance(msg, Peers):
            if peer.peers_requested:  # unasked-for address lists are ignored (address
                peer.peers_requested = False  # book poisoning needs our invitation)
                self._learn(msg.addresses[:MAX_LEARNED_PER_MSG])
            else:
                self.counters["unsolicited_peers"] += 1
        elif isinstance(msg, Bye):
            raise _Closed(f"peer said bye: {msg.reason}")
        elif isinstance(msg, CmpctBlock | GetBlockTxn | BlockTxn | SendCmpct | CmpctSeen):
            await self.compact.on_message(peer, msg)
        elif isinstance(msg, STATE_SYNC_TYPES):
            self._on_state_sync(peer, msg)
        else:  # HELLO / HELLO_ACK after the handshake
            self._penalize(peer, "unexpected_message", detail=type(msg).__name__)

    def _on_state_sync(self, peer: Peer, msg: GetSnapshot | SnapshotOffer | GetChunk | Chunk
                       ) -> None:
        handler = self.state_sync
        if isinstance(msg, GetSnapshot | GetChunk):
            answer: SnapshotOffer | Chunk
            if handler is not None:
                answer = handler.answer(peer.node_id, msg)
            elif isinstance(msg, GetSnapshot):
                answer = SnapshotOffer(0, b"")
            else:
                answer = Chunk(msg.height, msg.index, b"")
            queued = peer.queued_bytes
            self._enqueue(peer, answer, must=True)
            peer.answer_bytes += peer.queued_bytes - queued  # a 1 MiB chunk costs its bytes
            self.counters["snapshot_answers_sent"] += 1
        elif handler is None or not handler.on_answer(peer.node_id, msg):
            self._penalize(peer, "unexpected_message", detail=type(msg).__name__)

    def _on_inv(self, peer: Peer, msg: Inv) -> None:
        kind = msg.kind
        self.counters["inv_ids_received"] += len(msg.ids)
        deadline = trio.current_time() + self.config.request_timeout
        asked = peer.requested[kind]
        # the cap counts every kind: three kinds must not triple it
        open_requests = sum(len(r) for r in peer.requested.values())
        want: list[bytes] = []
        for iid in msg.ids:
            key = inv_key(kind, iid)
            peer.known.add(key)
            entry = self._inflight.get(key)
            if entry is not None:
                # already being fetched from someone else: remember who else has it
                if (entry.peer is not peer and peer not in entry.alternates
                        and len(entry.alternates) < MAX_ALTERNATES):
                    entry.alternates.append(peer)
                continue
            if self.handler.has(kind, iid):
                continue
            if open_requests >= self.config.max_inflight:
                self.counters["inflight_full"] += 1
                break
            self._inflight[key] = _Inflight(peer, kind, iid, deadline, [])
            asked[iid] = None
            open_requests += 1
            want.append(iid)
        for chunk in _chunks(want, MAX_INV_IDS):
            if not self._enqueue(peer, GetData(kind, chunk), must=True):
                return
            self.counters["getdata_ids_sent"] += len(chunk)

    def _on_get_data(self, peer: Peer, msg: GetData) -> None:
        kind = msg.kind
        cls = _DATA_TYPES[kind]
        missing: list[bytes] = []

        def items() -> Iterator[bytes]:
            # Each id once (naming one big item 4096 times must not make us read it 4096
            # times), and one id at a time: a store hands out a fresh copy per read, so
            # reading all ids first would hold every answer in memory at once. Frames go
            # to the queue as they fill, and a peer whose queue overflows is closed, which
            # ends the loop: the work per request is bounded by queue_bytes.
            for iid in dict.fromkeys(msg.ids):
                peer.known.add(inv_key(kind, iid))
                raws = self.handler.get_items(kind, [iid])
                if not raws:
                    missing.append(iid)
                yield from raws

        for chunk in fit_items(items()):
            if not self._enqueue(peer, cls(chunk), must=True):
                return
            self.counters["items_sent"] += len(chunk)
        if missing:
            self._enqueue(peer, NotFound(kind, missing), must=True)

    async def _on_items(self, peer: Peer, kind: Kind, raws: list[bytes]) -> None:
        self.counters["items_received"] += len(raws)
        callback: Callable[[bytes, list[bytes]], Awaitable[list[bool]]]
        if kind is Kind.TX:
            callback = self.handler.on_txs
        elif kind is Kind.BLOCK:
            callback = self.handler.on_blocks
        else:
            callback = self.handler.on_votes
        verdicts = await callback(peer.node_id, raws)
        self._judge(peer, kind, verdicts)
        # Whatever arrived is no longer in flight; ids still missing wait for NOTFOUND or
        # their deadline. p2p cannot compute ids, so it asks the handler about the oldest
        # requests only, a few more than the items that came (answers come in request
        # order): a peer holding thousands of requests open while it trickles in one item
        # per message must not cost us a lookup per open request per message.
        asked = peer.requested[kind]
        if asked:
            window = islice(asked, RELEASE_SCAN_FACTOR * len(raws) + RELEASE_SCAN_SLACK)
            self._release([inv_key(kind, i) for i in window if self.handler.has(kind, i)],
                          refetch=False)

    def _judge(self, peer: Peer, kind: Kind, verdicts: list[bool]) -> None:
        bad = sum(1 for ok in verdicts if not ok)
        if bad:
            self.counters["items_invalid"] += bad
            self._penalize(peer, _INVALID[kind], PENALTIES[_INVALID[kind]] * bad)

    async def _on_block_range(self, peer: Peer, msg: BlockRange) -> None:
        req = peer.range_request
        if (req is None or req.arrived.is_set() or msg.from_height != req.from_height
                or len(msg.raws) > req.count):
            self._penalize(peer, "unexpected_message", detail="BLOCK_RANGE")
            return
        req.arrived.set()
        self.counters["blocks_synced"] += len(msg.raws)
        # a handler may take sync ranges apart from gossip (muxernode: sync from final
        # blocks, which needs the whole range to count its votes)
        on_range = getattr(self.handler, "on_block_range", self.handler.on_blocks)
        verdicts = await on_range(peer.node_id, msg.raws) if msg.raws else []
        self._judge(peer, Kind.BLOCK, verdicts)
        req.result = list(verdicts)
        req.done.set()

    def _release(self, keys: list[bytes], *, refetch: bool) -> None:
        """Forget in-flight requests; with refetch, ask the next peer that announced them."""
        now = trio.current_time()
        batches: dict[tuple[Peer, Kind], list[bytes]] = {}
        for key in keys:
            entry = self._inflight.pop(key, None)
            if entry is None:
                continue
            entry.peer.requested[entry.kind].pop(entry.item_id, None)
            if not refetch or self.handler.has(entry.kind, entry.item_id):
                continue
            while entry.alternates:
                alt = entry.alternates.pop(0)
                if alt.registered and alt.close_reason is None:
                    self._inflight[key] = _Inflight(alt, entry.kind, entry.item_id,
                                                    now + self.config.request_timeout,
                                                    entry.alternates)
                    alt.requested[entry.kind][entry.item_id] = None
                    batches.setdefault((alt, entry.kind), []).append(entry.item_id)
                    break
        for (alt, kind), ids in batches.items():
            self.counters["refetches"] += len(ids)
            for chunk in _chunks(ids, MAX_INV_IDS):
                self._enqueue(alt, GetData(kind, chunk), must=True)

    # --- misbehaviour and bans ------------------------------------------------------------

    def _penalize(self, peer: Peer, what: str, points: int | None = None,
                  detail: str = "") -> None:
        pts = PENALTIES.get(what, 0) if points is None else points
        peer.score += pts
        self.counters["misbehaviour_points"] += pts
        log.warning("p2p_misbehaviour", extra={"kv": {
            "node": peer.node_id[:8], "addr": peer.address, "what": what, "points": pts,
            "score": peer.score, "detail": detail[:200]}})
        if peer.score >= self.config.ban_threshold:
            self._ban_peer(peer, what)

    def _add_ban(self, table: dict[Any, float], what: Any, until: float) -> None:
        """Record a ban, oldest evicted beyond max_bans: keys are free, so without a cap
        an attacker that gets a fresh key banned again and again for ban_seconds would
        grow the table by rate x ban_seconds entries. Evicting the oldest (the soonest to
        expire: bans all last ban_seconds) lets it back early, which a fresh key would
        anyway."""
        table.pop(what, None)  # re-inserted at the end: insertion order = ban order
        table[what] = until
        while len(table) > self.config.max_bans:
            del table[next(iter(table))]
            self.counters["bans_evicted"] += 1

    def _ban_peer(self, peer: Peer, reason: str) -> None:
        until = trio.current_time() + self.config.ban_seconds
        if peer.node_id:
            self._add_ban(self._banned_ids, peer.node_id, until)
        addr = peer.listen_addr
        if addr is not None:
            self._add_ban(self._banned_addrs, addr, until)
        self.counters["bans"] += 1
        log.warning("p2p_ban", extra={"kv": {
            "node": peer.node_id[:8], "addr": peer.address, "reason": reason,
            "seconds": self.config.ban_seconds}})
        peer.close(f"banned: {reason}", bye=True)

    def _ban_dialed(self, peer: Peer, what: str) -> None:
        """A handshake-stage offence: only the address we dialed is known for sure."""
        self.counters["misbehaviour_points"] += PENALTIES[what]
        if peer.dialed is not None and PENALTIES[what] >= self.config.ban_threshold:
            self._add_ban(self._banned_addrs, peer.dialed,
                          trio.current_time() + self.config.ban_seconds)
            self.counters["bans"] += 1
            log.warning("p2p_ban", extra={"kv": {
                "addr": peer.address, "reason": what, "seconds": self.config.ban_seconds}})

    def _addr_banned(self, addr: tuple[str, int]) -> bool:
        until = self._banned_addrs.get(addr)
        return until is not None and until > trio.current_time()

    # --- addresses and dialing ------------------------------------------------------------

    def _learn(self, addresses: Iterable[tuple[str, int]]) -> None:
        cfg = self.config
        added = False
        for host, port in addresses:
            addr = (host, port)
            if addr in self._book or addr == self.listen_addr:
                continue
            if len(self._book) >= cfg.max_addresses:
                victims = sorted(a for a, i in self._book.items()
                                 if not i.seed and a not in self._dialing)
                if not victims:
                    break
                del self._book[self.rng.choice(victims)]
            self._book[addr] = _AddrInfo(host, port)
            added = True
        if added:
            self._wake()

    def _share_addresses(self, requester: Peer) -> list[tuple[str, int]]:
        """Addresses we have reason to believe in: connected peers' and ones that worked."""
        out = {p.listen_addr for p in self._peers.values() if p is not requester}
        out |= {a for a, i in self._book.items() if i.last_success is not None
                and not i.is_self}
        out.discard(None)
        out.discard(requester.listen_addr)
        addrs = sorted(a for a in out if a is not None and not self._addr_banned(a))
        self.rng.shuffle(addrs)
        return addrs[:MAX_SHARED_ADDRESSES]

    def _request_peers(self, peer: Peer) -> None:
        if not peer.peers_requested and self._enqueue(peer, PeersReq(), must=True):
            peer.peers_requested = True
            self._last_peers_req = trio.current_time()

    async def _dial_loop(self) -> None:
        while True:
            event = self._wakeup = trio.Event()
            self._maybe_dial()
            with trio.move_on_after(self.config.tick):
                await event.wait()

    def _maybe_dial(self) -> None:
        cfg = self.config
        assert self._nursery is not None
        deficit = cfg.max_outbound - len(self._dialing)
        if deficit <= 0:
            return
        now = trio.current_time()
        connected = {p.listen_addr for p in self._peers.values()}
        candidates = sorted(
            a for a, info in self._book.items()
            if a not in self._dialing and a not in connected and not info.is_self
            and a != self.listen_addr and info.next_try <= now
            and (info.node_id is None or info.node_id not in self._peers)
            and not self._addr_banned(a)
        )
        self.rng.shuffle(candidates)
        for addr in candidates[:deficit]:
            self._dialing.add(addr)
            self._nursery.start_soon(self._dial, addr)
        if (cfg.peer_exchange and len(self._dialing) < cfg.max_outbound and self._peers
                and now - self._last_peers_req >= cfg.peers_interval):
            self._request_peers(self._peers[self.rng.choice(sorted(self._peers))])

    async def _housekeeping_loop(self) -> None:
        while True:
            await trio.sleep(self.config.tick)
            now = trio.current_time()
            expired: list[bytes] = []
            for key, entry in self._inflight.items():
                if entry.deadline > now:
                    break
                expired.append(key)
            if expired:
                self.counters["request_timeouts"] += len(expired)
                self._release(expired, refetch=True)
            for nid in [k for k, t in self._banned_ids.items() if t <= now]:
                del self._banned_ids[nid]
            for addr in [k for k, t in self._banned_addrs.items() if t <= now]:
                del self._banned_addrs[addr]
