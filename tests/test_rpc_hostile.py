"""Hostile clients against the JSON-RPC server, over real sockets on 127.0.0.1.

Every test serves the real ASGI app with ``serve_rpc`` (hypercorn's HTTP/1.1 under our
accept loop) on port 0 and talks to it with httpx or raw TCP: bad JSON of every shape,
nesting that would exhaust the parser's stack, huge bodies, huge batches, clients that
dribble or stall or never read, more connections than the limit, and signed transactions
with mutated fields submitted to a real node (LevelDB in tmp_path), which must answer the
right rejection reason and stay exactly as it was.

Hypothesis runs in a worker thread (``trio.to_thread``) with a blocking httpx client,
while the server (and the node) run on the test's trio loop; state is read back on the
loop with ``trio.from_thread.run_sync`` so each read is consistent.
"""

from __future__ import annotations

import json
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus import engine
from consensus.block import Block
from consensus.codec import decode, encode
from consensus.crypto import TAG_BLOCK, TAG_TX, PrivateKey, sha256, verify
from consensus.engine import EvidenceRecord
from consensus.tx import tapos_of
from consensus.vote import Vote
from muxernode.config import NodeConfig
from muxernode.node import Node, RpcAdapter, init_data_dir
from muxernode.ops import SOCIETY_ID
from muxernode.rpc import (
    ADMIN_METHODS,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    METHODS,
    NOT_FOUND,
    PARSE_ERROR,
    REJECTED,
    UNAUTHORIZED,
    JsonRpcApp,
)
from storage import schema
from storage.kv import StorageError
from tests.ledger_helpers import ALICE, RULES, SOC, op_claim, op_create
from tests.procs import accounts, make_genesis
from tests.rpc_helpers import (
    LedgerBackend,
    post_raw,
    raw_exchange,
    result,
    served,
    society_backend,
)

TIMEOUT = 30
ANSWER_CODES = {PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, REJECTED,
                NOT_FOUND, UNAUTHORIZED}  # never INTERNAL_ERROR for anything a client sends


def rpc_url(client: httpx.AsyncClient) -> str:
    return str(client.base_url).rstrip("/") + "/rpc"


def port_of(client: httpx.AsyncClient) -> int:
    port = client.base_url.port
    assert port is not None
    return port


def chain_info_body(req_id: Any = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": "chain_info", "params": [],
                       "id": req_id}).encode()


async def read_until_closed(stream: trio.SocketStream, limit_s: float) -> tuple[bytes, bool]:
    """Everything the server sends within ``limit_s``; True if it closed the connection."""
    data = b""
    with trio.move_on_after(limit_s):
        for _ in range(100_000):  # bounded: each pass takes a chunk or ends
            try:
                chunk = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return data, True
            if not chunk:
                return data, True
            data += chunk
    return data, False


async def honest_call(port: int) -> bytes:
    """chain_info on a new connection that asks to be closed after the answer; what the
    server sent (empty if it reset the connection)."""
    body = chain_info_body()
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return b""
    async with stream:
        try:
            await stream.send_all(
                b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""
        data, _closed = await read_until_closed(stream, 5)
    return data


async def alive(client: httpx.AsyncClient) -> None:
    """The server still answers an honest call."""
    info = await result(client, "chain_info")
    assert info["chain_id"]


# --- bad JSON-RPC of every shape --------------------------------------------------------

_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
_values = st.recursive(
    _scalars,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids,
                                                              max_size=3),
    max_leaves=12)
_params = st.lists(_values | st.binary(max_size=40).map(bytes.hex)
                   | st.sampled_from([SOC, ALICE.address_text, "00" * 32, 0, 1]), max_size=3)
_methods = st.sampled_from([*sorted(METHODS), "nope", "", "CHAIN_INFO"])
_calls = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0") | _values, "method": _methods | _values},
    optional={"params": _params | _values,
              "id": st.integers(-(2**70), 2**70) | st.text(max_size=5) | st.none() | _values})
_bodies = _calls | st.lists(_calls | _values, max_size=10) | _values


def _valid_id(v: Any) -> bool:
    return v is None or type(v) in (str, int)


