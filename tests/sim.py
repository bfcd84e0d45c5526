"""Deterministic simulation of N full nodes (architecture.md, "Deterministic simulation").

No tests here: ``tests/test_sim.py`` holds the scenarios and ``bench/sim.py`` runs more seeds.

What runs: N real ``muxernode.node.Node`` objects (real LevelDB in a temporary directory,
the real p2p ``Network``, ``inline_verify=True``, no RPC) inside ONE ``trio.run`` with
``trio.testing.MockClock(autojump_threshold=0)``: whenever every task is blocked, virtual
time jumps to the next deadline, so minutes of chain time take seconds of wall time. The
node clock is ``genesis_time + trio.current_time()`` (the MockClock starts at 0, so slot s
begins at virtual time ``s * block_interval_s``).

Determinism: one scenario seed decides everything.
- trio's scheduler picks the order of runnable tasks with ``trio._core._run._r``; with
  ``_ALLOW_DETERMINISTIC_SCHEDULING`` set, each batch is sorted by task creation counter
  and shuffled by ``_r`` (trio 0.35.0, the pinned version; this is the switch trio's own
  test_the_trio_scheduler_is_deterministic_if_seeded flips). ``deterministic_trio(seed)``
  sets both and restores them afterwards. Deadline ties are broken by ``id()`` in trio's
  deadline heap, but all expired deadlines are processed in one batch and then sorted by
  the counter, so that does not leak into the schedule.
- Each node gets ``random.Random(f"{seed}/node/{i}/{incarnation}")`` for its p2p layer
  and a node key derived from the seed (written to ``node.key`` before the node starts; the
  node would otherwise draw it from ``os.urandom``). The fault layer has its own
  ``random.Random(f"{seed}/net")``; load generators their own too. String seeds are hashed
  with SHA-512 by ``random``, so they do not depend on PYTHONHASHSEED.
- Residual: the node and p2p code iterate a few sets of bytes, whose order depends on
  PYTHONHASHSEED (str/bytes hashing is randomized per process). Within one process every
  run replays exactly (test_same_seed_same_run checks it); runs in separate processes
  with different PYTHONHASHSEED values gave identical outcomes in every scenario tried,
  but if a replay ever differs, pin PYTHONHASHSEED as well.

The fault layer (``FaultNetwork``, a ``MemoryNetwork`` whose transports hand out
``FaultStream`` pairs instead of trio's memory streams):
- Each direction of a connection is a FIFO of frames with a delivery time. A frame's
  one-way delay is drawn per frame from the link's ``Faults`` (uniform ``delay`` range,
  plus with probability ``spike_p`` an extra ``spike``), and delivery time is
  ``max(previous frame's delivery time, now + delay)``: a connection is ordered like TCP,
  so a slow frame holds up the frames behind it (head-of-line blocking).
- Reordering therefore only happens ACROSS connections: a block relayed by peer A and a
  vote for it relayed by peer B race on two links with independent delays, and every
  link's delays are drawn independently. Within one connection the order is kept, as TCP
  keeps it.
- Drops, two models, both per frame (the layer cuts the byte stream at frame boundaries,
  reading the 4-byte length prefixes the sender writes, so framing never breaks):
  ``drop_p`` loses the whole frame and the connection goes on (not what TCP does: it
  models a lossy path at the message level and exercises the request timeouts, re-asks and
  keepalive); ``reset_p`` resets the connection instead of delivering the frame (what a
  TCP loss that the endpoints cannot recover from looks like: both ends see a broken
  stream, undelivered data is lost, and the nodes must redial).
- Partitions: ``partition([0, 1], [2, 3])`` resets every connection that crosses a group
  boundary and refuses new connects across it until ``heal()``; nodes redial on their own
  backoff (jittered, at most 60 s) after the heal.
- Crashes: ``crash(i)`` resets every connection of the node's host and cancels the node's
  cancel scope: no BYE, no clean shutdown, just the LevelDB closed (``Node.run``'s finally;
  the harness closes it again in its own finally, which is idempotent) so that
  ``restart(i)`` can open a new ``Node`` on the same data directory. The host refuses
  connections until then.
- A faulty witness: ``EquivocatingNode``, a test-only ``Node`` subclass (no hook in the
  node), signs two valid blocks for each of its slots and two votes for each slot.

Checks (``Sim.check`` runs them at every slot sample and at the end):
- safety: every block that any node ever reported final, at any time, is recorded as
  height -> id; a different id at a recorded height on any node is a violation. This
  covers the pairwise rule (the final block of the lower node is on the other's chain)
  across nodes, across time and across restarts. A node's final height never decreases
  while it runs.
- digests: every node's ledger digest equals its head block's state_digest; at every
  height final on two nodes the blocks' state digests agree; ``replay_digests`` replays a
  node's main chain into a fresh in-memory ledger and compares every block's digest.
- liveness: the sampler records, per node and slot, head.slot - final.slot (the lag), and
  scenarios assert on it.
- p2p: ``SimResult.misbehaviour()`` sums the misbehaviour points nodes gave their peers;
  among honest nodes it must stay empty (an honest node penalized is a bug too).
"""

