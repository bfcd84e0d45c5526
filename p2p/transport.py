"""Transports: how bytes streams are opened and accepted. The Network never touches sockets.

``TcpTransport`` is the real one (trio.open_tcp_stream / trio listeners). ``MemoryNetwork``
hands out ``MemoryTransport`` objects that connect through trio.testing memory streams, so
N nodes can run in one process under ``MockClock(autojump_threshold=0)``: no kernel, no
ports, virtual time. Both report the remote host and port of an accepted stream the same way.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio
import trio.testing

__all__ = ["ListenError", "MemoryNetwork", "MemoryTransport", "OnStream", "TcpTransport",
           "Transport", "listen_error"]

# on_stream(stream, remote_host, remote_port): runs one accepted connection; owns the stream.
OnStream = Callable[[trio.abc.Stream, str, int], Awaitable[None]]


class ListenError(OSError):
    """An address the node was told to listen on cannot be used (taken, not ours, no
    permission): the operator's to fix, said in one line."""


def listen_error(what: str, host: str, port: int, exc: OSError) -> ListenError:
    return ListenError(exc.errno, f"cannot listen for {what} on {host}:{port}: "
                                  f"{exc.strerror or exc}")


class Transport(Protocol):
    async def serve(self, host: str, port: int, on_stream: OnStream, *,
                    task_status: trio.TaskStatus[tuple[str, int]]) -> None:
        """Listen on host:port (0 = any free port), report the bound (host, port) through
        task_status, then run ``on_stream`` for every accepted stream until cancelled."""
        ...

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        """Open a stream to host:port; raise OSError when nobody listens there."""
        ...


class TcpTransport:
    async def serve(self, host: str, port: int, on_stream: OnStream, *,
                    task_status: trio.TaskStatus[tuple[str, int]]) -> None:
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            raise listen_error("p2p", host, port, exc) from None
        try:
            bound = listeners[0].socket.getsockname()

            async def handle(stream: trio.SocketStream) -> None:
                try:
                    peer = stream.socket.getpeername()
                except OSError:  # already reset by the peer
                    await stream.aclose()
                    return
                await on_stream(stream, str(peer[0]), int(peer[1]))

            task_status.started((host, int(bound[1])))
            await trio.serve_listeners(handle, listeners)
        finally:
            # serve_listeners closes them too, but not if we are cancelled before it starts;
            # closing twice is harmless and an unclosed socket is a ResourceWarning.
            for listener in listeners:
                listener.socket.close()

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        return await trio.open_tcp_stream(host, port)


class MemoryNetwork:
    """A switchboard of in-memory listeners keyed by (host, port)."""

    def __init__(self, *, lockstep: bool = False) -> None:
        # lockstep streams have no buffer at all: every send waits for the matching receive.
        # Running the p2p code over them shows it never depends on a socket buffer for
        # progress (e.g. both sides sending before either reads).
        self.lockstep = lockstep
        self._listeners: dict[tuple[str, int], trio.MemorySendChannel[Any]] = {}
        self._next_port = 20000
        self.refused: set[str] = set()  # hosts whose connects fail, to simulate an outage

    def transport(self, host: str) -> MemoryTransport:
        return MemoryTransport(self, host)

    def _port(self) -> int:
        self._next_port += 1
        return self._next_port


class MemoryTransport:
    def __init__(self, net: MemoryNetwork, host: str) -> None:
        self.net = net
        self.host = host

    async def serve(self, host: str, port: int, on_stream: OnStream, *,
                    task_status: trio.TaskStatus[tuple[str, int]]) -> None:
        host = self.host  # a node listens on its own simulated host whatever it asks for
        port = port or self.net._port()
        if (host, port) in self.net._listeners:
            raise OSError(f"address {host}:{port} already in use")
        send, recv = trio.open_memory_channel[Any](math.inf)
        self.net._listeners[(host, port)] = send
        try:
            async with trio.open_nursery() as nursery:
                task_status.started((host, port))
                async with recv:
                    async for stream, rhost, rport in recv:
                        nursery.start_soon(on_stream, stream, rhost, rport)
        finally:
            del self.net._listeners[(host, port)]
            send.close()

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        listener = self.net._listeners.get((host, port))
        if listener is None or host in self.net.refused or self.host in self.net.refused:
            raise ConnectionRefusedError(f"nothing listens on {host}:{port}")
        ours: trio.abc.Stream
        theirs: trio.abc.Stream
        if self.net.lockstep:
            ours, theirs = trio.testing.lockstep_stream_pair()
        else:
            ours, theirs = trio.testing.memory_stream_pair()
        listener.send_nowait((theirs, self.host, self.net._port()))
        return ours
