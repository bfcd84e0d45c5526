"""Per-connection state: the stream, its frame decoder, send queue, known set, score, limits.

A Peer is created for every connection, before the handshake; it becomes a registered peer
of the Network (``node_id`` set) once the handshake has proven the remote node key. All I/O
on it is driven by network.py; this module holds only state and small bounded structures.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

import trio

from p2p.frames import FrameDecoder
from p2p.messages import Kind

__all__ = ["HANDSHAKE_MAX_FRAME", "KnownSet", "Peer", "RangeRequest", "TokenBucket", "inv_key"]

HANDSHAKE_MAX_FRAME = 4096


class TokenBucket:
    """A token bucket on trio's clock (so MockClock drives it in simulation).

    ``debit`` never refuses: it takes the tokens, possibly going negative, and returns how
    long the caller must wait for the balance to recover. The reader sleeps that long before
    reading the next frame, which pushes back on the sender through TCP flow control instead
    of dropping its messages.
    """

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = trio.current_time()

    def debit(self, amount: float) -> float:
        now = trio.current_time()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class KnownSet:
    """A bounded LRU of inventory keys (kind byte + id) a peer is known to have.

    Only an optimisation (do not announce an item to a peer that announced or fetched it);
    forgetting an entry costs at most one redundant INV id, so a hard bound is safe.
    """

    __slots__ = ("_d", "cap")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._d: OrderedDict[bytes, None] = OrderedDict()

    def add(self, key: bytes) -> None:
        d = self._d
        if key in d:
            d.move_to_end(key)
            return
        d[key] = None
        if len(d) > self.cap:
            d.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)


@dataclass
class RangeRequest:
    """One outstanding GET_BLOCKS and, once answered, the handler's verdict per block."""

    from_height: int
    count: int
    # the timeout covers the answer's arrival only, never the node's work on the blocks
    arrived: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)
    result: list[bool] | None = None


def inv_key(kind: Kind, item_id: bytes) -> bytes:
    return bytes((kind,)) + item_id


class Peer:
    """One connection. ``direction`` is "in" (they dialed us) or "out" (we dialed them)."""

    def __init__(self, stream: trio.abc.Stream, direction: str, remote_host: str,
                 remote_port: int, *, dialed: tuple[str, int] | None, known_cap: int,
                 queue_msgs: int, rate_msgs: float, burst_msgs: float, rate_bytes: float,
                 burst_bytes: float) -> None:
        self.stream = stream
        self.direction = direction
        self.remote_host = remote_host
        self.remote_port = remote_port
        self.dialed = dialed
        # HELLO and HELLO_ACK are a few hundred bytes: until the handshake is done a peer may
        # not make us buffer more than this (see Network._serve_peer, which raises it).
        self.decoder = FrameDecoder(HANDSHAKE_MAX_FRAME)
        # set by the handshake
        self.node_id = b""
        self.listen_port = 0
        self.head_height = 0
        self.head_id = b""
        self.final_height = 0
        self.lowest_block = 1  # the blocks it serves (HELLO): see Hello.serves_from
        self.keep_blocks = 0
        self.nonce = b""
        # gossip and sync state
        self.known = KnownSet(known_cap)
        # ids we asked this peer for, oldest first (dicts as ordered sets: see
        # Network._on_items for why the order matters)
        self.requested: dict[Kind, dict[bytes, None]] = {k: {} for k in Kind}
        self.range_lock = trio.Lock()  # one GET_BLOCKS in flight per peer
        self.range_request: RangeRequest | None = None
        self.peers_requested = False  # we sent PEERS_REQ and await one PEERS
        # tx ids waiting for the next batched INV (blocks and votes go out at once)
        self.inv_pending: list[bytes] = []
        self.inv_ready = trio.Event()
        # send queue: frames already encoded; bytes counted so large frames weigh more
        self.send_ch, self.recv_ch = trio.open_memory_channel[bytes](queue_msgs)
        # the priority lane (new blocks, votes, heads): the writer empties it before each
        # frame of the queue, so finality does not wait behind a backlog of tx gossip; an
        # empty frame in the queue only wakes an idle writer
        self.urgent: deque[bytes] = deque()
        self.queued_bytes = 0
        self.writing = False  # a handshake frame is being written directly
        self.writer_done = trio.Event()
        # liveness, limits and reputation
        now = trio.current_time()
        self.connected_at = now
        self.last_recv = now
        self.last_ping = now
        self.ping_nonce = 0
        self.rtt: float | None = None
        self.msg_bucket = TokenBucket(rate_msgs, burst_msgs)
        self.byte_bucket = TokenBucket(rate_bytes, burst_bytes)
        self.answer_bytes = 0  # queued in answer to its requests, not yet charged to it
        self.score = 0
        self.registered = False
        self.close_reason: str | None = None
        self.send_bye = False  # tell the peer why we hang up (only when we decided to)
        self.cancel_scope = trio.CancelScope()
        self.reader_task: trio.lowlevel.Task | None = None

    @property
    def address(self) -> str:
        """Where the peer can be reached: the dialed address, the advertised listen port on
        the observed host, or (an inbound peer that does not listen) the connection itself."""
        if self.dialed is not None:
            return f"{self.dialed[0]}:{self.dialed[1]}"
        if self.listen_port:
            return f"{self.remote_host}:{self.listen_port}"
        return f"{self.remote_host}:{self.remote_port}"

    @property
    def listen_addr(self) -> tuple[str, int] | None:
        if self.dialed is not None:
            return self.dialed
        if self.listen_port:
            return (self.remote_host, self.listen_port)
        return None

    def close(self, reason: str, *, bye: bool = False) -> None:
        """End the connection (first reason wins); its tasks unwind through cancellation."""
        if self.close_reason is None:
            self.close_reason = reason
            self.send_bye = bye
        self.cancel_scope.cancel()
