"""Snapshots (muxernode/snapshot.py): export from a real chain, import after checking the
votes, every chunk and the whole state; forged and damaged snapshots are refused every
time and leave no data directory behind."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from click.testing import CliRunner

from consensus.crypto import PrivateKey
from consensus.genesis import load_genesis
from consensus.tx import build_tx, tapos_of
from devnet.cluster import free_ports
from muxernode.daemon import main as daemon_main
from muxernode.snapshot import MAGIC, SnapshotError, import_snapshot
from muxernode.state import STATE_PREFIX, recompute_digest
from storage.leveldb import LevelDBStore
from tests.procs import Daemon, accounts, make_genesis, rpc, wait_for
from tests.witness_helpers import start_witnesses


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(daemon_main, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two witness daemons run until height 5 is final, then stop; n1's data dir is the
    chain the tests export (a stopped node: its store is not locked)."""
    tmp = tmp_path_factory.mktemp("snap")
    gdir = tmp / "g"
    gpath = make_genesis(gdir, witnesses=2, accounts=20, seed=31)
    ports = free_ports(3)
    daemons: list[Daemon] = []
    try:
        start_witnesses(daemons, [tmp / "n1", tmp / "n2"], gdir, ports, genesis=gpath)
        wait_for(lambda: all(rpc(d.url, "chain_info")["final_height"] >= 5 for d in daemons),
                 timeout=40, interval=0.2)
        for d in daemons:
            assert d.stop() == 0
        out = tmp / "state.snap"
        code, text = _cli("snapshot", "export", "--data-dir", str(tmp / "n1"),
                          "--out", str(out))
        assert code == 0, text
        yield {"tmp": tmp, "genesis": gpath, "snap": out, "text": text, "ports": ports}
    finally:
        for d in daemons:
            d.kill()


def _final(data: Path) -> tuple[int, bytes]:
    store = LevelDBStore(str(data / "db"), create=False)
    try:
        raw = store.get(b"Mfinal")
        assert raw is not None
        h, bid = msgpack.unpackb(raw)[:2]
        return h, bid
    finally:
        store.close()


def _id_at(data: Path, height: int) -> bytes:
    store = LevelDBStore(str(data / "db"), create=False)
    try:
        bid = store.get(b"H" + height.to_bytes(8, "big"))
        assert bid is not None
        return bid
    finally:
        store.close()


def test_export_and_import_give_the_final_state(chain: dict[str, Any], tmp_path: Path) -> None:
    final, _ = _final(chain["tmp"] / "n1")
    height = int(chain["text"].split(": height ")[1].split(",")[0])
    # the final block, or the highest below it whose finality votes the blocks hold
    assert 1 <= height <= final
    block_id = _id_at(chain["tmp"] / "n1", height)
    assert chain["snap"].read_bytes().startswith(MAGIC)
    target = tmp_path / "fresh"
    code, text = _cli("init", "--genesis", str(chain["genesis"]), "--data-dir", str(target),
                      "--snapshot", str(chain["snap"]))
    assert code == 0, text
    assert f"from the snapshot at final height {height}" in text
    assert _final(target) == (height, block_id)
    # the ids below it that TaPoS references reach are in the height index
    assert _id_at(target, height - 1) == _id_at(chain["tmp"] / "n1", height - 1)
    store = LevelDBStore(str(target / "db"), create=False)
    try:
        digest = recompute_digest(store)
        raw = store.get(b"B" + block_id)
        assert raw is not None
        from consensus.block import decode_block

        assert decode_block(raw, 2097152).state_digest == digest
        # every account of the genesis is there (20 funded accounts)
        accounts = [k for k, _ in store.iterate(STATE_PREFIX + b"a")]
        assert len(accounts) >= 20
    finally:
        store.close()


