"""State sync over p2p (muxernode/statesync.py): a fresh node joins running witness daemons
by a snapshot and follows the head; a peer serving a corrupted chunk or a forged manifest
is banned while the sync completes from an honest one; a sync cut short leaves the genesis
store in place and resumes from the chunks it kept."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from consensus.crypto import PrivateKey
from consensus.genesis import Genesis, load_genesis
from devnet.cluster import free_ports
from muxernode.node import init_data_dir
from muxernode.snapshot import _write, export_snapshot, read_manifest
from muxernode.state import STATE_PREFIX, recompute_digest
from muxernode.statesync import (
    STAGING_DIR,
    SnapshotFiles,
    StateSyncError,
    _Handler,
    finish_pending,
    needs_state_sync,
    state_sync,
)
from p2p import Network, P2PConfig
from p2p.messages import Chunk, GetChunk, GetSnapshot, SnapshotOffer
from storage.leveldb import LevelDBStore
from tests.procs import Daemon, make_genesis, rpc, wait_for
from tests.witness_helpers import start_witnesses


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two witness daemons on 127.0.0.1, running for the whole module."""
    tmp = tmp_path_factory.mktemp("ssync")
    gdir = tmp / "g"
    gpath = make_genesis(gdir, witnesses=2, accounts=300, seed=41)
    ports = free_ports(3)
    daemons: list[Daemon] = []
    try:
        start_witnesses(daemons, [tmp / "n1", tmp / "n2"], gdir, ports[:2], genesis=gpath)
        wait_for(lambda: all(rpc(d.url, "chain_info")["final_height"] >= 3 for d in daemons),
                 timeout=40, interval=0.2)
        yield {"tmp": tmp, "genesis": gpath, "ports": ports, "daemons": daemons}
    finally:
        for d in daemons:
            d.kill()


def test_a_fresh_node_joins_by_state_sync_and_follows_the_head(chain: dict[str, Any]) -> None:
    tmp, ports = chain["tmp"], chain["ports"]
    n1 = chain["daemons"][0]
    data = tmp / "joiner"
    init_data_dir(chain["genesis"], data)
    assert needs_state_sync(data)
    joiner = Daemon(data, extra_args=[
        "--state-sync", "--p2p", f"127.0.0.1:{ports[2]}",
        "--peer", f"127.0.0.1:{ports[0]}", "--peer", f"127.0.0.1:{ports[1]}"])
    try:
        joiner.start(timeout=90)
        log = joiner.log()
        done = re.search(r"state_sync_done.*?height=(\d+)", log)
        assert done, log
        height = int(done.group(1))
        assert height >= 3
        info = rpc(joiner.url, "chain_info")
        assert info["head_height"] >= height
        # it has no blocks below the snapshot (it never replayed) ...
        with pytest.raises(Exception):  # noqa: B017 - any RPC error: not found
            rpc(joiner.url, "get_block", 1)
        # ... and follows the head: blocks made after it joined, the same as the witness's
        target = rpc(n1.url, "chain_info")["head_height"] + 3
        wait_for(lambda: rpc(joiner.url, "chain_info")["final_height"] >= target,
                 timeout=40, interval=0.2)
        for h in (height, target):
            assert rpc(joiner.url, "get_block", h)["id"] == rpc(n1.url, "get_block", h)["id"]
        assert not (data / STAGING_DIR).exists()
    finally:
        joiner.kill()
    # a restart with --state-sync on a directory with blocks just follows the chain
    joiner2 = Daemon(data, extra_args=joiner.extra_args)
    try:
        joiner2.start(timeout=30)
        assert "state_sync_skipped" in joiner2.log()
    finally:
        joiner2.kill()


# --- in-process peers on 127.0.0.1: an honest one and liars, serving one snapshot file ---


