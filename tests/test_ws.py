"""Section 12 against a real daemon: WebSocket JSON-RPC on GET /ws, every topic, the
limits, a slow reader dropped while a fast one keeps up; get_history and list_societies.

One `muxernode run` subprocess for the module (real LevelDB, real sockets on 127.0.0.1,
one witness, 1-s blocks); clients are trio-websocket (wsproto underneath), a maintained
client library, never a hand-written frame parser.
"""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    open_websocket_url,
    wrap_client_stream,
)

from consensus.crypto import PrivateKey, address_to_text
from consensus.tx import SignedTx, build_tx, tapos_of
from muxernode.node import init_data_dir
from tests.procs import Daemon, accounts, make_genesis, rpc, wait_for

TIMEOUT = 20.0
BASE_FEE = 10
#        decay_period, ppm, approval_bp, observation, waiting, ttl, benefit, bond, min_pledge
RULES = [10**6, 0, 300, 0, 0, 3600, 10, 1000, 100]


@dataclass
class Net:
    daemon: Daemon
    url: str  # http://host:port/rpc
    ws: str  # ws://host:port/ws
    keys: dict[str, PrivateKey]
    chain_id: bytes

    def call(self, method: str, *params: Any) -> Any:
        return rpc(self.url, method, *params)

    def tx(self, name: str, op: list[Any]) -> SignedTx:
        head = self.call("chain_info")
        ref_num, ref_prefix = tapos_of(head["head_height"], bytes.fromhex(head["head_id"]))
        return build_tx(self.keys[name], self.chain_id, op, ref_block_num=ref_num,
                        ref_block_prefix=ref_prefix, expiration=head["head_time"] + 600,
                        fee=BASE_FEE)

    def submit(self, *txs: SignedTx) -> None:
        out = self.call("submit_txs", [t.raw.hex() for t in txs])
        assert all("tx_id" in r for r in out), out

    def included(self, tx: SignedTx) -> dict[str, Any]:
        got: dict[str, Any] = wait_for(lambda: (r := self.call("get_tx", tx.tx_id.hex()))["status"]
                        in ("included", "final") and r, TIMEOUT)
        return got

    def addr(self, name: str) -> str:
        return address_to_text(self.keys[name].address)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    tmp: Path = tmp_path_factory.mktemp("ws")
    gen = make_genesis(tmp / "g", accounts=6)
    init_data_dir(gen, tmp / "d")
    keys = {a["name"]: PrivateKey(bytes.fromhex(a["secret"])) for a in accounts(tmp / "g")}
    d = Daemon(tmp / "d", witness_key=tmp / "g" / "w1.key")
    url = d.start()
    try:
        info = rpc(url, "chain_info")
        n = Net(d, url, url.replace("http://", "ws://").replace("/rpc", "/ws"), keys,
                bytes.fromhex(info["chain_id"]))
        wait_for(lambda: n.call("chain_info")["final_height"] >= 1, TIMEOUT)
        yield n
    finally:
        d.stop()


@asynccontextmanager
async def ws(net: Net, **kw: Any) -> AsyncIterator[WebSocketConnection]:
    async with open_websocket_url(net.ws, **kw) as conn:
        yield conn


class Client:
    """Requests and notifications on one connection (answers matched by id)."""

    def __init__(self, conn: WebSocketConnection) -> None:
        self.conn = conn
        self.notes: list[dict[str, Any]] = []
        self._id = 0

    async def call(self, method: str, *params: Any) -> dict[str, Any]:
        self._id += 1
        rid = self._id
        await self.conn.send_message(json.dumps({"jsonrpc": "2.0", "id": rid,
                                                 "method": method, "params": list(params)}))
        with trio.fail_after(TIMEOUT):
            while True:
                msg = json.loads(await self.conn.get_message())
                if msg.get("method") == "subscription":
                    self.notes.append(msg["params"])
                    continue
                assert msg["id"] == rid, msg
                return msg  # type: ignore[no-any-return]

    async def result(self, method: str, *params: Any) -> Any:
        msg = await self.call(method, *params)
        assert "result" in msg, msg
        return msg["result"]

    async def next_note(self, sid: str, timeout: float = TIMEOUT) -> Any:
        with trio.fail_after(timeout):
            while True:
                for i, note in enumerate(self.notes):
                    if note["subscription"] == sid:
                        del self.notes[i]
                        return note["result"]
                msg = json.loads(await self.conn.get_message())
                assert msg.get("method") == "subscription", msg
                self.notes.append(msg["params"])


