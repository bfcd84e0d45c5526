"""The WebSocket write path: a connection's queued notifications leave in one socket write,
written by the event hub itself when the socket can take them, in order, and a reader that
stops reading is still closed with 1008 once 1000 are unread (protocol section 12).

The real ASGI app served by ``serve_rpc`` (hypercorn, wsproto) on 127.0.0.1 with a real
event hub; clients are trio-websocket. ``_TimedStream``'s ordering is checked on a real
socket pair whose buffers are small, so that writes are partial.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import (
    WebSocketConnection,
    open_websocket_url,
    wrap_client_stream,
)

from muxernode.events import WRITE_FRAMES, Hub
from muxernode.rpc import JsonRpcApp, _TimedStream
from tests.rpc_helpers import LedgerBackend, served
from tests.test_ws import close_code

TIMEOUT = 20.0


class _NoTxs:
    """The hub's view of the node for the ``final`` topic: no tx, no claim is asked."""

    def tx_status(self, tx_id: bytes) -> dict[str, Any]:
        return {"tx_id": tx_id.hex(), "status": "unknown"}

    def claim_json(self, claim_id: bytes) -> dict[str, Any] | None:
        return None


@asynccontextmanager
async def node_app(max_unread: int) -> AsyncIterator[tuple[JsonRpcApp, Hub, str]]:
    hub = Hub(_NoTxs(), lambda _cid: None)
    app = JsonRpcApp(LedgerBackend(), hub=hub, max_unread=max_unread)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.run)
        async with served(app) as client:
            yield app, hub, f"ws://127.0.0.1:{client.base_url.port}/ws"
        nursery.cancel_scope.cancel()


async def subscribe(conn: WebSocketConnection, rid: int) -> str:
    await conn.send_message(json.dumps({"jsonrpc": "2.0", "id": rid, "method": "subscribe",
                                        "params": ["final"]}))
    answer = json.loads(await conn.get_message())
    assert answer["id"] == rid, answer
    sid: str = answer["result"]
    return sid


def finals(first: int, n: int) -> list[tuple[int, bytes]]:
    return [(h, h.to_bytes(32, "big")) for h in range(first, first + n)]


async def test_a_burst_leaves_in_few_writes_in_order_per_subscription() -> None:
    per_event = 600
    async with node_app(max_unread=10_000) as (app, hub, url):
        async with open_websocket_url(url) as a, open_websocket_url(url) as b:
            sids = {a: [await subscribe(a, 1), await subscribe(a, 2)],
                    b: [await subscribe(b, 1)]}
            frames0, writes0 = app.ws_frames, app.ws_writes
            hub.publish_final(finals(1, per_event))
            hub.publish_final(finals(1 + per_event, per_event))
            for conn, conn_sids in sids.items():
                got: dict[str, list[int]] = {sid: [] for sid in conn_sids}
                with trio.fail_after(TIMEOUT):
                    while sum(map(len, got.values())) < 2 * per_event * len(conn_sids):
                        params = json.loads(await conn.get_message())["params"]
                        result = params["result"]
                        assert result["id"] == result["height"].to_bytes(32, "big").hex()
                        got[params["subscription"]].append(result["height"])
                for heights in got.values():
                    assert heights == list(range(1, 2 * per_event + 1))
        frames = app.ws_frames - frames0
        writes = app.ws_writes - writes0
        assert frames == 2 * per_event * 3
        # two events, each 1200 frames for a and 600 for b, WRITE_FRAMES to a write at most
        assert writes <= 2 * (-(-1200 // WRITE_FRAMES) + -(-600 // WRITE_FRAMES)), writes
        assert hub.notifications == frames


async def test_a_reader_that_stops_is_closed_1008_while_another_keeps_up() -> None:
    max_unread = 300
    async with node_app(max_unread=max_unread) as (_app, hub, url):
        host, port = url.removeprefix("ws://").split("/")[0].split(":")
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect((host, int(port)))
        stream = trio.SocketStream(sock)
        async with trio.open_nursery() as nursery, open_websocket_url(url) as fast:
            slow = await wrap_client_stream(nursery, stream, host, "/ws",
                                            message_queue_size=1, receive_buffer_size=1024)
            fast_sid = await subscribe(fast, 1)
            await subscribe(slow, 1)
            got: list[int] = []

            async def read_fast() -> None:
                while True:
                    params = json.loads(await fast.get_message())["params"]
                    assert params["subscription"] == fast_sid
                    got.append(params["result"]["height"])

            sent = 0
            with trio.fail_after(TIMEOUT):
                async with trio.open_nursery() as readers:
                    readers.start_soon(read_fast)
                    while hub.dropped_slow == 0 and sent < 100 * max_unread:
                        hub.publish_final(finals(sent + 1, 100))  # 100 a burst: < max_unread
                        sent += 100
                        await trio.sleep(0.01)
                    while len(got) < sent:
                        await trio.sleep(0.01)
                    readers.cancel_scope.cancel()
            assert hub.dropped_slow == 1
            assert got == list(range(1, sent + 1))
            # far more than the slow reader's socket can hold went to it before the drop
            assert sent > max_unread
            assert await close_code(slow) == 1008
            nursery.cancel_scope.cancel()
        await stream.aclose()


async def test_timed_stream_keeps_writes_in_order_across_partial_ones() -> None:
    left, right = trio.socket.socketpair()
    for s in (left, right):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer = _TimedStream(trio.SocketStream(left), 10.0, lambda: None)
    reader = trio.SocketStream(right)
    big = bytes(range(256)) * 4096  # 1 MiB: far more than the buffers take at once
    assert writer.idle()
    assert writer.write_nowait(big) is False  # a partial write: the rest is pending
    assert not writer.idle()
    received = bytearray()

    async def read_all(n: int) -> None:
        while len(received) < n:
            received.extend(await reader.receive_some(1 << 16))

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all, len(big) + 8)
            # two writers at once, as hypercorn's ping and the connection's writer task
            nursery.start_soon(writer.send_all, b"tail")
            await trio.sleep(0)
            nursery.start_soon(writer.send_all, b"more")
    assert bytes(received) == big + b"tailmore"
    assert writer.idle()
    assert writer.write_nowait(b"x") is True
    assert await reader.receive_some(10) == b"x"
    await writer.aclose()
    assert not writer.idle()  # closed: the awaited path, which raises
    await reader.aclose()
