"""The node's JSON-RPC 2.0 server (protocol section 9), a plain ASGI app served by hypercorn.

HTTP routes:

    POST /rpc      Content-Type application/json; one call or a batch (a JSON array)
    GET  /health   200 {"status": "ok", ...} when the backend says it is in sync, else 503
    GET  /metrics  Prometheus text (content type text/plain; version=0.0.4)
    GET  /, /static/...  the member web app (muxernode/webapp.py)

Anything else: 404; another method on a known path: 405 (with Allow); a wrong content
type on /rpc: 415; a body over ``max_body_bytes``: 413 (decided from Content-Length before
reading when it is declared, else as soon as the bytes read pass the limit); a body that
takes longer than ``body_timeout_s`` to arrive: 408; more than ``max_concurrent`` requests
in progress: 503. Connections: at most ``max_connections`` open at once (``serve_rpc``);
beyond that a new connection gets a 503 and is closed at once.

JSON-RPC rules (https://www.jsonrpc.org/specification), with this server's readings:

- -32700 parse error: the body is not UTF-8 JSON (NaN and Infinity are not JSON).
- -32600 invalid request: not an object; ``jsonrpc`` is not exactly "2.0"; ``method`` is
  not a string; ``params`` present but neither array nor object; ``id`` present but not a
  string, an integer or null (floats and booleans are refused); an empty batch; a batch
  of more than ``max_batch`` entries ("batch too large", one error for the whole batch).
  An invalid request is answered even without an id, with ``"id": null``.
- -32601 unknown method. -32602 invalid params: params must be an array (an object, a
  wrong count or a wrong type of any item is refused; a missing ``params`` is ``[]``).
- -32603 internal error: the exception is logged, the answer says only "internal error".
- -32000: a rejected transaction; ``data.reason`` is a code of section 9.
- -32001: not found (an unknown block, society, member or claim); ``data.what`` names the
  kind of object and ``data.id`` repeats the key asked for. An unknown account is not an
  error (a zero account), nor is an unknown tx (``status: "unknown"``).
- -32002: unavailable (an admin method while the p2p network is not running).
- -32006: pruned: a block (or a history page) below the lowest height a pruned node holds
  (``--keep-blocks``); ``data.lowest_block`` is that height.
- -32003: unauthorized: an admin method (``ADMIN_METHODS``) without the right
  ``Authorization: Bearer <token>`` header (the token is ``<data_dir>/rpc.token``). Checked
  before the params, so an unauthorized caller learns nothing about them.
- A notification (no ``id`` member) is run but gets no answer; a request or batch with
  only notifications is answered with HTTP 204 and no body. Batches run in order.

The app is written against ASGI only; ``serve_rpc`` runs it under hypercorn on trio and
reports the port actually bound (use port 0 in tests).
"""

from __future__ import annotations

import errno
import hmac
import json
import logging
import os
import re
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import trio
from hypercorn.config import Config
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ASGIFramework, ConnectionState
from hypercorn.utils import wrap_app
from wsproto.connection import Connection as WsprotoConnection
from wsproto.events import TextMessage
from wsproto.utilities import LocalProtocolError

from consensus.crypto import AddressError, address_from_text
from consensus.errors import Rejected
from muxernode.events import (
    MAX_UNREAD,
    WRITE_CHARS,
    WRITE_FRAMES,
    Hub,
    LimitExceeded,
    Subscriber,
)
from muxernode.ops import SOCIETY_ID
from muxernode.webapp import StaticFiles
from muxernode.webapp import handles as web_handles
from p2p.transport import listen_error

__all__ = [
    "ADMIN_METHODS",
    "HISTORY_NOT_READY",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "LIMIT_EXCEEDED",
    "METHODS",
    "METHOD_NOT_FOUND",
    "NOT_FOUND",
    "PARSE_ERROR",
    "PRUNED",
    "REJECTED",
    "TOKEN_FILE",
    "UNAUTHORIZED",
    "UNAVAILABLE",
    "JsonRpcApp",
    "RpcBackend",
    "RpcError",
    "TokenError",
    "load_or_create_token",
    "openrpc_document",
    "serve_rpc",
]

log = logging.getLogger("muxer.rpc")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
REJECTED = -32000
NOT_FOUND = -32001
UNAVAILABLE = -32002
UNAUTHORIZED = -32003
HISTORY_NOT_READY = -32004
LIMIT_EXCEEDED = -32005
PRUNED = -32006  # a pruned node's older blocks: data {"lowest_block": the first it holds}

MAX_HEIGHT = 2**63 - 1
MAX_BAN_S = 10 * 365 * 86_400
DEFAULT_PAGE = 20  # paged lists (list_comments, ...): items per page unless limit says
MAX_PAGE = 100
COMMENT_CURSOR = 12  # bytes: a comment's place in its claim's index (height(8) + seq(4))
MEMBER_CURSOR = 20  # bytes: list_members' cursor is the last member's address
TOKEN_FILE = "rpc.token"  # in the data directory, mode 0600
JSON_TYPE = "application/json"
METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class RpcBackend(Protocol):
    """What the RPC layer needs from a node. Results are already in their JSON shapes."""

    async def chain_info(self) -> dict[str, Any]: ...

    async def submit_txs(self, raws: list[bytes]) -> list[dict[str, Any]]:
        """One item per raw tx, in order: {"tx_id": hex} or {"error": {code, message, data}}."""
        ...

    async def get_tx(self, tx_id: bytes) -> dict[str, Any]:
        """Never None: an unknown tx is {"tx_id": ..., "status": "unknown"}."""
        ...

    async def get_block(self, height: int) -> dict[str, Any] | None: ...

    async def get_account(self, address: bytes) -> dict[str, Any]:
        """Never None: an address without state is a zero account."""
        ...

    async def get_society(self, society: str) -> dict[str, Any] | None: ...

    async def get_member(self, society: str, address: bytes) -> dict[str, Any] | None: ...

    async def get_claim(self, claim_id: bytes) -> dict[str, Any] | None: ...

    async def list_claims(self, society: str) -> list[dict[str, Any]] | None: ...

    async def list_witnesses(self) -> list[dict[str, Any]]: ...

    # version 2 (section 11.8): the query service answers these from the ledger's state

    async def get_asset(self, symbol: str) -> dict[str, Any] | None: ...

    async def list_assets(self) -> list[dict[str, Any]]: ...

    async def get_standing_pledge(self, society: str, address: bytes) -> dict[str, Any] | None:
        ...

    async def list_votes(self, claim_id: bytes) -> list[dict[str, Any]] | None: ...

    async def list_comments(
        self, claim_id: bytes, after: bytes | None, limit: int
    ) -> dict[str, Any] | None: ...

    # muxernode's choice (not in the protocol): a society's members, paged

    async def list_members(
        self, society: str, after: bytes | None, limit: int
    ) -> dict[str, Any] | None: ...

    # section 12 (the history index and the society list; -32004 while not ready)

    async def get_history(self, address: bytes, types: frozenset[str] | None,
                          society: str | None, before: str | None, limit: int
                          ) -> dict[str, Any]: ...

    async def list_societies(self, before: str | None, limit: int) -> dict[str, Any]: ...

    async def peers(self) -> list[dict[str, Any]]: ...

    async def list_evidence(self) -> list[dict[str, Any]]:
        """Equivocation evidence, newest last: [{kind, witness, slot, first, second}]."""
        ...

    # admin methods (token required); each returns what it did, in JSON shape

    async def add_peer(self, host: str, port: int) -> dict[str, Any]: ...

    async def drop_peer(self, node_id: bytes) -> dict[str, Any]: ...

    async def ban_peer(self, node_id: bytes, seconds: int | None) -> dict[str, Any]: ...

    async def unban_peer(self, node_id: bytes) -> dict[str, Any]: ...

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """(in sync?, details for the /health body)."""
        ...

    async def metrics(self) -> bytes:
        """Prometheus text exposition."""
        ...