from __future__ import annotations

import json
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio
import trio.testing

from consensus.block import Block
from consensus.chain import BlockRef, Chain
from consensus.crypto import PrivateKey, sha256
from consensus.genesis import Genesis, parse_genesis
from consensus.tx import build_tx, tapos_of
from consensus.vote import Vote
from muxernode.config import NodeConfig
from muxernode.ledger import Ledger
from muxernode.node import NODE_KEY_FILE, Node, init_data_dir
from p2p.frames import HEADER_LEN, MAX_FRAME
from p2p.messages import Inv, Kind
from p2p.peer import inv_key
from p2p.transport import MemoryNetwork, MemoryTransport
from storage import schema
from storage.kv import MemoryKV

__all__ = [
    "GENESIS_TIME",
    "P2P_PORT",
    "EquivocatingNode",
    "FaultNetwork",
    "FaultStream",
    "Faults",
    "SafetyViolation",
    "Sim",
    "SimConfig",
    "SimResult",
    "deterministic_trio",
    "run_sim",
]

GENESIS_TIME = 1_800_000_000  # a multiple of every block and maintenance interval used
P2P_PORT = 7000
SAMPLE_AT = 0.95  # the sampler looks at the nodes this far into each slot (fraction)

T = TypeVar("T")


class SafetyViolation(AssertionError):
    """Two nodes (or one node at two times) disagree on a final block, or on a digest."""


# --- deterministic trio ----------------------------------------------------------------------


@contextmanager
def deterministic_trio(seed: int | str) -> Iterator[None]:
    """Seed trio's scheduler for the ``trio.run`` inside the block (trio 0.35.0 internals)."""
    run_mod: Any = trio._core._run
    old_flag = run_mod._ALLOW_DETERMINISTIC_SCHEDULING
    old_state = run_mod._r.getstate()
    run_mod._ALLOW_DETERMINISTIC_SCHEDULING = True
    run_mod._r.seed(f"{seed}/trio")
    try:
        yield
    finally:
        run_mod._ALLOW_DETERMINISTIC_SCHEDULING = old_flag
        run_mod._r.setstate(old_state)


# --- the fault layer -------------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """Per-link behaviour, drawn per frame from the network's seeded Random."""

    delay: tuple[float, float] = (0.005, 0.05)  # one-way latency, uniform, seconds
    spike_p: float = 0.0  # chance that a frame gets an extra latency spike ...
    spike: tuple[float, float] = (0.2, 1.0)  # ... of this much (uniform)
    drop_p: float = 0.0  # chance that a whole frame is lost (the connection goes on)
    reset_p: float = 0.0  # chance that a frame resets the connection instead

    def draw_delay(self, rng: random.Random) -> float:
        d = rng.uniform(*self.delay)
        if self.spike_p and rng.random() < self.spike_p:
            d += rng.uniform(*self.spike)
        return d


class _Pipe:
    """One direction of a connection: frames in flight with their delivery times."""

    def __init__(self) -> None:
        self.queue: deque[tuple[float, bytes]] = deque()
        self.last_at = 0.0
        self.eof = False  # the sender closed: EOF once the queue is drained
        self.reader_gone = False  # the receiver closed: the sender's writes fail
        self.broken = False  # reset: both ends fail at once, queued data is lost
        self.changed = trio.Event()

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class FaultLink:
    """A connection between two hosts: two FaultStreams over two pipes."""

    def __init__(self, net: FaultNetwork, a_host: str, b_host: str) -> None:
        self.net = net
        self.hosts = (a_host, b_host)
        ab, ba = _Pipe(), _Pipe()
        self.pipes = (ab, ba)
        self.a = FaultStream(self, a_host, b_host, out=ab, inp=ba)
        self.b = FaultStream(self, b_host, a_host, out=ba, inp=ab)

    @property
    def alive(self) -> bool:
        ab, ba = self.pipes
        return not (ab.broken or (ab.eof and ab.reader_gone and ba.eof and ba.reader_gone))

    def reset(self) -> None:
        for pipe in self.pipes:
            pipe.broken = True
            pipe.queue.clear()
            pipe.wake()


