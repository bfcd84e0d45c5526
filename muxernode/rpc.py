"""The node's JSON-RPC 2.0 server (protocol section 9), a plain ASGI app served by hypercorn.

HTTP routes:

    POST /rpc      Content-Type application/json; one call or a batch (a JSON array)
    GET  /health   200 {"status": "ok", ...} when the backend says it is in sync, else 503
    GET  /metrics  Prometheus text (content type text/plain; version=0.0.4)

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
from pathlib import Path
from typing import Any, Protocol, cast

import trio
from hypercorn.config import Config
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ASGIFramework, ConnectionState
from hypercorn.utils import wrap_app

from consensus.crypto import AddressError, address_from_text
from consensus.errors import Rejected
from muxernode.ops import SOCIETY_ID
from p2p.transport import listen_error

__all__ = [
    "ADMIN_METHODS",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "NOT_FOUND",
    "PARSE_ERROR",
    "REJECTED",
    "TOKEN_FILE",
    "UNAUTHORIZED",
    "UNAVAILABLE",
    "JsonRpcApp",
    "RpcBackend",
    "RpcError",
    "TokenError",
    "load_or_create_token",
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

MAX_HEIGHT = 2**63 - 1
MAX_BAN_S = 10 * 365 * 86_400
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


def _not_found(what: str, key: Any) -> RpcError:
    return RpcError(NOT_FOUND, "not found", {"what": what, "id": key})


# --- params -----------------------------------------------------------------------------

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def _hex(v: Any, what: str, size: int | None = None) -> bytes:
    """Hex text (either case, no 0x) of exactly ``size`` bytes if given."""
    if type(v) is not str or _HEX.fullmatch(v) is None:
        raise _invalid_params(f"{what} must be a string of hex digit pairs")
    if size is not None and len(v) != 2 * size:
        raise _invalid_params(f"{what} must be {2 * size} hex digits")
    return bytes.fromhex(v)


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


async def _chain_info(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ())
    return await b.chain_info()


def _submit_error(item: Mapping[str, Any]) -> RpcError:
    err = item["error"]
    return RpcError(err.get("code", REJECTED), err.get("message", "rejected"), err.get("data"))


async def _submit_tx(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("tx_hex",))
    raw = _hex(p[0], "tx_hex")
    (item,) = await b.submit_txs([raw])
    if "error" in item:
        raise _submit_error(item)
    return item


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


async def _get_tx(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("tx_id",))
    return await b.get_tx(_hex(p[0], "tx_id", 32))


async def _get_block(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("height",))
    height = _height(p[0])
    block = await b.get_block(height)
    if block is None:
        raise _not_found("block", height)
    return block


async def _get_account(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("address",))
    return await b.get_account(_address(p[0]))


async def _get_society(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("society",))
    society = _society(p[0])
    out = await b.get_society(society)
    if out is None:
        raise _not_found("society", society)
    return out


async def _get_member(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("society", "address"))
    society = _society(p[0])
    out = await b.get_member(society, _address(p[1]))
    if out is None:
        raise _not_found("member", [society, p[1]])
    return out


async def _get_claim(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("claim_id",))
    claim_id = _hex(p[0], "claim_id", 32)
    out = await b.get_claim(claim_id)
    if out is None:
        raise _not_found("claim", p[0].lower())
    return out


async def _list_claims(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("society",))
    society = _society(p[0])
    out = await b.list_claims(society)
    if out is None:
        raise _not_found("society", society)
    return out


async def _list_witnesses(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ())
    return await b.list_witnesses()


async def _peers(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ())
    return await b.peers()


async def _list_evidence(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ())
    return await b.list_evidence()


async def _add_peer(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("host:port",))
    host, port = _peer_address(p[0])
    return await b.add_peer(host, port)


async def _drop_peer(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("node_id",))
    return await b.drop_peer(_hex(p[0], "node_id", 32))


async def _ban_peer(b: RpcBackend, p: list[Any]) -> Any:
    if len(p) not in (1, 2):
        raise _invalid_params(f"expected 1 or 2 params [node_id, seconds?], got {len(p)}")
    node_id = _hex(p[0], "node_id", 32)
    return await b.ban_peer(node_id, _seconds(p[1]) if len(p) == 2 else None)


async def _unban_peer(b: RpcBackend, p: list[Any]) -> Any:
    _arity(p, ("node_id",))
    return await b.unban_peer(_hex(p[0], "node_id", 32))


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
    "list_witnesses": _list_witnesses,
    "peers": _peers,
    "list_evidence": _list_evidence,
    "add_peer": _add_peer,
    "drop_peer": _drop_peer,
    "ban_peer": _ban_peer,
    "unban_peer": _unban_peer,
}
# Methods that change the node (not the chain): they need the token (docs/rpc.md, Access).
ADMIN_METHODS = frozenset({"add_peer", "drop_peer", "ban_peer", "unban_peer"})

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
    ) -> None:
        self.backend = backend
        self.max_body_bytes = max_body_bytes
        self.max_batch = max_batch
        self.max_concurrent = max_concurrent
        self.body_timeout_s = body_timeout_s
        self._token = None if admin_token is None else admin_token.encode()
        self.in_flight = 0
        self.open_connections = 0
        self.refused_connections = 0

    # --- ASGI entry -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":  # websockets: refuse the handshake
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
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
        else:
            await _respond_text(send, 404, "not found: POST /rpc, GET /health, GET /metrics")

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

    async def handle_body(self, body: bytes, *, authorized: bool = False) -> bytes | None:
        """The JSON-RPC answer to a request body, or None when nothing is to be answered.
        ``authorized``: the request proved the admin token (admin methods may run)."""
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
                answer = await self.handle_call(call, authorized=authorized)
                if answer is not None:
                    answers.append(answer)
            return _dumps(answers) if answers else None
        answer = await self.handle_call(doc, authorized=authorized)
        return None if answer is None else _dumps(answer)

    async def handle_call(self, call: Any, *, authorized: bool = False
                          ) -> dict[str, Any] | None:
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
            result = await self._dispatch(name, params, authorized)
        except RpcError as exc:
            response = _error(exc, answer_id)
        else:
            response = {"jsonrpc": "2.0", "result": result, "id": answer_id}
        return None if req_id is _NO_ID else response

    async def _dispatch(self, name: str, params: list[Any] | dict[str, Any],
                        authorized: bool) -> Any:
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

    No ``do_handshake`` attribute: that is how TCPServer tells plain TCP from TLS."""

    def __init__(self, stream: trio.SocketStream, send_timeout_s: float,
                 gone: Callable[[], None]) -> None:
        self._stream = stream
        self.socket = stream.socket
        self._send_timeout_s = send_timeout_s
        self._gone = gone

    async def send_all(self, data: bytes) -> None:
        with trio.move_on_after(self._send_timeout_s):
            await self._stream.send_all(data)
            return
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

            try:
                server = TCPServer(wrapped, config, context, ConnectionState({}),
                                   cast(Any, _TimedStream(stream, send_timeout_s, gone)))
                await server.run()
            except Exception:  # one broken connection must not end the server
                log.exception("rpc connection failed")
            finally:
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