async def test_methods_and_batches_over_ws(net: Net) -> None:
    async with ws(net) as conn:
        c = Client(conn)
        info = await c.result("chain_info")
        assert info["chain_id"] == net.chain_id.hex()
        assert (await c.result("get_account", net.addr("a1")))["balance"] > 0
        doc = await c.result("rpc.discover")
        assert doc["openrpc"].startswith("1.2")
        await conn.send_message(json.dumps([
            {"jsonrpc": "2.0", "id": 1, "method": "chain_info", "params": []},
            {"jsonrpc": "2.0", "method": "chain_info", "params": []},  # notification
            {"jsonrpc": "2.0", "id": 2, "method": "nope", "params": []}]))
        with trio.fail_after(TIMEOUT):
            batch = json.loads(await conn.get_message())
        assert [a["id"] for a in batch] == [1, 2]
        assert batch[1]["error"]["code"] == -32601
        await conn.send_message("{not json")
        with trio.fail_after(TIMEOUT):
            assert json.loads(await conn.get_message())["error"]["code"] == -32700


def test_subscribe_over_http_needs_the_websocket(net: Net) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": ["heads"]}
    got = httpx.post(net.url, json=body, timeout=TIMEOUT).json()
    assert got["error"]["code"] == -32601
    assert "WebSocket" in got["error"]["message"]


async def test_heads_and_final_in_order(net: Net) -> None:
    async with ws(net) as conn:
        c = Client(conn)
        heads = await c.result("subscribe", "heads")
        final = await c.result("subscribe", "final")
        seen = [await c.next_note(heads) for _ in range(3)]
        for a, b in itertools.pairwise(seen):
            assert b["height"] == a["height"] + 1 and "reorg" not in b
            assert set(b) == {"height", "id", "time", "tx_count"}
        block = net.call("get_block", seen[1]["height"])
        assert block["id"] == seen[1]["id"]
        finals = [await c.next_note(final) for _ in range(2)]
        assert finals[1]["height"] == finals[0]["height"] + 1
        assert net.call("get_block", finals[0]["height"])["id"] == finals[0]["id"]
        assert await c.result("unsubscribe", heads) is True
        assert await c.result("unsubscribe", heads) is False


async def test_tx_account_society_claim_topics(net: Net) -> None:
    setup = [net.tx("a1", [2, "ws-soc", "WS", "a society", RULES]),
             net.tx("a2", [3, "ws-soc", "two"]), net.tx("a3", [3, "ws-soc", "three"])]
    net.submit(*setup)
    net.included(setup[-1])
    pledges = [net.tx("a2", [4, "ws-soc", 10_000]), net.tx("a3", [4, "ws-soc", 60_000])]
    net.submit(*pledges)
    net.included(pledges[-1])
    claim = net.tx("a2", [5, "ws-soc", 5000, 4000, "roof", "the roof leaks", bytes(32)])
    async with ws(net) as conn:
        c = Client(conn)
        t_sid = await c.result("subscribe", "tx", claim.tx_id.hex())  # before it exists
        a_sid = await c.result("subscribe", "account", net.addr("a2"))
        s_sid = await c.result("subscribe", "society", "ws-soc")
        net.submit(claim)
        statuses = [(await c.next_note(t_sid))["status"] for _ in range(3)]
        assert statuses == ["pending", "included", "final"]
        item = await c.next_note(a_sid)
        assert item["tx_id"] == claim.tx_id.hex() and item["role"] == "sender"
        assert item["type"] == "claim" and item["op"]["amount"] == 5000
        soc = await c.next_note(s_sid)
        assert soc["type"] == "claim" and soc["address"] == net.addr("a2")
        assert soc["tx_id"] == claim.tx_id.hex() and soc["amount"] == 5000
        c_sid = await c.result("subscribe", "claim", claim.tx_id.hex())
        vote = net.tx("a3", [6, claim.tx_id, 1])
        net.submit(vote)
        view = await c.next_note(c_sid)
        assert view["claim_id"] == claim.tx_id.hex() and view["approve"] > 0
        give = net.tx("a3", [7, claim.tx_id, 1000])
        net.submit(give)
        gift = await c.next_note(a_sid)  # the claimant sees the gift as recipient
        assert gift["tx_id"] == give.tx_id.hex() and gift["role"] == "recipient"
        assert (await c.next_note(c_sid))["received"] == 1000
        # a comment changes no state but the claim's comment count: the topic says so
        comment = net.tx("a3", [18, claim.tx_id, "Get well soon"])
        net.submit(comment)
        assert (await c.next_note(c_sid))["comments"] == 1
    # the history of the same txs, newest first, paged
    hist = net.call("get_history", net.addr("a2"))
    ids = [i["tx_id"] for i in hist["items"]]
    assert ids[:2] == [give.tx_id.hex(), claim.tx_id.hex()]
    assert ids.index(pledges[0].tx_id.hex()) < ids.index(setup[1].tx_id.hex())
    page1 = net.call("get_history", net.addr("a2"), {"limit": 1})
    assert [i["tx_id"] for i in page1["items"]] == ids[:1] and page1["next"]
    page2 = net.call("get_history", net.addr("a2"), {"limit": 2, "before": page1["next"]})
    assert [i["tx_id"] for i in page2["items"]] == ids[1:3]
    gifts = net.call("get_history", net.addr("a3"), {"types": ["give"]})["items"]
    assert [(g["tx_id"], g["role"]) for g in gifts] == [(give.tx_id.hex(), "sender")]
    assert net.call("get_history", net.addr("a2"), {"society": "nope-soc"})["items"] == []
    socs = net.call("list_societies")["items"]
    assert socs[0]["society"] == "ws-soc" and socs[0]["members"] == 2
    assert socs[0]["asset"] == "MUX" and socs[0]["open_claims"] == 1


