"""State snapshots: the state at a final height, in hashed chunks, with the proof that it
is final, and a data directory made from one after checking everything.

File layout (all integers big-endian):

    b"MUXSNAP1"                          magic
    chunk 0, chunk 1, ...                each packb([[key, value], ...]), <= 4 MiB
    manifest                             packb([1, chain_id, block, votes, schedule,
                                                entries, [[offset, length, H(chunk)], ...],
                                                headers])
    u64 manifest offset, u64 manifest length, b"MUXSNAP1"

- ``block`` is the final block's canonical encoding (its header carries the state digest),
  ``votes`` the vote arrays that make it final: a supermajority link from the checkpoint
  (block id, s) to slot s + 1 (protocol section 7), taken from the blocks above it.
- Keys are state keys without the store's ``S`` prefix, in strictly increasing order
  across all chunks (so no entry can appear twice); ``entries`` is their count.
- ``schedule`` is the node's witness schedule record (META_SCHEDULE) or nil.
- ``headers`` are the headers of the blocks just below the final one, lowest first, as
  far back as a tx's TaPoS reference can reach within the tx lifetime (at most 65,535
  blocks): txs in the blocks after the snapshot refer to them, so the new node needs their
  ids. Each header's id is the next one's ``previous_id`` up to the final block, so they
  are checked by the same votes.

Checking a snapshot (``import_snapshot``) trusts only the genesis file: the chain id; the
block's signature by the slot's scheduled witness and the votes' signatures, both against
the genesis witnesses' keys and the genesis schedule; every chunk's hash; the key order;
and the MuHash3072 digest of all entries (docs/state-digest.md) against the block's
``state_digest``. A chain whose witnesses changed since genesis (an election, a rotated
key) cannot be checked from the genesis alone and is refused: that needs a chain of
witness-set handoffs, not written yet. On any failure nothing is left where the data
directory would be.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgpack

from consensus.block import Block, BlockError, decode_block
from consensus.codec import CodecError, decode
from consensus.crypto import sha256
from consensus.finality import supermajority
from consensus.genesis import Genesis, GenesisError, load_genesis
from consensus.schedule import Schedule, slot_at
from consensus.vote import Vote, VoteError, decode_vote
from muxernode.state import (
    DIGEST_KEY,
    STATE_PREFIX,
    MuHash3072,
    digest_bytes,
    element,
    encode_acc,
    entry_bytes,
)
from storage import schema
from storage.kv import KVReader, MemoryKV
from storage.leveldb import LevelDBStore, StorageError

__all__ = [
    "MAX_CHUNK",
    "Manifest",
    "SnapshotError",
    "check_state_digest",
    "export_snapshot",
    "export_view",
    "import_snapshot",
    "manifest_bytes",
    "parse_manifest",
    "read_manifest",
    "replayed_state",
    "verify_chunk",
]

MAGIC = b"MUXSNAP1"
FORMAT = 1
MAX_CHUNK = 4 * 1024 * 1024
MAX_MANIFEST = 64 * 1024 * 1024  # 16M chunks' hashes: far beyond any state we hold
_TRAILER = 8 + 8 + len(MAGIC)
_ENTRY_OVERHEAD = 12  # msgpack: array header + two bin headers, at most
PROOF_SEARCH = 64  # final heights searched (down from the final one) for a finality proof


class SnapshotError(Exception):
    """A snapshot that cannot be written or cannot be trusted; the message says why."""


@dataclass
class Manifest:
    chain_id: bytes
    block: Block
    votes: list[Vote]
    schedule: bytes | None
    entries: int
    chunks: list[tuple[int, int, bytes]]  # offset, length, H(chunk)
    slot: int = 0  # the final block's own slot
    recent: list[tuple[int, bytes]] = field(default_factory=list)  # (height, id) below it
    headers: list[Any] = field(default_factory=list)  # their headers, lowest first


def _pack(obj: Any) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


# --- export -----------------------------------------------------------------------------


def export_snapshot(data_dir: str | Path, out: str | Path, height: int | None = None,
                    *, max_chunk: int = MAX_CHUNK) -> Manifest:
    """Write the state at a final height with the proof that it is final: the node's
    final height if its blocks hold the votes, else the highest one below whose votes
    they hold (``height``: that one, or refused)."""
    from muxernode.node import DB_DIR, GENESIS_FILE  # the node's layout of a data dir

    d = Path(data_dir)
    if not (d / DB_DIR).is_dir():
        raise SnapshotError(f"{d} holds no chain (no {DB_DIR}/ in it)")
    try:
        genesis = load_genesis(d / GENESIS_FILE)
    except GenesisError as exc:
        raise SnapshotError(str(exc)) from None
    store = LevelDBStore(str(d / DB_DIR), create=False)
    try:
        return _export(store, genesis, Path(out), height, max_chunk)
    finally:
        store.close()


def export_view(view: KVReader, genesis: Genesis, out: Path, *,
                max_chunk: int = MAX_CHUNK) -> Manifest:
    """The snapshot of the final height of a consistent view of a running node's store (a
    LevelDB snapshot: blocks applied meanwhile do not tear it), from the proof kept with
    the final pointer and the undo records above it; never a replay (refused instead)."""
    final_h, final_id = _ref(view, schema.META_FINAL)[:2]
    head_h = _ref(view, schema.META_HEAD)[0]
    if final_h == 0:
        raise SnapshotError("nothing is final beyond genesis yet: no snapshot to offer")
    proof = _stored_final_votes(view, genesis, final_id)
    if proof is None:
        raise SnapshotError(f"the votes that made block {final_h} final are not kept yet "
                            "(the next final block's are)")
    return _export_final(view, genesis, out, final_h, head_h, proof, max_chunk)


def _ref(store: KVReader, key: bytes) -> list[Any]:
    raw = store.get(key)
    if raw is None:
        raise SnapshotError(f"the store has no {key.decode()} record")
    ref: list[Any] = msgpack.unpackb(raw)
    return ref


def _id_at(store: KVReader, h: int) -> bytes:
    bid = store.get(schema.height_key(h))
    if bid is None:
        raise SnapshotError(f"the store has no main-chain block at height {h}")
    return bid


def _votes_in(store: KVReader, block_id: bytes) -> list[Vote]:
    raw = store.get(schema.block_key(block_id))
    try:
        return [decode_vote(v) for v in msgpack.unpackb(raw)[3]]
    except (TypeError, ValueError, IndexError, VoteError, msgpack.UnpackException):
        raise SnapshotError(f"the stored block {block_id.hex()} is damaged") from None


def _block_at(store: KVReader, genesis: Genesis, h: int) -> Block:
    raw = store.get(schema.block_key(_id_at(store, h)))
    if raw is None:
        raise SnapshotError(f"the store has no main-chain block at height {h}")
    try:
        return decode_block(raw, genesis.params.max_block_bytes)
    except BlockError as exc:
        raise SnapshotError(f"the stored block at height {h} is damaged ({exc})") from None


def _export(store: KVReader, genesis: Genesis, out: Path, height: int | None,
            max_chunk: int) -> Manifest:
    final_h, final_id = _ref(store, schema.META_FINAL)[:2]
    head_h = _ref(store, schema.META_HEAD)[0]
    if final_h == 0:
        raise SnapshotError("nothing is final beyond genesis yet: no snapshot to export")
    if height is not None and height > final_h:
        raise SnapshotError(f"height {height} is not final (the final height is {final_h}); "
                            "a snapshot is of a final height")
    # The proof is a supermajority link (B, s) -> s + 1 whose votes are in later blocks. A
    # node counts gossiped votes too, so its final block's link is usually not in its
    # blocks yet (they come one or two blocks later): the highest provable height is often
    # just below the final one. Search the last PROOF_SEARCH heights.
    if height in (None, final_h):
        stored = _stored_final_votes(store, genesis, final_id)
        if stored is not None:  # the root case: the proof was kept with the final pointer
            return _export_final(store, genesis, out, final_h, head_h, stored, max_chunk)
    lowest = max(1, final_h - PROOF_SEARCH) if height is None else height
    if height is not None and height < final_h - PROOF_SEARCH:
        raise SnapshotError(
            f"cannot export height {height}: only the last {PROOF_SEARCH} final heights "
            f"(from {final_h - PROOF_SEARCH}) are searched for the votes that prove finality")
    ids = {h: _id_at(store, h) for h in range(lowest, head_h + 1)}
    # only the votes of the blocks above a candidate are read (not their txs), and only
    # the candidate itself is decoded whole
    votes_of: dict[int, list[Vote]] = {}
    found: tuple[Block, list[Vote]] | None = None
    why = ""
    for h in range(final_h if height is None else height, lowest - 1, -1):
        for k in range(h + 1, head_h + 1):
            if k not in votes_of:
                votes_of[k] = _votes_in(store, ids[k])
        later = [v for k in range(h + 1, head_h + 1) for v in votes_of[k]]
        candidate = _block_at(store, genesis, h)
        try:
            found = candidate, _final_votes(genesis, candidate, later)
            break
        except SnapshotError as exc:
            why = why or str(exc)
    if found is None:
        raise SnapshotError(f"no final height from {lowest} to {final_h} has the votes that "
                            f"prove its finality in this node's blocks ({why})")
    block, votes = found
    if block.height == final_h and block.id != final_id:
        raise SnapshotError("the final pointer and the height index disagree")
    if block.height == final_h:
        state = _state_at(store, _undo_overlay(store, ids, final_h, head_h))
    else:
        # the undo records below the final block are pruned: rebuild that state by
        # replaying the chain from genesis (every block's digest is checked on the way)
        state = replayed_state(store, genesis, block.height)
    headers = _headers(store, _window_start(genesis, block.height), block.height)
    return _write(out, genesis, block, votes, store.get(schema.META_SCHEDULE), state,
                  max_chunk, headers)


def _stored_final_votes(store: KVReader, genesis: Genesis, final_id: bytes
                        ) -> tuple[Block, list[Vote]] | None:
    """The final block and the votes Chain.set_final kept with the pointer, checked as an
    importer checks them; None when there are none for this final block."""
    raw = store.get(schema.META_FINAL_VOTES)
    if raw is None:
        return None
    try:
        bid, vote_raws = msgpack.unpackb(raw)
        votes = [decode_vote(v) for v in vote_raws]
    except (TypeError, ValueError, VoteError, CodecError, msgpack.UnpackException):
        return None
    if bid != final_id:
        return None
    raw_block = store.get(schema.block_key(final_id))
    if raw_block is None:
        return None
    try:
        block = decode_block(raw_block, genesis.params.max_block_bytes)
        return block, _final_votes(genesis, block, votes)
    except (BlockError, SnapshotError):
        return None


def _export_final(store: KVReader, genesis: Genesis, out: Path, final_h: int, head_h: int,
                  proof: tuple[Block, list[Vote]], max_chunk: int) -> Manifest:
    """The final height from the current state and the undo records above it (kept: the
    blocks above the final one are not final), no replay."""
    block, votes = proof
    ids = {h: _id_at(store, h) for h in range(final_h + 1, head_h + 1)}
    state = _state_at(store, _undo_overlay(store, ids, final_h, head_h))
    headers = _headers(store, _window_start(genesis, final_h), final_h)
    return _write(out, genesis, block, votes, store.get(schema.META_SCHEDULE), state,
                  max_chunk, headers)


def _window_start(genesis: Genesis, height: int) -> int:
    """The lowest height a tx in a block above ``height`` can refer to by TaPoS (the tx
    lifetime in blocks, within the 16-bit reference); height 0 is genesis, known."""
    lifetime = genesis.params.max_tx_lifetime_s // genesis.params.block_interval_s + 2
    return max(1, height - min(lifetime, 0xFFFF))


def _headers(store: KVReader, start: int, end: int) -> list[list[Any]]:
    """The headers of heights start .. end - 1: from the blocks, or, for a node made from a
    snapshot (it holds no blocks below it), from the headers that snapshot carried."""
    kept: dict[int, list[Any]] = {}
    raw = store.get(schema.META_SNAPSHOT_HEADERS)
    if raw is not None:
        kept = {int(hd[1]): hd for hd in msgpack.unpackb(raw)}
    out = []
    for h in range(start, end):
        bid = store.get(schema.height_key(h))
        if h in kept and (bid is None or store.get(schema.block_key(bid)) is None):
            out.append(kept[h])
        else:
            out.append(_header_at(store, h))
    return out


def _header_at(store: KVReader, h: int) -> list[Any]:
    raw = store.get(schema.block_key(_id_at(store, h)))
    try:
        header: list[Any] = msgpack.unpackb(raw)[0]
    except (TypeError, ValueError, IndexError, msgpack.UnpackException):
        raise SnapshotError(f"the stored block at height {h} is damaged") from None
    return header


def _undo_overlay(store: KVReader, ids: dict[int, bytes], final_h: int,
                  head_h: int) -> dict[bytes, bytes | None]:
    """The state at the final height over the head's: the undo records of the blocks
    above, applied from the head down (a lower block's old value wins)."""
    overlay: dict[bytes, bytes | None] = {}
    for h in range(head_h, final_h, -1):
        raw_undo = store.get(schema.undo_key(ids[h]))
        if raw_undo is None:
            raise SnapshotError(f"no undo record for block {h}: cannot rebuild the final state")
        for k, v in msgpack.unpackb(raw_undo):
            if k.startswith(STATE_PREFIX):
                overlay[k] = v
    return overlay


class _StateOnlyKV(MemoryKV):
    """An in-memory store for a replay that keeps the state and the chain's pointers and
    height index, and drops what a replay never reads again (blocks, undo, indices)."""

    _DROP = (schema.PREFIX_BLOCK, schema.PREFIX_UNDO, schema.PREFIX_TX, schema.PREFIX_VOTE,
             schema.PREFIX_HISTORY, schema.PREFIX_EVIDENCE)

    def write(self, changes: Mapping[bytes, bytes | None], sync: bool = False) -> None:
        super().write({k: v for k, v in changes.items() if not k.startswith(self._DROP)})


def replayed_state(store: KVReader, genesis: Genesis, height: int
                    ) -> Iterator[tuple[bytes, bytes]]:
    from consensus.chain import Chain, ChainError
    from muxernode.ledger import Ledger

    raw = store.get(schema.META_SCHEDULE)
    schedule = (Schedule(genesis.chain_id, [(e[0], e[1], e[2]) for e in msgpack.unpackb(raw)[1]])
                if raw is not None else _genesis_schedule(genesis)[0])
    mem = _StateOnlyKV()
    Chain.initialize(mem, Ledger(mem, genesis.params, genesis.genesis_time), genesis)
    chain = Chain(mem, Ledger(mem, genesis.params, genesis.genesis_time), genesis,
                  schedule.witness_at)
    chain.sync = False
    for h in range(1, height + 1):
        try:
            chain.apply_block(_block_at(store, genesis, h))
        except ChainError as exc:
            raise SnapshotError(f"replaying block {h} failed ({exc}): the store is damaged"
                                ) from None
    return _state_at(mem, {})


def _write(out: Path, genesis: Genesis, block: Block, votes: list[Vote],
           schedule: bytes | None, state: Iterator[tuple[bytes, bytes]], max_chunk: int,
           headers: list[list[Any]]) -> Manifest:
    tmp = out.with_name(out.name + ".tmp")
    chunks: list[tuple[int, int, bytes]] = []
    entries = 0
    mh = MuHash3072()
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC)
            batch: list[list[bytes]] = []
            size = 0
            for k, v in state:
                mh.insert(entry_bytes(k, v))
                entries += 1
                cost = len(k) + len(v) + _ENTRY_OVERHEAD
                if cost + 8 > max_chunk:
                    raise SnapshotError(f"state entry {k.hex()} alone is over the chunk limit")
                if size + cost + 8 > max_chunk:
                    chunks.append(_write_chunk(f, batch))
                    batch, size = [], 0
                batch.append([k, v])
                size += cost
            if batch:
                chunks.append(_write_chunk(f, batch))
            if digest_bytes(mh.value()) != block.state_digest:
                raise SnapshotError("the rebuilt state does not match the block's digest: "
                                    "the store is damaged")
            manifest = _pack([FORMAT, genesis.chain_id, block.raw, [v.obj() for v in votes],
                              schedule, entries, [list(c) for c in chunks], headers])
            offset = f.tell()
            f.write(manifest)
            f.write(offset.to_bytes(8, "big") + len(manifest).to_bytes(8, "big") + MAGIC)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    slot = slot_at(genesis.genesis_time, genesis.params.block_interval_s, block.timestamp)
    recent = [(int(hd[1]), sha256(_pack(hd))) for hd in headers]
    return Manifest(genesis.chain_id, block, votes, schedule, entries, chunks, slot, recent,
                    headers)


