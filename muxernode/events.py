"""The event hub: subscriptions of protocol section 12 fed from the chain's events.

The node publishes, right after a block's batch committed (``on_commit``), after a pop,
when a block became final, and when txs entered the mempool; each publish only appends to
a queue (O(1)), so nothing on the consensus path waits for a subscriber. The hub's own
task (``run``) turns each event, in order, into notifications, and hands each to its
subscriber's outgoing queue without waiting either: a subscriber whose queue holds more
than ``max_unread`` notifications is marked ``overflowed`` (its connection is closed with
code 1008 by the server) and loses its subscriptions.

What an event needs of the state at its instant (a claim's view after the block) is taken
when it is published, for subscribed claims only; everything else (history items, the
society of a claim) does not change once written and is read in the hub's task.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from consensus.block import Block
from consensus.codec import decode_trusted
from consensus.crypto import address_to_text
from muxernode.history import ClaimLookup, Touch, history_item, touches_of_block
from muxernode.ledger import COMMENT_PREFIX, comment_key

__all__ = [
    "MAX_SUBSCRIPTIONS",
    "MAX_UNREAD",
    "TOPICS",
    "WRITE_CHARS",
    "WRITE_FRAMES",
    "DirectWriter",
    "Hub",
    "LimitExceeded",
    "Subscriber",
]

log = logging.getLogger("muxer.events")

TOPICS = ("heads", "final", "tx", "account", "society", "claim")
MAX_SUBSCRIPTIONS = 100  # per connection (section 12); the next answers -32005
MAX_UNREAD = 1000  # notifications queued for one connection; past that it is closed
# one socket write carries at most this many of a connection's queued messages (and this
# many characters, but always one): a block's burst for a connection goes out in one
WRITE_FRAMES = 256
WRITE_CHARS = 1 << 18
MAX_EVENTS = 100_000  # events waiting for the hub's task (a bound that is never reached
# unless the task stops: a block is one event)
_CLAIM_KEY = b"Sc"  # the state's claim records (muxernode/ledger.py: S + c + claim_id)
# the comment index's keys (muxernode/ledger.py comment_key: C + claim_id + height + seq):
# a comment changes no state, but the claim's ``comments`` count, which section 12's claim
# topic reports
_COMMENT_KEY = COMMENT_PREFIX
_COMMENT_KEY_LEN = len(comment_key(bytes(32), 0, 0))
_TX_ENDS = ("final", "dropped")


class LimitExceeded(Exception):
    """A connection already holds MAX_SUBSCRIPTIONS subscriptions."""


class DirectWriter(Protocol):
    """A connection's socket as the hub may write it without waiting (muxernode/rpc.py)."""

    def ready(self) -> bool:
        """The socket is open and holds nothing of ours unwritten: a write may go now."""
        ...

    def write(self, texts: list[str]) -> bool:
        """Frame ``texts`` and write them without waiting; False: a rest waits for the
        connection's writer task (which is then woken)."""
        ...