def test_small_chunks_are_each_hashed_and_bounded(chain: dict[str, Any], tmp_path: Path) -> None:
    from muxernode.snapshot import export_snapshot

    src = tmp_path / "n1"
    shutil.copytree(chain["tmp"] / "n1", src)
    out = tmp_path / "small.snap"
    m = export_snapshot(src, out, max_chunk=300)
    assert len(m.chunks) > 3
    data = out.read_bytes()
    for offset, length, digest in m.chunks:
        assert length <= 300
        assert hashlib.sha256(data[offset:offset + length]).digest() == digest
    made = import_snapshot(chain["genesis"], tmp_path / "d", out)
    assert made.entries == m.entries and made.block.id == m.block.id


def test_export_refuses_heights_it_cannot_prove(chain: dict[str, Any], tmp_path: Path) -> None:
    height, _ = _final(chain["tmp"] / "n1")
    data = str(chain["tmp"] / "n1")
    out = str(tmp_path / "x.snap")
    code, text = _cli("snapshot", "export", "--data-dir", data, "--out", out,
                      "--height", str(height + 50))
    assert code == 1 and f"height {height + 50} is not final (the final height is {height})" \
        in text
    code, text = _cli("snapshot", "export", "--data-dir", str(tmp_path), "--out", out)
    assert code == 1 and "holds no chain" in text
    assert not Path(out).exists()


def test_a_lower_final_height_is_rebuilt_by_replay(tmp_path: Path) -> None:
    """Below the final block the undo records are pruned: the state at a lower final
    height comes from replaying the chain from genesis (each digest checked), and imports
    like any other. The chain is built in-process (bench.snapshot's builder), so every
    block has its own finality link in the blocks after it."""
    from bench.snapshot import build_chain

    final = build_chain(tmp_path / "n", accounts=60, txs=400, block_txs=50, seed=3)
    assert final == 6
    out = tmp_path / "low.snap"
    code, text = _cli("snapshot", "export", "--data-dir", str(tmp_path / "n"),
                      "--out", str(out), "--height", "3")
    assert code == 0, text
    assert "height 3," in text
    m = import_snapshot(tmp_path / "n" / "genesis.json", tmp_path / "d", out)
    assert m.block.height == 3 == _final(tmp_path / "d")[0]
    assert m.block.id == _id_at(tmp_path / "n", 3)
    # the default is the final block itself, whose link is in the blocks above it
    code, text = _cli("snapshot", "export", "--data-dir", str(tmp_path / "n"),
                      "--out", str(out))
    assert code == 0 and "height 6," in text, text


# --- forgeries: each one refused, and no data directory left ------------------------------


def _sections(path: Path) -> tuple[bytes, list[Any], int]:
    data = path.read_bytes()
    offset = int.from_bytes(data[-24:-16], "big")
    length = int.from_bytes(data[-16:-8], "big")
    return data, msgpack.unpackb(data[offset:offset + length]), offset


def _rebuild(data: bytes, manifest: list[Any], chunks: list[bytes] | None = None) -> bytes:
    """A snapshot file with the given manifest fields and chunk bodies (hashes as given)."""
    offset0 = len(MAGIC)
    old = manifest[6]
    bodies = chunks if chunks is not None else [data[o:o + n] for o, n, _ in old]
    table = []
    pos = offset0
    for body, (_o, _n, h) in zip(bodies, old, strict=True):
        table.append([pos, len(body), h])
        pos += len(body)
    man: bytes = msgpack.packb([*manifest[:6], table, *manifest[7:]], use_bin_type=True)
    return (MAGIC + b"".join(bodies) + man + pos.to_bytes(8, "big")
            + len(man).to_bytes(8, "big") + MAGIC)


def _refused(chain: dict[str, Any], tmp_path: Path, blob: bytes, expect: str) -> None:
    forged = tmp_path / "forged.snap"
    forged.write_bytes(blob)
    target = tmp_path / "d"
    code, text = _cli("init", "--genesis", str(chain["genesis"]), "--data-dir", str(target),
                      "--snapshot", str(forged))
    assert code == 1, text
    assert "snapshot refused:" in text and expect in text, text
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["forged.snap"]


