"""State sync over p2p: serving snapshots of the final state, and joining a chain by one.

Serving (``SnapshotServer``, every node): GET_SNAPSHOT is answered with the manifest of a
frozen snapshot file of the node's final height (``<data_dir>/snapshots/final-H.snap``),
made in a worker thread from a LevelDB snapshot of the store, so that blocks applied
meanwhile never tear it, from the current state and the undo records above the final
block, with the votes Chain.set_final kept with the final pointer (no replay from
genesis). A request finds the cached file at once; one older than ``REFRESH_S`` (or
``REFRESH_BLOCKS`` behind the final block) is rebuilt in the background, and the two
newest stay open so that a sync that began on the older one can finish. GET_CHUNK reads
one chunk of the file. Nothing is built until a peer asks.

Joining (``state_sync``, ``muxernode run --state-sync`` on a data directory that holds no
blocks yet), before the node itself starts:

1. Dial the configured peers and ask each for its snapshot. Every offered manifest is
   checked against the genesis (the block's signature and the finality votes by the
   genesis witnesses, the headers' links, the chunk table): a peer offering a bad one is
   banned through the network's report machinery. The highest checked offer wins; the
   peers that offered byte-identical manifests serve it.
2. Fetch chunks from all of them in parallel, one request per peer in flight (memory: one
   chunk of at most MAX_SNAPSHOT_CHUNK per peer). Each chunk is checked against its hash
   in the manifest as it arrives and written at once to a staging store with a record of
   its first and last keys, count and MuHash: a peer whose chunk fails is banned and the
   chunk asked of another. A request unanswered in ``CHUNK_TIMEOUT_S`` goes to another
   peer; a peer that times out ``MAX_PEER_FAILURES`` times is dropped.
3. With every chunk in, check the key order across chunks, the entry count and the
   product of the chunks' MuHashes against the final block's state digest. A mismatch
   means the manifest's chunk table was forged: every peer that offered it is banned, the
   staging store wiped, and the sync starts over (at most ``MAX_ROUNDS`` times).
4. Write the chain's pointers, mark the staging store verified (a file), and swap it in
   for the genesis store: ``db`` -> ``statesync/genesis-db``, ``statesync/db`` -> ``db``.

Restart safety: until the verified mark exists the node's ``db`` is the untouched genesis
store (a node started without --state-sync runs from genesis, never from a half state);
a restart with --state-sync resumes the staged chunks if a peer still offers the same
manifest, else wipes them. With the mark, ``finish_pending`` (every start) completes the
swap wherever a crash interrupted it.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import msgpack
import trio

from consensus.genesis import Genesis
from muxernode.snapshot import (
    Manifest,
    SnapshotError,
    check_state_digest,
    export_view,
    manifest_bytes,
    parse_manifest,
    verify_chunk,
)
from muxernode.snapshot import _write_pointers as write_pointers
from muxernode.state import DIGEST_KEY, STATE_PREFIX, MuHash3072, decode_acc, encode_acc
from p2p import Kind, Network, P2PConfig, Transport
from p2p.messages import (
    MAX_SNAPSHOT_CHUNK,
    MAX_SNAPSHOT_MANIFEST,
    Chunk,
    GetChunk,
    GetSnapshot,
    SnapshotOffer,
)
from storage import schema
from storage.leveldb import LevelDBStore

if TYPE_CHECKING:
    from muxernode.node import Node

__all__ = [
    "BAN_POINTS",
    "SnapshotFiles",
    "SnapshotServer",
    "StateSyncError",
    "StateSyncResult",
    "finish_pending",
    "needs_state_sync",
    "state_sync",
]

log = logging.getLogger("muxer.statesync")

SNAPSHOT_DIR = "snapshots"
STAGING_DIR = "statesync"
VERIFIED_MARK = "VERIFIED"
REFRESH_S = 60.0  # a served snapshot older than this is rebuilt when asked for ...
REFRESH_BLOCKS = 600  # ... or one this many blocks behind the final block
RETRY_BUILD_S = 5.0  # a build that failed is tried again no sooner
KEEP_SNAPSHOTS = 2  # the newest files stay open: a sync begun on the older one finishes

OFFER_WAIT_S = 2.0  # answers to GET_SNAPSHOT awaited per round
CHUNK_TIMEOUT_S = 20.0
MAX_PEER_FAILURES = 3  # timeouts or "no longer have it" before a peer is dropped
MAX_ROUNDS = 3  # full restarts after a forged chunk table
BAN_POINTS = 100  # a bad manifest or chunk is proof of a lying peer: ban at once
PROGRESS_KEY = b"X"  # staging store only: X m = manifest, X c <u32 index> = chunk record


class StateSyncError(Exception):
    """State sync could not finish; the message says why. Nothing half-made is left where
    the node would run from."""


def _pack(obj: Any) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


# --- serving ----------------------------------------------------------------------------


@dataclass
class _Served:
    height: int
    manifest: bytes
    chunks: list[tuple[int, int, bytes]]
    file: IO[bytes]
    made: float
    path: Path


class SnapshotFiles:
    """Snapshot files served by GET_SNAPSHOT / GET_CHUNK (p2p.network.StateSyncHandler):
    the newest is offered, the KEEP_SNAPSHOTS newest answer chunks. Each file stays open
    while served: a chunk is one seek and one read."""

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.served: list[_Served] = []  # newest last

    def answer(self, peer_id: bytes, msg: GetSnapshot | GetChunk) -> SnapshotOffer | Chunk:
        if isinstance(msg, GetSnapshot):
            self.asked()
            if not self.served:
                return SnapshotOffer(0, b"")
            cur = self.served[-1]
            return SnapshotOffer(cur.height, cur.manifest)
        for s in self.served:
            if s.height == msg.height and msg.index < len(s.chunks):
                offset, length, _h = s.chunks[msg.index]
                s.file.seek(offset)
                return Chunk(msg.height, msg.index, s.file.read(length))
        return Chunk(msg.height, msg.index, b"")

    def asked(self) -> None:
        """A peer asked for the snapshot (the node's server refreshes a stale one)."""

    def add(self, path: Path) -> Manifest:
        """Serve a snapshot file (its manifest checked as a peer would check it)."""
        f = open(path, "rb")  # noqa: SIM115 - held open while served, closed on eviction
        try:
            raw = manifest_bytes(f)
            if len(raw) > MAX_SNAPSHOT_MANIFEST:
                raise SnapshotError(f"the manifest of {path} is over one frame")
            m = parse_manifest(raw, self.genesis, max_chunk=MAX_SNAPSHOT_CHUNK)
        except BaseException:
            f.close()
            raise
        height = m.block.height
        for s in [s for s in self.served if s.height == height]:
            s.file.close()
        self.served = [s for s in self.served if s.height != height]
        self.served.append(_Served(height, raw, m.chunks, f, time.monotonic(), path))
        while len(self.served) > KEEP_SNAPSHOTS:
            self.evict(self.served.pop(0))
        return m

    def evict(self, old: _Served) -> None:
        old.file.close()

    def close(self) -> None:
        for s in self.served:
            s.file.close()
        self.served = []

    def on_answer(self, peer_id: bytes, msg: SnapshotOffer | Chunk) -> bool:
        return False  # a serving node asks nobody for snapshots


class SnapshotServer(SnapshotFiles):
    """The node's snapshots of its own final state, made when asked for and stale."""

    def __init__(self, node: Node) -> None:
        super().__init__(node.genesis)
        self.node = node
        self.dir = node.data_dir / SNAPSHOT_DIR
        self.wakeup = trio.Event()
        self.building = False
        self.last_error: str | None = None
        self.retry_at = 0.0  # after a failed build: not again on every request
        self.built = 0

    def asked(self) -> None:
        if self._stale():
            self.wakeup.set()

    def evict(self, old: _Served) -> None:
        old.file.close()
        # unlinked, not kept: the state of a past height is of no use to anyone later
        old.path.unlink(missing_ok=True)

    def _stale(self) -> bool:
        final = self.node.chain.final.height
        if final == 0 or self.building or time.monotonic() < self.retry_at:
            return False
        if not self.served:
            return True
        cur = self.served[-1]
        return cur.height < final and (time.monotonic() - cur.made >= REFRESH_S
                                       or final - cur.height >= REFRESH_BLOCKS)

    async def loop(self) -> None:
        """Build a snapshot when a peer asked and the cached one is stale (bounded: one
        build at a time, each from one LevelDB snapshot)."""
        self._load_cached()
        while not self.node.stopping.is_set():
            await self.wakeup.wait()
            self.wakeup = trio.Event()
            if self.node.stopping.is_set():
                break
            if self._stale():
                await self.build()

    def _load_cached(self) -> None:
        """A snapshot file of the current final block left by the last run serves at once."""
        path = self.dir / f"final-{self.node.chain.final.height}.snap"
        if path.exists():
            try:
                self.add(path)
            except (OSError, SnapshotError):
                path.unlink(missing_ok=True)

    async def build(self) -> None:
        self.building = True
        view = self.node.store.snapshot()
        try:
            self.dir.mkdir(exist_ok=True)
            tmp = self.dir / "building.snap"
            genesis = self.node.genesis
            try:
                if self.node.inline_verify:  # simulation: no thread, virtual time holds
                    m = export_view(view, genesis, tmp, max_chunk=MAX_SNAPSHOT_CHUNK)
                else:
                    m = await trio.to_thread.run_sync(
                        lambda: export_view(view, genesis, tmp, max_chunk=MAX_SNAPSHOT_CHUNK))
            except (SnapshotError, OSError) as exc:
                self.last_error = str(exc)
                self.retry_at = time.monotonic() + RETRY_BUILD_S
                log.info("snapshot_not_built", extra={"kv": {"why": str(exc)[:200]}})
                return
            path = self.dir / f"final-{m.block.height}.snap"
            os.replace(tmp, path)
            self.add(path)
            self.built += 1
            log.info("snapshot_built", extra={"kv": {
                "height": m.block.height, "entries": m.entries, "chunks": len(m.chunks),
                "bytes": path.stat().st_size}})
        finally:
            view.close()
            self.building = False


# --- joining ----------------------------------------------------------------------------


def needs_state_sync(data_dir: Path) -> bool:
    """True iff the data directory's store holds no block yet (made by init --genesis)."""
    from muxernode.node import DB_DIR

    store = LevelDBStore(str(data_dir / DB_DIR), create=False)
    try:
        raw = store.get(schema.META_HEAD)
    finally:
        store.close()
    return raw is None or msgpack.unpackb(raw)[0] == 0


def finish_pending(data_dir: Path) -> bool:
    """Complete a verified state sync's swap that a crash interrupted (every start calls
    it); True iff there was one. An unverified staging store is left for --state-sync."""
    from muxernode.node import DB_DIR

    staging = data_dir / STAGING_DIR
    if not (staging / VERIFIED_MARK).exists():
        return False
    db, new, old = data_dir / DB_DIR, staging / DB_DIR, staging / "genesis-db"
    if new.exists():
        if db.exists():
            if old.exists():
                shutil.rmtree(old)
            os.rename(db, old)
        os.rename(new, db)
    shutil.rmtree(staging)
    log.info("state_sync_swapped", extra={"kv": {"db": str(db)}})
    return True


class _Handler:
    """The syncing node as p2p sees it: at genesis, wanting no gossip (it has no chain to
    check items against yet)."""

    def __init__(self, chain_id: bytes) -> None:
        self.chain_id = chain_id
        self.heads: dict[bytes, int] = {}

    def head(self) -> tuple[int, bytes, int]:
        return 0, self.chain_id, 0

    def has(self, kind: Kind, item_id: bytes) -> bool:
        return True  # never fetch gossip

    def get_items(self, kind: Kind, ids: list[bytes]) -> list[bytes]:
        return []

    def get_blocks(self, from_height: int, count: int) -> list[bytes]:
        return []

    async def on_txs(self, peer_id: bytes, raws: list[bytes]) -> list[bool]:
        return [True] * len(raws)

    async def on_blocks(self, peer_id: bytes, raws: list[bytes]) -> list[bool]:
        return [True] * len(raws)

    async def on_votes(self, peer_id: bytes, raws: list[bytes]) -> list[bool]:
        return [True] * len(raws)

    async def on_head(self, peer_id: bytes, head_height: int, head_id: bytes,
                      final_height: int) -> None:
        self.heads[peer_id] = final_height


@dataclass
class _Offer:
    peer: bytes
    raw: bytes
    manifest: Manifest


@dataclass
class _Fetch:
    """One sync round's shared state."""

    manifest: Manifest
    height: int
    todo: deque[int]
    done: set[int]
    peers: dict[bytes, int] = field(default_factory=dict)  # serving peer -> failures
    attempts: int = 0
    inflight: int = 0  # requests out: an idle worker waits for them (one may come back)


@dataclass
class StateSyncResult:
    manifest: Manifest
    stats: dict[str, int]  # chunks, bytes, bad_chunks, bad_manifests, timeouts
    banned: list[bytes]  # node keys of the peers banned for lying


class StateSyncClient:
    """The joining side (p2p.network.StateSyncHandler: it only asks)."""

    def __init__(self, net: Network, genesis: Genesis, staging: LevelDBStore) -> None:
        self.net = net
        self.genesis = genesis
        self.staging = staging
        self.offers: dict[bytes, SnapshotOffer] = {}
        self.offer_event = trio.Event()
        self.asked_offer: set[bytes] = set()
        # (peer, height, index) -> [event, answer]
        self.waiting: dict[tuple[bytes, int, int], tuple[trio.Event, list[Chunk]]] = {}
        self.stats: dict[str, int] = {"chunks": 0, "bad_chunks": 0, "bad_manifests": 0,
                                      "timeouts": 0, "bytes": 0}
        self.banned: list[bytes] = []

    # p2p.network.StateSyncHandler
    def answer(self, peer_id: bytes, msg: GetSnapshot | GetChunk) -> SnapshotOffer | Chunk:
        if isinstance(msg, GetSnapshot):
            return SnapshotOffer(0, b"")  # nothing to offer while syncing
        return Chunk(msg.height, msg.index, b"")

    def on_answer(self, peer_id: bytes, msg: SnapshotOffer | Chunk) -> bool:
        if isinstance(msg, SnapshotOffer):
            if peer_id not in self.asked_offer:
                return False
            self.asked_offer.discard(peer_id)
            self.offers[peer_id] = msg
            self.offer_event.set()
            return True
        slot = self.waiting.pop((peer_id, msg.height, msg.index), None)
        if slot is None:
            return False
        slot[1].append(msg)
        slot[0].set()
        return True

    def _ban(self, peer: bytes, reason: str) -> None:
        log.warning("state_sync_ban", extra={"kv": {"node": peer[:8], "reason": reason}})
        self.banned.append(peer)
        self.net.report(peer, BAN_POINTS, reason)

    # --- offers -----------------------------------------------------------------------

    async def collect_offers(self) -> list[_Offer]:
        """Ask every connected peer; the checked offers (bad ones' senders banned)."""
        self.offers = {}
        peers = self.net.peer_ids()
        self.asked_offer = {p for p in peers if self.net.send(p, GetSnapshot())}
        with trio.move_on_after(OFFER_WAIT_S):
            while self.asked_offer:
                self.offer_event = trio.Event()
                await self.offer_event.wait()
        out: list[_Offer] = []
        for peer, offer in self.offers.items():
            if offer.height == 0:
                continue
            try:
                m = parse_manifest(offer.manifest, self.genesis, max_chunk=MAX_SNAPSHOT_CHUNK)
                if m.block.height != offer.height:
                    raise SnapshotError("the offer's height is not its block's")
            except SnapshotError as exc:
                self.stats["bad_manifests"] += 1
                self._ban(peer, f"bad_snapshot_manifest: {str(exc)[:120]}")
                continue
            out.append(_Offer(peer, offer.manifest, m))
        return out

    # --- chunks -----------------------------------------------------------------------

    async def fetch(self, f: _Fetch) -> None:
        """Every chunk of the round, from its serving peers in parallel."""
        async with trio.open_nursery() as nursery:
            for peer in list(f.peers):
                nursery.start_soon(self._worker, f, peer)
        if f.todo:
            raise StateSyncError(f"{len(f.todo)} chunk(s) of height {f.height} could not be "
                                 "fetched: no peer serving the snapshot is left")

    async def _worker(self, f: _Fetch, peer: bytes) -> None:
        limit = 4 * len(f.manifest.chunks) + 16  # attempts per round, all peers together
        while (f.todo or f.inflight) and peer in f.peers:
            if f.attempts >= limit:
                return
            if not f.todo:  # another peer's request may fail and come back
                await trio.sleep(0.05)
                continue
            f.attempts += 1
            index = f.todo.popleft()
            key = (peer, f.height, index)
            slot: tuple[trio.Event, list[Chunk]] = (trio.Event(), [])
            self.waiting[key] = slot
            f.inflight += 1
            try:
                ok = self.net.send(peer, GetChunk(f.height, index))
                if ok:
                    with trio.move_on_after(CHUNK_TIMEOUT_S):
                        await slot[0].wait()
            finally:
                f.inflight -= 1
                self.waiting.pop(key, None)
            if not slot[1]:
                f.todo.append(index)
                self.stats["timeouts"] += 1
                if not ok or peer not in self.net.peer_ids():
                    f.peers.pop(peer, None)
                    return
                self._fail(f, peer)
                continue
            data = slot[1][0].data
            if not data:  # it has moved on to a newer snapshot
                f.todo.append(index)
                self._fail(f, peer, MAX_PEER_FAILURES)
                continue
            try:
                self._store_chunk(f, index, data)
            except SnapshotError as exc:
                f.todo.append(index)
                self.stats["bad_chunks"] += 1
                f.peers.pop(peer, None)
                self._ban(peer, f"bad_chunk: {str(exc)[:120]}")
                return
            await trio.sleep(0)

    def _fail(self, f: _Fetch, peer: bytes, points: int = 1) -> None:
        f.peers[peer] = f.peers.get(peer, 0) + points
        if f.peers[peer] >= MAX_PEER_FAILURES:
            f.peers.pop(peer, None)

    def _store_chunk(self, f: _Fetch, index: int, data: bytes) -> None:
        if index in f.done:
            return
        entries, acc = verify_chunk(data, index, f.manifest.chunks[index][2])
        first = entries[0][0] if entries else b""
        last = entries[-1][0] if entries else b""
        batch: dict[bytes, bytes | None] = {STATE_PREFIX + k: v for k, v in entries}
        batch[_chunk_key(index)] = _pack([first, last, len(entries), encode_acc(acc.value())])
        self.staging.write(batch)  # the chunk and its record in one batch: resumable
        f.done.add(index)
        self.stats["chunks"] += 1
        self.stats["bytes"] += len(data)
        n = len(f.manifest.chunks)
        if len(f.done) == n or len(f.done) % max(1, n // 10) == 0:
            log.info("state_sync_progress", extra={"kv": {
                "height": f.height, "chunks": len(f.done), "of": n}})

    # --- the whole ----------------------------------------------------------------------

    def verify_staged(self, manifest: Manifest) -> None:
        """Key order across chunks, entry count and digest over the chunk records."""
        acc = MuHash3072()
        count = 0
        last: bytes | None = None
        for index in range(len(manifest.chunks)):
            raw = self.staging.get(_chunk_key(index))
            if raw is None:
                raise StateSyncError(f"chunk {index} is missing from the staging store")
            first, end, n, chunk_acc = msgpack.unpackb(raw)
            if n and last is not None and first <= last:
                raise SnapshotError(f"chunk {index}: keys out of order across chunks")
            if n:
                last = end
            count += n
            acc.insert_element(decode_acc(chunk_acc))
        record = check_state_digest(manifest, acc, count)
        self.staging.write({STATE_PREFIX + DIGEST_KEY: record})


def _chunk_key(index: int) -> bytes:
    return PROGRESS_KEY + b"c" + index.to_bytes(4, "big")


_MANIFEST_KEY = PROGRESS_KEY + b"m"


def _clear_progress(store: LevelDBStore) -> None:
    store.write({k: None for k, _v in store.iterate(PROGRESS_KEY)}, sync=True)


async def state_sync(data_dir: Path, genesis: Genesis, seeds: list[tuple[str, int]], *,
                     timeout: float = 600.0, transport: Transport | None = None,
                     ) -> StateSyncResult:
    """Join the chain by a snapshot from peers (module doc); returns its manifest once the
    data directory holds the verified state."""
    from muxernode.node import DB_DIR, load_or_create_node_key

    if not seeds:
        raise StateSyncError("state sync needs peers: configure p2p.peers or pass --peer")
    staging_dir = data_dir / STAGING_DIR
    staging_dir.mkdir(exist_ok=True)
    key = load_or_create_node_key(data_dir)
    handler = _Handler(genesis.chain_id)
    net = Network(key, genesis.chain_id, handler, transport=transport,
                  # outbound only: nobody needs to reach a node that has no chain yet
                  config=P2PConfig(listen_port=None, seeds=seeds))
    staging = LevelDBStore(str(staging_dir / DB_DIR))
    schema.check_schema(staging)
    client = StateSyncClient(net, genesis, staging)
    net.state_sync = client
    started = time.monotonic()
    try:
        with trio.fail_after(timeout):
            async with trio.open_nursery() as nursery:
                await nursery.start(net.run)
                manifest = await _sync_rounds(client, staging)
                net.stop()
    except trio.TooSlowError:
        staging.close()
        raise StateSyncError(f"state sync did not finish within {timeout:g} s (progress is "
                             "kept: run again to resume)") from None
    except BaseException:
        staging.close()
        raise
    try:
        write_pointers(staging, manifest)
        _clear_progress(staging)
    finally:
        staging.close()
    (staging_dir / VERIFIED_MARK).write_text(f"{manifest.block.height}\n", encoding="utf-8")
    finish_pending(data_dir)
    s = client.stats
    log.info("state_sync_done", extra={"kv": {
        "height": manifest.block.height, "entries": manifest.entries,
        "chunks": len(manifest.chunks), "bytes": s["bytes"], "bad_chunks": s["bad_chunks"],
        "bad_manifests": s["bad_manifests"], "timeouts": s["timeouts"],
        "seconds": round(time.monotonic() - started, 2), "db": str(data_dir / DB_DIR)}})
    return StateSyncResult(manifest, dict(s), list(client.banned))


async def _sync_rounds(client: StateSyncClient, staging: LevelDBStore) -> Manifest:
    net = client.net
    rounds = 0
    waited = 0
    while True:  # bounded by the caller's timeout and MAX_ROUNDS restarts
        if not net.peer_ids():
            await trio.sleep(0.2)
            continue
        offers = await client.collect_offers()
        if not offers:
            waited += 1
            if waited % 5 == 1:
                log.info("state_sync_waiting", extra={"kv": {
                    "peers": len(net.peer_ids()), "why": "no peer offers a snapshot yet"}})
            await trio.sleep(1.0)
            continue
        staged = staging.get(_MANIFEST_KEY)
        # the highest height; of equal ones, the manifest most peers offer (the most
        # parallel fetch; a forged one among them is found by the digest and its
        # offerers banned, then the next is taken)
        offered = {o.raw: sum(1 for x in offers if x.raw == o.raw) for o in offers}
        best = max(offers, key=lambda o: (o.manifest.block.height, offered[o.raw]))
        chosen = next((o for o in offers if staged is not None and o.raw == staged), best)
        if staged is not None and chosen.raw != staged:
            log.info("state_sync_restart", extra={"kv": {"why": "no peer offers the staged "
                                                           "snapshot any more"}})
            _wipe_state(staging)
        staging.write({_MANIFEST_KEY: chosen.raw}, sync=True)
        m = chosen.manifest
        done = {i for i in range(len(m.chunks)) if staging.get(_chunk_key(i)) is not None}
        serving = {o.peer: 0 for o in offers if o.raw == chosen.raw}
        log.info("state_sync_fetch", extra={"kv": {
            "height": m.block.height, "chunks": len(m.chunks), "staged": len(done),
            "entries": m.entries, "peers": len(serving)}})
        f = _Fetch(m, m.block.height, deque(i for i in range(len(m.chunks)) if i not in done),
                   done, serving)
        try:
            await client.fetch(f)
            client.verify_staged(m)
            return m
        except StateSyncError as exc:
            log.info("state_sync_retry", extra={"kv": {"why": str(exc)[:200]}})
            await trio.sleep(1.0)  # peers gone: ask again (the staged chunks are kept)
        except SnapshotError as exc:
            # every chunk matched its hash, so the chunk table itself lied
            for peer in serving:
                client._ban(peer, f"forged_snapshot: {str(exc)[:120]}")
            _wipe_state(staging)
            rounds += 1
            if rounds >= MAX_ROUNDS:
                raise StateSyncError(f"state sync refused {rounds} forged snapshots: "
                                     f"{exc}") from None


def _wipe_state(staging: LevelDBStore) -> None:
    """Back to an empty staging store (bounded batches, so memory stays bounded)."""
    for prefix in (STATE_PREFIX, PROGRESS_KEY):
        batch: dict[bytes, bytes | None] = {}
        for k, _v in staging.iterate(prefix):
            batch[k] = None
            if len(batch) >= 10_000:
                staging.write(batch)
                batch = {}
        staging.write(batch, sync=True)