class Subscriber:
    """One connection's outgoing queue: notifications and (on the same queue, so that an
    answer and the notifications around it keep their order) the RPC answers.

    With a ``direct`` writer, the hub writes what a block queued for the connection
    itself, right after the event, in one socket write and without waiting (``flush``):
    no task switch per connection on the block path. Whatever the socket does not take
    at once, and everything while a write is unfinished, goes the ordinary way: queued
    (counted in ``unread``, under the same close rule) for the writer task."""

    def __init__(self, max_unread: int = MAX_UNREAD,
                 max_subscriptions: int = MAX_SUBSCRIPTIONS) -> None:
        self.max_unread = max_unread
        self.max_subscriptions = max_subscriptions
        self.out: deque[tuple[str, bool]] = deque()  # (text, is a notification)
        self.unread = 0  # notifications in ``out``
        self.wakeup = trio.Event()
        self.overflowed = False
        self.closed = False
        self.subs: dict[str, tuple[str, Any]] = {}  # id -> (topic, key)
        self.direct: DirectWriter | None = None

    def push(self, text: str, notification: bool = True, wake: bool = True) -> bool:
        """Queue one message; False once the connection is to be closed. ``wake``
        False: the caller calls ``flush`` after its burst instead."""
        if self.closed or self.overflowed:
            return False
        if notification:
            if self.unread >= self.max_unread:
                self.overflowed = True
                self.wakeup.set()
                return False
            self.unread += 1
        self.out.append((text, notification))
        if wake:
            self.wakeup.set()
        return True

    def flush(self) -> None:
        """After a burst pushed without ``wake``: write it now if the socket can take it,
        else (or for the rest) wake the writer task."""
        direct = self.direct
        if direct is not None and not self.overflowed and not self.closed:
            while self.out and direct.ready():
                if not direct.write(self.take(WRITE_FRAMES, WRITE_CHARS)):
                    break
            if not self.out and direct.ready():
                return
        self.wakeup.set()

    def pop(self) -> str | None:
        if not self.out:
            return None
        text, notification = self.out.popleft()
        if notification:
            self.unread -= 1
        return text

    def take(self, max_count: int, max_chars: int) -> list[str]:
        """The oldest queued messages, in order, for one socket write: at most
        ``max_count`` of them and ``max_chars`` in all (but one, however long, if any)."""
        out = self.out
        taken: list[str] = []
        chars = 0
        unread = 0
        while out and len(taken) < max_count:
            text, notification = out[0]
            chars += len(text)
            if taken and chars > max_chars:
                break
            out.popleft()
            taken.append(text)
            unread += notification
        self.unread -= unread
        return taken


class HubSource(Protocol):
    """What the hub reads of the node (answers in their RPC shapes)."""

    def tx_status(self, tx_id: bytes) -> dict[str, Any]:
        """{tx_id, status, height?} now: pending / included / final / unknown."""
        ...

    def claim_json(self, claim_id: bytes) -> dict[str, Any] | None:
        """The claim as get_claim returns it now."""
        ...


@dataclass(slots=True)
class _Event:
    kind: str  # commit, pop, final, pending
    block: Block | None = None
    touches: list[Touch] | None = None
    claims: dict[bytes, dict[str, Any] | None] = field(default_factory=dict)
    closed: list[bytes] = field(default_factory=list)  # claim ids closed in the block
    finals: list[tuple[int, bytes]] = field(default_factory=list)
    tx_ids: list[bytes] = field(default_factory=list)


def _note(sid: str, result_json: str) -> str:
    return ('{"jsonrpc":"2.0","method":"subscription","params":{"subscription":"'
            + sid + '","result":' + result_json + "}}")


# one encoder for every notification: json.dumps with separators builds a new one a call
_dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode


