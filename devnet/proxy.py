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

Shaping (wide-area links). ``routes.json`` may carry, per ORDERED pair of nodes "a>b", the
one-way ``delay_ms``, ``jitter_ms`` and ``loss_pct`` of the bytes a sends to b (from the
topology, devnet/topology.py), a ``seed``, and per-node ``bandwidth_mbit`` (loopback mode
only: with --netns the kernel's tbf shapes bandwidth, see devnet/netns.py). Each chunk read
from a connection gets a delivery time; a second task per direction sends it then, so the
bytes of a connection keep their order (a later chunk never overtakes an earlier one):

    deliver = max(previous deliver, now + serialisation + delay + U(-jitter, +jitter) + penalty)

Loss in a TCP-carrying proxy cannot drop bytes (TCP never loses them): a lost segment costs
a retransmission. So with probability 1 - (1 - loss)^segments (segments = ceil(len/1448))
a chunk is held for penalty = RTO_MIN_MS (200 ms, Linux's minimum RTO) + the link's round
trip, and everything behind it on that connection waits too (head-of-line blocking, as in
TCP). Serialisation (loopback mode): each node's egress is a queue drained at its
bandwidth. Every random draw comes from a ``random.Random`` per ordered pair seeded with
(seed, "a>b"), so a run's draws reproduce from its seed (given the same chunking).

Run-time changes (``link``, ``disconnect``/``connect``) go through the control file: its
``links`` ({"a>b": shape}) override the topology's shapes, its ``isolated`` nodes have
every link cut (in addition to the partition's groups).

Traffic: every frame forwarded is counted per ordered pair and message type (bytes with
the 4-byte header); ``state.json`` has it under ``traffic`` for the report.

Control: the devnet writes ``control.json`` ({"version", "groups", "mode", "isolated",
"links"}) atomically; the
proxy polls it every 100 ms, applies it, and writes ``state.json`` ({"version" applied,
"cut" pairs, per-link connection counts, ...}), which the devnet waits for (an
acknowledgement) and which ``status`` shows. No control socket, so nothing to secure.
"""

from __future__ import annotations

import json
import math
import os
import random
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
    "Shaper",
    "read_state",
    "set_partition",
    "update_control",
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
RTO_MIN_MS = 200.0  # Linux's minimum retransmission timeout
MSS = 1448  # bytes of payload per TCP segment on a 1500-byte MTU with timestamps
QUEUE_CHUNKS = 256  # chunks in flight per direction of a connection (then back-pressure)
MSG_NAMES = {1: "hello", 2: "hello_ack", 3: "ping", 4: "pong", 5: "inv", 6: "get_data",
             7: "txs", 8: "blocks", 9: "votes", 10: "get_blocks", 11: "get_heads",
             12: "heads", 13: "peers_req", 14: "peers", 15: "bye", 16: "not_found",
             17: "block_range"}


# --- the CLI side: routes, control, state -------------------------------------------------


def _write_json(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_routes(proxy_dir: Path, host: str, links: list[dict[str, Any]], *,
                 shapes: dict[str, dict[str, float]] | None = None, seed: int = 0,
                 bandwidth_mbit: dict[str, float] | None = None) -> None:
    """links: [{"src", "dst", "listen": port, "target": "host:port"}]; shapes: {"a>b":
    {"delay_ms", "jitter_ms", "loss_pct"}}; bandwidth_mbit: {node: Mbit/s} (0: none)."""
    proxy_dir.mkdir(parents=True, exist_ok=True)
    _write_json(proxy_dir / ROUTES_FILE, {"host": host, "links": links, "seed": seed,
                                          "shapes": shapes or {},
                                          "bandwidth_mbit": bandwidth_mbit or {}})


def read_routes_shapes(proxy_dir: Path) -> dict[str, dict[str, float]]:
    """The topology's shapes in the routes file ({} if none)."""
    try:
        doc = json.loads((proxy_dir / ROUTES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    shapes = doc.get("shapes") if isinstance(doc, dict) else None
    return shapes if isinstance(shapes, dict) else {}


def read_state(proxy_dir: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((proxy_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def read_control(proxy_dir: Path) -> dict[str, Any]:
    return _read_control(proxy_dir)


def _read_control(proxy_dir: Path) -> dict[str, Any]:
    try:
        doc = json.loads((proxy_dir / CONTROL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"version": 0, "groups": None, "mode": "drop"}
    return doc if isinstance(doc, dict) else {"version": 0, "groups": None, "mode": "drop"}


def set_partition(proxy_dir: Path, groups: list[list[str]] | None, mode: str = "drop",
                  *, wait: float = 5.0) -> dict[str, Any]:
    """Ask the proxy to cut every link between different groups (None heals everything,
    isolated nodes included); wait (bounded) until it has applied the request and return
    its state."""
    if mode not in ("drop", "reset"):
        raise ValueError(f"mode must be 'drop' or 'reset', got {mode!r}")
    changes: dict[str, Any] = {"groups": groups, "mode": mode}
    if groups is None:
        changes["isolated"] = []
    return update_control(proxy_dir, wait=wait, **changes)


def update_control(proxy_dir: Path, *, wait: float = 5.0, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` (groups, mode, isolated, links) into the control file under a new
    version; wait (bounded) until the proxy has applied it and return its state."""
    doc = _read_control(proxy_dir)
    version = int(doc.get("version", 0)) + 1
    doc.update(changes)
    doc["version"] = version
    _write_json(proxy_dir / CONTROL_FILE, doc)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        st = read_state(proxy_dir)
        if st is not None and st.get("version", 0) >= version:
            return st
        time.sleep(0.02)
    raise TimeoutError(f"the link proxy did not apply control version {version} within "
                       f"{wait:g} s (is it running? see {proxy_dir / 'proxy.log'})")


def cut_pairs(groups: list[list[str]] | None, isolated: Iterable[str] = (),
              nodes: Iterable[str] = ()) -> set[frozenset[str]]:
    """Unordered pairs of nodes in different groups, and every pair (among ``nodes``) with
    an isolated node."""
    out: set[frozenset[str]] = set()
    all_nodes = list(nodes)
    for a in isolated:
        for b in all_nodes:
            if a != b:
                out.add(frozenset((a, b)))
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

    def __init__(self, ports: dict[tuple[str, str], int], sender: str, receiver: str,
                 tally: dict[str, int] | None = None) -> None:
        self.ports = ports
        self.tally = tally if tally is not None else {}  # message type -> bytes
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
                self.tally["unframed"] = self.tally.get("unframed", 0) + len(buf)
                out += buf
                buf.clear()
                break
            if len(buf) < 4 + min(n, 2):
                break
            head = bytes(buf[4:6])
            kind = MSG_NAMES.get(head[1], "other") if len(head) == 2 else "other"
            self.tally[kind] = self.tally.get(kind, 0) + 4 + n
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


# --- shaping (sans-IO) ---------------------------------------------------------------------


class Shaper:
    """The delivery times of the bytes one node sends to another (one ordered pair; shared
    by every connection that carries that direction). See the module docstring."""

    def __init__(self, key: str, seed: int, shape: dict[str, float] | None = None) -> None:
        self.key = key
        self.rng = random.Random(f"{seed}:{key}")
        self.delay_ms = self.jitter_ms = self.loss_pct = 0.0
        self.set(shape or {})
        self.chunks = 0
        self.losses = 0

    def set(self, shape: dict[str, float]) -> None:
        self.delay_ms = max(0.0, float(shape.get("delay_ms", 0.0)))
        self.jitter_ms = max(0.0, float(shape.get("jitter_ms", 0.0)))
        self.loss_pct = min(100.0, max(0.0, float(shape.get("loss_pct", 0.0))))

    def shape(self) -> dict[str, float]:
        return {"delay_ms": self.delay_ms, "jitter_ms": self.jitter_ms,
                "loss_pct": self.loss_pct}

    @property
    def idle(self) -> bool:
        return self.delay_ms == 0 and self.jitter_ms == 0 and self.loss_pct == 0

    def extra_s(self, nbytes: int) -> float:
        """The delay (seconds) a chunk of ``nbytes`` gets on top of its serialisation."""
        self.chunks += 1
        d = self.delay_ms
        if self.jitter_ms:
            d += self.rng.uniform(-self.jitter_ms, self.jitter_ms)
        if self.loss_pct:
            segments = max(1, math.ceil(nbytes / MSS))
            p_chunk = 1.0 - (1.0 - self.loss_pct / 100.0) ** segments
            if self.rng.random() < p_chunk:
                self.losses += 1
                d += RTO_MIN_MS + 2 * self.delay_ms
        return max(0.0, d) / 1000.0


class Egress:
    """A node's outgoing bandwidth (loopback mode): a queue drained at ``mbit`` Mbit/s."""

    def __init__(self, mbit: float) -> None:
        self.bytes_per_s = mbit * 125_000.0
        self.free_at = 0.0

    def done_at(self, now: float, nbytes: int) -> float:
        if self.bytes_per_s <= 0:
            return now
        start = max(now, self.free_at)
        self.free_at = start + nbytes / self.bytes_per_s
        return self.free_at


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
    def __init__(self, host: str, links: Iterable[Link], *,
                 shapes: dict[str, dict[str, float]] | None = None, seed: int = 0,
                 bandwidth_mbit: dict[str, float] | None = None) -> None:
        self.host = host
        self.links = list(links)
        self.ports = {(lk.src, lk.dst): lk.listen for lk in self.links}
        self.nodes = sorted({lk.src for lk in self.links} | {lk.dst for lk in self.links})
        self.cut: set[frozenset[str]] = set()
        self.groups: list[list[str]] | None = None
        self.isolated: list[str] = []
        self.mode = "drop"
        self.version = 0
        self.listening = False
        self.base_shapes = dict(shapes or {})
        self.overrides: dict[str, dict[str, float]] = {}
        self.shapers: dict[str, Shaper] = {}
        self.tallies: dict[str, dict[str, int]] = {}
        for a in self.nodes:
            for b in self.nodes:
                if a != b:
                    key = f"{a}>{b}"
                    self.shapers[key] = Shaper(key, seed, self.base_shapes.get(key))
                    self.tallies[key] = {}
        self.egress = {n: Egress(float((bandwidth_mbit or {}).get(n, 0) or 0))
                       for n in self.nodes}
        for lk in self.links:
            lk.open_event.set()

    def is_cut(self, link: Link) -> bool:
        return frozenset((link.src, link.dst)) in self.cut

    async def wait_open(self, link: Link) -> None:
        while self.is_cut(link):
            await link.open_event.wait()

    def apply(self, groups: list[list[str]] | None, mode: str, version: int,
              isolated: list[str] | None = None,
              links: dict[str, dict[str, float]] | None = None) -> None:
        self.groups = groups
        self.isolated = [n for n in (isolated or []) if isinstance(n, str)]
        self.mode = mode if mode in ("drop", "reset") else "drop"
        self.cut = cut_pairs(groups, self.isolated, self.nodes)
        self.version = version
        self.overrides = {k: v for k, v in (links or {}).items()
                          if k in self.shapers and isinstance(v, dict)}
        for key, sh in self.shapers.items():
            sh.set(self.overrides.get(key, self.base_shapes.get(key, {})))
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
        _log(f"control version={version} mode={self.mode} groups={groups} "
             f"isolated={self.isolated} links={sorted(self.overrides)} cut={cut}")

    def apply_doc(self, doc: dict[str, Any]) -> None:
        groups = doc.get("groups")
        isolated = doc.get("isolated")
        links = doc.get("links")
        self.apply(groups if isinstance(groups, list) else None, str(doc.get("mode", "drop")),
                   int(doc.get("version", 0)),
                   isolated if isinstance(isolated, list) else None,
                   links if isinstance(links, dict) else None)

    def state(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(), "listening": self.listening, "version": self.version,
            "mode": self.mode, "groups": self.groups, "isolated": self.isolated,
            "cut": sorted(sorted(p) for p in self.cut),
            "overrides": self.overrides,
            "shaping": {k: {**sh.shape(), "chunks": sh.chunks, "losses": sh.losses}
                        for k, sh in self.shapers.items() if not sh.idle or sh.chunks},
            "traffic": {k: dict(t) for k, t in self.tallies.items() if t},
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
                    for a, b, src, dst in ((link.src, link.dst, client, upstream),
                                           (link.dst, link.src, upstream, client)):
                        key = f"{a}>{b}"
                        rw = FrameRewriter(self.ports, a, b, self.tallies.get(key))
                        send, recv = trio.open_memory_channel[tuple[float, bytes]](
                            QUEUE_CHUNKS)
                        nursery.start_soon(self._pump, link, src, rw, scope, a, key, send)
                        nursery.start_soon(self._deliver, link, dst, scope, recv)
                    await trio.sleep_forever()
                finally:
                    link.conns.discard(scope)

    async def _pump(self, link: Link, src: trio.abc.Stream, rw: FrameRewriter,
                    scope: trio.CancelScope, sender: str, key: str,
                    send: trio.MemorySendChannel[tuple[float, bytes]]) -> None:
        """Read what ``sender`` sends, give each chunk its delivery time, queue it."""
        shaper = self.shapers.get(key)
        egress = self.egress.get(sender)
        last = 0.0
        try:
            async with send:
                while True:
                    await self.wait_open(link)  # a cut link is a black hole: read nothing
                    data = await src.receive_some(65536)
                    if not data:
                        break
                    out = rw.feed(data)
                    if not out:
                        continue
                    now = trio.current_time()
                    at = egress.done_at(now, len(out)) if egress is not None else now
                    if shaper is not None and not shaper.idle:
                        at += shaper.extra_s(len(out))
                    last = max(last, at)  # never before an earlier chunk: byte order
                    await send.send((last, out))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            scope.cancel()
        # a clean EOF: the delivery task sends what is queued, then closes both

    async def _deliver(self, link: Link, dst: trio.abc.Stream, scope: trio.CancelScope,
                       recv: trio.MemoryReceiveChannel[tuple[float, bytes]]) -> None:
        try:
            async with recv:
                async for at, out in recv:
                    if at > trio.current_time():
                        await trio.sleep_until(at)
                    await self.wait_open(link)  # ... and deliver nothing (held until heal)
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
                    self.apply_doc(doc)
                    changed = True
            now = time.monotonic()
            if changed or now - last_state >= STATE_EVERY:
                _write_json(proxy_dir / STATE_FILE, self.state())
                last_state = now
            await trio.sleep(POLL)


def _log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} proxy {msg}", flush=True)


def load_routes(proxy_dir: Path) -> tuple[str, list[Link], dict[str, Any]]:
    """The routes file: listen host, links, and the shaping part (shapes, seed,
    bandwidth_mbit) as keyword arguments for Proxy."""
    doc = json.loads((proxy_dir / ROUTES_FILE).read_text(encoding="utf-8"))
    links = []
    for d in doc["links"]:
        host, _, port = d["target"].rpartition(":")
        links.append(Link(d["src"], d["dst"], int(d["listen"]), host, int(port)))
    shaping = {"shapes": doc.get("shapes") or {}, "seed": int(doc.get("seed") or 0),
               "bandwidth_mbit": doc.get("bandwidth_mbit") or {}}
    return doc.get("host", "127.0.0.1"), links, shaping


@click.command()
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False))
def main(directory: str) -> None:
    """Run the devnet's link proxy until SIGTERM or SIGINT."""
    proxy_dir = Path(directory) / "proxy"
    try:
        host, links, shaping = load_routes(proxy_dir)
    except (OSError, ValueError, KeyError) as exc:
        click.echo(f"error: cannot read {proxy_dir / ROUTES_FILE}: {exc}", err=True)
        sys.exit(2)
    proxy = Proxy(host, links, **shaping)
    # a restarted proxy keeps the partition and link changes it was told
    proxy.apply_doc(_read_control(proxy_dir))
    try:
        trio.run(proxy.serve, proxy_dir)
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    proxy.listening = False
    _write_json(proxy_dir / STATE_FILE, proxy.state())


if __name__ == "__main__":
    main()