def _write_chunk(f: IO[bytes], batch: list[list[bytes]]) -> tuple[int, int, bytes]:
    data = _pack(batch)
    offset = f.tell()
    f.write(data)
    return offset, len(data), sha256(data)


def _state_at(store: KVReader, overlay: dict[bytes, bytes | None]
              ) -> Iterator[tuple[bytes, bytes]]:
    """(key without prefix, value) of the state with the overlay, in key order."""
    n = len(STATE_PREFIX)
    digest_key = STATE_PREFIX + DIGEST_KEY
    pending = sorted(overlay.items())
    i = 0
    for k, v in store.iterate(STATE_PREFIX):
        while i < len(pending) and pending[i][0] < k:
            ok, ov = pending[i]
            i += 1
            if ov is not None and ok != digest_key:
                yield ok[n:], ov
        if i < len(pending) and pending[i][0] == k:
            v2 = pending[i][1]
            i += 1
            if v2 is None:
                continue
            v = v2
        if k != digest_key:
            yield k[n:], v
    for ok, ov in pending[i:]:
        if ov is not None and ok != digest_key:
            yield ok[n:], ov


# --- finality ---------------------------------------------------------------------------


def _genesis_schedule(genesis: Genesis) -> tuple[Schedule, dict[bytes, bytes]]:
    active = [w.address for w in genesis.witnesses][: genesis.params.active_witnesses]
    keys = {w.address: w.signing_key for w in genesis.witnesses}
    return Schedule(genesis.chain_id, [(1, active)]), keys


