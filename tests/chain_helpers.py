"""Helpers for driving consensus.chain.Chain over the real Ledger (test_chain, test_mempool).

One witness (``WITNESS`` of tests.ledger_helpers) owns every slot. Blocks are produced
with ``Chain.build_block``; blocks that must be *invalid* in a chosen way are forged with
``forge``, which computes the correct state digest on a throw-away copy of the store, so
that a forged block breaks exactly the rule the test names and no other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from consensus.block import BLOCK_VERSION, Block
from consensus.chain import Chain
from consensus.codec import encode
from consensus.crypto import TAG_BLOCK, PrivateKey, sha256
from consensus.genesis import Genesis
from consensus.merkle import merkle_root
from consensus.tx import SignedTx, build_tx
from consensus.vote import Vote
from muxernode.ledger import Ledger
from muxernode.state import recompute_digest
from storage.kv import KVReader, KVStore, MemoryKV
from tests.ledger_helpers import BASE_FEE, WITNESS, make_genesis, store_contents

__all__ = [
    "GENESIS",
    "chain_dump",
    "changed_keys",
    "clone",
    "digests",
    "forge",
    "fresh_chain",
    "id_prefix",
    "next_time",
    "open_chain",
    "produce",
    "state_dump",
    "tx_on",
    "witness_for_slot",
]

GENESIS: Genesis = make_genesis()


def witness_for_slot(_slot: int) -> bytes:
    return WITNESS.address


def open_chain(store: KVStore, genesis: Genesis = GENESIS) -> Chain:
    """A Chain (with its own Ledger) over an initialized store."""
    ledger = Ledger(store, genesis.params, genesis.genesis_time)
    return Chain(store, ledger, genesis, witness_for_slot)


def fresh_chain(store: KVStore | None = None, genesis: Genesis = GENESIS) -> Chain:
    """Initialize genesis into store (a new MemoryKV by default) and open a Chain on it."""
    kv: KVStore = MemoryKV() if store is None else store
    Chain.initialize(kv, Ledger(kv, genesis.params, genesis.genesis_time), genesis)
    return open_chain(kv, genesis)


def clone(chain: Chain) -> Chain:
    """An independent Chain over a MemoryKV copy of chain's store."""
    return open_chain(MemoryKV(store_contents(chain.store)), chain.genesis)


def id_prefix(block_id: bytes) -> int:
    return int.from_bytes(block_id[:4], "big")


def next_time(chain: Chain, slots: int = 1) -> int:
    """The timestamp ``slots`` slots after the head's."""
    return chain.head.timestamp + slots * chain.params.block_interval_s


def tx_on(
    chain: Chain,
    signer: PrivateKey,
    op: list[Any],
    *,
    fee: int = BASE_FEE,
    expiration: int | None = None,
    ref_height: int | None = None,
) -> SignedTx:
    """A tx referencing (TaPoS) the head, or the main-chain block at ref_height, expiring
    100 s after the head unless told otherwise."""
    h = chain.head.height if ref_height is None else ref_height
    bid = chain.block_id_at(h)
    assert bid is not None
    return build_tx(
        signer,
        chain.chain_id,
        op,
        ref_block_num=h & 0xFFFF,
        ref_block_prefix=id_prefix(bid),
        expiration=chain.head.timestamp + 100 if expiration is None else expiration,
        fee=fee,
    )


def produce(
    chain: Chain,
    txs: Iterable[SignedTx] = (),
    *,
    slots: int = 1,
    votes: Sequence[Vote] = (),
    all_valid: bool = True,
) -> Block:
    """Build and commit a block ``slots`` slots after the head."""
    block, dropped = chain.build_block(WITNESS, next_time(chain, slots), txs, list(votes))
    if all_valid:
        assert dropped == [], f"txs rejected while producing: {dropped}"
    return block


def forge(
    chain: Chain,
    txs: Sequence[SignedTx] = (),
    *,
    key: PrivateKey = WITNESS,
    slots: int = 1,
    timestamp: int | None = None,
    height: int | None = None,
    previous_id: bytes | None = None,
    digest: bytes | None = None,
    witness: bytes | None = None,
    votes: Sequence[Vote] = (),
) -> Block:
    """A block on chain's head (not applied) with every field overridable.

    The digest defaults to the correct one, computed by applying the txs to a clone (so
    they must be valid there). ``witness`` names a witness other than the signer's
    address (a forged signature)."""
    ts = next_time(chain, slots) if timestamp is None else timestamp
    if digest is None:
        scratch = clone(chain)
        scratch.app.begin_block(scratch.context_for(ts, key.address))
        for tx in txs:
            scratch.app.apply_tx(tx)
        digest = scratch.app.end_block().state_digest
    header = [
        BLOCK_VERSION,
        chain.head.height + 1 if height is None else height,
        chain.head.id if previous_id is None else previous_id,
        ts,
        key.address if witness is None else witness,
        merkle_root([t.tx_id for t in txs]),
        merkle_root([v.hash for v in votes]),
        digest,
    ]
    signature = key.sign(TAG_BLOCK + chain.chain_id + sha256(encode(header)))
    return Block(header, signature, list(txs), list(votes))


def state_dump(kv: KVReader) -> dict[bytes, bytes]:
    """Every application state key (prefix S) and value."""
    return dict(kv.iterate(b"S"))


def chain_dump(kv: KVReader) -> dict[bytes, bytes]:
    """Everything in the store except block bodies (B...), which are kept for every block
    ever accepted, main chain or not."""
    return {k: v for k, v in kv.iterate(b"") if not k.startswith(b"B")}


def digests(chain: Chain) -> tuple[bytes, bytes]:
    """(the app's in-memory digest, the digest recomputed from the store)."""
    return chain.app.state_digest(), recompute_digest(chain.store)


def changed_keys(before: Mapping[bytes, bytes], after: Mapping[bytes, bytes]) -> set[bytes]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
