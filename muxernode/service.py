"""The node's application side (protocol section 12), off the consensus path.

``AppService`` owns the history index (muxernode/history.py, a hook in the chain's block
batch), the event hub (muxernode/events.py, fed by the chain's commit and pop callbacks,
the node's finality and its mempool admissions) and the queries built on them
(get_history, list_societies). The node assembles it; nothing here is awaited by block
production, block application or votes: the hub's task and the background history build
run in the node's nursery beside them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

import trio

from consensus.chain import Chain
from consensus.mempool import Mempool
from muxernode import ledger as L
from muxernode import views
from muxernode.events import Hub
from muxernode.history import CursorError, HistoryIndex, scheduled_of
from muxernode.ledger import Ledger
from storage import schema
from storage.leveldb import LevelDBStore

__all__ = ["HEALTH_MAX_SLOTS_BEHIND", "HEALTH_SYNC_BLOCKS", "AppService",
           "HistoryUnavailable", "health_reason"]

log = logging.getLogger("muxer.history")

BUILD_PAUSE_S = 0.01  # between two background batches: blocks and votes go first
PURGE_BATCH = 10_000


HEALTH_MAX_SLOTS_BEHIND = 3  # a head older than this many slots: 503 (section 12)
HEALTH_SYNC_BLOCKS = 3  # a connected peer this many blocks ahead: syncing, 503


def health_reason(*, started: bool, storage_error: str | None, configured_peers: int,
                  peers: int, head_height: int, best_peer_height: int | None,
                  slots_behind: int) -> str | None:
    """Why GET /health answers 503 (section 12), in words; None when the node is in sync.
    Checked in this order: starting, a store refusing writes, no peer although peers
    are configured, a peer well ahead (syncing), a stale head."""
    if not started:
        return "starting"
    if storage_error is not None:
        return f"the store refuses writes since a write failed ({storage_error})"
    if configured_peers and not peers:
        return f"no peers connected ({configured_peers} configured)"
    if best_peer_height is not None and best_peer_height > head_height + HEALTH_SYNC_BLOCKS:
        return f"syncing: at height {head_height}, a peer is at {best_peer_height}"
    if slots_behind > HEALTH_MAX_SLOTS_BEHIND:
        return (f"the head is {slots_behind} slots older than the clock "
                f"(more than {HEALTH_MAX_SLOTS_BEHIND})")
    return None


class HistoryUnavailable(Exception):
    """get_history cannot answer: ``ready`` False while the index is being built, or the
    index is switched off (``--no-history``)."""

    def __init__(self, message: str, progress: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.progress = progress


class AppService:
    def __init__(self, chain: Chain, ledger: Ledger, mempool: Mempool, store: LevelDBStore,
                 *, history: bool, secret: bytes) -> None:
        self.chain = chain
        self.ledger = ledger
        self.mempool = mempool
        self.store = store
        self._secret = hashlib.sha256(b"muxer/cursor" + secret).digest()
        self.hub = Hub(self, self.claim_of)
        self.history: HistoryIndex | None = None
        if history:
            self.history = HistoryIndex(store, self.claim_of, secret,
                                        scheduled=lambda: scheduled_of(ledger))
            self.history.start(chain.head.height)
            chain.indexers.append(self.history)
            index = self.history
            self.hub.touches_for = lambda b: (
                index.last_touches[1] if index.last_touches[0] == b.id else None)
        else:
            self._forget_index()
        chain.on_commit.append(lambda block, _ref: self.hub.publish_commit(
            block, chain.last_changes))
        chain.on_pop.append(self.hub.publish_pop)

    def _forget_index(self) -> None:
        # switched off: a later start with it on must build it again (blocks may come and
        # go meanwhile without their index keys); the stale entries go in that build
        if self.store.get(schema.META_HISTORY) is not None:
            self.store.write({schema.META_HISTORY: None}, sync=True)
            log.info("history_off", extra={"kv": {"action": "index dropped; rebuilt when on"}})

    # --- what the node tells it ------------------------------------------------------------

    def on_final(self, old_height: int, new_height: int) -> None:
        finals = []
        for h in range(old_height + 1, new_height + 1):
            bid = self.chain.block_id_at(h)
            if bid is not None:
                finals.append((h, bid))
        self.hub.publish_final(finals)

    def on_admitted(self, tx_ids: list[bytes]) -> None:
        self.hub.publish_pending(tx_ids)

    # --- the hub's source ---------------------------------------------------------------

    def claim_of(self, claim_id: bytes) -> tuple[str, bytes] | None:
        rec = self.ledger.state.get(L.claim_key(claim_id))
        if rec is None:
            return None
        return rec[L.C_SOCIETY], bytes(rec[L.C_CLAIMANT])

    def tx_status(self, tx_id: bytes) -> dict[str, Any]:
        if tx_id in self.mempool:
            return {"tx_id": tx_id.hex(), "status": "pending"}
        height = self.chain.tx_height(tx_id)
        if height is None:
            return {"tx_id": tx_id.hex(), "status": "unknown"}
        status = "final" if height <= self.chain.final.height else "included"
        return {"tx_id": tx_id.hex(), "status": status, "height": height}

    def claim_json(self, claim_id: bytes) -> dict[str, Any] | None:
        return views.claim_view(self.ledger.state, claim_id, self.chain.head.timestamp)

    # --- tasks ----------------------------------------------------------------------------

    async def run(self, stopping: trio.Event) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.hub.run)
            if self.history is not None and not self.history.ready:
                nursery.start_soon(self._build)
            await stopping.wait()
            nursery.cancel_scope.cancel()

    async def _build(self) -> None:
        """The background build: first the entries of blocks indexed before the index was
        last switched off (stale: they may have left the chain since), then the final
        blocks below ``from_height``; progress in the log every 10 % (or 1,000 blocks)."""
        index = self.history
        assert index is not None and index.from_height is not None
        target = index.from_height - 1
        log.info("history_build_started", extra={"kv": {"blocks": target,
                                                        "done": index.built_below - 1}})
        if index.built_below == 1:
            await self._purge_below(index.from_height)
        step = max(1000, target // 10)
        next_report = index.built_below + step
        for _ in range(target + 1):  # bounded: each round does a block, or waits for final
            if index.ready:
                break
            if self.store.failed is not None:
                await trio.sleep(1.0)
                continue
            done = index.build_step(self.chain, self.chain.final.height)
            if not done:
                await trio.sleep(0.5)  # the rest is not final yet
                continue
            if index.built_below >= next_report:
                next_report += step
                log.info("history_build_progress", extra={"kv": {
                    "done": index.built_below - 1, "of": target}})
            await trio.sleep(BUILD_PAUSE_S)
        log.info("history_build_done", extra={"kv": {"blocks": target}})

    async def _purge_below(self, height: int) -> None:
        prefix = schema.PREFIX_HISTORY + b"a"
        batch: dict[bytes, bytes | None] = {}
        removed = 0
        for key, _v in self.store.iterate(prefix):
            if (~int.from_bytes(key[22:30], "big")) & (2**64 - 1) < height:
                batch[key] = None
            if len(batch) >= PURGE_BATCH:
                self.store.write(batch, sync=False)
                removed += len(batch)
                batch = {}
                await trio.sleep(0)
        if batch:
            self.store.write(batch, sync=False)
            removed += len(batch)
        if removed:
            log.info("history_purged", extra={"kv": {"entries": removed}})

    # --- queries --------------------------------------------------------------------------

    def get_history(self, address: bytes, types: frozenset[str] | None, society: str | None,
                    before: str | None, limit: int) -> dict[str, Any]:
        index = self.history
        if index is None:
            raise HistoryUnavailable("history is switched off on this node (--no-history)")
        if not index.ready:
            raise HistoryUnavailable("history not ready: the index is being built", {
                "done": index.built_below - 1, "of": (index.from_height or 1) - 1})
        position = None if before is None else index.parse_cursor(address, before)
        entries, nxt = index.query(address, types=types, society=society, before=position,
                                   limit=limit)
        return {"items": index.items(self.chain, entries, address), "next": nxt}

    def _society_mac(self, position: bytes) -> bytes:
        return hmac.new(self._secret, b"societies" + position, "sha256").digest()[:8]

    def list_societies(self, before: str | None, limit: int) -> dict[str, Any]:
        """Newest first by (created_at, society id), read from the state (every call reads
        all society records: cheap at the society counts of this chain)."""
        rows = []
        for key, rec in self.ledger.state.iterate_committed(b"s"):
            created = rec[L.S_CREATED] if len(rec) > L.S_CREATED else 0
            rows.append((created, key[1:].decode(), rec))
        rows.sort(reverse=True)
        start = 0
        if before is not None:
            try:
                raw = bytes.fromhex(before)
            except ValueError:
                raise CursorError("before is not a cursor this node handed out") from None
            position, mac = raw[:-8], raw[-8:]
            if len(raw) <= 8 or not hmac.compare_digest(mac, self._society_mac(position)):
                raise CursorError("before is not a cursor this node handed out")
            after = (int.from_bytes(position[:8], "big"), position[8:].decode())
            start = next((i for i, r in enumerate(rows) if (r[0], r[1]) < after), len(rows))
        page = rows[start:start + limit]
        items = []
        for created, society, rec in page:
            rules = rec[L.S_RULES]
            items.append({"society": society, "name": rec[L.S_NAME],
                          "asset": rules[9] if len(rules) > 9 else "MUX",
                          "members": rec[L.S_MEMBERS], "open_claims": rec[L.S_OPEN],
                          "created_at": created})
        nxt = None
        if start + limit < len(rows) and page:
            created, society, _rec = page[-1]
            position = created.to_bytes(8, "big") + society.encode()
            nxt = (position + self._society_mac(position)).hex()
        return {"items": items, "next": nxt}

    def metrics(self) -> dict[str, float]:
        hub = self.hub
        return {"ws_connections": hub.connections, "ws_subscriptions": hub.subscriptions,
                "ws_dropped": hub.dropped_slow, "ws_notifications": hub.notifications,
                "history_lag": 0 if self.history is None else self.history.lag}

