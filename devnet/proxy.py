"""The devnet's fault-injecting loopback TCP proxy: every p2p link between nodes runs through it.

    python -m devnet.proxy --dir DIR        (started and stopped by ``devnet up``/``down``)

One listener per ORDERED pair of nodes: node A's config lists, as its peers, the proxy
ports P(A->B) for every other node B, and P(A->B) forwards to B's real p2p port. Because
each listener serves exactly one pair, the proxy knows both ends of every connection and
can cut the links between groups of nodes (``devnet partition A,B/C,D``) and restore them
(``devnet heal``). It needs no root and leaves no kernel state behind (no iptables rules,
no network namespaces): stopping the process is the whole clean-up.

Keeping every path through the proxy. The p2p layer learns addresses in two ways (see
docs/p2p.md): an inbound peer's address is the observed host plus the HELLO ``listen_port``,
and PEERS answers share addresses. Both would leak the nodes' real ports, and a node that
dials a real port bypasses the proxy. So the proxy translates addresses like a NAT, in the
frames it forwards (length-prefixed MessagePack, at most 4 MiB):

- HELLO (type 1) sent by S to R: ``listen_port`` becomes P(R->S), the link R uses to reach S.
  The handshake signature does not cover ``listen_port`` (p2p/handshake.py), so nothing breaks.
- PEERS (type 14) sent by S to R: an entry P(S->Z) becomes P(R->Z); entries naming R itself
  or no known link are dropped.

Every other frame is forwarded untouched and unbuffered (only the 4-byte header and the
first two body bytes are looked at). If a stream ever breaks the framing, the proxy stops
parsing it and forwards raw bytes; the node at the other end will drop it.

Cutting a link, two modes:

- ``drop`` (default): a black hole, like a firewall DROP rule. Established connections stay
  open but nothing is read from or written to them while the link is cut (TCP flow control
  pushes back on the sender); new connections are accepted and held, and connected upstream
  only once the link heals (or closed after HOLD_MAX). On heal, the bytes in flight are
  delivered, as TCP would after a short real partition.
- ``reset``: established connections are closed and new ones are closed at once, like a
  REJECT rule. The nodes see errors and back off their redials.

Control: the devnet writes ``control.json`` ({"version", "groups", "mode"}) atomically; the
proxy polls it every 100 ms, applies it, and writes ``state.json`` ({"version" applied,
"cut" pairs, per-link connection counts, ...}), which the devnet waits for (an
acknowledgement) and which ``status`` shows. No control socket, so nothing to secure.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import click
import msgpack
import trio

__all__ = [
    "CONTROL_FILE",
    "ROUTES_FILE",
    "STATE_FILE",
    "FrameRewriter",
    "Proxy",
    "read_state",
    "set_partition",
    "write_routes",
]

ROUTES_FILE = "routes.json"
CONTROL_FILE = "control.json"
STATE_FILE = "state.json"
MAX_FRAME = 4 * 1024 * 1024
MAX_REWRITE = 1 << 20  # HELLO and PEERS are small; a bigger one is forwarded untouched
HOLD_MAX = 120.0  # seconds a new connection on a cut link is held before it is closed
CONNECT_TIMEOUT = 5.0
POLL = 0.1
STATE_EVERY = 1.0
T_HELLO = 1
T_PEERS = 14


# --- the CLI side: routes, control, state -------------------------------------------------


def _write_json(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_routes(proxy_dir: Path, host: str, links: list[dict[str, Any]]) -> None:
    """links: [{"src", "dst", "listen": port, "target": "host:port"}]."""
    proxy_dir.mkdir(parents=True, exist_ok=True)
    _write_json(proxy_dir / ROUTES_FILE, {"host": host, "links": links})


def read_state(proxy_dir: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((proxy_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _read_control(proxy_dir: Path) -> dict[str, Any]:
    try:
        doc = json.loads((proxy_dir / CONTROL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"version": 0, "groups": None, "mode": "drop"}
    return doc if isinstance(doc, dict) else {"version": 0, "groups": None, "mode": "drop"}


def set_partition(proxy_dir: Path, groups: list[list[str]] | None, mode: str = "drop",
                  *, wait: float = 5.0) -> dict[str, Any]:
    """Ask the proxy to cut every link between different groups (None heals everything);
    wait (bounded) until it has applied the request and return its state."""
    if mode not in ("drop", "reset"):
        raise ValueError(f"mode must be 'drop' or 'reset', got {mode!r}")
    version = int(_read_control(proxy_dir).get("version", 0)) + 1
    _write_json(proxy_dir / CONTROL_FILE, {"version": version, "groups": groups, "mode": mode})
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        st = read_state(proxy_dir)
        if st is not None and st.get("version", 0) >= version:
            return st
        time.sleep(0.02)
    raise TimeoutError(f"the link proxy did not apply control version {version} within "
                       f"{wait:g} s (is it running? see {proxy_dir / 'proxy.log'})")


def cut_pairs(groups: list[list[str]] | None) -> set[frozenset[str]]:
    """Unordered pairs of nodes in different groups."""
    out: set[frozenset[str]] = set()
    if not groups:
        return out
    for i, ga in enumerate(groups):
        for gb in groups[i + 1 :]:
            for a in ga:
                for b in gb:
                    out.add(frozenset((a, b)))
    return out


# --- frame rewriting (sans-IO) --------------------------------------------------------------


class FrameRewriter:
    """Feeds the bytes one node sends to another and returns the bytes to forward, with
    HELLO listen ports and PEERS addresses translated (see the module docstring)."""

    def __init__(self, ports: dict[tuple[str, str], int], sender: str, receiver: str) -> None:
        self.ports = ports
        self.sender = sender
        self.receiver = receiver
        self._by_port = {p: pair for pair, p in ports.items()}
        self._buf = bytearray()
        self._left = 0  # bytes of the current untouched frame still to pass through
        self.broken = False
        self.rewritten = 0

    def feed(self, data: bytes | bytearray) -> bytes:
        if self.broken:
            return bytes(data)
        out = bytearray()
        pos = 0
        while True:
            if self._left:
                k = min(self._left, len(data) - pos)
                out += data[pos : pos + k]
                pos += k
                self._left -= k
                if self._left:
                    break
                continue
            if pos < len(data):
                self._buf += data[pos:]
                pos = len(data)
            buf = self._buf
            if len(buf) < 4:
                break
            n = int.from_bytes(buf[:4], "big")
            if not 0 < n <= MAX_FRAME:
                self.broken = True  # out of sync: forward raw from now on
                out += buf
                buf.clear()
                break
            if len(buf) < 4 + min(n, 2):
                break
            head = bytes(buf[4:6])
            if n <= MAX_REWRITE and len(head) == 2 and head[0] & 0xF0 == 0x90 \
                    and head[1] in (T_HELLO, T_PEERS):
                if len(buf) < 4 + n:
                    break
                body = bytes(buf[4 : 4 + n])
                del buf[: 4 + n]
                new = self._rewrite(body)
                out += len(new).to_bytes(4, "big") + new
                continue
            take = min(4 + n, len(buf))
            out += buf[:take]
            self._left = 4 + n - take
            del buf[:take]
            if self._left:
                break
        return bytes(out)

    def _rewrite(self, body: bytes) -> bytes:
        try:
            obj = msgpack.unpackb(body, raw=False, strict_map_key=False)
        except Exception:  # malformed: the receiving node will judge it
            return body
        if type(obj) is not list or not obj:
            return body
        if obj[0] == T_HELLO and len(obj) >= 6 and type(obj[5]) is int and obj[5] != 0:
            mapped = self.ports.get((self.receiver, self.sender))
            if mapped is None:
                return body
            obj[5] = mapped
        elif obj[0] == T_PEERS and len(obj) >= 2 and type(obj[1]) is list:
            entries: list[Any] = []
            for e in obj[1]:
                if type(e) is not list or len(e) < 2 or type(e[1]) is not int:
                    continue
                pair = self._by_port.get(e[1])
                if pair is None or pair[0] != self.sender or pair[1] == self.receiver:
                    continue
                entries.append([e[0], self.ports[(self.receiver, pair[1])]])
            obj[1] = entries
        else:
            return body
        self.rewritten += 1
        return bytes(msgpack.packb(obj, use_bin_type=True))


# --- the proxy (trio) -----------------------------------------------------------------------


@dataclass(eq=False)
class Link:
    src: str
    dst: str
    listen: int
    target_host: str
    target_port: int
    open_event: trio.Event = field(default_factory=trio.Event)
    conns: set[trio.CancelScope] = field(default_factory=set)
    accepted: int = 0
    bytes: int = 0

    @property
    def key(self) -> str:
        return f"{self.src}>{self.dst}"


class Proxy:
    def __init__(self, host: str, links: Iterable[Link]) -> None:
        self.host = host
        self.links = list(links)
        self.ports = {(lk.src, lk.dst): lk.listen for lk in self.links}
        self.cut: set[frozenset[str]] = set()
        self.groups: list[list[str]] | None = None
        self.mode = "drop"
        self.version = 0
        self.listening = False
        for lk in self.links:
            lk.open_event.set()

    def is_cut(self, link: Link) -> bool:
        return frozenset((link.src, link.dst)) in self.cut

    async def wait_open(self, link: Link) -> None:
        while self.is_cut(link):
            await link.open_event.wait()

    def apply(self, groups: list[list[str]] | None, mode: str, version: int) -> None:
        self.groups = groups
        self.mode = mode if mode in ("drop", "reset") else "drop"
        self.cut = cut_pairs(groups)
        self.version = version
        for lk in self.links:
            if self.is_cut(lk):
                if lk.open_event.is_set():
                    lk.open_event = trio.Event()
                if self.mode == "reset":
                    for scope in list(lk.conns):
                        scope.cancel()
            else:
                lk.open_event.set()
        cut = sorted("|".join(sorted(p)) for p in self.cut)
        _log(f"control version={version} mode={self.mode} groups={groups} cut={cut}")

    def state(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(), "listening": self.listening, "version": self.version,
            "mode": self.mode, "groups": self.groups,
            "cut": sorted(sorted(p) for p in self.cut),
            "links": {lk.key: {"listen": lk.listen, "open": len(lk.conns),
                               "accepted": lk.accepted, "bytes": lk.bytes,
                               "cut": self.is_cut(lk)} for lk in self.links},
            "updated": time.time(),
        }

    async def handle(self, link: Link, client: trio.SocketStream) -> None:
        link.accepted += 1
        async with client:
            if self.is_cut(link):
                if self.mode == "reset":
                    return
                with trio.move_on_after(HOLD_MAX):
                    await self.wait_open(link)
                if self.is_cut(link):
                    return
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    upstream = await trio.open_tcp_stream(link.target_host, link.target_port)
            except (OSError, trio.TooSlowError):
                return  # the target node is down: the dialer sees the connection close
            async with upstream, trio.open_nursery() as nursery:
                scope = nursery.cancel_scope
                link.conns.add(scope)
                try:
                    nursery.start_soon(self._pump, link, client, upstream,
                                       FrameRewriter(self.ports, link.src, link.dst), scope)
                    nursery.start_soon(self._pump, link, upstream, client,
                                       FrameRewriter(self.ports, link.dst, link.src), scope)
                    await trio.sleep_forever()
                finally:
                    link.conns.discard(scope)

    async def _pump(self, link: Link, src: trio.abc.Stream, dst: trio.abc.Stream,
                    rw: FrameRewriter, scope: trio.CancelScope) -> None:
        try:
            while True:
                await self.wait_open(link)  # a cut link is a black hole: read nothing
                data = await src.receive_some(65536)
                if not data:
                    break
                out = rw.feed(data)
                await self.wait_open(link)  # ... and deliver nothing (held until heal)
                if out:
                    await dst.send_all(out)
                    link.bytes += len(out)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            scope.cancel()  # one side ended: close both

    async def serve(self, proxy_dir: Path) -> None:
        async with trio.open_nursery() as nursery:
            for lk in self.links:
                listeners = await trio.open_tcp_listeners(lk.listen, host=self.host)
                nursery.start_soon(partial(trio.serve_listeners, partial(self.handle, lk),
                                           listeners))
            self.listening = True
            _log(f"listening on {len(self.links)} links pid={os.getpid()}")
            nursery.start_soon(self._control_loop, proxy_dir)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    _log(f"signal {signal.Signals(signum).name}: stopping")
                    break
            nursery.cancel_scope.cancel()

    async def _control_loop(self, proxy_dir: Path) -> None:
        control = proxy_dir / CONTROL_FILE
        seen: tuple[float, int] | None = None
        last_state = 0.0
        while True:
            try:
                st = control.stat()
                stamp: tuple[float, int] | None = (st.st_mtime, st.st_size)
            except OSError:
                stamp = None
            changed = False
            if stamp != seen:
                seen = stamp
                doc = _read_control(proxy_dir)
                version = int(doc.get("version", 0))
                if version != self.version:
                    groups = doc.get("groups")
                    self.apply(groups if isinstance(groups, list) else None,
                               str(doc.get("mode", "drop")), version)
                    changed = True
            now = time.monotonic()
            if changed or now - last_state >= STATE_EVERY:
                _write_json(proxy_dir / STATE_FILE, self.state())
                last_state = now
            await trio.sleep(POLL)


def _log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} proxy {msg}", flush=True)


def load_links(proxy_dir: Path) -> tuple[str, list[Link]]:
    doc = json.loads((proxy_dir / ROUTES_FILE).read_text(encoding="utf-8"))
    links = []
    for d in doc["links"]:
        host, _, port = d["target"].rpartition(":")
        links.append(Link(d["src"], d["dst"], int(d["listen"]), host, int(port)))
    return doc.get("host", "127.0.0.1"), links


@click.command()
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False))
def main(directory: str) -> None:
    """Run the devnet's link proxy until SIGTERM or SIGINT."""
    proxy_dir = Path(directory) / "proxy"
    try:
        host, links = load_links(proxy_dir)
    except (OSError, ValueError, KeyError) as exc:
        click.echo(f"error: cannot read {proxy_dir / ROUTES_FILE}: {exc}", err=True)
        sys.exit(2)
    proxy = Proxy(host, links)
    doc = _read_control(proxy_dir)  # a restarted proxy keeps the partition it was told
    groups = doc.get("groups")
    proxy.apply(groups if isinstance(groups, list) else None, str(doc.get("mode", "drop")),
                int(doc.get("version", 0)))
    try:
        trio.run(proxy.serve, proxy_dir)
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    proxy.listening = False
    _write_json(proxy_dir / STATE_FILE, proxy.state())


if __name__ == "__main__":
    main()