def _expected_answers(call: Any) -> dict[str, Any] | None:
    """What a call must be answered with: its id and, where the rules decide it from the
    shape alone, the error code; None for a notification that gets no answer."""
    if type(call) is not dict:
        return {"id": None, "code": INVALID_REQUEST}
    rid = call.get("id")
    if "id" in call and not _valid_id(rid):
        return {"id": None, "code": INVALID_REQUEST}
    answer_id = rid if "id" in call else None
    if (call.get("jsonrpc") != "2.0" or type(call.get("method")) is not str
            or type(call.get("params", [])) not in (list, dict)):
        return {"id": answer_id, "code": INVALID_REQUEST}
    if "id" not in call:
        return None  # a notification: runs, never answered
    method = call["method"]
    if method not in METHODS:
        return {"id": answer_id, "code": METHOD_NOT_FOUND}
    if method in ADMIN_METHODS:
        return {"id": answer_id, "code": UNAUTHORIZED}  # no token sent
    if type(call.get("params", [])) is dict:
        return {"id": answer_id, "code": INVALID_PARAMS}
    return {"id": answer_id, "code": None}  # a result or any client-caused error


def _check_answer(doc: Any, want: dict[str, Any]) -> None:
    assert type(doc) is dict and doc.get("jsonrpc") == "2.0", doc
    assert ("result" in doc) != ("error" in doc), doc
    assert set(doc) == {"jsonrpc", "id", "result" if "result" in doc else "error"}, doc
    assert doc["id"] == want["id"] and type(doc["id"]) is type(want["id"]), (doc, want)
    if "error" in doc:
        err = doc["error"]
        assert err["code"] in ANSWER_CODES and type(err["message"]) is str, doc
        assert err["code"] != INTERNAL_ERROR
    if want["code"] is not None:
        assert "error" in doc and doc["error"]["code"] == want["code"], (doc, want)


async def test_any_json_gets_a_wellformed_answer() -> None:
    """Arbitrary JSON documents (objects with wrong types, unknown and admin methods,
    batches of mixed junk, bare scalars) are each answered by the JSON-RPC rules: the
    right ids in order, the error code the shape decides, never an internal error, never
    an HTTP error; and the server keeps answering."""
    b, _ = society_backend()
    with trio.fail_after(120):
        async with served(JsonRpcApp(b, max_batch=8)) as client:
            url = rpc_url(client)

            def run_property() -> None:
                with httpx.Client(timeout=10) as http:
                    @settings(max_examples=200, deadline=None, database=None,
                              suppress_health_check=[HealthCheck.too_slow])
                    @given(body=_bodies)
                    def prop(body: Any) -> None:
                        r = http.post(url, content=json.dumps(body).encode(),
                                      headers={"content-type": "application/json"})
                        calls = body if type(body) is list else [body]
                        if type(body) is list and not 1 <= len(body) <= 8:
                            want: list[dict[str, Any]] = [
                                {"id": None, "code": INVALID_REQUEST}]
                        else:
                            want = [w for c in calls if (w := _expected_answers(c)) is not None]
                        if not want:
                            assert r.status_code == 204 and r.content == b""
                            return
                        assert r.status_code == 200, r.text
                        doc = r.json()
                        if type(body) is list and 1 <= len(body) <= 8:
                            assert type(doc) is list and len(doc) == len(want), doc
                            for d, w in zip(doc, want, strict=True):
                                _check_answer(d, w)
                        else:
                            _check_answer(doc, want[0])

                    prop()

            await trio.to_thread.run_sync(run_property)
            await alive(client)


# --- nesting, size, batches -------------------------------------------------------------


async def test_deep_nesting_is_a_parse_error_not_a_crash() -> None:
    """json.loads's C scanner recurses once per nesting level and raises RecursionError
    at the interpreter's limit (checked here, so a change of parser shows up): the server
    answers -32700 at once, for open and for balanced nesting, at the top or inside params;
    moderate nesting that parses is an ordinary invalid request or invalid params."""
    with pytest.raises(RecursionError):
        json.loads("[" * 100_000 + "]" * 100_000)
    deep = 100_000
    bodies = [
        b"[" * deep,
        b"[" * deep + b"]" * deep,
        b'{"a":' * deep + b"1" + b"}" * deep,
        b'{"jsonrpc":"2.0","method":"get_block","params":' + b"[" * deep + b"]" * deep
        + b',"id":1}',
        b'[{"jsonrpc":"2.0","method":"peers","id":1},' + b"[" * deep + b"]" * deep + b"]",
    ]
    b = LedgerBackend()
    with trio.fail_after(TIMEOUT):
        async with served(JsonRpcApp(b)) as client:
            for body in bodies:
                t0 = time.perf_counter()
                r = await post_raw(client, body)
                assert r.status_code == 200 and r.json() == {
                    "jsonrpc": "2.0", "id": None,
                    "error": {"code": PARSE_ERROR, "message": "parse error"}}, body[:60]
                assert time.perf_counter() - t0 < 2.0
            nested = "[" * 200 + "]" * 200
            r = await post_raw(client, f'{{"jsonrpc":"2.0","method":"get_block","params":'
                                       f'[{nested}],"id":5}}'.encode())
            assert r.json()["error"]["code"] == INVALID_PARAMS and r.json()["id"] == 5
            r = await post_raw(client, f"[{nested}]".encode())
            assert r.json() == [{"jsonrpc": "2.0", "id": None, "error": {
                "code": INVALID_REQUEST, "message": "invalid request: not an object"}}]
            await alive(client)


