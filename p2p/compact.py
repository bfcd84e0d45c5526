"""Compact blocks (BIP 152 style; docs/p2p.md "Compact blocks"), sans-IO.

A new block goes to peers as CMPCT_BLOCK: its header, signature and votes in full, and per
tx a 6-byte short id, ``BLAKE2b-48(key, tx_id)`` with ``key = SHA-256(header || nonce)``.
The header commits to the txs (its tx_root), so nobody can grind txs whose short ids
collide before the block exists, and the relayer's random 64-bit nonce re-salts every hop.
The receiver matches the short ids against its mempool, asks the sender for the rest by
index (GET_BLOCK_TXN / BLOCK_TXN, one round trip), and assembles the block's bytes; they
go to the node only when ``H(bytes) == body_hash``, the sender's commitment to the whole
block (a tx id does not cover the tx's signature, and a short id may collide: either way
the bytes differ and the receiver falls back to fetching the full block, blaming nobody).

This module knows a block only as ``[header, signature, [tx, ...], votes]`` bytes: it
splits and joins them without judging them; validity stays the node's business.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from consensus.codec import unpacker
from consensus.crypto import sha256
from p2p.messages import (
    MAX_COMPACT_TXS,
    SHORT_ID_LEN,
    BlockTxn,
    CmpctBlock,
    CmpctSeen,
    GetBlockTxn,
    Inv,
    Kind,
    NotFound,
    SendCmpct,
)
from p2p.peer import Peer, TokenBucket, inv_key

if TYPE_CHECKING:
    from p2p.network import Network

__all__ = [
    "MAX_PENDING",
    "RECENT_BLOCKS",
    "CompactError",
    "CompactRelay",
    "PendingBlock",
    "RecentBlocks",
    "assemble",
    "make_compact",
    "salt_key",
    "short_id",
    "split_block",
    "start_rebuild",
    "with_prefilled",
]

MAX_PENDING = 8  # compact blocks waiting for their missing txs, per peer
RELAY_DEFER_TURNS = 3  # see CompactRelay.push
MAX_OTHERS = 8  # other senders of a block being rebuilt, asked for it in full on failure
RECENT_BLOCKS = 16  # blocks whose txs we keep to answer GET_BLOCK_TXN without a decode


class CompactError(ValueError):
    """Bytes that are not a block's ``[header, signature, txs, votes]`` array."""


def salt_key(header: bytes, nonce: int) -> bytes:
    """The short-id key of one compact block: unknown until its header exists."""
    return sha256(header + nonce.to_bytes(8, "little"))


def short_id(key: bytes, tx_id: bytes) -> bytes:
    return hashlib.blake2b(tx_id, key=key, digest_size=SHORT_ID_LEN).digest()


def split_block(raw: bytes) -> tuple[bytes, bytes, list[bytes], bytes]:
    """(header bytes, signature, each tx's bytes, votes bytes) of a block's encoding."""
    try:
        up = unpacker(raw)
        if up.read_array_header() != 4:
            raise CompactError("a block is [header, signature, txs, votes]")
        start = up.tell()
        up.skip()
        header = raw[start:up.tell()]
        signature = up.unpack()
        n = up.read_array_header()
        if n > MAX_COMPACT_TXS:
            raise CompactError(f"{n} txs, more than {MAX_COMPACT_TXS}")
        txs: list[bytes] = []
        for _ in range(n):
            start = up.tell()
            up.skip()
            txs.append(raw[start:up.tell()])
        votes = raw[up.tell():]
        up.skip()
        if up.tell() != len(raw):
            raise CompactError("trailing bytes after the block")
    except CompactError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for malformed input
        raise CompactError(f"malformed block: {type(exc).__name__}") from None
    if type(signature) is not bytes or len(signature) != 64:
        raise CompactError("a block signature is 64 bytes")
    return header, signature, txs, votes


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def assemble(header: bytes, signature: bytes, txs: list[bytes], votes: bytes) -> bytes:
    """A block's canonical encoding from its parts (the inverse of split_block)."""
    return b"".join([b"\x94", header, b"\xc4\x40", signature, _array_header(len(txs)),
                     *txs, votes])


def make_compact(raw: bytes, tx_ids: list[bytes], nonce: int
                 ) -> tuple[CmpctBlock, list[bytes]]:
    """The compact form of a block (and its txs' bytes, to answer GET_BLOCK_TXN)."""
    header, signature, txs, votes = split_block(raw)
    if len(tx_ids) != len(txs):
        raise CompactError(f"{len(tx_ids)} tx ids for {len(txs)} txs")
    key = salt_key(header, nonce)
    ids = b"".join(short_id(key, t) for t in tx_ids)
    return CmpctBlock(header, signature, nonce, ids, votes, sha256(raw)), txs