def _final_votes(genesis: Genesis, block: Block, candidates: list[Vote]) -> list[Vote]:
    """The votes of one supermajority link (block, s) -> s + 1 among candidates, each
    checked against the genesis witnesses; raises SnapshotError when there is none."""
    schedule, keys = _genesis_schedule(genesis)
    block_slot = slot_at(genesis.genesis_time, genesis.params.block_interval_s,
                         block.timestamp)
    links: dict[tuple[int, bytes], dict[bytes, Vote]] = {}
    bad = 0
    for v in candidates:
        if (v.source_id != block.id or v.target_slot != v.source_slot + 1
                or v.source_slot < block_slot):
            continue
        voters = schedule.voters_at(v.target_slot)
        key = keys.get(v.witness)
        if v.witness not in voters or key is None or not v.verify(genesis.chain_id, key):
            bad += 1
            continue
        links.setdefault((v.source_slot, v.target_id), {})[v.witness] = v
    for (_slot, _target), by_voter in sorted(links.items()):
        n = len(schedule.voters_at(_slot + 1))
        if len(by_voter) >= supermajority(n):
            return [by_voter[w] for w in sorted(by_voter)]
    best = max((len(x) for x in links.values()), default=0)
    extra = (f"; {bad} vote(s) are not by the genesis witnesses' keys (the chain's witnesses "
             "changed since genesis? this version checks snapshots against the genesis "
             "witnesses only)") if bad else ""
    raise SnapshotError(
        f"the votes that make block {block.height} final are not there: the best link "
        f"has {best} valid vote(s) of the {supermajority(len(schedule.voters_at(block_slot + 1)))}"
        f" needed{extra}")