@pytest.fixture(scope="module")
def snap(chain: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A witness's served snapshot, fetched by state sync into a fresh dir, then
    re-chunked small (many chunks, so that several peers serve them in parallel)."""
    tmp = tmp_path_factory.mktemp("snapfile")
    genesis = load_genesis(chain["genesis"])
    data = tmp / "first"
    init_data_dir(chain["genesis"], data)
    seeds = [("127.0.0.1", chain["ports"][0])]
    res = trio.run(lambda: state_sync(data, genesis, seeds, timeout=60))
    served = sorted((chain["tmp"] / "n1" / "snapshots").glob("final-*.snap"))
    assert served, "the witness keeps the snapshot it served"
    with open(served[-1], "rb") as f:
        m = read_manifest(f, genesis)
        entries: list[tuple[bytes, bytes]] = []
        for offset, length, _h in m.chunks:
            f.seek(offset)
            entries += [(k, v) for k, v in msgpack.unpackb(f.read(length))]
        f.seek(0)
    assert res.manifest.block.id == m.block.id
    out = tmp / "small.snap"
    headers = _headers_of(served[-1])
    _write(out, genesis, m.block, m.votes, m.schedule, iter(entries), 2048, headers)
    return {"genesis": genesis, "gpath": chain["genesis"], "file": out, "tmp": tmp,
            "entries": len(entries), "synced": data}


def _headers_of(path: Path) -> list[Any]:
    with open(path, "rb") as f:
        f.seek(-24, 2)
        trailer = f.read(24)
        offset, length = int.from_bytes(trailer[:8], "big"), int.from_bytes(trailer[8:16], "big")
        f.seek(offset)
        headers: list[Any] = msgpack.unpackb(f.read(length))[7]
        return headers


class Liar(SnapshotFiles):
    """Serves the honest file's manifest, but a changed byte in every chunk."""

    def answer(self, peer_id: bytes, msg: GetSnapshot | GetChunk) -> SnapshotOffer | Chunk:
        out = super().answer(peer_id, msg)
        if isinstance(out, Chunk) and out.data:
            self.served_bad += 1
            return Chunk(out.height, out.index, out.data[:-1] + bytes([out.data[-1] ^ 1]))
        return out

    served_bad = 0


class ForgedManifest(SnapshotFiles):
    """Offers the manifest with its first vote's signature changed."""

    def answer(self, peer_id: bytes, msg: GetSnapshot | GetChunk) -> SnapshotOffer | Chunk:
        out = super().answer(peer_id, msg)
        if isinstance(out, SnapshotOffer) and out.manifest:
            doc = msgpack.unpackb(out.manifest)
            vote = doc[3][0]
            vote[-1] = bytes(64)  # the signature
            return SnapshotOffer(out.height, msgpack.packb(doc, use_bin_type=True))
        return out


async def _serve(nursery: trio.Nursery, genesis: Genesis, files: SnapshotFiles
                 ) -> tuple[Network, int]:
    net = Network(PrivateKey.generate(), genesis.chain_id, _Handler(genesis.chain_id),
                  config=P2PConfig(listen_host="127.0.0.1", listen_port=0))
    net.state_sync = files
    port = await nursery.start(net.run)
    return net, port


def _run_sync(snap: dict[str, Any], data: Path, servers: list[SnapshotFiles],
              timeout: float = 60.0) -> Any:
    genesis = snap["genesis"]

    async def main() -> Any:
        async with trio.open_nursery() as nursery:
            ports = []
            for files in servers:
                files.add(snap["file"])
                ports.append((await _serve(nursery, genesis, files))[1])
            try:
                return await state_sync(data, genesis, [("127.0.0.1", p) for p in ports],
                                        timeout=timeout)
            finally:
                nursery.cancel_scope.cancel()
                for files in servers:
                    files.close()
    try:
        return trio.run(main)
    except BaseExceptionGroup as group:  # the servers' nursery wraps the sync's error
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from None


def _state_digest_ok(data: Path) -> bytes:
    store = LevelDBStore(str(data / "db"), create=False)
    try:
        return recompute_digest(store, STATE_PREFIX)
    finally:
        store.close()


def test_a_peer_serving_corrupted_chunks_is_banned_and_the_sync_completes(
        snap: dict[str, Any], tmp_path: Path) -> None:
    data = tmp_path / "d"
    init_data_dir(snap["gpath"], data)
    liar, honest = Liar(snap["genesis"]), SnapshotFiles(snap["genesis"])
    res = _run_sync(snap, data, [liar, honest])
    assert liar.served_bad >= 1
    assert res.stats["bad_chunks"] >= 1 and len(res.banned) == 1
    assert res.stats["chunks"] == len(res.manifest.chunks) >= 6
    assert _state_digest_ok(data) == res.manifest.block.state_digest
    assert not needs_state_sync(data)


def test_a_forged_manifest_is_refused_and_its_peer_banned(snap: dict[str, Any],
                                                          tmp_path: Path) -> None:
    data = tmp_path / "d"
    init_data_dir(snap["gpath"], data)
    forged, honest = ForgedManifest(snap["genesis"]), SnapshotFiles(snap["genesis"])
    res = _run_sync(snap, data, [forged, honest])
    assert res.stats["bad_manifests"] == 1 and len(res.banned) == 1
    assert _state_digest_ok(data) == res.manifest.block.state_digest


class Stalls(SnapshotFiles):
    """Serves ``limit`` chunks, then says it no longer has the snapshot."""

    def __init__(self, genesis: Genesis, limit: int) -> None:
        super().__init__(genesis)
        self.limit = limit

    def answer(self, peer_id: bytes, msg: GetSnapshot | GetChunk) -> SnapshotOffer | Chunk:
        out = super().answer(peer_id, msg)
        if isinstance(out, Chunk):
            if self.limit <= 0:
                return Chunk(out.height, out.index, b"")
            self.limit -= 1
        return out


def test_a_sync_cut_short_leaves_the_genesis_store_and_resumes(snap: dict[str, Any],
                                                                 tmp_path: Path) -> None:
    data = tmp_path / "d"
    init_data_dir(snap["gpath"], data)
    with pytest.raises(StateSyncError, match="did not finish"):
        _run_sync(snap, data, [Stalls(snap["genesis"], 3)], timeout=6)
    # the node would run from the untouched genesis store, never from a half state
    assert needs_state_sync(data)
    assert (data / STAGING_DIR / "db").is_dir()
    res = _run_sync(snap, data, [SnapshotFiles(snap["genesis"])])
    assert res.stats["chunks"] == len(res.manifest.chunks) - 3  # the 3 kept were not asked
    assert _state_digest_ok(data) == res.manifest.block.state_digest
    assert not (data / STAGING_DIR).exists()


def test_state_sync_without_peers_says_so(snap: dict[str, Any], tmp_path: Path) -> None:
    data = tmp_path / "d"
    init_data_dir(snap["gpath"], data)
    with pytest.raises(StateSyncError, match="needs peers"):
        trio.run(lambda: state_sync(data, snap["genesis"], []))
    assert needs_state_sync(data)


# --- python -m devnet add NAME --state-sync -------------------------------------------------


def test_devnet_add_joins_a_running_devnet_by_state_sync(tmp_path: Path) -> None:
    from devnet.manifest import load_manifest
    from tests.test_devnet import devnet, log_tails, stop_everything

    d = tmp_path / "dn"
    try:
        devnet("up", "--nodes", "2", "--detach", "--seed", "7", "--dir", str(d), timeout=120)
        wait_for(lambda: all(rpc(n.rpc_url, "chain_info")["final_height"] >= 3
                             for n in load_manifest(d).nodes), timeout=40, interval=0.3)
        out = devnet("add", "n3", "--state-sync", "--dir", str(d), timeout=150).stdout
        m = load_manifest(d)
        n3 = m.node("n3")
        assert n3.witness is None and n3.state_sync and n3.pid is not None
        assert n3.rpc_url in out and "web app: " + n3.rpc_url.removesuffix("rpc") in out
        log = Path(n3.log).read_text()
        assert "state_sync_done" in log, log_tails(d)
        head = rpc(m.node("n1").rpc_url, "chain_info")["head_height"]
        wait_for(lambda: rpc(n3.rpc_url, "chain_info")["head_height"] >= head + 2,
                 timeout=30, interval=0.3)
        assert devnet("add", "n3", "--dir", str(d), check=False).returncode != 0
        pid = n3.pid
        devnet("down", "--dir", str(d), timeout=60)
        from devnet import procs
        assert not procs.pid_alive(pid, procs.node_marks(n3))  # down stops the added node
        # the root of the export fix: the final height itself, from the votes kept with the
        # final pointer, not a lower one rebuilt by replay (bounded: no replay is possible
        # here, the undo records below the final block are gone)
        for name in ("n1", "n3"):
            ndir = Path(m.node(name).data_dir)
            store = LevelDBStore(str(ndir / "db"), create=False)
            try:
                final_h = msgpack.unpackb(store.get(b"Mfinal"))[0]
            finally:
                store.close()
            exported = export_snapshot(ndir, tmp_path / f"{name}.snap")
            assert exported.block.height == final_h, name
    finally:
        stop_everything(d)


def _forged_state_file(src: Path, out: Path) -> Path:
    """Another file: an account's balance raised in the first chunk, that chunk's hash in
    the table recomputed, the block and its votes kept (only the digest can tell)."""
    data = src.read_bytes()
    offset = int.from_bytes(data[-24:-16], "big")
    length = int.from_bytes(data[-16:-8], "big")
    manifest = msgpack.unpackb(data[offset:offset + length])
    bodies = [data[o:o + n] for o, n, _ in manifest[6]]
    entries = msgpack.unpackb(bodies[0])
    i = next(j for j, (k, _v) in enumerate(entries) if k.startswith(b"a"))
    acct = msgpack.unpackb(entries[i][1])
    acct[0] += 10**9
    entries[i][1] = msgpack.packb(acct, use_bin_type=True)
    bodies[0] = msgpack.packb(entries, use_bin_type=True)
    table, pos = [], 8
    for body in bodies:
        table.append([pos, len(body), hashlib.sha256(body).digest()])
        pos += len(body)
    man = msgpack.packb([*manifest[:6], table, *manifest[7:]], use_bin_type=True)
    out.write_bytes(data[:8] + b"".join(bodies) + man + pos.to_bytes(8, "big")
                    + len(man).to_bytes(8, "big") + data[:8])
    return out


def test_a_forged_chunk_table_is_found_by_the_digest_and_its_offerers_banned(
        snap: dict[str, Any], tmp_path: Path) -> None:
    forged_file = _forged_state_file(snap["file"], tmp_path / "forged.snap")
    data = tmp_path / "d"
    init_data_dir(snap["gpath"], data)
    genesis = snap["genesis"]
    servers = [SnapshotFiles(genesis) for _ in range(3)]

    async def main() -> Any:
        async with trio.open_nursery() as nursery:
            ports = []
            for files, path in ((servers[0], forged_file), (servers[1], forged_file),
                                (servers[2], snap["file"])):  # the third is honest
                files.add(path)
                ports.append((await _serve(nursery, genesis, files))[1])
            try:
                return await state_sync(data, genesis, [("127.0.0.1", p) for p in ports],
                                        timeout=60)
            finally:
                nursery.cancel_scope.cancel()
                for files in servers:
                    files.close()

    res = trio.run(main)
    # two peers offered the forged manifest: it was taken first, fetched, refused by the
    # digest, both banned; then the honest one's
    assert len(res.banned) == 2
    assert _state_digest_ok(data) == res.manifest.block.state_digest


def test_a_verified_swap_cut_by_a_crash_is_finished_at_the_next_start(
        snap: dict[str, Any], tmp_path: Path) -> None:
    data = tmp_path / "d"
    shutil.copytree(snap["synced"], data)
    staging = data / STAGING_DIR
    staging.mkdir()
    # the crash came after the synced store moved to statesync/db, before db/ was
    # replaced: the genesis store is still db/
    os.rename(data / "db", staging / "db")
    init_data_dir(snap["gpath"], tmp_path / "genesis-only")
    shutil.copytree(tmp_path / "genesis-only" / "db", data / "db")
    (staging / "VERIFIED").write_text("1\n")
    assert needs_state_sync(data)
    assert finish_pending(data)
    assert not needs_state_sync(data) and not staging.exists()
    assert not finish_pending(data)