def _entries(body: bytes) -> list[list[bytes]]:
    out: list[list[bytes]] = msgpack.unpackb(body)
    return out


def test_changed_entries_with_the_digest_kept_are_refused(chain: dict[str, Any],
                                                         tmp_path: Path) -> None:
    data, manifest, _ = _sections(chain["snap"])
    bodies = [data[o:o + n] for o, n, _ in manifest[6]]
    entries = _entries(bodies[0])
    # an account's balance raised, and the chunk hash recomputed to match: only the
    # state digest can catch it
    i = next(j for j, (k, _v) in enumerate(entries) if k.startswith(b"a"))
    acct = msgpack.unpackb(entries[i][1])
    acct[0] += 10**9
    entries[i][1] = msgpack.packb(acct, use_bin_type=True)
    body = msgpack.packb(entries, use_bin_type=True)
    manifest[6][0][2] = hashlib.sha256(body).digest()
    _refused(chain, tmp_path, _rebuild(data, manifest, [body, *bodies[1:]]),
             "the state does not match the digest of block")


@pytest.mark.parametrize("change", ["drop", "add", "swap"])
def test_other_state_forgeries_are_refused(chain: dict[str, Any], tmp_path: Path,
                                           change: str) -> None:
    data, manifest, _ = _sections(chain["snap"])
    bodies = [data[o:o + n] for o, n, _ in manifest[6]]
    entries = _entries(bodies[0])
    accts = [j for j, (k, _v) in enumerate(entries) if k.startswith(b"a")]
    if change == "drop":
        del entries[accts[0]]
    elif change == "add":
        entries.insert(accts[-1] + 1, [entries[accts[-1]][0] + b"\x00", entries[accts[-1]][1]])
    else:  # two records' values exchanged: the same keys, the same values
        a = 0
        b = next(j for j in range(1, len(entries)) if entries[j][1] != entries[0][1])
        entries[a][1], entries[b][1] = entries[b][1], entries[a][1]
    manifest[5] += {"drop": -1, "add": 1, "swap": 0}[change]
    body = msgpack.packb(entries, use_bin_type=True)
    manifest[6][0][2] = hashlib.sha256(body).digest()
    _refused(chain, tmp_path, _rebuild(data, manifest, [body, *bodies[1:]]),
             "the state does not match the digest of block")


def test_a_chunk_that_does_not_match_its_hash_is_refused(chain: dict[str, Any],
                                                        tmp_path: Path) -> None:
    data, manifest, _ = _sections(chain["snap"])
    bodies = [data[o:o + n] for o, n, _ in manifest[6]]
    entries = _entries(bodies[-1])
    entries[-1][1] = entries[-1][1] + b"\x00"
    _refused(chain, tmp_path, _rebuild(data, manifest, [*bodies[:-1], msgpack.packb(
        entries, use_bin_type=True)]), f"chunk {len(bodies) - 1} does not match its hash")


def test_votes_and_block_are_checked(chain: dict[str, Any], tmp_path: Path) -> None:
    data, manifest, _ = _sections(chain["snap"])
    # too few votes: one of the two witnesses' votes removed (2 of 2 are needed)
    fewer = [*manifest[:3], manifest[3][:1], *manifest[4:]]
    _refused(chain, tmp_path, _rebuild(data, fewer), "the votes that make block")
    # a vote's signature broken
    bad = [list(v) for v in manifest[3]]
    bad[0][5] = bytes(64)
    _refused(chain, tmp_path, _rebuild(data, [*manifest[:3], bad, *manifest[4:]]),
             "the votes that make block")
    # another block (a header changed: its id and so the votes' source no longer match)
    block = msgpack.unpackb(manifest[2])
    block[0][3] += 1
    other = msgpack.packb(block, use_bin_type=True)
    _refused(chain, tmp_path, _rebuild(data, [*manifest[:2], other, *manifest[3:]]),
             "is not signed by the genesis witness")