# --- import -----------------------------------------------------------------------------


def read_manifest(f: IO[bytes], genesis: Genesis) -> Manifest:
    """The manifest of an open snapshot file, its block and votes checked (not the state)."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(0)
    if size < len(MAGIC) + _TRAILER or f.read(len(MAGIC)) != MAGIC:
        raise SnapshotError("not a muxernode snapshot (bad magic)")
    f.seek(size - _TRAILER)
    trailer = f.read(_TRAILER)
    offset = int.from_bytes(trailer[:8], "big")
    length = int.from_bytes(trailer[8:16], "big")
    if trailer[16:] != MAGIC or length > MAX_MANIFEST or offset + length != size - _TRAILER:
        raise SnapshotError("the snapshot is truncated or damaged (bad trailer)")
    f.seek(offset)
    return parse_manifest(f.read(length), genesis, data_end=offset)


def manifest_bytes(f: IO[bytes]) -> bytes:
    """The raw manifest of a snapshot file this node wrote (state sync serves it as is)."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(size - _TRAILER)
    trailer = f.read(_TRAILER)
    offset, length = int.from_bytes(trailer[:8], "big"), int.from_bytes(trailer[8:16], "big")
    f.seek(offset)
    return f.read(length)


def parse_manifest(raw: bytes, genesis: Genesis, *, data_end: int | None = None,
                   max_chunk: int = MAX_CHUNK) -> Manifest:
    """A manifest, its block and votes checked against the genesis (not the state); its
    chunks must follow each other from the magic on (up to ``data_end`` when known)."""
    try:
        doc = msgpack.unpackb(raw)
        fmt, chain_id, block_raw, vote_objs, schedule, entries, chunks, headers = doc
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise SnapshotError(f"the snapshot's manifest is malformed ({exc})") from None
    if fmt != FORMAT:
        raise SnapshotError(f"snapshot format {fmt!r}; this muxernode reads format {FORMAT}")
    if chain_id != genesis.chain_id:
        hexed = chain_id.hex() if isinstance(chain_id, bytes) else repr(chain_id)
        raise SnapshotError(f"the snapshot is of chain {hexed}, the genesis is of chain "
                            f"{genesis.chain_id.hex()}")
    try:
        block = decode_block(block_raw, genesis.params.max_block_bytes)
        votes = [decode_vote(v) for v in vote_objs]
    except (BlockError, VoteError, CodecError, TypeError) as exc:
        raise SnapshotError(f"the snapshot's block or votes are malformed ({exc})") from None
    schedule_, keys = _genesis_schedule(genesis)
    slot = slot_at(genesis.genesis_time, genesis.params.block_interval_s, block.timestamp)
    producer = schedule_.witness_at(slot) if slot >= 1 else None
    key = keys.get(block.witness)
    if block.witness != producer or key is None or not block.verify_signature(chain_id, key):
        raise SnapshotError(f"block {block.height} is not signed by the genesis witness of "
                            f"its slot {slot}")
    if len(_final_votes(genesis, block, votes)) != len(votes):
        raise SnapshotError("the snapshot carries votes that are not of its finality link")
    try:
        table = [(int(o), int(n), bytes(h)) for o, n, h in chunks]
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"the snapshot's chunk table is malformed ({exc})") from None
    end = len(MAGIC)
    for i, (o, n, h) in enumerate(table):
        if o != end or not 0 < n <= max_chunk or len(h) != 32:
            raise SnapshotError(f"chunk {i} is out of place or over {max_chunk} bytes")
        end = o + n
    if data_end is not None and end != data_end:
        raise SnapshotError("the chunks do not fill the snapshot up to its manifest")
    if not isinstance(entries, int) or entries < 0:
        raise SnapshotError("the snapshot's entry count is malformed")
    if schedule is not None:
        _check_schedule(schedule, genesis)
    return Manifest(chain_id, block, votes, schedule, entries, table, slot,
                    _check_headers(headers, block, genesis), list(headers))