# --- errors -----------------------------------------------------------------------------


class RpcError(Exception):
    """An error answer: code, message and optional data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def as_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def _invalid_params(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"invalid params: {message}")


invalid_params = _invalid_params  # for backends that judge a param (a cursor) themselves


def _not_found(what: str, key: Any) -> RpcError:
    return RpcError(NOT_FOUND, "not found", {"what": what, "id": key})


# --- params -----------------------------------------------------------------------------

def _from_hex(v: Any) -> bytes | None:
    """The bytes of hex text (digit pairs, either case, nothing else), or None.

    bytes.fromhex is C (0.3 us for a tx's hex against a regex's 4 us, paid per submitted
    tx) but skips whitespace between pairs: a result shorter than half the text had some."""
    if type(v) is not str:
        return None
    try:
        raw = bytes.fromhex(v)
    except ValueError:
        return None
    return raw if 2 * len(raw) == len(v) else None


def _hex(v: Any, what: str, size: int | None = None) -> bytes:
    """Hex text (either case, no 0x) of exactly ``size`` bytes if given."""
    raw = _from_hex(v)
    if raw is None:
        raise _invalid_params(f"{what} must be a string of hex digit pairs")
    if size is not None and len(raw) != size:
        raise _invalid_params(f"{what} must be {2 * size} hex digits")
    return raw


def _address(v: Any, what: str = "address") -> bytes:
    try:
        return address_from_text(v)
    except AddressError as exc:
        raise _invalid_params(f"{what}: {exc}") from None


def _society(v: Any) -> str:
    if type(v) is not str or SOCIETY_ID.fullmatch(v) is None:
        raise _invalid_params("society must be 3-32 characters of a-z, 0-9 and '-'")
    return v


def _height(v: Any) -> int:
    if type(v) is not int or not 0 <= v <= MAX_HEIGHT:
        raise _invalid_params("height must be an integer in [0, 2**63-1]")
    return v


def _arity(params: list[Any], names: tuple[str, ...]) -> None:
    if len(params) != len(names):
        shape = "[" + ", ".join(names) + "]"
        raise _invalid_params(f"expected {len(names)} params {shape}, got {len(params)}")


_PEER_ADDR = re.compile(r"(?:([A-Za-z0-9.-]{1,253})|\[([0-9A-Fa-f:.]{2,45})\]):([0-9]{1,5})")


def _peer_address(v: Any) -> tuple[str, int]:
    """"host:port" (a name or IPv4 address, or [IPv6]) with a port in 1..65535."""
    m = _PEER_ADDR.fullmatch(v) if type(v) is str else None
    if m is None or not 1 <= int(m.group(3)) <= 65535:
        raise _invalid_params('address must be "host:port" with a port in 1..65535')
    return m.group(1) or m.group(2), int(m.group(3))


def _seconds(v: Any) -> int:
    if type(v) is not int or not 1 <= v <= MAX_BAN_S:
        raise _invalid_params(f"seconds must be an integer in [1, {MAX_BAN_S}]")
    return v


# --- methods ----------------------------------------------------------------------------

Method = Callable[["RpcBackend", list[Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Param:
    """One positional param of a method, for rpc.discover (OpenRPC ContentDescriptor)."""

    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = True


@dataclass(frozen=True, slots=True)
class MethodDoc:
    summary: str
    params: tuple[Param, ...]
    result: dict[str, Any]
    result_name: str = "result"


_STR: dict[str, Any] = {"type": "string"}
_HEX32: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}
_ADDR_S: dict[str, Any] = {"type": "string", "pattern": "^mx[0-9a-f]{40}$"}
_SOC_S: dict[str, Any] = {"type": "string", "pattern": "^[a-z0-9-]{3,32}$"}
_UINT: dict[str, Any] = {"type": "integer", "minimum": 0}
_OBJ: dict[str, Any] = {"type": "object"}
_OBJ_OR_NULL: dict[str, Any] = {"oneOf": [{"type": "object"}, {"type": "null"}]}
_LIST: dict[str, Any] = {"type": "array", "items": {"type": "object"}}
_PAGE: dict[str, Any] = {"type": "object", "properties": {
    "items": _LIST, "next": {"oneOf": [_STR, {"type": "null"}]}}}
_PAGING: dict[str, Any] = {"type": "object", "properties": {
    "before": {"type": "string", "description": "a cursor from a previous page's next"},
    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}}}


def describe(summary: str, params: tuple[Param, ...] = (), result: dict[str, Any] | None = None,
             result_name: str = "result") -> Callable[[Any], Any]:
    """Attach a method's description to its function: the METHODS table that dispatches
    is also what rpc.discover documents (one source of truth)."""

    def mark(fn: Any) -> Any:
        fn.doc = MethodDoc(summary, params, result or {}, result_name)
        return fn

    return mark


def doc_of(fn: Any) -> MethodDoc | None:
    doc = getattr(fn, "doc", None)
    return doc if isinstance(doc, MethodDoc) else None


@describe("The chain's head, final block, parameters and active witnesses.", (),
          _OBJ, "chain_info")
async def _chain_info(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ())
    return await b.chain_info()


def _submit_error(item: Mapping[str, Any]) -> RpcError:
    err = item["error"]
    return RpcError(err.get("code", REJECTED), err.get("message", "rejected"), err.get("data"))


@describe("Submit one signed tx (hex); -32000 with data.reason when refused.",
          (Param("tx_hex", _STR, "the tx's canonical encoding in hex"),),
          {"type": "object", "properties": {"tx_id": _HEX32}}, "submitted")
async def _submit_tx(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("tx_hex",))
    raw = _hex(p[0], "tx_hex")
    (item,) = await b.submit_txs([raw])
    if "error" in item:
        raise _submit_error(item)
    return item


@describe("Submit many signed txs; one result or error per tx, in order.",
          (Param("txs", {"type": "array", "items": _STR}, "txs in hex"),),
          _LIST, "results")
async def _submit_txs(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("[tx_hex, ...]",))
    if type(p[0]) is not list:
        raise _invalid_params("submit_txs takes one param, an array of hex txs")
    raws = [_hex(v, f"tx {i}") for i, v in enumerate(p[0])]
    if not raws:
        return []
    items = await b.submit_txs(raws)
    if len(items) != len(raws):
        raise RuntimeError(f"backend answered {len(items)} items for {len(raws)} txs")
    return items


@describe("A tx's status (pending / included / final / unknown) and op.",
          (Param("tx_id", _HEX32),), _OBJ, "tx")
async def _get_tx(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("tx_id",))
    return await b.get_tx(_hex(p[0], "tx_id", 32))


@describe("The main chain's block at a height; -32001 if none.",
          (Param("height", _UINT),), _OBJ, "block")
async def _get_block(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("height",))
    height = _height(p[0])
    block = await b.get_block(height)
    if block is None:
        raise _not_found("block", height)
    return block


@describe("An account's balance, stake, societies and witness record.",
          (Param("address", _ADDR_S),), _OBJ, "account")
async def _get_account(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("address",))
    return await b.get_account(_address(p[0]))


@describe("A society's rules and totals; -32001 if unknown.",
          (Param("society", _SOC_S),), _OBJ, "society")
async def _get_society(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("society",))
    society = _society(p[0])
    out = await b.get_society(society)
    if out is None:
        raise _not_found("society", society)
    return out


@describe("A member's escrow and karma in a society; -32001 if not a member.",
          (Param("society", _SOC_S), Param("address", _ADDR_S)), _OBJ, "member")
async def _get_member(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("society", "address"))
    society = _society(p[0])
    out = await b.get_member(society, _address(p[1]))
    if out is None:
        raise _not_found("member", [society, p[1]])
    return out


@describe("A claim with its tallies and status; -32001 if unknown.",
          (Param("claim_id", _HEX32),), _OBJ, "claim")
async def _get_claim(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("claim_id",))
    claim_id = _hex(p[0], "claim_id", 32)
    out = await b.get_claim(claim_id)
    if out is None:
        raise _not_found("claim", p[0].lower())
    return out


@describe("A society's claim summaries, newest first.",
          (Param("society", _SOC_S),), _LIST, "claims")
async def _list_claims(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("society",))
    society = _society(p[0])
    out = await b.list_claims(society)
    if out is None:
        raise _not_found("society", society)
    return out


def _symbol(v: Any) -> str:
    if type(v) is not str or not 1 <= len(v) <= 16:
        raise _invalid_params("symbol must be a string of 1-16 characters")
    return v


def _page(p: list[Any], first: tuple[str, ...], cursor: str,
          size: int = COMMENT_CURSOR) -> tuple[bytes | None, int]:
    """The optional page object after the first params: ({cursor?: hex, limit?: 1..100})
    -> (cursor bytes or None, limit, default 20); a cursor is hex of ``size`` bytes."""
    if len(p) not in (len(first), len(first) + 1):
        shape = "[" + ", ".join(first) + ", {" + cursor + "?, limit?}]"
        raise _invalid_params(f"expected {shape}")
    opts = p[len(first)] if len(p) > len(first) else {}
    if type(opts) is not dict or not set(opts) <= {cursor, "limit"}:
        raise _invalid_params(f"the page is an object with optional {cursor!r} and 'limit'")
    limit = opts.get("limit", DEFAULT_PAGE)
    if type(limit) is not int or not 1 <= limit <= MAX_PAGE:
        raise _invalid_params(f"limit must be an integer in [1, {MAX_PAGE}]")
    raw = opts.get(cursor)
    if raw is None:
        return None, limit
    cur = _from_hex(raw)
    if cur is None or len(cur) != size:
        raise _invalid_params(f"{cursor} is not a cursor this node handed out")
    return cur, limit


@describe("A user-issued asset; null for an unknown symbol (and for MUX).",
          (Param("symbol", _STR),), _OBJ_OR_NULL, "asset")
async def _get_asset(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("symbol",))
    return await b.get_asset(_symbol(p[0]))


@describe("Every user-issued asset, by symbol (MUX not listed).", (), _LIST, "assets")
async def _list_assets(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ())
    return await b.list_assets()


@describe("A member's standing pledge, or null.",
          (Param("society", _SOC_S), Param("address", _ADDR_S)), _OBJ_OR_NULL,
          "standing_pledge")
async def _get_standing_pledge(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("society", "address"))
    return await b.get_standing_pledge(_society(p[0]), _address(p[1]))


@describe("One item per member whose karma counts on a claim (own or via a proxy).",
          (Param("claim_id", _HEX32),), _LIST, "votes")
async def _list_votes(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("claim_id",))
    out = await b.list_votes(_hex(p[0], "claim_id", 32))
    if out is None:
        raise _not_found("claim", p[0].lower())
    return out


@describe("A claim's comments, oldest first, paged ({after?, limit?}).",
          (Param("claim_id", _HEX32),
           Param("options", {"type": "object", "properties": {
               "after": _STR, "limit": _PAGING["properties"]["limit"]}}, "paging",
               required=False)),
          _PAGE, "comments")
async def _list_comments(b: RpcBackend, p: list[Any]) -> Any:
    if not p:
        raise _invalid_params("expected [claim_id] or [claim_id, {after?, limit?}]")
    claim_id = _hex(p[0], "claim_id", 32)
    after, limit = _page(p, ("claim_id",), "after")
    out = await b.list_comments(claim_id, after, limit)
    if out is None:
        raise _not_found("claim", p[0].lower())
    return out


@describe("A society's members in address order, paged ({after?, limit?}), karma decayed "
          "to the head; -32001 for an unknown society (muxernode's choice).",
          (Param("society", _SOC_S),
           Param("options", {"type": "object", "properties": {
               "after": _STR, "limit": _PAGING["properties"]["limit"]}}, "paging",
               required=False)),
          _PAGE, "members")
async def _list_members(b: RpcBackend, p: list[Any]) -> Any:
    if not p:
        raise _invalid_params("expected [society] or [society, {after?, limit?}]")
    society = _society(p[0])
    after, limit = _page(p, ("society",), "after", MEMBER_CURSOR)
    out = await b.list_members(society, after, limit)
    if out is None:
        raise _not_found("society", society)
    return out


@describe("Registered witnesses with votes, activity and production figures.", (),
          _LIST, "witnesses")
async def _list_witnesses(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ())
    return await b.list_witnesses()


@describe("Connected p2p peers.", (), _LIST, "peers")
async def _peers(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ())
    return await b.peers()


@describe("Equivocation evidence this node found, newest last.", (), _LIST,
          "evidence")
async def _list_evidence(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ())
    return await b.list_evidence()


@describe("Admin (token): dial a peer.", (Param("address", _STR, '"host:port"'),),
          _OBJ, "added")
async def _add_peer(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("host:port",))
    host, port = _peer_address(p[0])
    return await b.add_peer(host, port)


@describe("Admin (token): disconnect a peer.", (Param("node_id", _HEX32),), _OBJ,
          "dropped")
async def _drop_peer(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("node_id",))
    return await b.drop_peer(_hex(p[0], "node_id", 32))


@describe("Admin (token): ban a node key for a time.",
          (Param("node_id", _HEX32),
           Param("seconds", {"type": "integer", "minimum": 1}, "default: the ban time",
                 required=False)), _OBJ, "banned")
async def _ban_peer(b: RpcBackend, p: list[Any]) -> Any:
    if len(p) not in (1, 2):
        raise _invalid_params(f"expected 1 or 2 params [node_id, seconds?], got {len(p)}")
    node_id = _hex(p[0], "node_id", 32)
    return await b.ban_peer(node_id, _seconds(p[1]) if len(p) == 2 else None)


@describe("Admin (token): lift a ban.", (Param("node_id", _HEX32),), _OBJ,
          "unbanned")
async def _unban_peer(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("node_id",))
    return await b.unban_peer(_hex(p[0], "node_id", 32))


# --- section 12: history, societies, discovery, subscriptions -------------------------

HISTORY_LIMIT = 100


def _paging(v: Any, keys: frozenset[str]) -> dict[str, Any]:
    """The options object of a paged method: only ``keys``, limit 1..100 (default 20)."""
    if type(v) is not dict or not set(v) <= keys:
        raise _invalid_params("options must be an object with only " +
                              ", ".join(sorted(keys)))
    limit = v.get("limit", 20)
    if type(limit) is not int or not 1 <= limit <= HISTORY_LIMIT:
        raise _invalid_params(f"limit must be an integer in [1, {HISTORY_LIMIT}]")
    before = v.get("before")
    if before is not None and type(before) is not str:
        raise _invalid_params("before must be a cursor (a string) from a previous page")
    return {"limit": limit, "before": before, **{k: v[k] for k in keys - {"limit", "before"}
                                                  if k in v}}


@describe("An address's history, newest first: the txs that touched it (as sender or "
          "recipient) and its standing-pledge executions; -32004 until the index is built.",
          (Param("address", _ADDR_S),
           Param("options", {"type": "object", "properties": {
               "types": {"type": "array", "items": _STR},
               "society": _SOC_S, **_PAGING["properties"]}},
               "filters (op names, a society) and paging", required=False)),
          _PAGE, "history")
async def _get_history(b: RpcBackend, p: list[Any]) -> Any:
    if len(p) not in (1, 2):
        raise _invalid_params("expected [address] or [address, {types?, society?, before?, "
                              "limit?}]")
    address = _address(p[0])
    opts = _paging(p[1] if len(p) == 2 else {},
                   frozenset({"types", "society", "before", "limit"}))
    types = opts.get("types")
    if types is not None and (type(types) is not list or not types
                              or any(type(t) is not str or len(t) > 64 for t in types)):
        raise _invalid_params("types must be a non-empty array of op names")
    society = opts.get("society")
    return await b.get_history(address, None if types is None else frozenset(types),
                               None if society is None else _society(society),
                               opts["before"], opts["limit"])


@describe("Societies, newest first, with their asset, members and open claims.",
          (Param("options", _PAGING, "paging", required=False),), _PAGE, "societies")
async def _list_societies(b: RpcBackend, p: list[Any]) -> Any:
    if len(p) > 1:
        raise _invalid_params("expected [] or [{before?, limit?}]")
    opts = _paging(p[0] if p else {}, frozenset({"before", "limit"}))
    return await b.list_societies(opts["before"], opts["limit"])


@describe("This API as an OpenRPC 1.2 document (every method, itself included).", (),
          {"type": "object"}, "openrpc")
async def _discover(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ())
    return openrpc_document()


_TOPIC_FILTERS: dict[str, Callable[[Any], Any] | None] = {
    "heads": None,
    "final": None,
    "tx": lambda v: _hex(v, "tx_id", 32),
    "account": _address,
    "society": _society,
    "claim": lambda v: _hex(v, "claim_id", 32),
}


@describe("WebSocket only: notifications of a topic (heads, final, tx, account, society, "
          "claim) as JSON-RPC \"subscription\" calls; at most 100 per connection (-32005).",
          (Param("topic", {"enum": list(_TOPIC_FILTERS)}),
           Param("filter", {"oneOf": [_HEX32, _ADDR_S, _SOC_S]},
                 "tx: tx_id, account: address, society: society id, claim: claim_id",
                 required=False)),
          _STR, "subscription")
async def _subscribe(hub: Hub, sub: Subscriber, p: list[Any]) -> Any:
    if not p or type(p[0]) is not str or p[0] not in _TOPIC_FILTERS:
        raise _invalid_params("the first param is a topic: " + ", ".join(_TOPIC_FILTERS))
    topic = p[0]
    parse = _TOPIC_FILTERS[topic]
    if parse is None:
        if len(p) != 1:
            raise _invalid_params(f"{topic} takes no filter")
        key = None
    else:
        if len(p) != 2:
            raise _invalid_params(f"{topic} takes one filter: [\"{topic}\", value]")
        key = parse(p[1])
    try:
        return hub.subscribe(sub, topic, key)
    except LimitExceeded:
        raise RpcError(LIMIT_EXCEEDED, "limit exceeded",
                       {"max_subscriptions": sub.max_subscriptions}) from None


@describe("WebSocket only: end a subscription; false for an unknown id.",
          (Param("subscription", _STR),), {"type": "boolean"}, "unsubscribed")
async def _unsubscribe(hub: Hub, sub: Subscriber, p: list[Any]) -> Any:
    _arity(p, ("subscription id",))
    if type(p[0]) is not str:
        raise _invalid_params("the subscription id is a string")
    return hub.unsubscribe(sub, p[0])


SessionMethod = Callable[[Hub, Subscriber, list[Any]], Awaitable[Any]]
# methods of a WebSocket connection (they act on it); over HTTP they answer -32601
WS_METHODS: dict[str, SessionMethod] = {
    "subscribe": _subscribe,
    "unsubscribe": _unsubscribe,
}


METHODS: dict[str, Method] = {
    "chain_info": _chain_info,
    "submit_tx": _submit_tx,
    "submit_txs": _submit_txs,
    "get_tx": _get_tx,
    "get_block": _get_block,
    "get_account": _get_account,
    "get_society": _get_society,
    "get_member": _get_member,
    "get_claim": _get_claim,
    "list_claims": _list_claims,
    "get_asset": _get_asset,
    "list_assets": _list_assets,
    "get_standing_pledge": _get_standing_pledge,
    "list_votes": _list_votes,
    "list_comments": _list_comments,
    "list_members": _list_members,
    "list_witnesses": _list_witnesses,
    "peers": _peers,
    "list_evidence": _list_evidence,
    "add_peer": _add_peer,
    "drop_peer": _drop_peer,
    "ban_peer": _ban_peer,
    "unban_peer": _unban_peer,
    "get_history": _get_history,
    "list_societies": _list_societies,
    "rpc.discover": _discover,
}
# Methods that change the node (not the chain): they need the token (docs/rpc.md, Access).
ADMIN_METHODS = frozenset({"add_peer", "drop_peer", "ban_peer", "unban_peer"})


def openrpc_document() -> dict[str, Any]:
    """rpc.discover's answer: every method of METHODS and WS_METHODS, from the docs
    attached to the functions those tables dispatch to (a method without one is a bug:
    tests/test_openrpc.py checks the tables)."""
    methods: list[dict[str, Any]] = []
    table: dict[str, Any] = {**METHODS, **WS_METHODS}
    for name in sorted(table):
        doc = doc_of(table[name])
        if doc is None:
            raise RuntimeError(f"method {name} has no description (rpc.describe)")
        entry: dict[str, Any] = {
            "name": name,
            "summary": doc.summary,
            "paramStructure": "by-position",
            "params": [{"name": prm.name, "description": prm.description,
                        "required": prm.required, "schema": prm.schema}
                       for prm in doc.params],
            "result": {"name": doc.result_name, "schema": doc.result},
        }
        tags = [{"name": "admin"}] if name in ADMIN_METHODS else []
        if name in WS_METHODS:
            tags.append({"name": "websocket-only"})
        if tags:
            entry["tags"] = tags
        methods.append(entry)
    return {
        "openrpc": "1.2.6",
        "info": {"title": "muxernode JSON-RPC", "version": "2",
                 "description": "MUXER node API (protocol sections 9, 11.8 and 12); "
                                "POST /rpc and GET /ws"},
        "methods": methods,
    }

_NO_ID = object()  # a notification: the request has no "id" member


def _error(exc: RpcError, req_id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": exc.as_json(), "id": req_id}


def _valid_id(v: Any) -> bool:
    return v is None or type(v) in (str, int)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# --- the app ----------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class JsonRpcApp:
    """The ASGI application. ``backend`` answers the methods; the limits are per request.

    ``admin_token``: the secret that admin methods need (``Authorization: Bearer <token>``);
    None refuses every admin call. ``open_connections`` / ``refused_connections`` are kept
    by ``serve_rpc`` (the app itself never sees a connection, only requests).
    """

    def __init__(
        self,
        backend: RpcBackend,
        *,
        max_body_bytes: int = 1 << 20,
        max_batch: int = 1000,
        max_concurrent: int = 256,
        body_timeout_s: float = 10.0,
        admin_token: str | None = None,
        hub: Hub | None = None,
        max_unread: int = MAX_UNREAD,
    ) -> None:
        self.backend = backend
        self.hub = hub  # None: no WebSocket (GET /ws is refused)
        self.max_unread = max_unread
        self.max_body_bytes = max_body_bytes
        self.max_batch = max_batch
        self.max_concurrent = max_concurrent
        self.body_timeout_s = body_timeout_s
        self._token = None if admin_token is None else admin_token.encode()
        self.in_flight = 0
        self.open_connections = 0
        self.refused_connections = 0
        self.ws_frames = 0  # WebSocket messages written, and the socket writes they took
        self.ws_writes = 0
        # serve_rpc's connections by peer address: a WebSocket's socket (ws_socket)
        self.streams: dict[tuple[Any, ...], _TimedStream] = {}
        self.web = StaticFiles()  # the member web app: GET / and /static/ (webapp.py)

    # --- ASGI entry -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind == "websocket":
            await self._websocket(scope, receive, send)
            return
        if kind != "http":
            return
        if self.in_flight >= self.max_concurrent:
            await _respond(send, 503, b'{"error":"busy"}\n', JSON_TYPE.encode(),
                           [(b"retry-after", b"1")])
            return
        self.in_flight += 1
        try:
            await self._http(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/rpc":
            if method != "POST":
                await _respond_text(send, 405, "use POST for /rpc", [(b"allow", b"POST")])
                return
            await self._rpc(scope, receive, send)
        elif path in ("/health", "/metrics"):
            if method != "GET":
                await _respond_text(send, 405, f"use GET for {path}", [(b"allow", b"GET")])
                return
            if path == "/health":
                await self._health(send)
            else:
                await self._metrics(send)
        elif web_handles(path):
            await self.web.serve(scope, send)
        else:
            await _respond_text(
                send, 404, "not found: POST /rpc, GET /ws, GET /health, GET /metrics")

    async def _health(self, send: Send) -> None:
        try:
            ok, details = await self.backend.health()
        except Exception:
            log.exception("health check failed")
            ok, details = False, {"error": "health check failed"}
        body = {"status": "ok" if ok else "unavailable", **details}
        await _respond(send, 200 if ok else 503, _dumps(body), JSON_TYPE.encode())

    async def _metrics(self, send: Send) -> None:
        try:
            text = await self.backend.metrics()
        except Exception:
            log.exception("metrics failed")
            await _respond_text(send, 500, "internal error")
            return
        await _respond(send, 200, text, METRICS_TYPE)

    # --- GET /ws (section 12) -----------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One WebSocket connection: each text frame is a request or batch, answered in
        order; notifications share the connection's outgoing queue (``Subscriber``), which
        one writer task drains. A connection whose unread notifications pass
        ``max_unread`` is closed with 1008; the hub never waits for it."""
        hub = self.hub
        if scope.get("path") != "/ws" or hub is None:
            await send({"type": "websocket.close", "code": 1008})  # hypercorn: HTTP 403
            return
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        authorized = self._authorized(_headers(scope))
        sub = Subscriber(max_unread=self.max_unread)
        sock = self.ws_socket(scope, send)
        sub.direct = sock
        hub.connections += 1
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._ws_writer, sub, send, nursery.cancel_scope, sock)
                while not sub.closed:
                    message = await receive()
                    kind = message["type"]
                    if kind == "websocket.disconnect":
                        break
                    if kind != "websocket.receive":
                        continue
                    text = message.get("text")
                    if text is None:
                        answer: bytes | None = _dumps(_error(RpcError(
                            INVALID_REQUEST, "invalid request: send JSON-RPC in text frames"),
                            None))
                    else:
                        answer = await self.handle_body(text.encode(), authorized=authorized,
                                                        session=sub)
                    if answer is not None:
                        sub.push(answer.decode(), notification=False)
                nursery.cancel_scope.cancel()
        finally:
            hub.connections -= 1
            hub.drop(sub)

    def ws_socket(self, scope: Scope, send: Send) -> _WsSocket | None:
        """The connection's socket for batched writes (``_WsSocket``), when it is
        hypercorn's WebSocket on a connection of our ``serve_rpc``; None otherwise."""
        ws = getattr(send, "__self__", None)
        client = scope.get("client")
        stream = None if client is None else self.streams.get(tuple(client)[:2])
        if (stream is not None and isinstance(ws, WSStream)
                and isinstance(getattr(ws, "connection", None), WsprotoConnection)):
            return _WsSocket(ws, stream, self)
        return None

    async def _ws_writer(self, sub: Subscriber, send: Send, scope: trio.CancelScope,
                         sock: _WsSocket | None) -> None:
        while True:
            await sub.wakeup.wait()
            sub.wakeup = trio.Event()
            try:
                if sock is not None:
                    await sock.drain()  # the rest of the hub's write goes first
                while not sub.overflowed and (texts := sub.take(WRITE_FRAMES, WRITE_CHARS)):
                    if sock is not None:
                        await sock.send(texts)
                        continue
                    for text in texts:
                        await send({"type": "websocket.send", "text": text})
                    self.ws_frames += len(texts)
                    self.ws_writes += len(texts)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                scope.cancel()  # the client is gone; the reader sees the disconnect
                return
            if sub.overflowed:
                log.info("ws_closed", extra={"kv": {"why": "unread notifications",
                                                    "unread": sub.unread}})
                await send({"type": "websocket.close", "code": 1008,
                            "reason": f"more than {sub.max_unread} unread notifications"})
                scope.cancel()
                return
            if sub.closed:
                scope.cancel()
                return

    # --- POST /rpc ----------------------------------------------------------------------

    async def _rpc(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if ctype != JSON_TYPE.encode():
            await _respond_text(send, 415, "Content-Type must be application/json")
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(send)
            return
        body: bytes | None = None
        try:
            with trio.move_on_after(self.body_timeout_s):
                body = await self._read_body(receive)
        except _TooLarge:
            await self._too_large(send)
            return
        except _Disconnected:
            return  # the client left: nobody to answer
        if body is None:
            await _respond_text(send, 408, "request body too slow", [(b"connection", b"close")])
            return
        answer = await self.handle_body(body, authorized=self._authorized(headers))
        if answer is None:
            await _respond(send, 204, b"", None)
        else:
            await _respond(send, 200, answer, JSON_TYPE.encode())

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole body, read message by message; raises _TooLarge as soon as it passes
        max_body_bytes (the rest is not buffered)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _authorized(self, headers: Mapping[bytes, bytes]) -> bool:
        """The request carries ``Authorization: Bearer <admin token>``."""
        if self._token is None:
            return False
        scheme, _, value = headers.get(b"authorization", b"").strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        # constant time: the answer's timing must not reveal how much of a guess was right
        return hmac.compare_digest(value.strip(), self._token)

    async def _too_large(self, send: Send) -> None:
        # "connection: close" makes hypercorn close the connection once the answer is out,
        # so the rest of the body is neither read into the app nor buffered.
        await _respond_text(
            send, 413, f"request body is larger than {self.max_body_bytes} bytes",
            [(b"connection", b"close")],
        )

    async def handle_body(self, body: bytes, *, authorized: bool = False,
                          session: Subscriber | None = None) -> bytes | None:
        """The JSON-RPC answer to a request body, or None when nothing is to be answered.
        ``authorized``: the request proved the admin token (admin methods may run);
        ``session``: the WebSocket connection it came on (subscribe needs one)."""
        try:
            # Deep nesting ("[[[[..." x 100,000) is refused by the C scanner itself: it
            # raises RecursionError at the interpreter's recursion limit instead of using
            # more stack, so the guard is to catch it (tests/test_rpc_hostile.py).
            doc = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return _dumps(_error(RpcError(PARSE_ERROR, "parse error"), None))
        if type(doc) is list:
            if not doc:
                return _dumps(_error(RpcError(INVALID_REQUEST, "invalid request: empty batch"),
                                     None))
            if len(doc) > self.max_batch:
                return _dumps(_error(RpcError(
                    INVALID_REQUEST, f"batch too large (at most {self.max_batch} calls)"), None))
            answers = []
            for call in doc:
                answer = await self.handle_call(call, authorized=authorized, session=session)
                if answer is not None:
                    answers.append(answer)
            return _dumps(answers) if answers else None
        answer = await self.handle_call(doc, authorized=authorized, session=session)
        return None if answer is None else _dumps(answer)

    async def handle_call(self, call: Any, *, authorized: bool = False,
                          session: Subscriber | None = None) -> dict[str, Any] | None:
        """Run one call; its response object, or None for a (valid) notification."""
        if type(call) is not dict:
            return _error(RpcError(INVALID_REQUEST, "invalid request: not an object"), None)
        req_id = call.get("id", _NO_ID)
        if req_id is not _NO_ID and not _valid_id(req_id):
            return _error(RpcError(
                INVALID_REQUEST, "invalid request: id must be a string, an integer or null"),
                None)
        answer_id = None if req_id is _NO_ID else req_id
        if call.get("jsonrpc") != "2.0":
            return _error(RpcError(INVALID_REQUEST, 'invalid request: jsonrpc must be "2.0"'),
                          answer_id)
        name = call.get("method")
        if type(name) is not str:
            return _error(RpcError(INVALID_REQUEST, "invalid request: method must be a string"),
                          answer_id)
        params = call.get("params", [])
        if type(params) not in (list, dict):
            return _error(RpcError(
                INVALID_REQUEST, "invalid request: params must be an array or an object"),
                answer_id)
        try:
            result = await self._dispatch(name, params, authorized, session)
        except RpcError as exc:
            response = _error(exc, answer_id)
        else:
            response = {"jsonrpc": "2.0", "result": result, "id": answer_id}
        return None if req_id is _NO_ID else response

    async def _dispatch(self, name: str, params: list[Any] | dict[str, Any],
                        authorized: bool, session: Subscriber | None = None) -> Any:
        ws_method = WS_METHODS.get(name)
        if ws_method is not None:
            if session is None or self.hub is None:
                raise RpcError(METHOD_NOT_FOUND, f"{name} needs the WebSocket: connect to "
                               "GET /ws on this port and call it there")
            if type(params) is not list:
                raise _invalid_params("params must be a JSON array")
            return await ws_method(self.hub, session, params)
        method = METHODS.get(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {name[:64]}")
        if name in ADMIN_METHODS and not authorized:
            raise RpcError(UNAUTHORIZED, "unauthorized")
        if type(params) is not list:
            raise _invalid_params("params must be a JSON array")
        try:
            return await method(self.backend, params)
        except RpcError:
            raise
        except Rejected as exc:
            raise RpcError(REJECTED, exc.message, {"reason": exc.reason}) from None
        except Exception:
            log.exception("rpc internal error", extra={"kv": {"method": name}})
            raise RpcError(INTERNAL_ERROR, "internal error") from None


# --- HTTP helpers -----------------------------------------------------------------------


def _headers(scope: Scope) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", ()):
        out[bytes(name).lower()] = bytes(value)
    return out


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes | None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type))
    headers.extend(extra or ())
    if status == 204:
        headers = [h for h in headers if h[0] != b"content-length"]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _respond_text(
    send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _respond(send, status, text.encode() + b"\n", b"text/plain; charset=utf-8", extra)


# --- the admin token -------------------------------------------------------------------


class TokenError(ValueError):
    """The token file cannot be used; the message says how to fix it."""


def load_or_create_token(data_dir: str | Path) -> str:
    """The admin token of ``<data_dir>/rpc.token``, created on first start.

    Created with O_EXCL and mode 0600 from the first byte (no window in which another user
    could read it); afterwards refused if group or others may read it, as the witness key is.
    """
    path = Path(data_dir) / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(fd, 0o600)  # a umask may have taken owner bits; never adds others'
            f.write(secrets.token_hex(32) + "\n")
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TokenError(f"cannot read the RPC token {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise TokenError(f"RPC token {path} is readable by others (mode {mode & 0o777:o}); "
                         f"run: chmod 600 {path}")
    if re.fullmatch(r"[0-9a-f]{32,128}", text) is None:
        raise TokenError(f"RPC token {path} must hold 32-128 lowercase hex digits "
                         "(delete it to have a new one made)")
    return text


# --- WebSocket writes -------------------------------------------------------------------


def _ws_frames(ws: WSStream, texts: list[str]) -> bytes:
    """``texts`` as text frames of the stream's wsproto connection, as hypercorn's own
    ``app_send`` frames one message (same framing and extensions, in the same order)."""
    parts = []
    for text in texts:
        try:
            parts.append(ws.connection.send(TextMessage(data=text)))
        except LocalProtocolError:
            break  # the connection is closing: hypercorn drops such a message too
    return b"".join(parts)


class _WsSocket:
    """One WebSocket connection's socket, written around hypercorn's per-message path.

    An ASGI ``websocket.send`` carries one message, and hypercorn writes each to the
    socket on its own (its send lock, a shielded scope, our write deadline, two trio
    checkpoints), from one writer task per connection: under a block's fan-out to 1000
    connections that was most of the node's time and the whole of the notification delay
    (docs/rpc.md). Here a connection's queued messages are framed by hypercorn's own
    wsproto connection for the stream (``send.__self__``: hypercorn's ``send`` is its
    WSStream's ``app_send``) and written as one write to our ``_TimedStream``, whose
    buffer keeps every write to the socket in order with hypercorn's own (pings, close).
    The hub writes this way itself right after an event when the socket can take it
    (``ready``/``write``, no wait, no task switch); the writer task does the rest
    (``send``). hypercorn is pinned (<0.19); tests/test_ws_batch.py fails if the pinned one
    no longer gets this path (``ws_socket`` returns None and each message goes by ASGI)."""

    def __init__(self, ws: WSStream, stream: _TimedStream, app: JsonRpcApp) -> None:
        self._ws, self._stream, self._app = ws, stream, app

    def _open(self) -> bool:
        return not self._ws.closed and self._ws.state is ASGIWebsocketState.CONNECTED

    def ready(self) -> bool:
        return self._open() and self._stream.idle()

    def write(self, texts: list[str]) -> bool:
        self._app.ws_frames += len(texts)
        self._app.ws_writes += 1
        return self._stream.write_nowait(_ws_frames(self._ws, texts))

    async def send(self, texts: list[str]) -> None:
        if not self._open():
            return  # what hypercorn's app_send does with a message after the close
        self._app.ws_frames += len(texts)
        self._app.ws_writes += 1
        await self._stream.send_all(_ws_frames(self._ws, texts))

    async def drain(self) -> None:
        await self._stream.send_all(b"")


# --- serving ----------------------------------------------------------------------------

# accept() failures that mean "out of resources right now": wait and go on, as
# trio.serve_listeners does, instead of ending the server
_ACCEPT_RESOURCE_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
CLIENT_GONE_S = 0.5  # after the client left, hypercorn's tasks get this long to wind up
_BUSY_ANSWER = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
                b"retry-after: 1\r\nconnection: close\r\ncontent-length: 26\r\n\r\n"
                b"too many open connections\n")


