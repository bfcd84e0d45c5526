"""Key layout of a node's LevelDB (one database per node).

Every key starts with a one-byte kind, so each kind is a contiguous, prefix-iterable range
and kinds never collide:

    S...               application state (owned by the ledger; see muxernode/ledger.py)
    B + block_id       block bytes (every block ever accepted, main chain or not; a
                       pruned node deletes main-chain ones below Mpruned)
    U + block_id       undo record of a main-chain block above the final one
    H + height(8)      main-chain block id at that height (a pruned node keeps the last
                       2**16 for TaPoS, see consensus/chain.py)
    T + tx_id          height(8) of the main-chain block that holds the tx (pruned with it)
    V + vote_hash      height(8) of the main-chain block that includes the vote (likewise)
    E + seq(8)         equivocation evidence found by this node, oldest first (the last
                       1024 are kept; see consensus/engine.py)
    I...               the account-history index (owned by muxernode/history.py; not
                       part of the state or its digest; written with its block)
    M + name           node metadata (head, final, chain id, schema version, last slot
                       produced, last vote cast, ...)

Heights are 8-byte big-endian so that ascending key order is ascending height.
"""

from __future__ import annotations

from storage.kv import KVStore

__all__ = [
    "META_CHAIN_FINAL",
    "META_CHAIN_ID",
    "META_FINAL",
    "META_FINAL_VOTES",
    "META_HEAD",
    "META_HISTORY",
    "META_LAST_SLOT",
    "META_LAST_VOTE",
    "META_PRUNED",
    "META_SCHEDULE",
    "META_SCHEMA",
    "META_SNAPSHOT_HEADERS",
    "PREFIX_BLOCK",
    "PREFIX_EVIDENCE",
    "PREFIX_HEIGHT",
    "PREFIX_HISTORY",
    "PREFIX_STATE",
    "PREFIX_TX",
    "PREFIX_UNDO",
    "PREFIX_VOTE",
    "SCHEMA_VERSION",
    "SchemaError",
    "block_key",
    "check_schema",
    "evidence_key",
    "from_u64",
    "height_key",
    "tx_index_key",
    "u64",
    "undo_key",
    "vote_index_key",
]

SCHEMA_VERSION = 1

PREFIX_STATE = b"S"
PREFIX_BLOCK = b"B"
PREFIX_UNDO = b"U"
PREFIX_HEIGHT = b"H"
PREFIX_TX = b"T"
PREFIX_VOTE = b"V"
PREFIX_EVIDENCE = b"E"
PREFIX_HISTORY = b"I"

META_SCHEMA = b"Mschema"
META_CHAIN_ID = b"Mchain_id"
META_HEAD = b"Mhead"
META_FINAL = b"Mfinal"
META_FINAL_VOTES = b"Mfinal_votes"  # [final block id, [encoded votes that made it final]]
META_SNAPSHOT_HEADERS = b"Msnapshot_headers"  # a node made from a snapshot: the headers below
META_LAST_SLOT = b"Mlast_slot"  # last slot this node produced for: never sign two blocks
META_LAST_VOTE = b"Mlast_vote"  # the voter guard's record: never two votes for one slot
META_SCHEDULE = b"Mschedule"  # witness schedule epochs decided by this chain
META_CHAIN_FINAL = b"Mchain_final"  # the chain view's final checkpoint [id, slot, height]
META_PRUNED = b"Mpruned"  # u64: the lowest height whose block is stored (absent: 1)
META_HISTORY = b"Mhistory"  # the history index: [complete from height, built below height]


class SchemaError(Exception):
    """The database was written by an incompatible version of muxernode."""


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def from_u64(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def block_key(block_id: bytes) -> bytes:
    return PREFIX_BLOCK + block_id


def undo_key(block_id: bytes) -> bytes:
    return PREFIX_UNDO + block_id


def height_key(height: int) -> bytes:
    return PREFIX_HEIGHT + u64(height)


def tx_index_key(tx_id: bytes) -> bytes:
    return PREFIX_TX + tx_id


def vote_index_key(vote_hash: bytes) -> bytes:
    return PREFIX_VOTE + vote_hash


def evidence_key(seq: int) -> bytes:
    return PREFIX_EVIDENCE + u64(seq)


def check_schema(store: KVStore) -> None:
    """Stamp a new database with our schema version, or refuse one from another version."""
    raw = store.get(META_SCHEMA)
    if raw is None:
        store.write({META_SCHEMA: u64(SCHEMA_VERSION)}, sync=True)
        return
    version = from_u64(raw)
    if version != SCHEMA_VERSION:
        raise SchemaError(
            f"the database has schema version {version}; this muxernode reads version "
            f"{SCHEMA_VERSION}"
        )