def _check_headers(headers: Any, block: Block, genesis: Genesis) -> list[tuple[int, bytes]]:
    """(height, id) of the headers below the block, each linked to the next by its id."""
    if not isinstance(headers, list):
        raise SnapshotError("the snapshot's headers are malformed")
    start = _window_start(genesis, block.height)
    if len(headers) != block.height - start:
        raise SnapshotError(f"the snapshot carries {len(headers)} headers below block "
                            f"{block.height}, not the {block.height - start} from {start}")
    out: list[tuple[int, bytes]] = []
    expected_id, expected_h = block.previous_id, block.height - 1
    for header in reversed(headers):
        try:
            bid = sha256(_pack(header))
            height, previous = int(header[1]), bytes(header[2])
        except (TypeError, ValueError, IndexError):
            raise SnapshotError("the snapshot's headers are malformed") from None
        if bid != expected_id or height != expected_h:
            raise SnapshotError(f"the header at height {expected_h} is not the final block's "
                                "ancestor")
        out.append((height, bid))
        expected_id, expected_h = previous, height - 1
    if expected_h == 0 and expected_id != genesis.chain_id:
        raise SnapshotError("the lowest header does not descend from this genesis")
    return out[::-1]


def _check_schedule(raw: Any, genesis: Genesis) -> None:
    active = {w.address for w in genesis.witnesses[: genesis.params.active_witnesses]}
    try:
        epochs = [(int(e[0]), {bytes(a) for a in e[1]}) for e in msgpack.unpackb(raw)[1]]
    except (ValueError, TypeError, IndexError, msgpack.UnpackException):
        raise SnapshotError("the snapshot's schedule record is malformed") from None
    if epochs != [(1, active)]:
        raise SnapshotError("the chain's witness set changed since genesis: this version "
                            "checks snapshots against the genesis witnesses only")