class FaultStream(trio.abc.Stream):
    """One end of a FaultLink (trio.abc.Stream: send_all, receive_some, aclose)."""

    def __init__(self, link: FaultLink, host: str, remote: str, *, out: _Pipe,
                 inp: _Pipe) -> None:
        self.link = link
        self.host = host
        self.remote = remote
        self._out = out
        self._in = inp
        self._closed = False
        self._pending = bytearray()  # bytes of a frame the sender has not finished yet

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        if self._out.broken or self._out.reader_gone:
            raise trio.BrokenResourceError("connection reset")
        self._pending += data
        for frame in self._split():
            self.link.net._transmit(self.link, self._out, self.host, self.remote, frame)
            if self._out.broken:
                raise trio.BrokenResourceError("connection reset")

    def _split(self) -> list[bytes]:
        """Whole frames from the pending bytes (a bad prefix passes the rest through)."""
        buf = self._pending
        out: list[bytes] = []
        while len(buf) >= HEADER_LEN:
            n = int.from_bytes(buf[:HEADER_LEN], "big")
            if n == 0 or n > MAX_FRAME:
                out.append(bytes(buf))
                buf.clear()
                break
            if len(buf) < HEADER_LEN + n:
                break
            out.append(bytes(buf[: HEADER_LEN + n]))
            del buf[: HEADER_LEN + n]
        return out

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        limit = 65536 if max_bytes is None else max_bytes
        pipe = self._in
        while True:
            if self._closed:
                raise trio.ClosedResourceError("stream closed")
            if pipe.broken:
                raise trio.BrokenResourceError("connection reset")
            now = trio.current_time()
            if pipe.queue and pipe.queue[0][0] <= now:
                chunks: list[bytes] = []
                size = 0
                while pipe.queue and pipe.queue[0][0] <= now and size < limit:
                    at, data = pipe.queue.popleft()
                    room = limit - size
                    if len(data) > room:
                        pipe.queue.appendleft((at, data[room:]))
                        data = data[:room]
                    chunks.append(data)
                    size += len(data)
                return b"".join(chunks)
            if not pipe.queue and pipe.eof:
                return b""
            changed = pipe.changed
            if pipe.queue:
                with trio.move_on_at(pipe.queue[0][0]):
                    await changed.wait()
            else:
                await changed.wait()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.eof = True
            self._out.wake()
            self._in.reader_gone = True
            self._in.queue.clear()
            self._in.wake()
        await trio.lowlevel.checkpoint()


class FaultTransport(MemoryTransport):
    """A MemoryTransport whose connects make FaultLinks (serve() is MemoryTransport's)."""

    net: FaultNetwork

    def __init__(self, net: FaultNetwork, host: str) -> None:
        super().__init__(net, host)
        self.net = net

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        net = self.net
        await trio.lowlevel.checkpoint()
        listener = net._listeners.get((host, port))
        if (listener is None or host in net.refused or self.host in net.refused
                or net.cut(self.host, host)):
            raise ConnectionRefusedError(f"nothing reachable at {host}:{port}")
        # the connect takes one round trip (SYN, SYN-ACK) on this link
        faults = net.faults_for(self.host, host)
        await trio.sleep(faults.draw_delay(net.rng) + faults.draw_delay(net.rng))
        listener = net._listeners.get((host, port))
        if listener is None or net.cut(self.host, host) or host in net.refused:
            raise ConnectionRefusedError(f"nothing reachable at {host}:{port}")
        link = FaultLink(net, self.host, host)
        net.links.append(link)
        listener.send_nowait((link.b, self.host, net._port()))
        return link.a