@pytest.mark.parametrize("params", [
    [{"limit": 0}], [{"limit": 101}], [{"before": "00" * 21}], [{"colour": "red"}],
    [{"types": "give"}]])
def test_history_bad_params(net: Net, params: list[Any]) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "get_history",
            "params": [net.addr("a1"), *params]}
    got = httpx.post(net.url, json=body, timeout=TIMEOUT).json()
    assert got["error"]["code"] == -32602, got


async def test_subscription_limits_and_bad_topics(net: Net) -> None:
    async with ws(net) as conn:
        c = Client(conn)
        for bad in (["weather"], ["heads", "x"], ["account"], ["tx", "zz"],
                    ["society", "No Caps"]):
            assert (await c.call("subscribe", *bad))["error"]["code"] == -32602, bad
        for _ in range(100):
            await c.result("subscribe", "account", net.addr("a5"))
        over = await c.call("subscribe", "heads")
        assert over["error"]["code"] == -32005 and over["error"]["message"] == "limit exceeded"


async def close_code(conn: WebSocketConnection) -> int | None:
    """Read on until the connection closes (what the kernel holds, then the close
    frame): the close code."""
    with trio.fail_after(TIMEOUT):
        try:
            while True:
                await conn.get_message()
        except ConnectionClosed as exc:
            return None if exc.reason is None else exc.reason.code


def _metric(net: Net, name: str) -> float:
    text = httpx.get(net.url.replace("/rpc", "/metrics"), timeout=TIMEOUT).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_slow_reader_is_dropped_fast_one_keeps_up(net: Net) -> None:
    """100 account subscriptions per connection on one busy address: each tx makes 100
    notifications per connection, 900 a block. The slow client's socket takes little
    and it reads nothing: the node closes it with 1008 once 1000 are unread, while the
    fast one, reading as they come, gets every notification."""
    host, port = net.ws.removeprefix("ws://").split("/")[0].split(":")
    dropped_before = _metric(net, "muxer_ws_slow_clients_dropped_total")
    per_block = 9
    sent_blocks = 0
    got = 0

    async def read_fast(conn: WebSocketConnection, sids: list[str]) -> None:
        nonlocal got
        while True:  # until cancelled, once every notification is in
            msg = json.loads(await conn.get_message())
            assert msg["params"]["subscription"] in sids
            got += 1

    def dropped() -> bool:
        return _metric(net, "muxer_ws_slow_clients_dropped_total") > dropped_before

    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect((host, int(port)))
    stream = trio.SocketStream(sock)
    try:
        async with trio.open_nursery() as nursery, ws(net) as fast_conn:
            slow = await wrap_client_stream(nursery, stream, host, "/ws",
                                            message_queue_size=1, receive_buffer_size=1024)
            fast, slow_c = Client(fast_conn), Client(slow)
            sids = [await fast.result("subscribe", "account", net.addr("a4"))
                    for _ in range(100)]
            for _ in range(100):
                await slow_c.result("subscribe", "account", net.addr("a4"))
            # the slow client reads nothing from here on, until the node has dropped it
            # (then it drains: the close frame waits behind what its socket holds)
            with trio.fail_after(90):
                async with trio.open_nursery() as readers:
                    readers.start_soon(read_fast, fast_conn, sids)
                    for b in range(12):
                        txs = [net.tx("a6", [1, net.keys["a4"].address, 1, f"b{b}n{i}"])
                               for i in range(per_block)]
                        await trio.to_thread.run_sync(net.submit, *txs)
                        await trio.to_thread.run_sync(net.included, txs[-1])
                        sent_blocks += 1
                        if await trio.to_thread.run_sync(dropped):
                            break
                    while got < sent_blocks * per_block * 100:
                        await trio.sleep(0.05)
                    readers.cancel_scope.cancel()
            assert dropped(), "the slow client was not dropped"
            assert got == sent_blocks * per_block * 100
            assert await close_code(slow) == 1008
            nursery.cancel_scope.cancel()
    finally:
        await stream.aclose()
