"""The node's JSON-RPC 2.0 server (protocol section 9), a plain ASGI app served by hypercorn.

HTTP routes:

    POST /rpc      Content-Type application/json; one call or a batch (a JSON array)
    GET  /health   200 {"status": "ok", ...} when the backend says it is in sync, else 503
    GET  /metrics  Prometheus text (content type text/plain; version=0.0.4)

Anything else: 404; another method on a known path: 405 (with Allow); a wrong content
type on /rpc: 415; a body over ``max_body_bytes``: 413 (decided from Content-Length before
reading when it is declared, else as soon as the bytes read pass the limit); a body that
takes longer than ``body_timeout_s`` to arrive: 408; more than ``max_concurrent`` requests
in progress: 503.

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
- A notification (no ``id`` member) is run but gets no answer; a request or batch with
  only notifications is answered with HTTP 204 and no body. Batches run in order.

The app is written against ASGI only; ``serve_rpc`` runs it under hypercorn on trio and
reports the port actually bound (use port 0 in tests).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import ASGIFramework

from consensus.crypto import AddressError, address_from_text
from consensus.errors import Rejected
from muxernode.ops import SOCIETY_ID

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "NOT_FOUND",
    "PARSE_ERROR",
    "REJECTED",
    "JsonRpcApp",
    "RpcBackend",
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

MAX_HEIGHT = 2**63 - 1
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
    """The ASGI application. ``backend`` answers the methods; the limits are per request."""

    def __init__(
        self,
        backend: RpcBackend,
        *,
        max_body_bytes: int = 1 << 20,
        max_batch: int = 1000,
        max_concurrent: int = 256,
        body_timeout_s: float = 10.0,
    ) -> None:
        self.backend = backend
        self.max_body_bytes = max_body_bytes
        self.max_batch = max_batch
        self.max_concurrent = max_concurrent
        self.body_timeout_s = body_timeout_s
        self.in_flight = 0

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
        answer = await self.handle_body(body)
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

    async def _too_large(self, send: Send) -> None:
        # "connection: close" makes hypercorn close the connection once the answer is out,
        # so the rest of the body is neither read into the app nor buffered.
        await _respond_text(
            send, 413, f"request body is larger than {self.max_body_bytes} bytes",
            [(b"connection", b"close")],
        )

    async def handle_body(self, body: bytes) -> bytes | None:
        """The JSON-RPC answer to a request body, or None when nothing is to be answered."""
        try:
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
                answer = await self.handle_call(call)
                if answer is not None:
                    answers.append(answer)
            return _dumps(answers) if answers else None
        answer = await self.handle_call(doc)
        return None if answer is None else _dumps(answer)

    async def handle_call(self, call: Any) -> dict[str, Any] | None:
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
            result = await self._dispatch(name, params)
        except RpcError as exc:
            response = _error(exc, answer_id)
        else:
            response = {"jsonrpc": "2.0", "result": result, "id": answer_id}
        return None if req_id is _NO_ID else response

    async def _dispatch(self, name: str, params: list[Any] | dict[str, Any]) -> Any:
        method = METHODS.get(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {name[:64]}")
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


# --- serving ----------------------------------------------------------------------------


def _port_of(bind: str) -> int:
    """The port of a bind that hypercorn reports, like "http://127.0.0.1:8545"."""
    return int(bind.rsplit(":", 1)[1])


async def serve_rpc(
    app: JsonRpcApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown: trio.Event,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    keep_alive_timeout_s: float = 5.0,
    read_timeout_s: int = 30,
    graceful_timeout_s: float = 3.0,
    backlog: int = 128,
) -> None:
    """Serve ``app`` on host:port until ``shutdown`` is set; reports the bound port.

    hypercorn's trio ``serve`` binds the sockets itself and hands the addresses it bound
    ("http://127.0.0.1:40123") to ``task_status.started``; with port 0 that is the port the
    kernel chose, and it is what this function reports. Limits: idle keep-alive connections
    close after ``keep_alive_timeout_s``; a connection that sends nothing for
    ``read_timeout_s`` is closed; headers are at most 16 KiB (hypercorn's
    h11_max_incomplete_size); in-flight requests finish within ``graceful_timeout_s`` of a
    shutdown. hypercorn has no cap on open connections: the app caps requests in progress
    (``JsonRpcApp.max_concurrent``) and the listen backlog is ``backlog``.
    """
    config = Config()
    bind_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    config.bind = [f"{bind_host}:{port}"]
    config.keep_alive_timeout = keep_alive_timeout_s
    config.read_timeout = read_timeout_s
    config.graceful_timeout = graceful_timeout_s
    config.backlog = backlog
    config.include_server_header = False
    config.accesslog = None
    config.errorlog = logging.getLogger("muxer.rpc.http")
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            functools.partial(
                serve, cast(ASGIFramework, app), config, shutdown_trigger=shutdown.wait,
                mode="asgi",
            )
        )
        bound = _port_of(binds[0])
        log.debug("rpc listening", extra={"kv": {"host": host, "port": bound}})
        task_status.started(bound)
