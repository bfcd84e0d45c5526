"""The query service: every read the RPC answers, off the consensus path.

``QueryService`` is the RPC layer's backend (``muxernode.rpc.RpcBackend``) over a running
``Node``: it reads the chain, the ledger's state (through ``muxernode.views``), the
mempool, the network's peer list and the application side (history, societies), and
writes nothing; ``submit_txs`` hands txs to the node's intake and the admin methods to its
network. Nothing on block production, block application or votes calls it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from consensus.chain import BlockRef
from consensus.crypto import address_to_text
from consensus.errors import Rejected
from consensus.tx import SignedTx
from muxernode import views
from muxernode.ops import op_of, op_to_json
from muxernode.service import HistoryUnavailable, health_reason
from p2p import Network

if TYPE_CHECKING:
    from muxernode.node import Node

__all__ = ["QueryService"]

log = logging.getLogger("muxer.node")

# blocks whose txs get_tx finds by id without a scan: pollers ask about the txs of the
# last few blocks, thousands a second (bench.network's latency watch: up to 4,000 get_tx a
# second, each a scan of a 2,000-tx block before)
TX_MAPS = 16


class QueryService:
    """The node's answers to the RPC methods (section 9, 11.8, 12) and to /health,
    /metrics."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._participation: tuple[bytes, float] = (b"", 1.0)  # (head id, value)
        # block id -> its txs by id (blocks are immutable by id), the TX_MAPS last asked
        self._tx_maps: dict[bytes, dict[bytes, SignedTx]] = {}

    async def submit_txs(self, raws: list[bytes]) -> list[dict[str, Any]]:
        return await self.node.submit_txs(raws)

    def _head_time(self) -> int:
        return self.node.chain.head.timestamp

    async def chain_info(self) -> dict[str, Any]:
        head, final = self.node.chain.head, self.node.chain.final
        return {
            "chain_id": self.node.chain_id.hex(),
            "head_height": head.height,
            "head_id": head.id.hex(),
            "head_time": head.timestamp,
            "final_height": final.height,
            "final_id": final.id.hex(),
            "block_interval_s": self.node.params.block_interval_s,
            "base_fee": self.node.params.base_fee,
            "active_witnesses": [address_to_text(a) for a in self.node.active_witnesses()],
            "next_slot_time": self.node.slot_time(max(self.node.current_slot(), head.slot) + 1),
            "participation": self.participation(),
        }

    def participation(self) -> float:
        """Share of the last 128 slots (up to the head) that hold a block (cached per head:
        chain_info is polled by every wallet and dashboard)."""
        head = self.node.chain.head
        if self._participation[0] == head.id:
            return self._participation[1]
        value = 1.0
        if head.slot > 0:
            lo = max(1, head.slot - 127)
            filled = 0
            ref: BlockRef | None = head
            while ref is not None and ref.height > 0 and ref.slot >= lo and filled < 128:
                filled += 1
                if self.node.chain.is_pruned(ref.height - 1):
                    lo = max(lo, ref.slot)  # a pruned node: over the slots of its blocks
                    break
                ref = self.node.chain.ref_at(ref.height - 1)
            value = round(filled / (head.slot - lo + 1), 4)
        self._participation = (head.id, value)
        return value

    async def get_tx(self, tx_id: bytes) -> dict[str, Any]:
        tx = self.node.mempool.get(tx_id)
        status = "pending"
        height: int | None = None
        if tx is None:
            height = self.node.chain.tx_height(tx_id)
            if height is None:
                # a pruned tx's index entry went with its block: a pruned node cannot tell
                # it from a tx never included, and says from where it knows (docs/rpc.md)
                out_unknown: dict[str, Any] = {"tx_id": tx_id.hex(), "status": "unknown"}
                if self.node.chain.lowest_block > 1:
                    out_unknown["lowest_block"] = self.node.chain.lowest_block
                return out_unknown
            bid = self.node.chain.block_id_at(height)
            tx = self._tx_in_block(bid, tx_id) if bid else None
            if tx is None:
                return {"tx_id": tx_id.hex(), "status": "unknown"}
            status = "final" if height <= self.node.chain.final.height else "included"
        out: dict[str, Any] = {"tx_id": tx_id.hex(), "status": status}
        if height is not None:
            out["height"] = height
        out["sender"] = address_to_text(tx.sender)
        out["fee"] = tx.fee
        try:
            out["op"] = op_to_json(op_of(tx))
        except Rejected:
            out["op"] = {"type": "unknown"}
        return out

    def _tx_in_block(self, block_id: bytes, tx_id: bytes) -> SignedTx | None:
        txs = self._tx_maps.get(block_id)
        if txs is None:
            block = self.node.chain.get_block(block_id)
            if block is None:
                return None
            txs = {t.tx_id: t for t in block.txs}
            self._tx_maps[block_id] = txs
            if len(self._tx_maps) > TX_MAPS:
                del self._tx_maps[next(iter(self._tx_maps))]
        return txs.get(tx_id)

    def _check_not_pruned(self, height: int) -> None:
        chain = self.node.chain
        if chain.is_pruned(height) and height <= chain.head.height:
            from muxernode.rpc import PRUNED, RpcError

            raise RpcError(PRUNED, f"pruned: this node holds blocks from height "
                           f"{chain.lowest_block}", {"lowest_block": chain.lowest_block})

    async def get_block(self, height: int) -> dict[str, Any] | None:
        self._check_not_pruned(height)
        bid = self.node.chain.block_id_at(height)
        if bid is None:
            return None
        if height == 0:
            return {"height": 0, "id": bid.hex(), "previous": "", "timestamp":
                    self.node.genesis.genesis_time, "witness": "", "tx_ids": [], "votes": [],
                    "final": True}
        block = self.node.chain.get_block(bid)
        if block is None:
            return None
        return {
            "height": block.height,
            "id": block.id.hex(),
            "previous": block.previous_id.hex(),
            "timestamp": block.timestamp,
            "witness": address_to_text(block.witness),
            "tx_ids": [tx.tx_id.hex() for tx in block.txs],
            "votes": [v.hash.hex() for v in block.votes],
            "final": height <= self.node.chain.final.height,
        }

    async def get_account(self, address: bytes) -> dict[str, Any]:
        return views.account_view(self.node.ledger.state, address, self._head_time())

    async def get_society(self, society: str) -> dict[str, Any] | None:
        return views.society_view(self.node.ledger.state, society, self._head_time())

    async def get_member(self, society: str, address: bytes) -> dict[str, Any] | None:
        return views.member_view(self.node.ledger.state, society, address, self._head_time())

    async def get_claim(self, claim_id: bytes) -> dict[str, Any] | None:
        return views.claim_view(self.node.ledger.state, claim_id, self._head_time())

    async def list_claims(self, society: str) -> list[dict[str, Any]] | None:
        return views.list_claims(self.node.ledger.state, society, self._head_time())

    async def list_witnesses(self) -> list[dict[str, Any]]:
        return views.list_witnesses(self.node.ledger.state, set(self.node.active_witnesses()),
                                    self.node.consensus.production_stats())

    async def get_asset(self, symbol: str) -> dict[str, Any] | None:
        return views.asset_view(self.node.ledger.state, symbol)

    async def list_assets(self) -> list[dict[str, Any]]:
        return views.list_assets(self.node.ledger.state)

    async def get_standing_pledge(self, society: str, address: bytes) -> dict[str, Any] | None:
        return views.standing_pledge_view(self.node.ledger.state, society, address)

    async def list_votes(self, claim_id: bytes) -> list[dict[str, Any]] | None:
        return views.list_votes(self.node.ledger.state, claim_id)

    async def list_comments(
        self, claim_id: bytes, after: bytes | None, limit: int
    ) -> dict[str, Any] | None:
        return views.list_comments(self.node.ledger.state, claim_id, after, limit)

    async def list_members(
        self, society: str, after: bytes | None, limit: int
    ) -> dict[str, Any] | None:
        return views.list_members(self.node.ledger.state, society, self._head_time(), after, limit)

    async def peers(self) -> list[dict[str, Any]]:
        return [] if self.node.network is None else self.node.network.peers_info()

    async def health(self) -> tuple[bool, dict[str, Any]]:
        head = self.node.chain.head
        net = self.node.network
        live = set() if net is None else set(net.peer_ids())
        best_peer = max((h for pid, (h, _i, _f) in self.node.peer_heads.items() if pid in live),
                        default=None)
        reason = health_reason(
            started=self.node.started, storage_error=self.node.store.failed,
            configured_peers=len(self.node.config.peers), peers=len(live),
            head_height=head.height, best_peer_height=best_peer,
            slots_behind=self.node.current_slot() - head.slot)
        details: dict[str, Any] = {
            "height": head.height, "final_height": self.node.chain.final.height,
            "peers": len(live),
            # kept for tools that read the earlier shape
            "head_height": head.height, "slots_behind": self.node.current_slot() - head.slot,
            "storage": "ok" if self.node.store.failed is None else "failing"}
        if self.node.store.failed is not None:
            details["storage_error"] = self.node.store.failed
        if reason is not None:
            details["reason"] = reason
        return reason is None, details

    async def metrics(self) -> bytes:
        self.node._update_metrics()
        return self.node.metrics.render()

    async def get_history(self, address: bytes, types: frozenset[str] | None,
                          society: str | None, before: str | None, limit: int
                          ) -> dict[str, Any]:
        from muxernode.history import CursorError
        from muxernode.rpc import HISTORY_NOT_READY, UNAVAILABLE, RpcError, invalid_params

        try:
            index = self.node.app_service.history
            if before is not None and index is not None and self.node.chain.lowest_block > 1:
                # a cursor into pruned blocks: their history went with them
                self._check_not_pruned(index.cursor_height(index.parse_cursor(address, before)))
            return self.node.app_service.get_history(address, types, society, before, limit)
        except CursorError as exc:
            raise invalid_params(str(exc)) from None
        except HistoryUnavailable as exc:
            code = UNAVAILABLE if exc.progress is None else HISTORY_NOT_READY
            raise RpcError(code, str(exc), exc.progress) from None

    async def list_societies(self, before: str | None, limit: int) -> dict[str, Any]:
        from muxernode.history import CursorError
        from muxernode.rpc import invalid_params

        try:
            return self.node.app_service.list_societies(before, limit)
        except CursorError as exc:
            raise invalid_params(str(exc)) from None

    async def list_evidence(self) -> list[dict[str, Any]]:
        return [{"kind": r.kind, "witness": address_to_text(r.witness), "slot": r.slot,
                 "first": r.first.hex(), "second": r.second.hex()}
                for r in self.node.consensus.evidence_log]

    # --- admin (the RPC layer has checked the token) ---------------------------------------

    def _network(self) -> Network:
        net = self.node.network
        if net is None:
            from muxernode.rpc import UNAVAILABLE, RpcError

            raise RpcError(UNAVAILABLE, "unavailable: the p2p network is not running")
        return net

    async def add_peer(self, host: str, port: int) -> dict[str, Any]:
        self._network().add_address(host, port)  # dialed by the network's own loop
        log.info("admin", extra={"kv": {"method": "add_peer", "address": f"{host}:{port}"}})
        return {"address": f"{host}:{port}"}

    async def drop_peer(self, node_id: bytes) -> dict[str, Any]:
        net = self._network()
        connected = node_id in net.peer_ids()
        net.disconnect(node_id, "dropped by the operator")
        log.info("admin", extra={"kv": {"method": "drop_peer", "node": node_id[:8],
                                        "connected": connected}})
        return {"node_id": node_id.hex(), "dropped": connected}

    async def ban_peer(self, node_id: bytes, seconds: int | None) -> dict[str, Any]:
        net = self._network()
        span = seconds if seconds is not None else int(net.config.ban_seconds)
        net.ban(node_id, "banned by the operator", seconds=span)
        log.info("admin", extra={"kv": {"method": "ban_peer", "node": node_id[:8],
                                        "seconds": span}})
        return {"node_id": node_id.hex(), "seconds": span}

    async def unban_peer(self, node_id: bytes) -> dict[str, Any]:
        was = self._network().unban(node_id)
        log.info("admin", extra={"kv": {"method": "unban_peer", "node": node_id[:8],
                                        "was_banned": was}})
        return {"node_id": node_id.hex(), "unbanned": was}