async def test_huge_bodies_are_refused_early() -> None:
    """A body over max_body_bytes is answered 413 and the connection closed: with a
    declared length before any body byte is read, and with a chunked body as soon as it
    passes the limit (the client is still sending when the answer comes)."""
    b = LedgerBackend()
    limit = 64 * 1024
    with trio.fail_after(TIMEOUT):
        async with served(JsonRpcApp(b, max_body_bytes=limit)) as client:
            port = port_of(client)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(
                    b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1073741824\r\n\r\n" + b"[" * 4096)
                data, closed = await read_until_closed(stream, 5)
            assert data.startswith(b"HTTP/1.1 413") and closed

            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(
                    b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n")
                chunk = b"8000\r\n" + b" " * 0x8000 + b"\r\n"  # 32 KiB per chunk
                sent = 0
                for _ in range(64):  # at most 2 MiB offered; the answer comes after 64 KiB
                    try:
                        await stream.send_all(chunk)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        break
                    sent += 1
                    with trio.move_on_after(0.05):
                        head = await stream.receive_some(65536)
                        break
                else:
                    head = b""
                assert head.startswith(b"HTTP/1.1 413"), head[:40]
                assert sent < 8, "refused long before the client stopped sending"
            await alive(client)


async def test_batch_of_ten_thousand_calls() -> None:
    """10,000 calls in one body (600 KB, under max_body_bytes) meet the max_batch rule:
    one -32600 "batch too large", fast, with the memory the parse needs (bounded by
    max_body_bytes) and not the memory 10,000 answers would need; a batch at exactly
    max_batch is answered in full and in order."""
    b = LedgerBackend()
    app = JsonRpcApp(b)
    calls = [{"jsonrpc": "2.0", "method": "chain_info", "params": [], "id": i}
             for i in range(10_000)]
    body = json.dumps(calls).encode()
    assert len(body) < app.max_body_bytes
    tracemalloc.start()
    try:
        answer = await app.handle_body(body)
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer is not None and json.loads(answer)["error"]["code"] == INVALID_REQUEST
    assert peak < 40 * len(body), peak  # the parsed batch, not 10,000 answers
    with trio.fail_after(TIMEOUT):
        async with served(app) as client:
            t0 = time.perf_counter()
            r = await post_raw(client, body)
            assert time.perf_counter() - t0 < 3.0
            doc = r.json()
            assert doc["id"] is None and doc["error"]["code"] == INVALID_REQUEST
            assert "batch too large (at most 1000 calls)" in doc["error"]["message"]
            r = await post_raw(client, json.dumps(calls[:1000]).encode())
            assert [d["id"] for d in r.json()] == list(range(1000))
            # a batch whose body is over the limit is refused before it is read (raw TCP:
            # the declared length alone decides)
            fat = json.dumps([{**c, "params": ["x" * 100]} for c in calls]).encode()
            assert len(fat) > app.max_body_bytes
            out = await raw_exchange(port_of(client), (
                b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(fat)))
            assert out.startswith(b"HTTP/1.1 413")
            await alive(client)


# --- slow and greedy clients ------------------------------------------------------------


async def test_slow_clients_are_cut_off() -> None:
    """A connection that sends nothing, or dribbles its request head, is closed at the
    keep-alive timeout (the idle timer runs until the head is complete, whatever
    arrives); a request whose body stalls or dribbles is answered 408 at the body
    timeout and closed. Honest clients are served meanwhile."""
    b = LedgerBackend()
    keep_alive, body_timeout = 0.5, 0.4
    app = JsonRpcApp(b, body_timeout_s=body_timeout)
    with trio.fail_after(TIMEOUT):
        async with served(app, keep_alive_timeout_s=keep_alive) as client:
            port = port_of(client)

            async def case(prefix: bytes, drip: bytes | None) -> tuple[bytes, float]:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                t0 = trio.current_time()
                async with stream, trio.open_nursery() as nursery:
                    if prefix:
                        await stream.send_all(prefix)

                    async def dribble() -> None:
                        for _ in range(200):  # one byte per 20 ms: at most 4 s
                            await trio.sleep(0.02)
                            try:
                                await stream.send_all(drip or b"")
                            except (trio.BrokenResourceError, trio.ClosedResourceError):
                                return

                    if drip is not None:
                        nursery.start_soon(dribble)
                    data, closed = await read_until_closed(stream, 5)
                    nursery.cancel_scope.cancel()
                assert closed, (prefix, drip)
                return data, trio.current_time() - t0

            head = b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            # nothing at all
            data, took = await case(b"", None)
            assert data == b"" and keep_alive - 0.1 <= took < keep_alive + 1.5
            # a request head that never ends
            data, took = await case(head, b"X")
            assert data == b"" and keep_alive - 0.1 <= took < keep_alive + 1.5
            await alive(client)
            # a complete head, then no body
            data, took = await case(head + b"Content-Length: 100\r\n\r\n", None)
            assert data.startswith(b"HTTP/1.1 408") and b"connection: close" in data.lower()
            assert body_timeout - 0.1 <= took < body_timeout + 1.5
            # a complete head, then a body dribbled a byte at a time
            data, took = await case(head + b"Content-Length: 100\r\n\r\n", b" ")
            assert data.startswith(b"HTTP/1.1 408")
            assert body_timeout - 0.1 <= took < body_timeout + 1.5
            await alive(client)


class BigAnswers(LedgerBackend):
    """``peers`` answers about 1.5 MB: a client that does not read fills the buffers."""

    answered = 0

    async def peers(self) -> list[dict[str, Any]]:
        self.answered += 1
        return [{"node_id": "ab" * 32, "address": "127.0.0.1:1", "direction": "in",
                 "head_height": i} for i in range(12_000)]


async def test_client_that_never_reads_is_dropped() -> None:
    """A client that pipelines requests for big answers and never reads them would hold
    hypercorn's shielded write (and a connection slot) for ever; the send timeout closes
    it, and with max_connections=1 an honest client gets its answer afterwards."""
    app = JsonRpcApp(BigAnswers())
    with trio.fail_after(TIMEOUT):
        async with served(app, max_connections=1, send_timeout_s=0.5) as client:
            sock = trio.socket.socket()
            # a tiny receive window: the server's writes block after a few KB in flight
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await sock.connect(("127.0.0.1", port_of(client)))
            greedy = trio.SocketStream(sock)
            body = b'{"jsonrpc":"2.0","method":"peers","id":1}'
            request = (b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body) + body)
            async with greedy:
                await greedy.send_all(request * 16)  # ~24 MB of answers, none read
                for _ in range(200):  # until the server holds it, at most 2 s
                    if app.open_connections == 1:
                        break
                    await trio.sleep(0.01)
                assert app.open_connections == 1
                t0 = trio.current_time()
                for _ in range(1000):  # until the server gives up on it, at most 10 s
                    if app.open_connections == 0:
                        break
                    await trio.sleep(0.01)
                assert app.open_connections == 0, "the stalled writer was not dropped"
                # it was the write timeout (0.5 s) that ended it, not a protocol error
                assert 0.4 <= trio.current_time() - t0 < 5.0
                assert app.backend.answered >= 2  # type: ignore[attr-defined]
                r = await client.post("/rpc", content=chain_info_body(),
                                      headers={"content-type": "application/json"})
                assert r.status_code == 200 and "result" in r.json()


async def test_connection_limit() -> None:
    """max_connections is a real cap on sockets: with 8 open (idle, held by a long
    keep-alive timeout) every further connection gets a 503 and is closed at once, an
    honest client included; when the 8 go, honest clients are served again and the
    count of open connections is back to what they use."""
    b = LedgerBackend()
    app = JsonRpcApp(b)
    limit = 8
    with trio.fail_after(TIMEOUT):
        async with served(app, max_connections=limit, keep_alive_timeout_s=30.0) as client:
            port = port_of(client)
            held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(limit)]
            for _ in range(500):  # the accept loop takes them one by one, at most 5 s
                if app.open_connections == limit:
                    break
                await trio.sleep(0.01)
            assert app.open_connections == limit
            for _ in range(5):
                extra = await trio.open_tcp_stream("127.0.0.1", port)
                async with extra:
                    data, closed = await read_until_closed(extra, 5)
                assert closed and data.startswith(b"HTTP/1.1 503"), data[:40]
                assert b"retry-after: 1" in data.lower()
            assert app.refused_connections == 5
            assert app.open_connections == limit
            # an honest request now: refused too (a 503, or a reset if the request was in
            # before the server closed; never an answer)
            answer = await honest_call(port)
            assert not answer.startswith(b"HTTP/1.1 200"), answer[:40]
            # the held ones still work: the limit did not break them
            await held[0].send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await held[0].receive_some(65536)).startswith(b"HTTP/1.1 200")
            for s in held:
                await s.aclose()
            t0 = trio.current_time()
            for _ in range(100):  # until the server has seen them go, at most 5 s
                answer = await honest_call(port)
                if answer.startswith(b"HTTP/1.1 200"):
                    break
                await trio.sleep(0.05)
            assert answer.startswith(b"HTTP/1.1 200") and b'"result"' in answer
            # the server lets a socket go soon after its client does (not after the
            # 30 s keep-alive timeout that hypercorn alone would wait for)
            assert trio.current_time() - t0 < 3.0
            for _ in range(100):
                if app.open_connections == 0:
                    break
                await trio.sleep(0.05)
            assert app.open_connections == 0