class FaultNetwork(MemoryNetwork):
    """A switchboard of simulated hosts with seeded delays, drops, resets and partitions."""

    def __init__(self, rng: random.Random, default: Faults | None = None) -> None:
        super().__init__()
        self.rng = rng
        self.default = default or Faults()
        self.overrides: dict[tuple[str, str], Faults] = {}  # directed (from, to) host pairs
        self.links: list[FaultLink] = []
        self.group_of: dict[str, int] | None = None  # partition: host -> group
        # overtakes: frames delivered to a host before a frame sent to it earlier on
        # another connection (reordering across links)
        self.stats: dict[str, int] = {"frames": 0, "dropped": 0, "resets": 0, "cut": 0,
                                      "overtakes": 0}
        self._latest_at: dict[str, float] = {}  # host -> latest delivery time scheduled

    def transport(self, host: str) -> FaultTransport:
        return FaultTransport(self, host)

    def faults_for(self, src: str, dst: str) -> Faults:
        return self.overrides.get((src, dst), self.default)

    def set_faults(self, src: str, dst: str, faults: Faults, *, both: bool = True) -> None:
        self.overrides[(src, dst)] = faults
        if both:
            self.overrides[(dst, src)] = faults

    def cut(self, a: str, b: str) -> bool:
        g = self.group_of
        return g is not None and g.get(a, -1) != g.get(b, -2)

    def partition(self, groups: Sequence[Iterable[str]]) -> None:
        """Cut every link between hosts of different groups (hosts not listed are alone)."""
        self.group_of = {h: k for k, hosts in enumerate(groups) for h in hosts}
        self._prune()
        for link in self.links:
            if self.cut(*link.hosts):
                self.stats["cut"] += 1
                link.reset()

    def heal(self) -> None:
        self.group_of = None

    def reset_host(self, host: str) -> None:
        """Every connection of ``host`` is reset (its machine went down)."""
        self._prune()
        for link in self.links:
            if host in link.hosts:
                link.reset()

    def _prune(self) -> None:
        self.links = [link for link in self.links if link.alive]

    def _transmit(self, link: FaultLink, pipe: _Pipe, src: str, dst: str, frame: bytes) -> None:
        faults = self.faults_for(src, dst)
        rng = self.rng
        self.stats["frames"] += 1
        if faults.reset_p and rng.random() < faults.reset_p:
            self.stats["resets"] += 1
            link.reset()
            return
        if faults.drop_p and rng.random() < faults.drop_p:
            self.stats["dropped"] += 1
            return
        at = max(pipe.last_at, trio.current_time() + faults.draw_delay(rng))
        pipe.last_at = at
        latest = self._latest_at.get(dst, 0.0)
        if at < latest:
            self.stats["overtakes"] += 1
        else:
            self._latest_at[dst] = at
        pipe.queue.append((at, frame))
        pipe.wake()
        if len(self.links) > 64 and self.stats["frames"] % 4096 == 0:
            self._prune()


# --- genesis and nodes -----------------------------------------------------------------------


def sim_key(kind: str, i: int) -> PrivateKey:
    """Fixed keys, the same for every seed: witnesses w0.., accounts a0.."""
    return PrivateKey(sha256(b"muxer-sim/" + kind.encode() + i.to_bytes(4, "big")))


@dataclass
class SimConfig:
    witnesses: int = 4  # registered witnesses in the genesis (one node each)
    active: int | None = None  # params.active_witnesses (default: all of them)
    observers: int = 0  # extra nodes without a witness key
    accounts: int = 4  # funded accounts (a0..)
    amount: int = 10**12
    block_interval: int = 1
    maintenance: int = 3600
    base_fee: int = 10
    faults: Faults = field(default_factory=Faults)
    wall_limit: float = 170.0  # seconds of wall time before the run is aborted
    warmup_slots: int = 5  # lag samples start after this slot
    node_factory: dict[int, type[Node]] = field(default_factory=dict)  # per node index

    @property
    def n_nodes(self) -> int:
        return self.witnesses + self.observers


@dataclass
class SimNode:
    index: int
    host: str
    data_dir: Path
    witness: PrivateKey | None
    node: Node | None = None
    scope: trio.CancelScope | None = None
    done: trio.Event | None = None
    incarnation: int = 0
    checked_final: int = 0  # final heights up to this were recorded in the safety map
    last_final: int = 0
    finals_seen: int = 0  # distinct final-height advances observed
    crashes: int = 0
    regressions: list[tuple[int, int]] = field(default_factory=list)  # (before, after)

    @property
    def running(self) -> bool:
        return self.node is not None


@dataclass
class SimResult:
    seed: int | str
    virtual_seconds: float
    wall_seconds: float
    final_chains: dict[int, list[tuple[int, bytes]]]  # node -> [(height, id)] final chain
    heads: dict[int, BlockRef]
    finals: dict[int, BlockRef]
    lags: dict[int, list[tuple[int, int]]]  # node -> [(slot, head.slot - final.slot)]
    evidence: dict[int, list[tuple[str, bytes, bytes, bytes]]]  # [(kind, witness, a, b)]
    net_stats: dict[str, int]
    p2p: dict[int, dict[str, int]]  # node -> its Network's counters (this incarnation)

    def misbehaviour(self, nodes: Iterable[int] | None = None) -> dict[int, int]:
        """Misbehaviour points each node gave its peers (honest runs: none at all)."""
        keys = self.p2p.keys() if nodes is None else nodes
        return {n: self.p2p[n].get("misbehaviour_points", 0) for n in keys
                if self.p2p[n].get("misbehaviour_points", 0)}

    def max_lag(self, nodes: Iterable[int] | None = None, *, from_slot: int = 0,
                to_slot: int | None = None) -> int:
        keys = self.lags.keys() if nodes is None else nodes
        vals = [lag for n in keys for s, lag in self.lags.get(n, [])
                if s >= from_slot and (to_slot is None or s <= to_slot)]
        return max(vals, default=0)

    def outcome(self) -> list[tuple[int, list[tuple[int, str]]]]:
        """What the replay test compares: every node's final chain, as hex ids."""
        return [(n, [(h, bid.hex()) for h, bid in chain])
                for n, chain in sorted(self.final_chains.items())]