def _chunk_entries(data: bytes, index: int) -> list[tuple[bytes, bytes]]:
    try:
        items = decode(data, MAX_CHUNK)
        out = [(k, v) for k, v in items]
    except (CodecError, TypeError, ValueError) as exc:
        raise SnapshotError(f"chunk {index} is malformed ({exc})") from None
    for k, v in out:
        if type(k) is not bytes or type(v) is not bytes:
            raise SnapshotError(f"chunk {index} holds an entry that is not two byte strings")
    return out


def import_snapshot(genesis_path: str | Path, data_dir: str | Path,
                    snapshot: str | Path) -> Manifest:
    """Make data_dir from a snapshot after checking it all (see the module doc)."""
    from muxernode.node import DB_DIR, GENESIS_FILE

    try:
        genesis = load_genesis(genesis_path)
    except GenesisError as exc:
        raise SnapshotError(str(exc)) from None
    d = Path(data_dir)
    if d.exists() and any(d.iterdir()):
        raise SnapshotError(f"{d} exists and is not empty (remove it to start over)")
    tmp = d.with_name(f".{d.name}.snapshot-import")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with open(snapshot, "rb") as f:
            manifest = read_manifest(f, genesis)
            tmp.mkdir(parents=True)
            store = LevelDBStore(str(tmp / DB_DIR))
            try:
                schema.check_schema(store)
                _import_state(f, manifest, store)
                _write_pointers(store, manifest)
            finally:
                store.close()
        (tmp / GENESIS_FILE).write_text(Path(genesis_path).read_text(encoding="utf-8"),
                                        encoding="utf-8")
        if d.exists():
            d.rmdir()  # empty, checked above
        os.replace(tmp, d)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SnapshotError(f"cannot read {snapshot} or write {d}: {exc.strerror}") from None
    except (SnapshotError, StorageError):
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def verify_chunk(data: bytes, index: int, digest: bytes, *, after: bytes | None = None
                 ) -> tuple[list[tuple[bytes, bytes]], MuHash3072]:
    """Chunk ``index`` checked against its hash in the manifest, decoded, its keys strictly
    increasing (and above ``after``, the previous chunk's last key, when known), with the
    MuHash3072 of its entries: the whole state's digest is the product over the chunks."""
    if sha256(data) != digest:
        raise SnapshotError(f"chunk {index} does not match its hash: the snapshot is corrupt "
                            "or forged")
    acc = MuHash3072()
    entries = _chunk_entries(data, index)
    last = after
    for k, _v in entries:
        if last is not None and k <= last:
            raise SnapshotError(f"chunk {index}: keys out of order or repeated")
        if k == DIGEST_KEY:
            raise SnapshotError(f"chunk {index} holds the digest record as an entry")
        last = k
    for k, v in entries:
        acc.insert_element(element(entry_bytes(k, v)))
    return entries, acc