# --- mutated signed transactions against a real node ------------------------------------

#: kinds of the fields of each op (after the opcode), for the reason a wrong value earns
OP_FIELDS: dict[int, list[str]] = {
    1: ["bin", "amount", "text"],
    2: ["society", "text", "text", "rules"],
    3: ["society", "text"],
    4: ["society", "amount"],
    5: ["society", "amount", "amount", "text", "text", "bin"],
    6: ["bin", "stance"],
    7: ["bin", "amount"],
    8: ["bin", "text"],
    9: ["list"],
}
KIND_REASON = {"society": "bad_society_id", "rules": "bad_rules"}  # else bad_op
Strategy = st.SearchStrategy[Any]
_none_bool: Strategy = st.none() | st.booleans()
_not_int: Strategy = _none_bool | st.text(max_size=8) | st.binary(max_size=8) | st.just([])
_not_str: Strategy = _none_bool | st.integers(-5, 5) | st.binary(max_size=8) | st.just([1])
_not_bytes: Strategy = _none_bool | st.integers(-5, 5) | st.text(max_size=8) | st.just([])
_not_list: Strategy = _none_bool | st.integers(-5, 5) | st.text(max_size=8)
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "bin": _not_bytes | st.binary(max_size=40).filter(lambda x: len(x) not in (20, 32)),
    "amount": _not_int | st.integers(-(2**63), 0) | st.integers(2**63, 2**64 - 1),
    "text": _not_str,
    "society": _not_str | st.text(max_size=40).filter(lambda x: SOCIETY_ID.fullmatch(x)
                                                      is None),
    "rules": _not_list | st.lists(st.integers(0, 10), max_size=12).filter(lambda x: len(x)
                                                                          != 9)
    | st.just([1, 2, 3, 4, 5, 6, 7, 8, "9"]),
    "stance": _not_int | st.integers(-(2**63), 2**64 - 1).filter(lambda x: x not in (-1, 0, 1)),
    "list": _not_list | st.lists(st.binary(max_size=19), min_size=1, max_size=3),
}
U63 = 2**63 - 1