def with_prefilled(msg: CmpctBlock, txs: list[bytes], indexes: list[int]) -> CmpctBlock:
    """The same compact block carrying the txs at ``indexes`` (increasing) in full."""
    return dataclasses.replace(msg, prefilled=tuple((i, txs[i]) for i in indexes))


@dataclass
class PendingBlock:
    """A compact block being rebuilt: the txs found so far (None = still missing)."""

    msg: CmpctBlock
    block_id: bytes
    txs: list[bytes | None]
    deadline: float = 0.0
    others: list[bytes] = field(default_factory=list)  # peers that sent it meanwhile

    @property
    def missing(self) -> list[int]:
        return [i for i, t in enumerate(self.txs) if t is None]

    def fill(self, raws: list[bytes]) -> bool:
        """The answer to our GET_BLOCK_TXN (in index order); False if it does not fit."""
        missing = self.missing
        if len(raws) != len(missing):
            return False
        for i, raw in zip(missing, raws, strict=True):
            self.txs[i] = raw
        return True

    def block(self) -> bytes | None:
        """The block's bytes if every tx is here and they hash to the sender's body_hash."""
        if any(t is None for t in self.txs):
            return None
        m = self.msg
        raw = assemble(m.header, m.signature, [t for t in self.txs if t is not None],
                       m.votes)
        return raw if sha256(raw) == m.body_hash else None


def start_rebuild(msg: CmpctBlock, pool: Iterable[tuple[bytes, bytes]]) -> PendingBlock:
    """Match a compact block's short ids against ``pool`` ((tx id, tx bytes) pairs).

    A short id that two pool txs share, or that the block names twice, is left missing
    (asked for by index) rather than guessed: a known collision costs a tx, not a fallback.
    """
    key = salt_key(msg.header, msg.nonce)
    ids = msg.short_ids
    n = msg.tx_count
    wanted: dict[bytes, int] = {}
    twice: set[bytes] = set()
    for i in range(n):
        sid = ids[i * SHORT_ID_LEN:(i + 1) * SHORT_ID_LEN]
        if sid in wanted:
            twice.add(sid)
        wanted[sid] = i
    found: dict[bytes, bytes | None] = {}
    for tx_id, raw in pool:
        sid = short_id(key, tx_id)
        if sid in wanted:
            found[sid] = None if sid in found else raw  # two pool txs: ambiguous
    txs: list[bytes | None] = [None] * n
    for sid, match in found.items():
        if match is not None and sid not in twice:
            txs[wanted[sid]] = match
    for i, raw in msg.prefilled:
        txs[i] = raw
    return PendingBlock(msg, sha256(msg.header), txs)


class RecentBlocks:
    """The txs of the last few blocks we relayed compactly, by block id: peers ask for
    the txs they miss right after our CMPCT_BLOCK, and re-reading and splitting the block
    from the store for each of them would cost a decode per ask."""

    def __init__(self, cap: int = RECENT_BLOCKS) -> None:
        self.cap = cap
        self._d: OrderedDict[bytes, list[bytes]] = OrderedDict()

    def add(self, block_id: bytes, txs: list[bytes]) -> None:
        self._d[block_id] = txs
        self._d.move_to_end(block_id)
        while len(self._d) > self.cap:
            self._d.popitem(last=False)

    def get(self, block_id: bytes) -> list[bytes] | None:
        return self._d.get(block_id)