class Sim:
    """N nodes, one FaultNetwork, the checks. Methods are called from the scenario task."""

    def __init__(self, seed: int | str, cfg: SimConfig, root: Path,
                 nursery: trio.Nursery) -> None:
        self.seed = seed
        self.cfg = cfg
        self.root = root
        self.nursery = nursery
        self.rng = random.Random(f"{seed}/scenario")  # for scenario-level choices
        self.net = FaultNetwork(random.Random(f"{seed}/net"), cfg.faults)
        self.witness_keys = [sim_key("w", i) for i in range(cfg.witnesses)]
        self.account_keys = [sim_key("a", i) for i in range(cfg.accounts)]
        self.doc = self._genesis_doc()
        self.genesis: Genesis = parse_genesis(self.doc)
        self.params = self.genesis.params
        gpath = root / "genesis.json"
        gpath.write_text(json.dumps(self.doc), encoding="utf-8")
        self.nodes: list[SimNode] = []
        for i in range(cfg.n_nodes):
            d = root / f"n{i}"
            init_data_dir(gpath, d)
            node_key = sha256(f"muxer-sim/node-key/{seed}/{i}".encode())
            (d / NODE_KEY_FILE).write_text(node_key.hex() + "\n", encoding="utf-8")
            (d / NODE_KEY_FILE).chmod(0o600)
            wkey = self.witness_keys[i] if i < cfg.witnesses else None
            self.nodes.append(SimNode(i, f"10.0.0.{i + 1}", d, wkey))
        self.final_ids: dict[int, tuple[bytes, bytes]] = {}  # height -> (id, state digest)
        self.lags: dict[int, list[tuple[int, int]]] = {i: [] for i in range(cfg.n_nodes)}
        self.sampling = True
        self.started_wall = time.perf_counter()

    def _genesis_doc(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "chain_name": f"muxer-sim-{self.seed}",
            "genesis_time": GENESIS_TIME,
            "params": {"block_interval_s": cfg.block_interval,
                       "active_witnesses": cfg.active or cfg.witnesses,
                       "maintenance_interval_s": cfg.maintenance,
                       "max_block_bytes": 2097152, "max_tx_bytes": 8192,
                       "max_tx_lifetime_s": 3600, "base_fee": cfg.base_fee},
            "witnesses": [{"name": f"w{i}", "address": k.address_text,
                           "signing_key": k.public_key.hex()}
                          for i, k in enumerate(self.witness_keys)],
            "balances": [{"address": k.address_text, "amount": cfg.amount}
                         for k in self.account_keys],
        }

    # --- time ------------------------------------------------------------------------------

    def slot_time(self, slot: int) -> float:
        """Virtual time (trio.current_time()) at which ``slot`` begins."""
        return float(slot * self.params.block_interval_s)

    def now(self) -> float:
        return GENESIS_TIME + trio.current_time()

    def current_slot(self) -> int:
        return int(trio.current_time()) // self.params.block_interval_s

    async def run_until_slot(self, slot: int, frac: float = 0.0) -> None:
        await trio.sleep_until(self.slot_time(slot) + frac * self.params.block_interval_s)

    # --- nodes ------------------------------------------------------------------------------

    def node(self, i: int) -> Node:
        n = self.nodes[i].node
        if n is None:
            raise AssertionError(f"node {i} is not running")
        return n

    def running(self) -> list[SimNode]:
        return [sn for sn in self.nodes if sn.node is not None]

    async def start(self, i: int) -> None:
        sn = self.nodes[i]
        if sn.node is not None:
            raise AssertionError(f"node {i} is already running")
        peers = [f"{o.host}:{P2P_PORT}" for o in self.nodes if o.index != i]
        config = NodeConfig(p2p_host=sn.host, p2p_port=P2P_PORT, peers=peers)
        factory = self.cfg.node_factory.get(i, Node)
        node = factory(sn.data_dir, config, now=self.now, witness_key=sn.witness,
                       transport=self.net.transport(sn.host),
                       rng=random.Random(f"{self.seed}/node/{i}/{sn.incarnation}"),
                       inline_verify=True, serve_rpc=False)
        sn.incarnation += 1
        sn.node = node
        if node.chain.final.height < sn.last_final:  # a restart may come back lower
            sn.regressions.append((sn.last_final, node.chain.final.height))
        sn.last_final = node.chain.final.height
        sn.checked_final = min(sn.checked_final, node.chain.final.height)
        done = sn.done = trio.Event()
        await self.nursery.start(self._run_node, sn, node, done)

    async def _run_node(self, sn: SimNode, node: Node, done: trio.Event, *,
                        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with trio.CancelScope() as scope:
                sn.scope = scope
                await node.run(task_status=task_status)
        finally:
            node.close()  # Node.run closes it already; a crash must leave it closable
            if sn.node is node:
                sn.node = None
                sn.scope = None
            done.set()

    async def crash(self, i: int) -> None:
        """Kill node i: its connections reset, its tasks cancelled, no clean shutdown."""
        sn = self.nodes[i]
        if sn.node is None or sn.scope is None or sn.done is None:
            raise AssertionError(f"node {i} is not running")
        self.check()
        sn.crashes += 1
        self.net.refused.add(sn.host)  # the machine is down until the restart
        self.net.reset_host(sn.host)
        sn.scope.cancel()
        await sn.done.wait()

    async def restart(self, i: int) -> None:
        self.net.refused.discard(self.nodes[i].host)
        await self.start(i)

    async def stop(self, i: int) -> None:
        """Clean shutdown (Node.stop)."""
        sn = self.nodes[i]
        if sn.node is None or sn.done is None:
            return
        self.check()
        sn.node.stop()
        await sn.done.wait()

    def partition(self, *groups: Iterable[int]) -> None:
        self.net.partition([[self.nodes[i].host for i in g] for g in groups])

    def heal(self) -> None:
        self.net.heal()

    # --- transactions ----------------------------------------------------------------------

    def make_tx(self, account: int, op: list[Any], *, fee: int | None = None,
                lifetime: int = 120, salt: int = 0) -> bytes:
        """A signed tx referring to genesis (TaPoS), valid for ``lifetime`` seconds."""
        num, prefix = tapos_of(0, self.genesis.chain_id)
        expiration = int(self.now()) + lifetime + salt
        tx = build_tx(self.account_keys[account], self.genesis.chain_id, op,
                      ref_block_num=num, ref_block_prefix=prefix, expiration=expiration,
                      fee=self.cfg.base_fee if fee is None else fee)
        return tx.raw

    async def submit(self, i: int, raws: list[bytes]) -> list[dict[str, Any]]:
        return await self.node(i).submit_txs(raws)

    async def transfer_load(self, *, every_slots: int = 1, until_slot: int) -> None:
        """Transfers between the funded accounts, submitted to a random running node."""
        rng = random.Random(f"{self.seed}/load")
        k = 0
        while self.current_slot() < until_slot:
            await self.run_until_slot(self.current_slot() + every_slots, 0.3)
            live = self.running()
            if not live or not self.account_keys:
                continue
            src = rng.randrange(len(self.account_keys))
            dst = self.account_keys[(src + 1) % len(self.account_keys)].address
            raw = self.make_tx(src, [1, dst, 1000 + k, ""], salt=k % 7)
            k += 1
            await live[rng.randrange(len(live))].node.submit_txs([raw])  # type: ignore[union-attr]

    # --- checks -----------------------------------------------------------------------------

    def check(self) -> None:
        """Safety and digest checks over every running node (see the module docstring)."""
        for sn in self.running():
            node = sn.node
            assert node is not None
            chain = node.chain
            final = chain.final.height
            if final < sn.last_final:
                raise SafetyViolation(
                    f"seed {self.seed}: node {sn.index} final went back from "
                    f"{sn.last_final} to {final} while running")
            if final > sn.last_final:
                sn.finals_seen += 1
            sn.last_final = final
            for h in range(sn.checked_final + 1, final + 1):
                bid = chain.block_id_at(h)
                block = chain.get_block(bid) if bid is not None else None
                if bid is None or block is None:
                    raise SafetyViolation(f"seed {self.seed}: node {sn.index} lacks final "
                                          f"block {h}")
                prev = self.final_ids.setdefault(h, (bid, block.state_digest))
                if prev[0] != bid:
                    raise SafetyViolation(
                        f"seed {self.seed}: conflicting final blocks at height {h}: "
                        f"{prev[0].hex()[:16]} and {bid.hex()[:16]} (node {sn.index})")
                if prev[1] != block.state_digest:
                    raise SafetyViolation(f"seed {self.seed}: digest differs at height {h}")
            sn.checked_final = max(sn.checked_final, final)
            head = chain.head
            if head.height > 0:
                block = chain.get_block(head.id)
                if block is None or block.state_digest != node.ledger.state_digest():
                    raise SafetyViolation(
                        f"seed {self.seed}: node {sn.index} ledger digest differs from its "
                        f"head block {head.height}")

    def check_common_digests(self, nodes: Iterable[int] | None = None) -> int:
        """Equal state digests at every height that is final on all of ``nodes``."""
        live = [self.nodes[i] for i in nodes] if nodes is not None else self.running()
        chains = [sn.node.chain for sn in live if sn.node is not None]
        if not chains:
            return 0
        top = min(c.final.height for c in chains)
        for h in range(1, top + 1):
            digests = set()
            for c in chains:
                bid = c.block_id_at(h)
                block = c.get_block(bid) if bid is not None else None
                assert block is not None, f"seed {self.seed}: no block at final height {h}"
                digests.add(block.state_digest)
            if len(digests) != 1:
                raise SafetyViolation(f"seed {self.seed}: state digests differ at height {h}")
        return top

    def replay_digests(self, i: int) -> int:
        """Replay node i's main chain into a fresh in-memory ledger; compare each digest."""
        node = self.node(i)
        chain = node.chain
        blocks: list[Block] = []
        for h in range(1, chain.head.height + 1):
            bid = chain.block_id_at(h)
            block = chain.get_block(bid) if bid is not None else None
            assert block is not None
            blocks.append(block)
        by_slot = {chain.slot_of(b.timestamp): b.witness for b in blocks}
        mem = MemoryKV()
        ledger = Ledger(mem, self.params, GENESIS_TIME)
        Chain.initialize(mem, ledger, self.genesis)
        replay = Chain(mem, ledger, self.genesis, lambda slot: by_slot[slot])
        for block in blocks:
            replay.apply_block(block)
            if ledger.state_digest() != block.state_digest:
                raise SafetyViolation(f"seed {self.seed}: replayed digest differs at "
                                      f"height {block.height} on node {i}")
        return len(blocks)

    async def sampler(self) -> None:
        """Once per slot: run the checks and record each node's finality lag."""
        slot = self.current_slot()
        while True:
            await self.run_until_slot(slot, SAMPLE_AT)
            if time.perf_counter() - self.started_wall > self.cfg.wall_limit:
                raise TimeoutError(f"seed {self.seed}: wall limit {self.cfg.wall_limit} s "
                                   f"exceeded at slot {slot}")
            self.check()
            if self.sampling and slot > self.cfg.warmup_slots:
                for sn in self.running():
                    assert sn.node is not None
                    c = sn.node.chain
                    self.lags[sn.index].append((slot, c.head.slot - c.final.slot))
            slot += 1

    # --- results ----------------------------------------------------------------------------

    def final_chain(self, i: int) -> list[tuple[int, bytes]]:
        chain = self.node(i).chain
        out = []
        for h in range(0, chain.final.height + 1):
            bid = chain.block_id_at(h)
            assert bid is not None
            out.append((h, bid))
        return out

    def result(self) -> SimResult:
        live = self.running()
        evidence: dict[int, list[tuple[str, bytes, bytes, bytes]]] = {}
        for sn in live:
            assert sn.node is not None
            evidence[sn.index] = [(e.kind, e.vote_a.witness, e.vote_a.hash, e.vote_b.hash)
                                  for e in sn.node.consensus.evidence]
        return SimResult(
            seed=self.seed,
            virtual_seconds=trio.current_time(),
            wall_seconds=time.perf_counter() - self.started_wall,
            final_chains={sn.index: self.final_chain(sn.index) for sn in live},
            heads={sn.index: sn.node.chain.head for sn in live if sn.node is not None},
            finals={sn.index: sn.node.chain.final for sn in live if sn.node is not None},
            lags=self.lags,
            evidence=evidence,
            net_stats=dict(self.net.stats),
            p2p={sn.index: dict(sn.node.network.counters) for sn in live
                 if sn.node is not None and sn.node.network is not None},
        )

    def witnesses_between(self, i: int, lo_slot: int, hi_slot: int) -> list[bytes]:
        """Witness addresses of node i's main-chain blocks with lo_slot <= slot <= hi_slot."""
        chain = self.node(i).chain
        out = []
        for h in range(1, chain.head.height + 1):
            bid = chain.block_id_at(h)
            block = chain.get_block(bid) if bid is not None else None
            assert block is not None
            if lo_slot <= chain.slot_of(block.timestamp) <= hi_slot:
                out.append(block.witness)
        return out


def same_chain(sim: Sim, nodes: list[int]) -> bool:
    """All these nodes have one head and one final block."""
    refs = [(sim.node(i).chain.head, sim.node(i).chain.final) for i in nodes]
    return all(r == refs[0] for r in refs)


async def wait_for(sim: Sim, what: str, pred: Callable[[], bool], *, max_slots: int) -> int:
    """Poll ``pred()`` once per slot (late in the slot); return the slot it held at."""
    start = sim.current_slot()
    for slot in range(start, start + max_slots + 1):
        await sim.run_until_slot(slot, 0.9)
        if pred():
            return slot
    raise AssertionError(f"seed {sim.seed}: {what} not reached within {max_slots} slots "
                         f"(slot {sim.current_slot()})")


Scenario = Callable[[Sim], Awaitable[T]]


def run_sim(seed: int | str, cfg: SimConfig, scenario: Scenario[T], root: Path, *,
            virtual_limit: float = 3600.0, start: Iterable[int] | None = None
            ) -> tuple[SimResult, T]:
    """Run ``scenario(sim)`` under a seeded scheduler and MockClock; return what it saw.

    Nodes listed in ``start`` (default: all) are started first. After the scenario returns,
    the checks run once more, results are collected, and every node is stopped cleanly.
    """
    root.mkdir(parents=True, exist_ok=True)
    out: list[tuple[SimResult, T]] = []

    async def main() -> None:
        with trio.fail_after(virtual_limit):
            async with trio.open_nursery() as nursery:
                sim = Sim(seed, cfg, root, nursery)
                for i in (range(cfg.n_nodes) if start is None else start):
                    await sim.start(i)
                nursery.start_soon(sim.sampler)
                value = await scenario(sim)
                sim.check()
                res = sim.result()
                out.append((res, value))
                for sn in sim.nodes:
                    if sn.node is not None:
                        sn.node.stop()
                for sn in sim.nodes:
                    if sn.done is not None:
                        await sn.done.wait()
                nursery.cancel_scope.cancel()

    with deterministic_trio(seed):
        try:
            trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        except BaseExceptionGroup as group:
            leaves = _leaves(group)
            if len(leaves) == 1:  # one failure (a check, a node's bug): show it plainly
                raise leaves[0] from group
            raise
    return out[0]


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        elif not isinstance(exc, trio.Cancelled):
            out.append(exc)
    return out


# --- a faulty witness ------------------------------------------------------------------------


def announce_to(node: Node, peer_ids: Iterable[bytes], kind: Kind, ids: list[bytes]) -> None:
    """Announce items to some peers only (reaches into p2p internals; test use only)."""
    net = node.network
    if net is None:
        return
    for pid in peer_ids:
        peer = net._peers.get(pid)
        if peer is None:
            continue
        for i in ids:
            peer.known.add(inv_key(kind, i))
        net._enqueue(peer, Inv(kind, ids), must=False)


class EquivocatingNode(Node):
    """A witness that signs two blocks for each of its slots and votes twice per slot.

    The twin of each block it produces has the same parent, slot, txs and state digest but
    one vote fewer (so a different votes_root and id): a fully valid block. Each peer is
    told about the two blocks in its own random order, so honest nodes may split between
    them. After its honest vote for a slot it signs a second vote with the same source and
    target slot and another target block (the twin when there is one, else the source's
    block itself, which is a valid checkpoint at the target slot): a "double" vote that
    honest nodes must record as evidence. Both votes go out together.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.twins: dict[int, bytes] = {}  # slot -> id of the second block
        self.double_votes: list[Vote] = []
        self._producing = False

    def produce(self, slot: int) -> Block:
        net, self.network = self.network, None  # announce by hand, below
        self._producing = True
        try:
            block = super().produce(slot)  # commits it and casts the honest vote (unsent)
        finally:
            self.network = net
            self._producing = False
        ids = [block.id]
        if block.votes:
            assert self.witness_key is not None
            twin = Block.build(self.witness_key, self.chain_id, block.height,
                               block.previous_id, block.timestamp, block.txs,
                               block.votes[:-1], block.state_digest)
            # stored and in the block tree, as a side block received from a peer would be
            # (a stored block missing from the tree would never be taken again)
            self.store.write({schema.block_key(twin.id): twin.encode()}, sync=False)
            self.consensus.add_side_block(twin)
            self.twins[slot] = twin.id
            ids.append(twin.id)
        if net is not None:
            rng = self.rng or random.Random(0)
            for pid in net.peer_ids():
                announce_to(self, [pid], Kind.BLOCK, rng.sample(ids, len(ids)))
            net.broadcast_head()
        self._double_vote(slot)
        return block

    def cast_vote(self, slot: int) -> None:
        super().cast_vote(slot)
        if not self._producing:
            self._double_vote(slot)

    def _double_vote(self, slot: int) -> None:
        key = self.witness_key
        if key is None:
            return
        mine = [v for v in self.consensus.vote_pool.values()
                if v.witness == key.address and v.target_slot == slot]
        if len(mine) != 1:
            return
        honest = mine[0]
        other = self.twins.get(slot, honest.source_id)
        if other == honest.target_id:
            other = honest.source_id
        if other == honest.target_id:
            return  # the head is the source's block: no other valid target for this slot
        vote = Vote.sign(key, self.chain_id, honest.source_id, honest.source_slot, other, slot)
        self.double_votes.append(vote)
        self.consensus.add_vote(vote, slot)
        if self.network is not None:
            self.network.broadcast_votes([honest.hash, vote.hash])
