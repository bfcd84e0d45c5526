"""The JSON-RPC server over real sockets: hypercorn on 127.0.0.1 port 0, httpx on trio.

The backend is not a mock: ``LedgerBackend`` (tests/rpc_helpers.py, shared with the other
RPC tests) runs a real Ledger (tests.ledger_helpers.Chain on a MemoryKV) and answers through
muxernode.views; every ``submit_txs`` call decodes, verifies and applies its txs in one new
block, so rejections carry the ledger's own reasons.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from consensus.crypto import PrivateKey
from muxernode import views
from muxernode.rpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    PARSE_ERROR,
    REJECTED,
    JsonRpcApp,
    serve_rpc,
)
from tests.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    FUNDS,
    LIFETIME,
    NOBODY,
    RULES,
    SOC,
    WITNESS,
    op_claim,
    op_create,
    op_give,
    op_join,
    op_pledge,
    op_transfer,
    op_vote,
    op_vote_witness,
)
from tests.rpc_helpers import (
    TIMEOUT,
    LedgerBackend,
    call,
    error,
    post_raw,
    raw_exchange,
    result,
    served,
    society_backend,
)

# --- results ----------------------------------------------------------------------------


async def test_every_method_result_shape() -> None:
    b, claim_id = society_backend()
    c = b.c
    with trio.fail_after(TIMEOUT):
        async with served(JsonRpcApp(b)) as client:
            info = await result(client, "chain_info")
            assert info == await b.chain_info()
            assert info["head_height"] == 2 and info["chain_id"] == c.chain_id.hex()

            tx = c.tx(ALICE, op_transfer(DAVE.address, 12_345, "rent"))
            assert await result(client, "submit_tx", tx.raw.hex()) == {"tx_id": tx.tx_id.hex()}
            assert await result(client, "get_tx", tx.tx_id.hex()) == {
                "tx_id": tx.tx_id.hex(), "status": "final", "height": 3,
                "sender": ALICE.address_text, "fee": 10,
                "op": {"type": "transfer", "to": DAVE.address_text, "amount": 12_345,
                       "memo": "rent"}}
            assert await result(client, "get_tx", "00" * 32) == {
                "tx_id": "00" * 32, "status": "unknown"}

            t1, t2 = c.tx(DAVE, op_transfer(ERIN.address, 5)), c.tx(NOBODY, op_transfer(
                ERIN.address, 5))
            assert await result(client, "submit_txs", [t1.raw.hex(), t2.raw.hex()]) == [
                {"tx_id": t1.tx_id.hex()},
                {"error": {"code": REJECTED, "message": "the sender has no balance",
                           "data": {"reason": "insufficient_balance"}}}]
            assert await result(client, "submit_txs", []) == []

            block = await result(client, "get_block", 4)
            assert block == {"height": 4, "id": c.block_id(4).hex(),
                             "previous": c.block_id(3).hex(), "timestamp": c.time,
                             "witness": WITNESS.address_text, "tx_ids": [t1.tx_id.hex()],
                             "votes": [], "final": True}
            assert (await result(client, "get_block", 0))["id"] == c.chain_id.hex()

            assert await result(client, "get_account", DAVE.address_text) == {
                "address": DAVE.address_text, "balance": FUNDS + 12_345 - 5 - 10,
                "stake": FUNDS + 12_330, "societies": [], "assets": {"MUX": FUNDS + 12_330}}
            assert await result(client, "get_account", NOBODY.address_text) == {
                "address": NOBODY.address_text, "balance": 0, "stake": 0, "societies": [],
                "assets": {"MUX": 0}}
            acct = await result(client, "get_account", WITNESS.address_text)
            assert acct["witness"] == {"signing_key": WITNESS.public_key.hex(), "url": "",
                                       "votes": 0}

            society = await result(client, "get_society", SOC)
            assert society == views.society_view(c.ledger, SOC, c.time)
            assert society["members"] == 3 and society["open_claims"] == 1
            assert society["total_karma"] == 13_000 and society["escrow_total"] == 30_000

            member = await result(client, "get_member", SOC, ALICE.address_text)
            assert member == views.member_view(c.ledger, SOC, ALICE.address, c.time)
            assert member["karma"] == 3_000 and member["open_claim"] == claim_id.hex()

            claim = await result(client, "get_claim", claim_id.hex())
            assert claim == views.claim_view(c.ledger, claim_id, c.time)
            assert claim["limit"] == 5_000 and claim["status"] == "open"
            # ids are accepted in either case
            assert await result(client, "get_claim", claim_id.hex().upper()) == claim

            claims = await result(client, "list_claims", SOC)
            assert [x["claim_id"] for x in claims] == [claim_id.hex()]
            assert "details" not in claims[0]

            assert await result(client, "list_witnesses") == [
                {"address": WITNESS.address_text, "url": "", "votes": 0, "active": True,
                 "signing_key": WITNESS.public_key.hex(), "last_slot": c.height,
                 "missed": 0}]
            assert await result(client, "peers") == []


async def test_not_found_errors() -> None:
    b, _ = society_backend()
    with trio.fail_after(TIMEOUT):
        async with served(JsonRpcApp(b)) as client:
            cases: list[tuple[str, list[Any], dict[str, Any]]] = [
                ("get_block", [99], {"what": "block", "id": 99}),
                ("get_society", ["nosuch"], {"what": "society", "id": "nosuch"}),
                ("list_claims", ["nosuch"], {"what": "society", "id": "nosuch"}),
                ("get_member", [SOC, DAVE.address_text],
                 {"what": "member", "id": [SOC, DAVE.address_text]}),
                ("get_member", ["nosuch", ALICE.address_text],
                 {"what": "member", "id": ["nosuch", ALICE.address_text]}),
                ("get_claim", ["AB" * 32], {"what": "claim", "id": "ab" * 32}),
            ]
            for method, params, data in cases:
                assert await error(client, method, *params) == {
                    "code": NOT_FOUND, "message": "not found", "data": data}


# --- JSON-RPC errors --------------------------------------------------------------------


async def test_invalid_params() -> None:
    b, _ = society_backend()
    addr = ALICE.address_text
    cases: list[tuple[str, list[Any]]] = [
        ("chain_info", [1]),
        ("submit_tx", []),
        ("submit_tx", ["abc"]),  # odd length
        ("submit_tx", ["zz"]),
        ("submit_tx", ["0x00"]),
        ("submit_tx", ["00 11"]),
        ("submit_tx", [12]),
        ("submit_txs", ["00"]),
        ("submit_txs", [["00", 1]]),
        ("submit_txs", [["00"], ["00"]]),
        ("get_tx", ["00" * 31]),
        ("get_tx", ["00" * 33]),
        ("get_tx", [None]),
        ("get_block", [-1]),
        ("get_block", [True]),
        ("get_block", [1.0]),
        ("get_block", ["1"]),
        ("get_block", [2**63]),
        ("get_account", [addr.upper()]),
        ("get_account", ["mx" + "00" * 19]),
        ("get_account", [addr[2:]]),
        ("get_account", [addr, addr]),
        ("get_society", ["Soc"]),
        ("get_society", ["so"]),
        ("get_society", [5]),
        ("get_member", [SOC]),
        ("get_member", [SOC, "mxnope"]),
        ("get_member", ["bad id", addr]),
        ("get_claim", ["g" * 64]),
        ("list_claims", []),
        ("list_witnesses", [0]),
        ("peers", [None]),
    ]
    with trio.fail_after(TIMEOUT):
        async with served(JsonRpcApp(b)) as client:
            for method, params in cases:
                err = await error(client, method, *params)
                assert err["code"] == INVALID_PARAMS, (method, params, err)
                assert err["message"].startswith("invalid params: ")
            # params as an object: valid JSON-RPC, but every method here takes an array
            r = await client.post("/rpc", json={"jsonrpc": "2.0", "method": "get_block",
                                                "params": {"height": 1}, "id": 7})
            assert r.json()["error"]["code"] == INVALID_PARAMS
            # no params at all is []
            r = await client.post("/rpc", json={"jsonrpc": "2.0", "method": "peers", "id": 8})
            assert r.json() == {"jsonrpc": "2.0", "result": [], "id": 8}


async def test_parse_invalid_request_unknown_method_internal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b = LedgerBackend()
    parse = {"jsonrpc": "2.0", "error": {"code": PARSE_ERROR, "message": "parse error"},
             "id": None}
    with trio.fail_after(TIMEOUT):
        async with served(JsonRpcApp(b)) as client:
            for body in (b"{", b'{"jsonrpc": "2.0", "method": "peers", "id": 1',
                         b"\xff\xfe", b"[NaN]", b'{"id": Infinity}', b"", b"[" * 100_000):
                r = await post_raw(client, body)
                assert r.status_code == 200 and r.json() == parse, body[:20]

            invalid: list[Any] = [
                1, "peers", None,
                {"method": "peers", "id": 1},  # no jsonrpc
                {"jsonrpc": "1.0", "method": "peers", "id": 1},
                {"jsonrpc": 2.0, "method": "peers", "id": 1},
                {"jsonrpc": "2.0", "id": 1},  # no method
                {"jsonrpc": "2.0", "method": 5, "id": 1},
                {"jsonrpc": "2.0", "method": "peers", "params": 3, "id": 1},
                {"jsonrpc": "2.0", "method": "peers", "params": "x", "id": 1},
            ]
            for req in invalid:
                doc = (await post_raw(client, json.dumps(req).encode())).json()
                assert doc["error"]["code"] == INVALID_REQUEST, req
                expect_id = req.get("id") if isinstance(req, dict) else None
                assert doc["id"] == expect_id
            for bad_id in (1.5, 2.0, True, [1], {"a": 1}):
                doc = (await client.post("/rpc", json={"jsonrpc": "2.0", "method": "peers",
                                                       "id": bad_id})).json()
                assert doc["error"]["code"] == INVALID_REQUEST and doc["id"] is None
            # valid id types are echoed
            for good_id in ("abc", 0, -7, 2**70, None):
                assert (await call(client, "peers", req_id=good_id))["result"] == []

            err = await error(client, "no_such_method")
            assert err == {"code": METHOD_NOT_FOUND, "message": "method not found: no_such_method"}

            b.fail = True
            with caplog.at_level("ERROR", logger="muxer.rpc"):
                err = await error(client, "peers")
            assert err == {"code": INTERNAL_ERROR, "message": "internal error"}
            assert "secret internal detail" in caplog.text  # logged, not leaked
            r = await client.post("/rpc", json={"jsonrpc": "2.0", "method": "peers", "id": 1})
            assert b"secret" not in r.content and b"Traceback" not in r.content


async def test_batches_and_notifications() -> None:
    b, _ = society_backend()
    c = b.c
    with trio.fail_after(TIMEOUT):
        async with served(JsonRpcApp(b, max_batch=5)) as client:
            tx = c.tx(DAVE, op_transfer(ERIN.address, 77))
            batch: list[Any] = [
                {"jsonrpc": "2.0", "method": "get_block", "params": [0], "id": "a"},
                {"jsonrpc": "2.0", "method": "submit_tx", "params": [tx.raw.hex()]},  # notif.
                {"jsonrpc": "2.0", "method": "nope", "id": "b"},
                42,
                {"jsonrpc": "2.0", "method": "get_account", "params": ["x"], "id": 3},
            ]
            r = await client.post("/rpc", json=batch)
            assert r.status_code == 200
            doc = r.json()
            assert [d["id"] for d in doc] == ["a", "b", None, 3]
            assert doc[0]["result"]["height"] == 0
            assert [d["error"]["code"] for d in doc[1:]] == [
                METHOD_NOT_FOUND, INVALID_REQUEST, INVALID_PARAMS]
            # the notification ran, in order, although nothing answered it
            assert (await result(client, "get_tx", tx.tx_id.hex()))["status"] == "final"

            # only notifications: HTTP 204, no body (even with an error inside)
            r = await client.post("/rpc", json=[
                {"jsonrpc": "2.0", "method": "peers"},
                {"jsonrpc": "2.0", "method": "nope", "params": []}])
            assert r.status_code == 204 and r.content == b""
            r = await client.post("/rpc", json={"jsonrpc": "2.0", "method": "peers"})
            assert r.status_code == 204 and r.content == b""

            r = await client.post("/rpc", json=[])
            assert r.json() == {"jsonrpc": "2.0", "id": None, "error": {
                "code": INVALID_REQUEST, "message": "invalid request: empty batch"}}
            r = await client.post("/rpc", json=[{"jsonrpc": "2.0", "method": "peers",
                                                 "id": i} for i in range(6)])
            doc = r.json()
            assert doc["error"]["code"] == INVALID_REQUEST and doc["id"] is None
            assert "batch too large" in doc["error"]["message"]
            r = await client.post("/rpc", json=[1, 2])
            assert [d["error"]["code"] for d in r.json()] == [INVALID_REQUEST] * 2
            r = await client.post("/rpc", json=[{"jsonrpc": "2.0", "method": "peers",
                                                 "id": i} for i in range(5)])
            assert [d["id"] for d in r.json()] == [0, 1, 2, 3, 4]


# --- rejections -------------------------------------------------------------------------


async def test_rejection_reasons() -> None:
    b, claim_id = society_backend()
    c = b.c
    reasons: set[str] = set()

    async def rejected(client: httpx.AsyncClient, raw: bytes, reason: str) -> None:
        err = await error(client, "submit_tx", raw.hex())
        assert err["code"] == REJECTED and err["data"] == {"reason": reason}, (reason, err)
        assert isinstance(err["message"], str) and err["message"]
        reasons.add(reason)

    def raw(signer: PrivateKey, op: list[Any], **kw: Any) -> bytes:
        return c.tx(signer, op, **kw).raw

    opened = c.time  # of the claim: gifts from opened + 5, closes at opened + 50
    with trio.fail_after(TIMEOUT):
        async with served(JsonRpcApp(b)) as client:
            # every submission makes a block one second later: the time-bound one first
            await rejected(client, raw(BOB, op_give(claim_id, 100)), "waiting_period")
            await rejected(client, b"\x93\x01\x02\x03", "bad_encoding")
            await rejected(client, b"", "bad_encoding")
            await rejected(client, bytes(c.genesis.params.max_tx_bytes + 1), "too_large")
            good = c.tx(DAVE, op_transfer(ERIN.address, 1))
            await rejected(client, good.raw[:-1] + bytes([good.raw[-1] ^ 1]), "bad_signature")
            await rejected(client, raw(DAVE, op_transfer(ERIN.address, 1),
                                       expiration=c.time), "expired")
            await rejected(client, raw(DAVE, op_transfer(ERIN.address, 1),
                                       expiration=c.time + 2 + LIFETIME), "expiration_too_far")
            await rejected(client, raw(DAVE, op_transfer(ERIN.address, 1), ref=(0, 12345)),
                           "unknown_ref_block")
            await rejected(client, raw(DAVE, op_transfer(ERIN.address, 1), fee=1),
                           "fee_too_low")
            await result(client, "submit_tx", good.raw.hex())
            await rejected(client, good.raw, "duplicate")
            await rejected(client, raw(NOBODY, op_transfer(ERIN.address, 1)),
                           "insufficient_balance")
            await rejected(client, raw(DAVE, op_join("nosuch", "d")), "unknown_society")
            await rejected(client, raw(DAVE, op_create(SOC)), "society_exists")
            await rejected(client, raw(DAVE, op_join("No!", "d")), "bad_society_id")
            await rejected(client, raw(DAVE, op_create("soc2", [0] * 9)), "bad_rules")
            await rejected(client, raw(DAVE, op_pledge(1_000)), "not_member")
            await rejected(client, raw(ALICE, op_join(SOC, "again")), "already_member")
            await rejected(client, raw(ALICE, op_claim(10, 1)), "open_claim_exists")
            await rejected(client, raw(BOB, op_claim(10, 10**6)), "insufficient_karma")
            await rejected(client, raw(BOB, op_vote(bytes(32), 1)), "unknown_claim")
            await rejected(client, raw(ALICE, op_vote(claim_id, 1)), "self_vote")
            await rejected(client, raw(CAROL, op_vote(claim_id, 1)), "no_karma")
            await rejected(client, raw(NOBODY, [9, [DAVE.address]]), "insufficient_balance")
            await rejected(client, raw(DAVE, op_vote_witness([ERIN.address])),
                           "unknown_witness")
            await rejected(client, raw(DAVE, op_transfer(ERIN.address, 0)), "bad_op")
            await rejected(client, raw(DAVE, [99]), "bad_op")
            await result(client, "submit_tx", raw(DAVE, op_join(SOC, "dave")).hex())
            await rejected(client, raw(DAVE, op_claim(10, 1)), "observation_period")

            assert c.time + 1 < opened + RULES.claim_ttl_s
            b.apply_block([], at=max(c.time + 1, opened + RULES.waiting_s))  # gifts open
            await rejected(client, raw(BOB, op_give(claim_id, 100)), "not_approved")
            await result(client, "submit_tx", raw(BOB, op_vote(claim_id, 1)).hex())
            await rejected(client, raw(BOB, op_give(claim_id, 10**6)), "insufficient_escrow")
            await rejected(client, raw(BOB, op_give(claim_id, 5_001)), "over_limit")
            b.apply_block([], at=opened + RULES.claim_ttl_s)  # the claim closes
            await rejected(client, raw(BOB, op_vote(claim_id, 1)), "claim_closed")
    assert len(reasons) >= 25, sorted(reasons)


# --- HTTP -------------------------------------------------------------------------------


async def test_http_statuses() -> None:
    b = LedgerBackend()
    body = json.dumps({"jsonrpc": "2.0", "method": "peers", "id": 1}).encode()
    with trio.fail_after(TIMEOUT):
        async with served(JsonRpcApp(b, max_body_bytes=len(body))) as client:
            r = await client.get("/rpc")
            assert r.status_code == 405 and r.headers["allow"] == "POST"
            assert (await client.put("/rpc", content=body)).status_code == 405
            assert (await client.post("/health")).status_code == 405
            for ctype in ("text/plain", "application/jsonx", "multipart/form-data", ""):
                assert (await post_raw(client, body, ctype)).status_code == 415, ctype
            r = await post_raw(client, body, "Application/JSON; charset=utf-8")
            assert r.status_code == 200 and r.json()["result"] == []
            assert (await client.get("/")).status_code == 200  # the web app (webapp.py)
            assert (await client.get("/static/nope.js")).status_code == 404
            assert (await client.post("/rpc/", json={})).status_code == 404
            assert (await client.get("/nope")).status_code == 404
            # one byte over the limit, declared by Content-Length
            r = await post_raw(client, body + b" ")
            assert r.status_code == 413
            # over the limit without a declared length (chunked): found while reading

            async def chunks() -> AsyncIterator[bytes]:
                yield body
                yield b" "

            r = await client.post("/rpc", content=chunks(),
                                  headers={"content-type": "application/json"})
            assert r.status_code == 413
            # the server still answers after that
            assert (await post_raw(client, body)).json()["result"] == []


async def test_huge_declared_body_is_refused_before_reading() -> None:
    b = LedgerBackend()
    head = (b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n")
    shutdown = trio.Event()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(functools.partial(
                serve_rpc, JsonRpcApp(b, max_body_bytes=1000), shutdown=shutdown))
            # no body sent at all: the answer comes from the declared length alone
            out = await raw_exchange(port, head)
            assert out.startswith(b"HTTP/1.1 413")
            assert b"connection: close" in out.lower()
            # a body that stops arriving: 408 after body_timeout_s
            app = JsonRpcApp(b, body_timeout_s=0.2)
            port2 = await nursery.start(functools.partial(serve_rpc, app, shutdown=shutdown))
            out = await raw_exchange(port2, head.replace(b"1000000000", b"100") + b"[")
            assert out.startswith(b"HTTP/1.1 408")
            shutdown.set()


async def test_health_metrics_and_busy() -> None:
    b = LedgerBackend()
    with trio.fail_after(TIMEOUT):
        async with served(JsonRpcApp(b)) as client:
            r = await client.get("/health")
            assert r.status_code == 200
            assert r.json() == {"status": "ok", "head_height": 0}
            b.healthy = False
            r = await client.get("/health")
            assert r.status_code == 503 and r.json()["status"] == "unavailable"
            r = await client.get("/metrics")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
            assert "muxer_head_height 0" in r.text
        async with served(JsonRpcApp(b, max_concurrent=0)) as client:
            r = await client.post("/rpc", json={"jsonrpc": "2.0", "method": "peers", "id": 1})
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