class TxFactory:
    """Valid signed txs of every op from one funded key; mutations of them."""

    def __init__(self, key: PrivateKey, chain_id: bytes, base_fee: int, genesis_time: int,
                 lifetime: int) -> None:
        self.key, self.chain_id, self.base_fee = key, chain_id, base_fee
        self.genesis_time, self.lifetime = genesis_time, lifetime
        # one clock reading for the whole run: hypothesis needs the strategies to draw the
        # same way every time, and 600 s of margin outlast the test (bounded to 180 s)
        self.now = int(time.time())
        self.ref = tapos_of(0, chain_id)  # the node has only genesis: block 0 (id = chain id)
        other = PrivateKey(sha256(b"other"))
        self.ops: list[list[Any]] = [
            [1, other.address, 1_000, "memo"],
            op_create("fuzz-soc", RULES),
            [3, "fuzz-soc", "me"],
            [4, "fuzz-soc", 100],
            op_claim(1_000, 10, society="fuzz-soc"),
            [6, bytes(32), 1],
            [7, bytes(32), 5],
            [8, other.public_key, "http://w"],
            [9, [other.address]],
        ]

    def unsigned(self, op: list[Any]) -> list[Any]:
        expiration = self.now + 600
        return [1, self.ref[0], self.ref[1], expiration, self.key.public_key, self.base_fee,
                op]

    def sign(self, unsigned: list[Any]) -> bytes:
        sig = self.key.sign(TAG_TX + self.chain_id + encode(unsigned))
        return encode([unsigned, sig])