def test_the_headers_below_must_be_the_blocks_ancestors(chain: dict[str, Any],
                                                       tmp_path: Path) -> None:
    data, manifest, _ = _sections(chain["snap"])
    headers = manifest[7]
    assert len(headers) == msgpack.unpackb(manifest[2])[0][1] - 1  # every block down to 1
    changed = [list(h) for h in headers]
    changed[0][3] += 1  # the lowest header's timestamp: its id no longer links
    _refused(chain, tmp_path, _rebuild(data, [*manifest[:7], changed]),
             "is not the final block's ancestor")
    _refused(chain, tmp_path, _rebuild(data, [*manifest[:7], headers[1:]]),
             "headers below block")


def test_other_chains_and_damage_are_refused(chain: dict[str, Any], tmp_path: Path) -> None:
    data, manifest, _offset = _sections(chain["snap"])
    _refused(chain, tmp_path, _rebuild(data, [manifest[0], bytes(32), *manifest[2:]]),
             "the snapshot is of chain 0000")
    _refused(chain, tmp_path, data[: len(data) - 5], "truncated or damaged")
    _refused(chain, tmp_path, b"PK\x03\x04" + data[4:], "not a muxernode snapshot")
    _refused(chain, tmp_path, _rebuild(data, [2, *manifest[1:]]), "snapshot format 2")
    _refused(chain, tmp_path, _rebuild(data, [*manifest[:5], manifest[5] + 1, *manifest[6:]]),
             "entries, its manifest says")


def test_init_refuses_a_used_data_dir(chain: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "d"
    target.mkdir()
    (target / "keep").write_text("x")
    with pytest.raises(SnapshotError, match="exists and is not empty"):
        import_snapshot(chain["genesis"], target, chain["snap"])
    assert (target / "keep").read_text() == "x"


def test_a_node_made_from_a_snapshot_follows_the_chain(chain: dict[str, Any],
                                                       tmp_path: Path) -> None:
    """The two witnesses start again; a third node made from the snapshot (no block below
    the snapshot's) joins through one of them, follows and finalizes with them."""
    gdir = chain["genesis"].parent
    target = tmp_path / "n3"
    import_snapshot(chain["genesis"], target, chain["snap"])
    start = _final(target)[0]
    ports = free_ports(3)
    daemons: list[Daemon] = []
    try:
        start_witnesses(daemons, [chain["tmp"] / "n1", chain["tmp"] / "n2"], gdir, ports)
        joiner = Daemon(target, extra_args=["--p2p", f"127.0.0.1:{ports[2]}",
                                            "--peer", f"127.0.0.1:{ports[0]}"])
        joiner.start()
        daemons.append(joiner)
        head = rpc(daemons[0].url, "chain_info")["head_height"]
        wait_for(lambda: rpc(joiner.url, "chain_info")["final_height"] >= head + 2,
                 timeout=40, interval=0.2)
        # a tx whose TaPoS names a block below the snapshot: the joiner has its id from
        # the snapshot's headers, so it accepts the block that carries the tx
        ref = rpc(daemons[0].url, "get_block", start - 1)["id"]
        num, prefix = tapos_of(start - 1, bytes.fromhex(ref))
        sender = PrivateKey(bytes.fromhex(accounts(gdir)[0]["secret"]))
        tx = build_tx(sender, load_genesis(chain["genesis"]).chain_id,
                      [1, sender.address, 5, "after the snapshot"], ref_block_num=num,
                      ref_block_prefix=prefix, expiration=int(time.time()) + 600, fee=10)
        tx_id = rpc(daemons[0].url, "submit_tx", tx.raw.hex())["tx_id"]
        wait_for(lambda: rpc(joiner.url, "get_tx", tx_id)["status"] == "final",
                 timeout=30, interval=0.2)
        h = rpc(joiner.url, "chain_info")["final_height"]
        assert h > start
        assert rpc(joiner.url, "get_block", h)["id"] == rpc(daemons[0].url, "get_block", h)["id"]
        for d in daemons:
            assert d.stop() == 0
    finally:
        for d in daemons:
            d.kill()