class Hub:
    def __init__(self, source: HubSource, claim_of: ClaimLookup) -> None:
        self.source = source
        self.claim_of = claim_of
        self._events: deque[_Event] = deque()
        self._wakeup = trio.Event()
        self._ids = itertools.count(1)
        # topic -> key -> {subscription id: subscriber}; heads and final use key None
        self._subs: dict[str, dict[Any, dict[str, Subscriber]]] = {t: {} for t in TOPICS}
        self._head: bytes | None = None  # the last head announced on "heads"
        # connections with a direct writer that the event being handled queued for
        self._dirty: dict[int, Subscriber] = {}
        self._tx_last: dict[bytes, str] = {}  # subscribed tx -> last status sent
        self.connections = 0
        self.subscriptions = 0
        self.dropped_slow = 0
        self.notifications = 0
        self.events_dropped = 0
        # the latest block's history items, when the history index computed them
        self.touches_for: Callable[[Block], list[Touch] | None] = lambda _b: None

    # --- subscriptions ------------------------------------------------------------------

    def subscribe(self, sub: Subscriber, topic: str, key: Any) -> str:
        if len(sub.subs) >= sub.max_subscriptions:
            raise LimitExceeded
        sid = f"0x{next(self._ids):x}"
        sub.subs[sid] = (topic, key)
        self._subs[topic].setdefault(key, {})[sid] = sub
        self.subscriptions += 1
        if topic == "tx":
            self._tx_subscribed(sid, sub, key)
        return sid

    def _tx_subscribed(self, sid: str, sub: Subscriber, tx_id: bytes) -> None:
        # a tx already known: its status now, so a late subscriber misses nothing
        status = self.source.tx_status(tx_id)
        if status["status"] != "unknown":
            sub.push(_note(sid, _dumps(status)))
            self._tx_last[tx_id] = status["status"]

    def unsubscribe(self, sub: Subscriber, sid: str) -> bool:
        entry = sub.subs.pop(sid, None)
        if entry is None:
            return False
        topic, key = entry
        by_key = self._subs[topic].get(key)
        if by_key is not None:
            by_key.pop(sid, None)
            if not by_key:
                del self._subs[topic][key]
                if topic == "tx":
                    self._tx_last.pop(key, None)
        self.subscriptions -= 1
        return True

    def drop(self, sub: Subscriber) -> None:
        """The connection is gone (or overflowed): forget its subscriptions."""
        for sid in list(sub.subs):
            self.unsubscribe(sub, sid)
        sub.closed = True
        sub.wakeup.set()

    def _send(self, topic: str, key: Any, result_json: str) -> None:
        subs = self._subs[topic].get(key)
        if not subs:
            return
        dirty = self._dirty
        for sid, sub in list(subs.items()):
            direct = sub.direct is not None
            if sub.push(_note(sid, result_json), wake=not direct):
                self.notifications += 1
                if direct:
                    dirty[id(sub)] = sub
            elif sub.overflowed and not sub.closed:
                self.dropped_slow += 1
                log.info("ws_slow_client_dropped", extra={"kv": {"unread": sub.unread}})
                self.drop(sub)

    # --- publishing (the node's side: O(1) plus subscribed claims) ----------------------

    def _put(self, event: _Event) -> None:
        if len(self._events) >= MAX_EVENTS:
            self.events_dropped += 1
            return
        self._events.append(event)
        self._wakeup.set()

    def publish_commit(self, block: Block, changes: Mapping[bytes, bytes | None] | None
                       ) -> None:
        """A block joined the main chain (its batch is written). Called from the chain's
        commit: whatever goes wrong here is logged and costs only notifications."""
        try:
            self._publish_commit(block, changes)
        except Exception:
            log.exception("event hub failed on a commit", extra={"kv": {
                "height": block.height}})

    def _publish_commit(self, block: Block, changes: Mapping[bytes, bytes | None] | None
                        ) -> None:
        claims: dict[bytes, dict[str, Any] | None] = {}
        closed: list[bytes] = []
        if changes and (self._subs["claim"] or self._subs["society"]):
            for k, raw in changes.items():
                if k[:1] == _COMMENT_KEY and len(k) == _COMMENT_KEY_LEN:
                    cid = k[1:33]
                    if cid in self._subs["claim"] and cid not in claims:
                        claims[cid] = self.source.claim_json(cid)
                    continue
                if k[:2] != _CLAIM_KEY or len(k) != 34:
                    continue
                cid = k[2:]
                if cid in self._subs["claim"]:
                    claims[cid] = self.source.claim_json(cid)
                if raw is not None and self._subs["society"]:
                    rec = decode_trusted(raw)
                    if type(rec) is list and len(rec) > 14 and rec[14] != 0:
                        closed.append(cid)  # only an open claim changes: it closed now
        self._put(_Event("commit", block, self.touches_for(block), claims, closed))

    def publish_pop(self, block: Block) -> None:
        self._put(_Event("pop", block))

    def publish_final(self, finals: list[tuple[int, bytes]]) -> None:
        if finals:
            self._put(_Event("final", finals=finals))

    def publish_pending(self, tx_ids: list[bytes]) -> None:
        if self._subs["tx"]:
            watched = [t for t in tx_ids if t in self._subs["tx"]]
            if watched:
                self._put(_Event("pending", tx_ids=watched))

    # --- the hub's task -----------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            # one event at a time, with a checkpoint between: the connections' writers
            # drain what a block queued before the next block's notifications come
            for _ in range(min(len(self._events), 1000)):
                event = self._events.popleft()
                try:
                    self._handle(event)
                except Exception:
                    log.exception("event hub failed on an event")
                self._flush()
                await trio.sleep(0)
            if self._events:
                self._wakeup.set()

    def _flush(self) -> None:
        """Write what the event queued for each connection (Subscriber.flush)."""
        dirty = self._dirty
        self._dirty = {}
        for sub in dirty.values():
            try:
                sub.flush()
            except Exception:
                log.exception("event hub failed on a write")
                sub.wakeup.set()

    def _handle(self, ev: _Event) -> None:
        if ev.kind == "commit":
            assert ev.block is not None
            self._on_commit(ev)
        elif ev.kind == "pop":
            assert ev.block is not None
            # nothing on "heads" and the last head announced stays: the next head, a
            # child of the fork point and not of that one, is the one marked "reorg"
            self._recheck_txs([tx.tx_id for tx in ev.block.txs])
        elif ev.kind == "final":
            for height, bid in ev.finals:
                self._send("final", None, _dumps({"height": height, "id": bid.hex()}))
            if self._subs["tx"]:
                self._recheck_txs(list(self._tx_last))
        else:
            self._recheck_txs(ev.tx_ids)

    def _on_commit(self, ev: _Event) -> None:
        block = ev.block
        assert block is not None
        head: dict[str, Any] = {"height": block.height, "id": block.id.hex(),
                                "time": block.timestamp, "tx_count": len(block.txs)}
        if self._head is not None and block.previous_id != self._head:
            head["reorg"] = True
        self._head = block.id
        self._send("heads", None, _dumps(head))
        subs = self._subs
        if subs["account"] or subs["society"]:
            touches = ev.touches
            if touches is None:
                touches = touches_of_block(block, self.claim_of)
            for t in touches:
                if t.address in subs["account"]:
                    self._send("account", t.address,
                               _dumps(history_item(t, block.height, block.timestamp)))
                if t.role == 0 and t.society is not None and t.society in subs["society"]:
                    self._send("society", t.society, _dumps(self._society_item(t, block)))
            for cid in ev.closed:
                found = self.claim_of(cid)
                if found is not None and found[0] in subs["society"]:
                    self._send("society", found[0], _dumps({
                        "type": "close", "tx_id": None, "height": block.height,
                        "address": address_to_text(found[1]), "claim_id": cid.hex()}))
        for cid, view in ev.claims.items():
            if view is not None:
                self._send("claim", cid, _dumps(view))
        if subs["tx"]:
            self._recheck_txs([tx.tx_id for tx in block.txs] + [
                t for t, s in self._tx_last.items() if s == "pending"])

    @staticmethod
    def _society_item(t: Touch, block: Block) -> dict[str, Any]:
        out: dict[str, Any] = {"type": t.type,
                               "tx_id": None if t.tx is None else t.tx.tx_id.hex(),
                               "height": block.height, "address": address_to_text(t.address)}
        for k, v in (t.op or {}).items():
            if k != "type":
                out[k] = v
        if t.tx is None:
            out["scheduled"] = True
        return out

    def _recheck_txs(self, tx_ids: list[bytes]) -> None:
        """Send each subscribed tx's status when it changed (dropped: neither pending nor
        on the chain any more, after it was seen)."""
        watched = self._subs["tx"]
        for tx_id in dict.fromkeys(tx_ids):
            if tx_id not in watched:
                continue
            last = self._tx_last.get(tx_id)
            if last in _TX_ENDS:
                continue
            status = self.source.tx_status(tx_id)
            now = status["status"]
            if now == "unknown":
                if last is None:
                    continue  # not submitted yet
                status = {"tx_id": tx_id.hex(), "status": "dropped"}
                now = "dropped"
            if now == last:
                continue
            self._tx_last[tx_id] = now
            self._send("tx", tx_id, _dumps(status))
