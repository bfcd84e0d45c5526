"""Shared setup for the JSON-RPC tests (tests/test_rpc.py, tests/test_rpc_hostile.py,
tests/test_access.py): a real-ledger backend, a server on 127.0.0.1 port 0, call helpers.

The backend is not a mock: ``LedgerBackend`` runs a real Ledger (tests.ledger_helpers.Chain
on a MemoryKV) and answers through muxernode.views; every ``submit_txs`` call decodes,
verifies and applies its txs in one new block, so rejections carry the ledger's own reasons.
Its admin methods only record what they were asked (``admin_calls``), so a test can see
whether an admin call got through.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from consensus.crypto import PrivateKey, address_to_text
from consensus.errors import Rejected
from consensus.tx import SignedTx, decode_tx, verify_tx
from muxernode import views
from muxernode.ops import decode_op, op_to_json
from muxernode.rpc import UNAVAILABLE, JsonRpcApp, RpcBackend, RpcError, serve_rpc
from tests.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    RULES,
    SOC,
    WITNESS,
    Chain,
    op_claim,
    op_create,
    op_join,
    op_pledge,
)

__all__ = [
    "TIMEOUT",
    "LedgerBackend",
    "call",
    "error",
    "post_raw",
    "raw_exchange",
    "result",
    "served",
    "society_backend",
]

TIMEOUT = 10


class LedgerBackend:
    """An RpcBackend over a real ledger: one block per submit_txs call, final at once."""

    def __init__(self) -> None:
        self.c = Chain()
        self.blocks: list[dict[str, Any]] = [self._block_json([])]
        self.txs: dict[bytes, tuple[int, SignedTx]] = {}
        self.healthy = True
        self.fail = False
        self.evidence: list[dict[str, Any]] = []
        self.admin_calls: list[tuple[str, list[Any]]] = []

    # --- driving the chain --------------------------------------------------------------

    def _block_json(self, txs: list[SignedTx]) -> dict[str, Any]:
        c = self.c
        return {
            "height": c.height,
            "id": c.block_id(c.height).hex(),
            "previous": c.block_id(c.height - 1).hex() if c.height else "",
            "timestamp": c.time,
            "witness": WITNESS.address_text if c.height else "",
            "tx_ids": [tx.tx_id.hex() for tx in txs],
            "votes": [],
            "final": True,
        }

    def apply_block(self, txs: list[SignedTx | Rejected], at: int | None = None
                    ) -> list[dict[str, Any]]:
        """One block with these txs (a Rejected stands for a tx that failed to decode)."""
        c = self.c
        c.begin(at=at)
        out: list[dict[str, Any]] = []
        included: list[SignedTx] = []
        for tx in txs:
            try:
                if isinstance(tx, Rejected):
                    raise tx
                c.ledger.apply_tx(tx)
            except Rejected as exc:
                out.append({"error": {"code": -32000, "message": exc.message,
                                      "data": {"reason": exc.reason}}})
                continue
            included.append(tx)
            out.append({"tx_id": tx.tx_id.hex()})
        c.commit()
        for tx in included:
            self.txs[tx.tx_id] = (c.height, tx)
        self.blocks.append(self._block_json(included))
        return out

    def ok(self, signer: PrivateKey, op: list[Any], at: int | None = None) -> SignedTx:
        tx = self.c.tx(signer, op)
        (res,) = self.apply_block([tx], at=at)
        assert "tx_id" in res, res
        return tx

    # --- RpcBackend ---------------------------------------------------------------------

    async def chain_info(self) -> dict[str, Any]:
        c = self.c
        head = c.block_id(c.height).hex()
        return {
            "chain_id": c.chain_id.hex(), "head_height": c.height, "head_id": head,
            "head_time": c.time, "final_height": c.height, "final_id": head,
            "block_interval_s": c.genesis.params.block_interval_s,
            "base_fee": c.genesis.params.base_fee,
            "active_witnesses": [WITNESS.address_text], "next_slot_time": c.time + 1,
            "participation": 1.0,
        }

    async def submit_txs(self, raws: list[bytes]) -> list[dict[str, Any]]:
        txs: list[SignedTx | Rejected] = []
        for raw in raws:
            try:
                tx = decode_tx(raw, self.c.genesis.params.max_tx_bytes)
                if not verify_tx(tx, self.c.chain_id):
                    raise Rejected("bad_signature")
            except Rejected as exc:
                txs.append(exc)
                continue
            txs.append(tx)
        return self.apply_block(txs)

    async def get_tx(self, tx_id: bytes) -> dict[str, Any]:
        found = self.txs.get(tx_id)
        if found is None:
            return {"tx_id": tx_id.hex(), "status": "unknown"}
        height, tx = found
        return {"tx_id": tx_id.hex(), "status": "final", "height": height,
                "sender": address_to_text(tx.sender), "fee": tx.fee,
                "op": op_to_json(decode_op(tx.op))}

    async def get_block(self, height: int) -> dict[str, Any] | None:
        return self.blocks[height] if height < len(self.blocks) else None

    async def get_account(self, address: bytes) -> dict[str, Any]:
        return views.account_view(self.c.ledger, address, self.c.time)

    async def get_society(self, society: str) -> dict[str, Any] | None:
        return views.society_view(self.c.ledger, society, self.c.time)

    async def get_member(self, society: str, address: bytes) -> dict[str, Any] | None:
        return views.member_view(self.c.ledger, society, address, self.c.time)

    async def get_claim(self, claim_id: bytes) -> dict[str, Any] | None:
        return views.claim_view(self.c.ledger, claim_id, self.c.time)

    async def list_claims(self, society: str) -> list[dict[str, Any]] | None:
        return views.list_claims(self.c.ledger, society, self.c.time)

    async def list_witnesses(self) -> list[dict[str, Any]]:
        return views.list_witnesses(self.c.ledger, {WITNESS.address},
                                    {WITNESS.address: (self.c.height, 0)})

    async def get_history(self, address: bytes, types: frozenset[str] | None,
                          society: str | None, before: str | None, limit: int
                          ) -> dict[str, Any]:
        # this backend keeps no history index (tests/test_ws.py asks a real node)
        raise RpcError(UNAVAILABLE, "history is switched off on this backend")

    async def list_societies(self, before: str | None, limit: int) -> dict[str, Any]:
        return {"items": [], "next": None}

    async def get_asset(self, symbol: str) -> dict[str, Any] | None:
        return views.asset_view(self.c.ledger, symbol)

    async def list_assets(self) -> list[dict[str, Any]]:
        return views.list_assets(self.c.ledger)

    async def get_standing_pledge(self, society: str, address: bytes) -> dict[str, Any] | None:
        return views.standing_pledge_view(self.c.ledger, society, address)

    async def list_votes(self, claim_id: bytes) -> list[dict[str, Any]] | None:
        return views.list_votes(self.c.ledger, claim_id)

    async def list_comments(
        self, claim_id: bytes, after: bytes | None, limit: int
    ) -> dict[str, Any] | None:
        return views.list_comments(self.c.ledger, claim_id, after, limit)

    async def list_members(
        self, society: str, after: bytes | None, limit: int
    ) -> dict[str, Any] | None:
        return views.list_members(self.c.ledger, society, self.c.time, after, limit)

    async def peers(self) -> list[dict[str, Any]]:
        if self.fail:
            raise RuntimeError("secret internal detail")
        return []

    async def list_evidence(self) -> list[dict[str, Any]]:
        return list(self.evidence)

    async def add_peer(self, host: str, port: int) -> dict[str, Any]:
        self.admin_calls.append(("add_peer", [host, port]))
        return {"address": f"{host}:{port}"}

    async def drop_peer(self, node_id: bytes) -> dict[str, Any]:
        self.admin_calls.append(("drop_peer", [node_id]))
        return {"node_id": node_id.hex(), "dropped": False}

    async def ban_peer(self, node_id: bytes, seconds: int | None) -> dict[str, Any]:
        self.admin_calls.append(("ban_peer", [node_id, seconds]))
        return {"node_id": node_id.hex(), "seconds": seconds or 3600}

    async def unban_peer(self, node_id: bytes) -> dict[str, Any]:
        self.admin_calls.append(("unban_peer", [node_id]))
        return {"node_id": node_id.hex(), "unbanned": False}

    async def health(self) -> tuple[bool, dict[str, Any]]:
        return self.healthy, {"head_height": self.c.height}

    async def metrics(self) -> bytes:
        return f"# TYPE muxer_head_height gauge\nmuxer_head_height {self.c.height}\n".encode()


def _typecheck_backend(b: LedgerBackend) -> RpcBackend:
    return b  # mypy checks that LedgerBackend satisfies the protocol


def society_backend() -> tuple[LedgerBackend, bytes]:
    """SOC with ALICE (karma 5_000), BOB (10_000) and CAROL (joined, no pledge); ALICE's
    claim (amount 5_000, karma 2_000, limit 5_000) is open and still in its waiting time."""
    b = LedgerBackend()
    c = b.c
    t = c.time + 1
    b.apply_block([c.tx(ALICE, op_create(SOC)), c.tx(ALICE, op_join(SOC, "alice")),
                   c.tx(ALICE, op_pledge(10_000)), c.tx(BOB, op_join(SOC, "bob")),
                   c.tx(BOB, op_pledge(20_000)), c.tx(CAROL, op_join(SOC, "carol"))], at=t)
    claim = b.ok(ALICE, op_claim(5_000, 2_000), at=t + RULES.observation_s)
    return b, claim.tx_id


@asynccontextmanager
async def served(app: JsonRpcApp, **serve_options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` served on 127.0.0.1 (port 0; the client's base_url holds the port) with
    ``serve_rpc``'s options; stopped when the block ends."""
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        port: int = await nursery.start(functools.partial(
            serve_rpc, app, "127.0.0.1", 0, shutdown=shutdown, **serve_options))
        assert port > 0
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                yield client
        finally:
            shutdown.set()


async def call(client: httpx.AsyncClient, method: str, *params: Any, req_id: Any = 1) -> Any:
    """One call; returns the whole response object."""
    r = await client.post("/rpc", json={"jsonrpc": "2.0", "method": method,
                                        "params": list(params), "id": req_id})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["jsonrpc"] == "2.0" and doc["id"] == req_id
    return doc


async def result(client: httpx.AsyncClient, method: str, *params: Any) -> Any:
    doc = await call(client, method, *params)
    assert "error" not in doc, doc
    return doc["result"]


async def error(client: httpx.AsyncClient, method: str, *params: Any) -> dict[str, Any]:
    doc = await call(client, method, *params)
    assert "result" not in doc, doc
    err: dict[str, Any] = doc["error"]
    return err


async def post_raw(client: httpx.AsyncClient, body: bytes,
                   content_type: str = "application/json") -> httpx.Response:
    return await client.post("/rpc", content=body, headers={"content-type": content_type})


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes on a new connection; everything the server sends until it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        try:
            await stream.send_all(data)
        except trio.BrokenResourceError:
            pass  # the server answered and closed before taking everything
        out = b""
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            out += chunk
        return out