class CompactRelay:
    """The network's compact-block traffic: pushing new blocks compactly, rebuilding the
    ones peers push, and falling back to the full block (an ordinary GET_DATA, with the
    network's in-flight table and its alternates) when a rebuild fails."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.recent = RecentBlocks()
        self.pending: dict[bytes, tuple[Peer, PendingBlock]] = {}  # by block id
        self.wants: set[bytes] = set()  # peers that sent SEND_CMPCT (the others: BLOCKS)
        self.came_compact: OrderedDict[bytes, None] = OrderedDict()  # recent block ids
        # rebuilds per peer: each costs a short id per mempool tx, and a peer could push
        # bogus compact blocks as fast as the message rate lets it (over the budget a
        # compact block is taken as an INV of its id: the full block is fetched)
        self.budgets: dict[bytes, TokenBucket] = {}

    # --- sending ------------------------------------------------------------------------

    def push(self, block_id: bytes, raw: bytes, tx_ids: list[bytes]) -> None:
        """A new block to every peer not known to have it, as CMPCT_BLOCK (or in full with
        ``compact_blocks`` off). One nonce per block: one encoding for every peer.

        A block that came to us compactly is relayed a moment later (RELAY_DEFER_TURNS): it
        is applied in the same turn of the event loop as the read of its CMPCT_BLOCK, so
        the CMPCT_SEEN our neighbours sent meanwhile would otherwise still be unread."""
        if block_id in self.came_compact and self.net._nursery is not None:
            self.net._nursery.start_soon(self._push_later, block_id, raw, tx_ids)
            return
        self._push_now(block_id, raw, tx_ids)

    async def _push_later(self, block_id: bytes, raw: bytes, tx_ids: list[bytes]) -> None:
        # a few turns of the scheduler, no time: the readers with data read it first
        for _ in range(RELAY_DEFER_TURNS):
            await trio.lowlevel.checkpoint()
        self._push_now(block_id, raw, tx_ids)

    def _push_now(self, block_id: bytes, raw: bytes, tx_ids: list[bytes]) -> None:
        net = self.net
        key = inv_key(Kind.BLOCK, block_id)
        peers = [p for p in net._peers.values() if key not in p.known]
        if not peers:
            return
        compact = ([p for p in peers if p.node_id in self.wants]
                   if net.config.compact_blocks else [])
        if len(compact) < len(peers):
            # in full to the peers that did not ask for compact blocks (net.push skips the
            # others, marked known first)
            for peer in compact:
                peer.known.add(key)
            net.push(Kind.BLOCK, [(block_id, raw)])
        if not compact:
            return
        msg, txs = make_compact(raw, tx_ids, net.rng.getrandbits(64))
        self.recent.add(block_id, txs)
        for peer in compact:
            peer.known.add(key)
            # txs whose INV to this peer is still waiting in its batch cannot be in its
            # mempool: sent in full, they save it a GET_BLOCK_TXN round trip
            pending = set(peer.inv_pending)
            fill = [i for i, t in enumerate(tx_ids) if t in pending] if pending else []
            out = with_prefilled(msg, txs, fill) if fill else msg
            if net._enqueue(peer, out, must=False, urgent=True):
                net.counters["compact_pushed"] += 1
                net.counters["compact_prefilled"] += len(fill)

    def _on_get_txn(self, peer: Peer, msg: GetBlockTxn) -> None:
        net = self.net
        txs = self.recent.get(msg.block_id)
        if txs is None:  # an older block: from the store (a decode of its structure)
            for raw in net.handler.get_items(Kind.BLOCK, [msg.block_id]):
                try:
                    txs = split_block(raw)[2]
                except CompactError:
                    txs = None
        queued = peer.queued_bytes
        if txs is None or msg.indexes[-1] >= len(txs):
            net._enqueue(peer, NotFound(Kind.BLOCK, [msg.block_id]), must=True)
        else:
            # the priority lane: a block waits for this answer, and behind a queue of tx
            # gossip it came after the asker's timeout under load
            net._enqueue(peer, BlockTxn(msg.block_id, [txs[i] for i in msg.indexes]),
                         must=True, urgent=True)
            net.counters["compact_txs_sent"] += len(msg.indexes)
        peer.answer_bytes += peer.queued_bytes - queued  # charged to the asker's byte rate

    # --- receiving ----------------------------------------------------------------------

    def hello(self, peer: Peer) -> None:
        """A new peer: ask it for compact blocks (unless we take them in full)."""
        self.wants.discard(peer.node_id)  # until this connection asks
        if self.net.config.compact_blocks:
            self.net._enqueue(peer, SendCmpct(), must=True)

    async def on_message(self, peer: Peer, msg: CmpctBlock | GetBlockTxn | BlockTxn
                         | SendCmpct | CmpctSeen) -> None:
        if isinstance(msg, CmpctSeen):
            peer.known.add(inv_key(Kind.BLOCK, msg.block_id))
        elif isinstance(msg, SendCmpct):
            if len(self.wants) > 2 * len(self.net._peers) + 64:  # forget departed peers
                self.wants &= set(self.net._peers)
            self.wants.add(peer.node_id)
        elif isinstance(msg, CmpctBlock):
            await self._on_compact(peer, msg)
        elif isinstance(msg, GetBlockTxn):
            self._on_get_txn(peer, msg)
        else:
            await self._on_txn(peer, msg)

    async def _on_compact(self, peer: Peer, msg: CmpctBlock) -> None:
        net = self.net
        block_id = sha256(msg.header)
        key = inv_key(Kind.BLOCK, block_id)
        peer.known.add(key)
        net.counters["compact_received"] += 1
        if net.handler.has(Kind.BLOCK, block_id):
            return
        entry = self.pending.get(block_id)
        if entry is not None:  # being rebuilt from another peer's copy
            if entry[0] is not peer and len(entry[1].others) < MAX_OTHERS:
                entry[1].others.append(peer.node_id)
            return
        if key in net._inflight:  # being fetched in full: this peer is one more source
            net._on_inv(peer, Inv(Kind.BLOCK, [block_id]))
            return
        # the first copy: tell the other compact peers at once, so that they do not push
        # theirs once they have applied it (without this each node got a copy from every
        # neighbour: three times the bytes on four nodes). Not marked known on our side:
        # a peer that does not have it never says so, and gets our push.
        self.came_compact[block_id] = None
        while len(self.came_compact) > RECENT_BLOCKS:
            self.came_compact.popitem(last=False)
        seen = CmpctSeen(block_id)
        for other in list(net._peers.values()):
            if other is not peer and other.node_id in self.wants and key not in other.known:
                net._enqueue(other, seen, must=False, urgent=True)
        if (sum(1 for p, _ in self.pending.values() if p is peer) >= MAX_PENDING
                or self._budget(peer).debit(1) > 0):
            net.counters["compact_over_budget"] += 1
            self._full(block_id, [peer.node_id])
            return
        pool: Callable[[], Iterable[tuple[bytes, bytes]]] | None = getattr(
            net.handler, "pool_txs", None)
        rebuild = start_rebuild(msg, pool() if pool is not None else ())
        missing = rebuild.missing
        net.counters["compact_txs"] += msg.tx_count
        net.counters["compact_txs_missing"] += len(missing)
        if not missing:
            await self._deliver(peer, rebuild)
            return
        if net._nursery is None:
            return
        if not net._enqueue(peer, GetBlockTxn(block_id, missing), must=True, urgent=True):
            net.counters["compact_fallbacks"] += 1  # its queue is full: ask the others
            self._full(block_id, [peer.node_id])
            return
        rebuild.deadline = trio.current_time() + net.config.compact_timeout
        self.pending[block_id] = (peer, rebuild)
        net._nursery.start_soon(self._expire, block_id, rebuild)

    def _budget(self, peer: Peer) -> TokenBucket:
        rate = self.net.config.compact_rate
        bucket = self.budgets.get(peer.node_id)
        if bucket is None:
            if len(self.budgets) > 2 * len(self.net._peers) + 64:  # forget departed peers
                self.budgets = {k: b for k, b in self.budgets.items() if k in self.net._peers}
            bucket = self.budgets[peer.node_id] = TokenBucket(rate, 2 * rate)
        return bucket

    async def _on_txn(self, peer: Peer, msg: BlockTxn) -> None:
        net = self.net
        entry = self.pending.get(msg.block_id)
        if entry is None or entry[0] is not peer:
            # late (we timed out and asked for the full block) or never asked: an honest
            # late answer looks the same, so it costs nothing but its bytes
            net.counters["compact_unsolicited"] += 1
            return
        del self.pending[msg.block_id]
        rebuild = entry[1]
        if not rebuild.fill(msg.raws):
            net._penalize(peer, "unexpected_message", detail="BLOCK_TXN of the wrong size")
            net.counters["compact_fallbacks"] += 1
            self._full(msg.block_id, [*rebuild.others, peer.node_id])
            return
        await self._deliver(peer, rebuild)

    async def _deliver(self, peer: Peer, rebuild: PendingBlock) -> None:
        net = self.net
        raw = rebuild.block()
        if raw is None:
            # a short id matched the wrong tx, or a tx with the same id but other bytes
            # (a tx id does not cover its signature): not provably anyone's fault
            net.counters["compact_mismatches"] += 1
            net.counters["compact_fallbacks"] += 1
            self._full(rebuild.block_id, [peer.node_id, *rebuild.others])
            return
        net.counters["compact_rebuilt"] += 1
        net.counters["compact_body_bytes"] += len(raw)  # what the full block would weigh
        verdicts = await net.handler.on_blocks(peer.node_id, [raw])
        net._judge(peer, Kind.BLOCK, verdicts)

    async def _expire(self, block_id: bytes, rebuild: PendingBlock) -> None:
        await trio.sleep_until(rebuild.deadline)
        entry = self.pending.get(block_id)
        if entry is None or entry[1] is not rebuild:
            return
        del self.pending[block_id]
        self.net.counters["compact_timeouts"] += 1
        self.net.counters["compact_fallbacks"] += 1
        # the silent peer last: the others are asked for the full block first
        self._full(block_id, [*rebuild.others, entry[0].node_id])

    def _full(self, block_id: bytes, sources: list[bytes]) -> None:
        """Fetch the block in full: GET_DATA to the first source still connected, the
        others kept as alternates by the network's in-flight table."""
        net = self.net
        for node_id in sources:
            peer = net._peers.get(node_id)
            if peer is not None:
                net._on_inv(peer, Inv(Kind.BLOCK, [block_id]))