class _TimedStream:
    """The parts of a trio.SocketStream that hypercorn's TCPServer uses, with two fixes.

    - A time limit on each write: hypercorn writes inside a shielded cancel scope with no
      deadline, so a client that never reads its answer would hold the connection (and
      its slot under max_connections) for ever; after ``send_timeout_s`` it is closed.
    - ``gone()`` is called when the client has left (end of stream, reset, or that write
      timeout): hypercorn then still waits for the connection's idle timer (the keep-alive
      timeout) before it lets the socket go, and the caller cuts that short.

    Writes go out in the order they are made, whoever makes them (hypercorn under its
    send lock, a WebSocket's ``_WsSocket`` from the event hub or its writer task): what
    the socket does not take at once waits in ``_pending`` and one drain at a time writes
    it, awaiting. A write that finds nothing pending and that the socket's buffer takes
    whole is made at once, without trio's wait for writability and its scheduler round
    trip (``write_nowait`` is only that, for callers that cannot wait). A closed socket
    (fileno -1) takes the awaited path, which raises as trio does.

    No ``do_handshake`` attribute: that is how TCPServer tells plain TCP from TLS."""

    def __init__(self, stream: trio.SocketStream, send_timeout_s: float,
                 gone: Callable[[], None]) -> None:
        self._stream = stream
        self.socket = stream.socket
        self._send_timeout_s = send_timeout_s
        self._gone = gone
        self._pending = bytearray()  # written by us, not yet taken by the socket
        self._draining = trio.Lock()

    def idle(self) -> bool:
        """Open, nothing pending and no write under way: ``write_nowait`` may be used."""
        return not self._pending and not self._draining.locked() and self.socket.fileno() >= 0

    def write_nowait(self, data: bytes) -> bool:
        """Only when ``idle()``: write what the socket takes now; the rest waits for the
        next ``send_all`` (False)."""
        try:
            sent = os.write(self.socket.fileno(), data)  # non-blocking: trio's sockets are
        except OSError:
            sent = 0  # full (EAGAIN) or broken: the awaited path waits or raises
        if sent == len(data):
            return True
        self._pending += data[sent:]
        return False

    async def send_all(self, data: bytes) -> None:
        """Write ``data`` after everything pending (``b""``: only what is pending)."""
        if data and self.idle():
            if self.write_nowait(data):
                return
        else:  # the rest of a partial write_nowait is already pending
            self._pending += data
        # shielded, as hypercorn's own writes are: a write cut short would leave a
        # partial frame on the socket; the deadline still holds
        with trio.CancelScope(shield=True):
            await self._drain()

    async def _drain(self) -> None:
        async with self._draining:
            while self._pending:
                chunk = bytes(self._pending)
                self._pending.clear()
                with trio.move_on_after(self._send_timeout_s):
                    await self._stream.send_all(chunk)
                    continue
                # closing also ends the reader waiting on this socket (ClosedResourceError)
                self._gone()
                await self._stream.aclose()
                raise trio.BrokenResourceError("the client did not read its answer in time")

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            data = bytes(await self._stream.receive_some(max_bytes))
        except trio.BrokenResourceError:
            self._gone()
            raise
        if not data:
            self._gone()
        return data

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def serve_rpc(
    app: JsonRpcApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown: trio.Event,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    keep_alive_timeout_s: float = 5.0,
    read_timeout_s: int = 30,
    send_timeout_s: float = 10.0,
    graceful_timeout_s: float = 3.0,
    backlog: int = 128,
    max_connections: int = 256,
) -> None:
    """Serve ``app`` on host:port until ``shutdown`` is set; reports the bound port.

    HTTP/1.1 is hypercorn's (its per-connection ``TCPServer``); the accept loop is ours,
    because hypercorn 0.18 has no cap on open connections (pgjones/hypercorn#81): at most
    ``max_connections`` are open at once, and one beyond that gets a 503 and is closed at
    once (a client that has already sent its request may see a reset instead). Limits: a
    connection that completes no request head within ``keep_alive_timeout_s`` is closed
    (the idle timer runs until a request's headers are in, so dribbled headers do not
    extend it), as is an idle keep-alive connection; one that sends nothing for
    ``read_timeout_s`` is closed; one that does not take a write within
    ``send_timeout_s`` is closed; headers are at most 16 KiB (hypercorn's
    h11_max_incomplete_size); the body's own deadline is ``JsonRpcApp.body_timeout_s``.
    On shutdown: no new connections, idle ones close, requests in progress get
    ``graceful_timeout_s`` to finish.
    """
    config = Config()
    config.keep_alive_timeout = keep_alive_timeout_s
    config.read_timeout = read_timeout_s
    config.graceful_timeout = graceful_timeout_s
    config.include_server_header = False
    config.accesslog = None
    config.errorlog = logging.getLogger("muxer.rpc.http")
    # WebSocket: the same size limit as an HTTP body (a larger message: close 1009); a
    # ping every 10 s, whose pong keeps a quiet subscriber inside read_timeout_s
    config.websocket_max_message_size = app.max_body_bytes
    config.websocket_ping_interval = min(10.0, read_timeout_s / 3)
    wrapped = wrap_app(cast(ASGIFramework, app), config.wsgi_max_body_size, "asgi")
    context = WorkerContext(None)

    bind_host = host.strip("[]")
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await sock.bind((bind_host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise listen_error("rpc", host, port, exc) from None
    except BaseException:
        sock.close()
        raise
    listener = trio.SocketListener(sock)
    bound = int(sock.getsockname()[1])

    async def connection(stream: trio.SocketStream) -> None:
        with trio.CancelScope() as scope:

            def gone() -> None:
                # hypercorn has already told the app (http.disconnect); what is left is
                # its idle timer, which would hold the socket up to keep_alive_timeout_s
                scope.deadline = min(scope.deadline, trio.current_time() + CLIENT_GONE_S)

            timed = _TimedStream(stream, send_timeout_s, gone)
            try:
                peer: tuple[Any, ...] | None = tuple(stream.socket.getpeername())[:2]
            except OSError:
                peer = None  # already reset: hypercorn finds it so too
            if peer is not None:
                app.streams[peer] = timed
            try:
                server = TCPServer(wrapped, config, context, ConnectionState({}),
                                   cast(Any, timed))
                await server.run()
            except Exception:  # one broken connection must not end the server
                log.exception("rpc connection failed")
            finally:
                if peer is not None and app.streams.get(peer) is timed:
                    del app.streams[peer]
                app.open_connections -= 1
                # hypercorn's own close is skipped when it is cancelled (its send_eof
                # raises Cancelled before aclose): never leak the socket
                with trio.CancelScope(shield=True):
                    await stream.aclose()

    async def refuse(stream: trio.SocketStream) -> None:
        app.refused_connections += 1
        # a fresh socket's send buffer takes these bytes at once; the deadline only
        # guards the accept loop against the impossible
        with trio.move_on_after(0.1):
            try:
                await stream.send_all(_BUSY_ANSWER)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await stream.aclose()

    async def accept_loop(handlers: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_RESOURCE_ERRNOS:
                    raise
                log.warning("rpc accept failed", extra={"kv": {"error": exc.strerror}})
                await trio.sleep(0.1)
                continue
            if app.open_connections >= max_connections:
                await refuse(stream)
                continue
            app.open_connections += 1
            handlers.start_soon(connection, stream)

    async with listener, trio.open_nursery() as handlers:
        async with trio.open_nursery() as acceptor:
            acceptor.start_soon(accept_loop, handlers)
            log.debug("rpc listening", extra={"kv": {"host": host, "port": bound}})
            task_status.started(bound)
            await shutdown.wait()
            acceptor.cancel_scope.cancel()
        await listener.aclose()
        # no new connections; idle ones close now (hypercorn's idle timer waits on
        # `terminated`), answers in progress carry "connection: close"
        await context.terminated.set()
        handlers.cancel_scope.deadline = trio.current_time() + graceful_timeout_s