def mutations(f: TxFactory) -> st.SearchStrategy[tuple[str, bytes, str]]:
    """(what was done, the raw tx, the reason the node must give)."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, bytes, str]:
        op = list(draw(st.sampled_from(f.ops)))
        unsigned = f.unsigned(op)
        kind = draw(st.sampled_from([
            "fee", "expired", "too_far", "ref", "op_field", "opcode", "arity", "resigned_not",
            "signature", "trailing", "truncated", "envelope_type", "too_large"]))
        if kind == "fee":  # re-signed: a valid tx but for its fee
            unsigned[5] = draw(st.integers(0, f.base_fee - 1))
            return kind, f.sign(unsigned), "fee_too_low"
        if kind == "expired":
            unsigned[3] = draw(st.integers(0, f.genesis_time))
            return kind, f.sign(unsigned), "expired"
        if kind == "too_far":  # margin: the node's clock moves on while the test runs
            unsigned[3] = draw(st.integers(f.now + f.lifetime + 600, U63))
            return kind, f.sign(unsigned), "expiration_too_far"
        if kind == "ref":  # the node is at height 0: any other ref block is unknown
            num, prefix = draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 2**32 - 1))
            if (num, prefix) == f.ref:
                prefix ^= 1
            unsigned[1], unsigned[2] = num, prefix
            return kind, f.sign(unsigned), "unknown_ref_block"
        if kind == "op_field":
            i = draw(st.integers(1, len(op) - 1))
            field_kind = OP_FIELDS[op[0]][i - 1]
            op[i] = draw(WRONG[field_kind])
            return kind, f.sign(unsigned), KIND_REASON.get(field_kind, "bad_op")
        if kind == "opcode":
            op[0] = draw(st.integers(-(2**63), 2**64 - 1).filter(lambda x: not 1 <= x <= 9)
                         | _not_int)
            return kind, f.sign(unsigned), "bad_op"
        if kind == "arity":
            if draw(st.booleans()):
                op.append(draw(st.integers(0, 5) | st.text(max_size=4)))
            else:
                op.pop()
            return kind, f.sign(unsigned), "bad_op"
        if kind == "resigned_not":  # a valid-looking change under the old signature
            raw = f.sign(unsigned)
            j = draw(st.sampled_from([1, 2, 3, 4, 5]))
            if j == 4:
                new: Any = draw(st.binary(min_size=32, max_size=32))
            elif j == 1:
                new = draw(st.integers(0, 0xFFFF))
            elif j == 2:
                new = draw(st.integers(0, 2**32 - 1))
            else:
                new = draw(st.integers(f.base_fee if j == 5 else 0, U63))
            if new == unsigned[j]:
                return kind, raw, SAME
            sig = decode(raw)[1]
            unsigned[j] = new
            return kind, encode([unsigned, sig]), "bad_signature"
        raw = f.sign(unsigned)
        if kind == "signature":
            obj = decode(raw)
            mask = draw(st.binary(min_size=64, max_size=64).filter(any))
            obj[1] = bytes(a ^ m for a, m in zip(obj[1], mask, strict=True))
            return kind, encode(obj), "bad_signature"
        if kind == "trailing":
            return kind, raw + draw(st.binary(min_size=1, max_size=64)), "bad_encoding"
        if kind == "truncated":
            return kind, raw[:draw(st.integers(0, len(raw) - 1))], "bad_encoding"
        if kind == "too_large":
            return kind, raw + bytes(draw(st.integers(8192, 9000))), "too_large"
        # envelope_type: one envelope field of a wrong type or out of range
        obj = decode(raw)
        j = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 7]))  # 7: the signature
        bad: dict[int, st.SearchStrategy[Any]] = {
            0: _not_int | st.integers(2, 2**64 - 1) | st.just(0),
            1: _not_int | st.integers(0x10000, 2**64 - 1) | st.integers(-(2**63), -1),
            2: _not_int | st.integers(2**32, 2**64 - 1) | st.integers(-(2**63), -1),
            3: _not_int | st.integers(2**63, 2**64 - 1) | st.integers(-(2**63), -1),
            4: _not_bytes | st.binary(max_size=40).filter(lambda x: len(x) != 32),
            5: _not_int | st.integers(2**63, 2**64 - 1) | st.integers(-(2**63), -1),
            7: _not_bytes | st.binary(max_size=80).filter(lambda x: len(x) != 64),
        }
        value = draw(bad[j])
        if j == 7:
            obj[1] = value
        else:
            obj[0][j] = value
        return kind, encode(obj), "bad_encoding"

    return build()


SAME = "unchanged"  # a "change" that drew the value it replaces: the tx is valid, skip it


@pytest.fixture
async def running_node(tmp_path: Path) -> AsyncIterator[tuple[Node, PrivateKey]]:
    """A real node (LevelDB in tmp_path, RPC and p2p on 127.0.0.1 port 0), no witness:
    its chain stays at genesis, so nothing but a submission could change its state; and
    a funded key."""
    gdir = tmp_path / "genesis"
    init_data_dir(make_genesis(gdir, accounts=2, seed=77), tmp_path / "node")
    n = Node(tmp_path / "node", NodeConfig(rpc_port=0, verify_threads=1))
    key = PrivateKey(bytes.fromhex(accounts(gdir)[0]["secret"]))
    async with trio.open_nursery() as nursery:
        await nursery.start(n.run)
        try:
            yield n, key
        finally:
            n.stop()


def snapshot(n: Node) -> tuple[Any, ...]:
    """What must not change: head, final block, state digests (chain and mempool view),
    the mempool's contents."""
    return (n.chain.head.id, n.chain.final.id, n.ledger.state_digest(),
            n.pending.state_digest(), len(n.mempool), n.mempool.size_bytes)