def check_state_digest(manifest: Manifest, acc: MuHash3072, count: int) -> bytes:
    """The stored digest record of a state whose entries hashed to ``acc``, after checking
    it against the manifest's count and the final block's digest."""
    if count != manifest.entries:
        raise SnapshotError(f"the snapshot holds {count} entries, its manifest says "
                            f"{manifest.entries}")
    value = acc.value()
    if digest_bytes(value) != manifest.block.state_digest:
        raise SnapshotError(
            f"the state does not match the digest of block {manifest.block.height} "
            "(entries changed: a forged or corrupt snapshot)")
    return encode_acc(value)


def _import_state(f: IO[bytes], manifest: Manifest, store: LevelDBStore) -> None:
    acc = MuHash3072()
    last: bytes | None = None
    count = 0
    for i, (offset, length, digest) in enumerate(manifest.chunks):
        f.seek(offset)
        entries, chunk_acc = verify_chunk(f.read(length), i, digest, after=last)
        if entries:
            last = entries[-1][0]
        count += len(entries)
        acc.insert_element(chunk_acc.value())
        store.write({STATE_PREFIX + k: v for k, v in entries})
    store.write({STATE_PREFIX + DIGEST_KEY: check_state_digest(manifest, acc, count)})


def _write_pointers(store: LevelDBStore, manifest: Manifest) -> None:
    """The chain's records for a chain whose first stored block is the final one."""
    b = manifest.block
    slot = manifest.slot
    ref = _pack([b.height, b.id, b.timestamp, slot])  # as Chain.set_final writes it
    batch: dict[bytes, bytes | None] = {
        schema.block_key(b.id): b.raw,
        schema.height_key(b.height): b.id,
        schema.height_key(0): manifest.chain_id,  # genesis, as Chain.initialize writes it
        **{schema.height_key(h): bid for h, bid in manifest.recent},
        schema.META_HEAD: ref,
        schema.META_FINAL: ref,
        schema.META_CHAIN_FINAL: _pack([b.id, slot, b.height]),
        schema.META_CHAIN_ID: manifest.chain_id,
    }
    if manifest.schedule is not None:
        batch[schema.META_SCHEDULE] = manifest.schedule
    # the proof travels on: this node can serve the same height by state sync at once,
    # and the headers below it, which it holds no blocks of, for its own later snapshots
    batch[schema.META_FINAL_VOTES] = _pack([b.id, [v.encode() for v in manifest.votes]])
    batch[schema.META_SNAPSHOT_HEADERS] = _pack(manifest.headers)
    store.write(batch, sync=True)