async def test_mutated_signed_txs_are_rejected_and_change_nothing(
    running_node: tuple[Node, PrivateKey],
) -> None:
    """Valid signed txs of every op, each with one field mutated (fee, expiration, ref
    block, an op field, the opcode, the arity, a field changed under the old signature,
    signature bytes, trailing bytes, truncation, size, envelope types), go to submit_tx
    on a real node: each answers -32000 with the reason its mutation earns, and the node
    (head, final, digests, mempool) is exactly as before. Then the unmutated transfer is
    accepted, so the unmutated txs were valid and the check of the mempool can fail."""
    n, key = running_node
    assert n.rpc_port is not None
    url = f"http://127.0.0.1:{n.rpc_port}/rpc"
    f = TxFactory(key, n.chain_id, n.params.base_fee, n.genesis.genesis_time,
                  n.params.max_tx_lifetime_s)
    before = snapshot(n)
    seen: set[str] = set()

    def run_property() -> None:
        with httpx.Client(timeout=10) as http:
            @settings(max_examples=200, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow])
            @given(case=mutations(f))
            def prop(case: tuple[str, bytes, str]) -> None:
                kind, raw, reason = case
                if reason == SAME:
                    return
                r = http.post(url, json={"jsonrpc": "2.0", "method": "submit_tx",
                                         "params": [raw.hex()], "id": 1})
                err = r.json().get("error")
                assert err is not None, (kind, r.json())
                assert err["code"] == REJECTED and err["data"] == {"reason": reason}, (
                    kind, reason, err)
                assert trio.from_thread.run_sync(snapshot, n) == before, kind
                seen.add(kind)

            prop()

    with trio.fail_after(180):
        await trio.to_thread.run_sync(run_property)
    assert len(seen) >= 12, seen  # every kind of mutation was tried
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as client:
            good = f.sign(f.unsigned(f.ops[0]))
            r = await client.post(url, json={"jsonrpc": "2.0", "method": "submit_tx",
                                             "params": [good.hex()], "id": 1})
            assert "result" in r.json(), r.json()
    assert snapshot(n) != before and len(n.mempool) == 1


# --- an equivocating witness, as list_evidence reports it -------------------------------


async def test_list_evidence_reports_double_block_and_double_vote(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A witness signs a second block for slot 1 and a second vote for it. The node
    records one double_block (both signed headers, each verifying under the witness's
    key) and one double_vote (both encoded votes), logs the block evidence once however
    often the twin comes back, and records nothing for a forged twin (a signature by
    another key). list_evidence answers them over HTTP, newest last."""
    gdir = tmp_path / "genesis"
    genesis_path = make_genesis(gdir, witnesses=1, accounts=1, seed=5,
                                genesis_time=int(time.time()) - 100)
    init_data_dir(genesis_path, tmp_path / "node")
    wkey = PrivateKey(bytes.fromhex((gdir / "w1.key").read_text().strip()))
    n = Node(tmp_path / "node", NodeConfig(rpc_port=0), witness_key=wkey)
    try:
        cid = n.chain_id
        with caplog.at_level("WARNING", logger="muxer.consensus"):
            first = n.produce(1)  # commits it and casts the honest vote for slot 1
            twin = Block.build(wkey, cid, 1, first.previous_id, first.timestamp, [], [],
                               sha256(b"another state"))
            forged = Block.build(PrivateKey(sha256(b"mallory")), cid, 1, first.previous_id,
                                 first.timestamp, [], [], sha256(b"forged"))
            forged_as_witness = Block(
                [*forged.header()[:4], wkey.address, *forged.header()[5:]],
                forged.signature, [], [])
            assert await n.accept_block(forged_as_witness) is False  # bad signature
            assert not n.consensus.evidence_log
            await n.accept_block(twin)
            await n.accept_block(twin)  # again: no second record
            honest = next(v for v in n.consensus.vote_pool.values()
                          if v.witness == wkey.address and v.target_slot == 1)
            double = Vote.sign(wkey, cid, honest.source_id, honest.source_slot, twin.id, 1)
            assert await n.accept_votes([double.encode()]) == [True]
        logged = [r for r in caplog.records if r.getMessage() == "equivocation"]
        assert len(logged) == 2
        app = JsonRpcApp(RpcAdapter(n))
        with trio.fail_after(TIMEOUT):
            async with served(app) as client:
                items = await result(client, "list_evidence")
        assert [e["kind"] for e in items] == ["double_block", "double_vote"]
        blk, vote = items
        assert blk["witness"] == vote["witness"] == wkey.address_text
        assert blk["slot"] == vote["slot"] == 1
        ids = []
        for k in ("first", "second"):
            header, sig = decode(bytes.fromhex(blk[k]))
            block_id = sha256(encode(header))
            assert verify(wkey.public_key, sig, TAG_BLOCK + cid + block_id)
            assert header[4] == wkey.address and header[3] == first.timestamp
            ids.append(block_id)
        assert ids == [first.id, twin.id]
        assert (vote["first"], vote["second"]) == (honest.encode().hex(), double.encode().hex())
        found = list(n.consensus.evidence_log)
        n.close()
        # a restart keeps it, and seeing the twin again records and logs nothing new
        n = Node(tmp_path / "node", NodeConfig(rpc_port=0), witness_key=wkey)
        assert list(n.consensus.evidence_log) == found
        caplog.clear()
        with caplog.at_level("WARNING", logger="muxer.consensus"):
            await n.accept_block(twin)
        assert list(n.consensus.evidence_log) == found
        assert not [r for r in caplog.records if r.getMessage() == "equivocation"]
    finally:
        n.close()


def test_evidence_store_keeps_the_newest_and_retries_a_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Evidence is stored as it is found, the oldest dropped beyond MAX_EVIDENCE (4 here),
    in memory and on disk alike; a write that fails (a full disk) keeps the record in
    memory and stores it at the next save, which the node makes after its store recovers."""
    monkeypatch.setattr(engine, "MAX_EVIDENCE", 4)
    gdir = tmp_path / "genesis"
    init_data_dir(make_genesis(gdir, witnesses=1, accounts=1, seed=6), tmp_path / "node")
    records = [EvidenceRecord("double_vote", b"w" * 20, slot, b"a%d" % slot, b"b%d" % slot)
               for slot in range(1, 8)]

    def stored(n: Node) -> list[bytes]:
        return [k for k, _ in n.store.iterate(schema.PREFIX_EVIDENCE)]

    n = Node(tmp_path / "node", NodeConfig(rpc_port=0))
    try:
        for r in records[:6]:
            assert n.consensus._record(r)
        assert not n.consensus._record(records[5]._replace(first=b"b6", second=b"a6"))
        assert list(n.consensus.evidence_log) == records[2:6]
        assert len(stored(n)) == 4
        real_write = n.store.write

        def full_disk(changes: Any, sync: bool = False) -> None:
            raise StorageError("IO error: No space left on device")

        n.store.write = full_disk  # type: ignore[method-assign]
        assert n.consensus._record(records[6])  # kept in memory, not stored
        n.store.write = real_write  # type: ignore[method-assign]
        assert list(n.consensus.evidence_log) == records[3:7]
        assert len(stored(n)) == 4
        n.consensus.save_evidence()
    finally:
        n.close()
    n = Node(tmp_path / "node", NodeConfig(rpc_port=0))
    try:
        assert list(n.consensus.evidence_log) == records[3:7]
        assert len(stored(n)) == 4
    finally:
        n.close()
