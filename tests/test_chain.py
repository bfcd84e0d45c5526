"""consensus/chain.py over the real Ledger: validation, one-batch commits, undo, finality
pruning, indices, TaPoS, persistence on LevelDB, and fork switching (with a property test).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import msgpack
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from consensus.block import Block, decode_block
from consensus.chain import BlockRef, Chain, ChainError
from consensus.crypto import PrivateKey
from consensus.genesis import Genesis
from consensus.tx import SignedTx, build_tx
from consensus.vote import Vote
from muxernode.state import recompute_digest
from storage import schema
from storage.kv import KVReader, KVStore, MemoryKV
from storage.leveldb import LevelDBStore, StorageError
from tests.chain_helpers import (
    GENESIS,
    chain_dump,
    changed_keys,
    clone,
    digests,
    forge,
    fresh_chain,
    id_prefix,
    next_time,
    open_chain,
    produce,
    state_dump,
    tx_on,
)
from tests.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    NOBODY,
    POOR,
    POOR_FUNDS,
    RULES,
    WITNESS,
    WITNESS2,
    make_genesis,
    op_claim,
    op_create,
    op_give,
    op_join,
    op_pledge,
    op_register_witness,
    op_transfer,
    op_vote,
    op_vote_witness,
    store_contents,
)

# Three-second slots, so that "a timestamp between two slots" exists.
GEN3 = make_genesis(block_interval_s=3)


def H(x: bytes) -> bytes:
    return hashlib.sha256(x).digest()


@pytest.fixture(params=["memory", "leveldb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KVStore]:
    if request.param == "memory":
        yield MemoryKV()
        return
    db = LevelDBStore(str(tmp_path / "db"))
    yield db
    db.close()


@pytest.fixture
def ldb(tmp_path: Path) -> Iterator[LevelDBStore]:
    db = LevelDBStore(str(tmp_path / "db"))
    yield db
    db.close()


def history(store: KVStore, genesis: Genesis = GEN3) -> Chain:
    """Genesis, then a society (BOB a member) and a transfer, over two blocks."""
    c = fresh_chain(store, genesis)
    produce(c, [tx_on(c, ALICE, op_create("soc")), tx_on(c, BOB, op_transfer(CAROL.address, 1000))])
    produce(c, [tx_on(c, BOB, op_join("soc"))], slots=2)
    return c


def snapshot(c: Chain) -> tuple[BlockRef, dict[bytes, bytes], bytes, bytes]:
    """Everything a chain is, except the bodies of blocks it has seen."""
    app_digest, store_digest = digests(c)
    return c.head, chain_dump(c.store), app_digest, store_digest


# --- genesis ------------------------------------------------------------------------------


def test_initialize_writes_genesis_and_refuses_a_second_time(store: KVStore) -> None:
    with pytest.raises(ChainError) as info:
        open_chain(store)
    assert info.value.reason == "not_initialized"
    c = fresh_chain(store)
    ref = BlockRef(0, GENESIS.chain_id, GENESIS.genesis_time, 0)
    assert c.head == c.final == c.genesis_ref == ref
    assert c.block_id_at(0) == GENESIS.chain_id
    assert c.block_id_at(1) is None and c.block_id_at(-1) is None
    assert store.get(schema.META_CHAIN_ID) == GENESIS.chain_id
    assert digests(c)[0] == digests(c)[1]
    with pytest.raises(ChainError) as info:
        Chain.initialize(store, c.app, GENESIS)
    assert info.value.reason == "already_initialized"


# --- applying: validation failures change nothing ------------------------------------------


def _good_txs(c: Chain) -> list[SignedTx]:
    return [tx_on(c, ALICE, op_transfer(NOBODY.address, 5000)),
            tx_on(c, BOB, op_pledge(500, "soc"))]


def _first_tx(c: Chain) -> SignedTx:
    bid = c.block_id_at(1)
    assert bid is not None
    block = c.get_block(bid)
    assert block is not None
    return block.txs[0]


def _resigned(block: Block, key: PrivateKey, chain_id: bytes) -> Block:
    return Block.build(key, chain_id, block.height, block.previous_id, block.timestamp,
                       block.txs, block.votes, block.state_digest)


BAD_DIGEST = H(b"not the state")

CASES: dict[str, tuple[str, Callable[[Chain], Block]]] = {
    "unknown-parent": ("not_head_child", lambda c: forge(c, _good_txs(c), previous_id=H(b"?"))),
    "parent-is-grandparent": (
        "not_head_child",
        lambda c: forge(c, previous_id=cast(bytes, c.block_id_at(c.head.height - 1))),
    ),
    "height-skips": ("bad_height", lambda c: forge(c, _good_txs(c), height=c.head.height + 2)),
    "height-repeats": ("bad_height", lambda c: forge(c, height=c.head.height)),
    "between-slots": ("bad_slot", lambda c: forge(c, _good_txs(c), timestamp=next_time(c) + 1)),
    "at-genesis-time": ("bad_slot", lambda c: forge(c, timestamp=c.genesis.genesis_time)),
    "before-genesis": ("bad_slot", lambda c: forge(c, timestamp=c.genesis.genesis_time - 3)),
    "same-slot-as-parent": ("bad_slot", lambda c: forge(c, timestamp=c.head.timestamp)),
    "slot-before-parent": ("bad_slot", lambda c: forge(c, timestamp=c.head.timestamp - 3)),
    "wrong-witness": ("wrong_witness", lambda c: forge(c, _good_txs(c), key=WITNESS2)),
    "signed-by-another-key": (
        "bad_signature",
        lambda c: forge(c, _good_txs(c), key=WITNESS2, witness=WITNESS.address),
    ),
    "signed-for-another-chain": (
        "bad_signature",
        lambda c: _resigned(forge(c, _good_txs(c)), WITNESS, H(b"another chain")),
    ),
    "zero-signature": (
        "bad_signature",
        lambda c: Block(forge(c).header(), bytes(64), [], []),
    ),
    "overspending-tx": (
        "bad_tx",
        lambda c: forge(c, [tx_on(c, POOR, op_transfer(BOB.address, POOR_FUNDS))],
                        digest=BAD_DIGEST),
    ),
    "valid-txs-then-invalid": (
        "bad_tx",
        lambda c: forge(c, [*_good_txs(c), tx_on(c, CAROL, op_pledge(500, "soc"))],
                        digest=BAD_DIGEST),
    ),
    "tx-already-on-chain": ("bad_tx", lambda c: forge(c, [_first_tx(c)], digest=BAD_DIGEST)),
    "expired-tx": (
        "bad_tx",
        lambda c: forge(c, [tx_on(c, ALICE, op_join("soc"), expiration=next_time(c))],
                        digest=BAD_DIGEST),
    ),
    "unknown-ref-block": (
        "bad_tx",
        lambda c: forge(c, [build_tx(ALICE, c.chain_id, op_join("soc"), ref_block_num=1,
                                     ref_block_prefix=0, expiration=next_time(c) + 50,
                                     fee=10)], digest=BAD_DIGEST),
    ),
    "unfunded-sender": (
        "bad_tx",
        lambda c: forge(c, [tx_on(c, NOBODY, op_join("soc"))], digest=BAD_DIGEST),
    ),
    "wrong-digest": ("bad_digest", lambda c: forge(c, _good_txs(c), digest=BAD_DIGEST)),
    "empty-block-wrong-digest": ("bad_digest", lambda c: forge(c, digest=BAD_DIGEST)),
    "digest-of-the-parent": (
        "bad_digest", lambda c: forge(c, _good_txs(c), digest=c.app.state_digest())
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_block_is_refused_and_changes_nothing(store: KVStore, case: str) -> None:
    c = history(store)
    reason, make = CASES[case]
    block = make(c)
    twin = clone(c)
    before = store_contents(c.store)
    head, app_digest = c.head, c.app.state_digest()
    assert recompute_digest(c.store) == app_digest

    with pytest.raises(ChainError) as info:
        c.apply_block(block)
    assert info.value.reason == reason, str(info.value)

    assert store_contents(c.store) == before  # byte for byte, every key
    assert c.head == head
    assert c.app.state_digest() == app_digest
    assert c.get_block(block.id) is None
    # The chain's in-memory state is intact: the next block it builds, touching the same
    # accounts, is accepted by an untouched copy and leads to the same store.
    nxt = produce(c, _good_txs(c))
    twin.apply_block(nxt)
    assert chain_dump(twin.store) == chain_dump(c.store)
    assert digests(c) == digests(twin) == (nxt.state_digest, nxt.state_digest)


def test_vote_check_hook_refuses_a_block_and_changes_nothing(store: KVStore) -> None:
    c = history(store)
    vote = Vote.sign(WITNESS, c.chain_id, c.chain_id, 0, c.head.id, c.head.slot)
    block = forge(c, _good_txs(c), votes=[vote])
    seen: list[bytes] = []

    def check(b: Block) -> str | None:
        seen.append(b.id)
        return "vote by a witness outside the round"

    c.check_votes = check
    before = store_contents(store)
    head, app_digest = c.head, c.app.state_digest()
    with pytest.raises(ChainError) as info:
        c.apply_block(block)
    assert info.value.reason == "bad_vote" and seen == [block.id]
    assert store_contents(store) == before
    assert c.head == head and c.app.state_digest() == app_digest
    assert not c.vote_included(vote.hash)
    c.check_votes = lambda b: None
    c.apply_block(block)
    assert c.vote_included(vote.hash) and c.head.id == block.id


def test_failed_write_changes_nothing_on_leveldb(ldb: LevelDBStore) -> None:
    """The batch fails half way (a bad value after the state, block and undo puts): with
    write_batch(transaction=True) nothing reaches the database."""
    c = history(ldb)
    twin = clone(c)
    block = forge(c, _good_txs(c))
    before = store_contents(ldb)
    head, app_digest = c.head, c.app.state_digest()
    with pytest.raises(TypeError):
        c.apply_block(block, extra=[(b"Mnode-record", cast(Any, 12345))])
    assert store_contents(ldb) == before
    assert c.head == head and c.app.state_digest() == app_digest
    # the very same block applies afterwards, and the chain matches an untouched copy
    c.apply_block(block)
    twin.apply_block(block)
    assert chain_dump(c.store) == chain_dump(twin.store)
    assert digests(c) == (block.state_digest, block.state_digest)


class RecordingStore:
    """A KVStore that records every write batch (and can refuse the next one)."""

    def __init__(self, inner: KVStore) -> None:
        self.inner = inner
        self.writes: list[tuple[dict[bytes, bytes | None], bool]] = []
        self.fail_next = False

    def get(self, key: bytes) -> bytes | None:
        return self.inner.get(key)

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.iterate(prefix)

    def write(self, changes: Mapping[bytes, bytes | None], sync: bool = False) -> None:
        self.writes.append((dict(changes), sync))
        if self.fail_next:
            self.fail_next = False
            raise StorageError("disk full (simulated)")
        self.inner.write(changes, sync)

    def snapshot(self) -> KVReader:
        return self.inner.snapshot()


def test_refused_write_leaves_chain_and_app_unchanged(store: KVStore) -> None:
    rec = RecordingStore(store)
    c = history(cast(KVStore, rec))
    twin = clone(c)
    block = forge(c, _good_txs(c))
    before = store_contents(store)
    head, app_digest = c.head, c.app.state_digest()
    rec.fail_next = True
    with pytest.raises(StorageError):
        c.apply_block(block)
    assert store_contents(store) == before
    assert c.head == head and c.app.state_digest() == app_digest
    c.apply_block(block)  # retried once the disk has space again
    twin.apply_block(block)
    assert chain_dump(store) == chain_dump(twin.store)


def test_apply_commits_everything_in_one_synced_batch(store: KVStore) -> None:
    rec = RecordingStore(store)
    c = history(cast(KVStore, rec))
    txs = _good_txs(c)
    vote = Vote.sign(WITNESS, c.chain_id, c.chain_id, 0, c.head.id, c.head.slot)
    block = forge(c, txs, votes=[vote], slots=2)
    before = store_contents(store)
    rec.writes.clear()

    ref = c.apply_block(block, extra=[(b"Mnode-record", b"kept with the block")])

    assert len(rec.writes) == 1
    batch, sync = rec.writes[0]
    assert sync is True
    after = store_contents(store)
    # the batch is exactly the difference between the store before and after
    assert set(batch) == changed_keys(before, after)
    assert ref == BlockRef(block.height, block.id, block.timestamp,
                           (block.timestamp - GEN3.genesis_time) // 3)
    assert c.head == ref
    assert batch[schema.block_key(block.id)] == block.encode()
    assert batch[schema.height_key(block.height)] == block.id
    assert msgpack.unpackb(cast(bytes, batch[schema.META_HEAD])) == [
        ref.height, ref.id, ref.timestamp, ref.slot]
    for tx in txs:
        assert batch[schema.tx_index_key(tx.tx_id)] == schema.u64(block.height)
    assert batch[b"Mnode-record"] == b"kept with the block"
    assert batch[schema.vote_index_key(vote.hash)] == schema.u64(block.height)
    assert c.vote_included(vote.hash)
    state_keys = {k for k in batch if k.startswith(b"S")}
    assert state_keys >= {b"Sa" + ALICE.address, b"Sa" + NOBODY.address, b"Sa" + BOB.address}
    # the undo record holds the previous value of every state key the block changed
    undo = dict(msgpack.unpackb(cast(bytes, batch[schema.undo_key(block.id)])))
    assert set(undo) == state_keys
    assert all(undo[k] == before.get(k) for k in undo)
    # and reads see it
    stored = c.get_block(block.id)
    assert stored is not None and stored.votes == [vote] and stored.encode() == block.encode()
    assert c.get_block_raw(block.id) == block.encode()
    assert c.block_id_at(block.height) == block.id
    assert all(c.tx_height(t.tx_id) == block.height for t in txs)
    assert digests(c) == (block.state_digest, block.state_digest)


def test_on_commit_callbacks_see_each_block() -> None:
    c = fresh_chain()
    seen: list[tuple[int, BlockRef]] = []
    c.on_commit.append(lambda b, ref: seen.append((b.height, ref)))
    b1 = produce(c)
    b2 = produce(c, [tx_on(c, ALICE, op_transfer(BOB.address, 1))])
    assert [h for h, _ in seen] == [1, 2]
    assert seen[-1][1] == c.head and seen[0][1].id == b1.id and b2.id == c.head.id


# --- build_block ----------------------------------------------------------------------------


def test_build_block_skips_invalid_candidates_and_the_block_is_valid_elsewhere() -> None:
    c = fresh_chain()
    twin = clone(c)
    good1 = tx_on(c, ALICE, op_transfer(NOBODY.address, 10_000))
    spend_received = tx_on(c, NOBODY, op_transfer(BOB.address, 9_000))  # funded by good1
    overspend = tx_on(c, POOR, op_transfer(BOB.address, POOR_FUNDS))
    not_member = tx_on(c, BOB, op_pledge(500, "nosuch"))
    block, dropped = c.build_block(
        WITNESS, next_time(c), [good1, spend_received, overspend, not_member, good1], []
    )
    assert [t.tx_id for t in block.txs] == [good1.tx_id, spend_received.tx_id]
    assert [t.tx_id for t in dropped] == [overspend.tx_id, not_member.tx_id, good1.tx_id]
    assert c.head.id == block.id
    twin.apply_block(decode_block(block.encode(), GENESIS.params.max_block_bytes))
    assert chain_dump(twin.store) == chain_dump(c.store)


def test_build_block_respects_the_size_limit() -> None:
    c = fresh_chain()
    txs = [tx_on(c, ALICE, op_transfer(BOB.address, i + 1, "x" * 100)) for i in range(10)]
    size = len(txs[0].raw) + 2
    block, dropped = c.build_block(WITNESS, next_time(c), txs, [], max_bytes=1024 + 3 * size)
    assert len(block.txs) == 3 and dropped == []
    assert len(block.encode()) <= 1024 + 3 * size


def test_build_block_stops_at_the_producers_tx_count_and_time_limits() -> None:
    c = fresh_chain()
    txs = [tx_on(c, ALICE, op_transfer(BOB.address, i + 1)) for i in range(10)]
    block, dropped = c.build_block(WITNESS, next_time(c), txs, [], max_txs=4)
    assert [t.tx_id for t in block.txs] == [t.tx_id for t in txs[:4]] and dropped == []
    # a deadline already past: the block carries what the first check allowed, nothing more
    late = [tx_on(c, ALICE, op_transfer(BOB.address, 100 + i)) for i in range(100)]
    block2, _ = c.build_block(WITNESS, next_time(c), late, [], deadline=0.0)
    assert block2.txs == []
    twin = clone(fresh_chain())
    for b in (block, block2):
        twin.apply_block(decode_block(b.encode(), GENESIS.params.max_block_bytes))
    assert twin.head.id == c.head.id


def test_build_block_by_the_wrong_witness_changes_nothing(store: KVStore) -> None:
    c = history(store)
    twin = clone(c)
    before = store_contents(store)
    head, app_digest = c.head, c.app.state_digest()
    with pytest.raises(ChainError) as info:
        c.build_block(WITNESS2, next_time(c), _good_txs(c), [])
    assert info.value.reason == "wrong_witness"
    assert store_contents(store) == before
    assert c.head == head and c.app.state_digest() == app_digest
    nxt = produce(c, _good_txs(c))
    twin.apply_block(nxt)
    assert chain_dump(twin.store) == chain_dump(c.store)


# --- pop_block ------------------------------------------------------------------------------


def test_pop_block_restores_state_and_store_exactly(store: KVStore) -> None:
    c = history(store)
    before = snapshot(c)
    before_state = state_dump(store)
    txs = [
        tx_on(c, ALICE, op_transfer(NOBODY.address, 5000)),  # a new account
        tx_on(c, BOB, op_pledge(500, "soc")),
        tx_on(c, CAROL, op_create("soc-2")),
        tx_on(c, DAVE, op_join("soc")),
        tx_on(c, DAVE, op_register_witness(DAVE.public_key, "http://dave")),
        tx_on(c, CAROL, op_vote_witness([WITNESS.address, DAVE.address])),
    ]
    vote = Vote.sign(WITNESS, c.chain_id, c.chain_id, 0, c.head.id, c.head.slot)
    block = produce(c, txs, votes=[vote])
    after = snapshot(c)
    assert state_dump(store) != before_state
    assert c.vote_included(vote.hash)

    popped = c.pop_block()

    assert popped.id == block.id and popped.encode() == block.encode()
    assert snapshot(c) == before
    assert state_dump(store) == before_state
    assert c.get_block_raw(block.id) == block.encode()  # the body is kept
    assert c.block_id_at(block.height) is None
    assert all(c.tx_height(t.tx_id) is None for t in txs)
    assert store.get(schema.undo_key(block.id)) is None
    assert not c.vote_included(vote.hash)
    # and the popped block applies again, to the very same result
    c.apply_block(popped)
    assert snapshot(c) == after


def test_pop_to_genesis_then_refused(store: KVStore) -> None:
    c = fresh_chain(store)
    genesis = snapshot(c)
    states = [genesis]
    for i in range(4):
        produce(c, [tx_on(c, ALICE, op_transfer(BOB.address, i + 1))], slots=i + 1)
        states.append(snapshot(c))
    for expected in reversed(states[:-1]):
        c.pop_block()
        assert snapshot(c) == expected
    with pytest.raises(ChainError) as info:
        c.pop_block()
    assert info.value.reason == "final"
    assert snapshot(c) == genesis


# --- finality -------------------------------------------------------------------------------


def test_set_final_prunes_undo_and_pop_below_final_is_refused(store: KVStore) -> None:
    c = fresh_chain(store)
    blocks = [produce(c, [tx_on(c, ALICE, op_transfer(BOB.address, i + 1))]) for i in range(5)]
    assert all(store.get(schema.undo_key(b.id)) is not None for b in blocks)

    c.set_final(blocks[2].id)

    ref = BlockRef(3, blocks[2].id, blocks[2].timestamp, 3)
    assert c.final == ref
    assert msgpack.unpackb(cast(bytes, store.get(schema.META_FINAL))) == [
        3, ref.id, ref.timestamp, 3]
    assert [store.get(schema.undo_key(b.id)) is None for b in blocks] == [
        True, True, True, False, False]
    c.pop_block()
    c.pop_block()
    assert c.head == ref
    before = store_contents(store)
    with pytest.raises(ChainError) as info:
        c.pop_block()
    assert info.value.reason == "final"
    assert c.head == ref and store_contents(store) == before


def test_set_final_ignores_old_unknown_and_off_chain_blocks(store: KVStore) -> None:
    c = fresh_chain(store)
    blocks = [produce(c) for _ in range(4)]
    c.set_final(blocks[1].id)
    final = c.final
    popped = c.pop_block()  # block 4 leaves the main chain (its body stays)
    before = store_contents(store)
    c.set_final(blocks[0].id)  # older than final
    c.set_final(blocks[1].id)  # already final
    c.set_final(H(b"unknown"))
    c.set_final(popped.id)  # not on the main chain any more
    assert c.final == final and store_contents(store) == before
    c.set_final(blocks[2].id)
    assert c.final.id == blocks[2].id


# --- indices and TaPoS ----------------------------------------------------------------------


def test_tx_index_follows_the_main_chain() -> None:
    c = fresh_chain()
    t1 = tx_on(c, ALICE, op_transfer(BOB.address, 1))
    produce(c, [t1])
    t2 = tx_on(c, BOB, op_transfer(ALICE.address, 1))
    t3 = tx_on(c, CAROL, op_transfer(ALICE.address, 1))
    produce(c, [t2, t3])
    assert (c.tx_height(t1.tx_id), c.tx_height(t2.tx_id), c.tx_height(t3.tx_id)) == (1, 2, 2)
    assert c.tx_height(H(b"never")) is None
    c.pop_block()
    assert c.tx_height(t2.tx_id) is None and c.tx_height(t1.tx_id) == 1
    produce(c, [t3], slots=2)  # included again, in another block
    assert c.tx_height(t3.tx_id) == 2 and c.tx_height(t2.tx_id) is None


def test_tapos_lookups() -> None:
    c = fresh_chain()
    blocks = [produce(c) for _ in range(6)]
    ids = [c.chain_id] + [b.id for b in blocks]
    tapos = c.tapos_for(6)
    for h in range(7):
        assert tapos(h) == id_prefix(ids[h])
    assert tapos(7) is None and tapos(0xFFFF) is None  # would be above the parent
    # a lookup for a block whose parent is lower sees only blocks up to that parent
    assert c.tapos_for(3)(3) == id_prefix(ids[3])
    assert c.tapos_for(3)(4) is None
    # the context for the next block resolves against the head
    ctx = c.context_for(next_time(c), WITNESS.address)
    assert ctx.height == 7 and ctx.tapos(5) == id_prefix(ids[5])


def test_tapos_in_blocks_old_refs_accepted_and_popped_refs_refused() -> None:
    c = fresh_chain()
    for _ in range(3):
        produce(c)
    old_ref = tx_on(c, ALICE, op_transfer(BOB.address, 1), ref_height=1)
    genesis_ref = tx_on(c, ALICE, op_transfer(BOB.address, 2), ref_height=0)
    produce(c, [old_ref, genesis_ref])
    on_head = tx_on(c, BOB, op_transfer(ALICE.address, 3))  # references block 4
    c.pop_block()
    # block 4 is gone: a tx naming it is refused in a block and dropped by build_block
    with pytest.raises(ChainError) as info:
        c.apply_block(forge(c, [on_head], digest=bytes(32)))
    assert info.value.reason == "bad_tx"
    block, dropped = c.build_block(WITNESS, next_time(c, 2), [on_head], [])
    assert block.txs == [] and dropped == [on_head]


# --- persistence ------------------------------------------------------------------------------


def test_head_final_and_state_survive_reopen_and_serve_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    blocks: list[Block] = []
    with LevelDBStore(path) as db:
        c = fresh_chain(db)
        for i in range(5):
            txs = [tx_on(c, ALICE, op_transfer(NOBODY.address, 1000 + i)),
                   tx_on(c, BOB, op_create(f"soc-{i}"))]
            blocks.append(produce(c, txs, slots=i % 2 + 1))
        c.set_final(blocks[2].id)
        # a refused block right before the "crash" leaves no trace
        with pytest.raises(ChainError):
            c.apply_block(forge(c, [tx_on(c, ALICE, op_join("soc-0"))], digest=bytes(32)))
        saved = snapshot(c)
        head, final = c.head, c.final
        contents = store_contents(db)
    with LevelDBStore(path) as db:
        assert store_contents(db) == contents
        c2 = open_chain(db)  # no replay: reads the pointers and the state sum
        assert c2.head == head and c2.final == final
        assert snapshot(c2) == saved
        assert c2.block_id_at(5) == blocks[4].id and c2.block_id_at(1) == blocks[0].id
        assert c2.tx_height(blocks[3].txs[0].tx_id) == 4
        got = c2.get_block(blocks[4].id)
        assert got is not None and got.encode() == blocks[4].encode()
        # it extends the chain at once, to the same state as a replay in memory
        nxt = produce(c2, [tx_on(c2, NOBODY, op_transfer(ALICE.address, 500)),
                           tx_on(c2, CAROL, op_join("soc-4"))])
        # it can still undo down to the final block, not below
        c2.pop_block()
        c2.pop_block()
        c2.pop_block()
        with pytest.raises(ChainError):
            c2.pop_block()
        assert c2.head == final
        for b in [*blocks[3:], nxt]:
            c2.apply_block(b)
        replay = fresh_chain()
        for b in [*blocks, nxt]:
            replay.apply_block(b)
        assert state_dump(db) == state_dump(replay.store)
        assert digests(c2) == digests(replay) == (nxt.state_digest, nxt.state_digest)


# --- fork switching ---------------------------------------------------------------------------


def _branch_pair(prefix_len: int = 2) -> tuple[list[Block], list[Block], list[Block], Chain, Chain]:
    """A prefix, and two branches on it built on two scratch chains: (prefix, A, B,
    chain at prefix+A, chain at prefix+B)."""
    ca = fresh_chain()
    prefix = [produce(ca, [tx_on(ca, ALICE, op_create(f"soc{i}"))]) for i in range(prefix_len)]
    cb = fresh_chain()
    for blk in prefix:
        cb.apply_block(blk)
    a = [
        produce(ca, [tx_on(ca, ALICE, op_transfer(NOBODY.address, 7000)),
                     tx_on(ca, BOB, op_join("soc0"))]),
        produce(ca, [tx_on(ca, NOBODY, op_transfer(CAROL.address, 100)),
                     tx_on(ca, BOB, op_pledge(1000, "soc0"))]),
    ]
    b = [
        produce(cb, [tx_on(cb, CAROL, op_join("soc0")), tx_on(cb, BOB, op_create("b-only"))],
                slots=2),
        produce(cb, [tx_on(cb, CAROL, op_pledge(400, "soc0"))], slots=3),
        produce(cb, [tx_on(cb, DAVE, op_transfer(NOBODY.address, 1))]),
    ]
    return prefix, a, b, ca, cb


def test_switch_to_a_longer_branch_and_back() -> None:
    prefix, a, b, ca, cb = _branch_pair()
    c = fresh_chain()
    for blk in prefix + a:
        c.apply_block(blk)
    assert snapshot(c) == snapshot(ca)
    c.switch_to(b)
    assert snapshot(c) == snapshot(cb)
    assert all(c.tx_height(t.tx_id) is None for blk in a for t in blk.txs)
    assert all(c.tx_height(t.tx_id) == blk.height for blk in b for t in blk.txs)
    c.switch_to(a)
    assert snapshot(c) == snapshot(ca)
    c.switch_to([])  # nothing to do
    assert snapshot(c) == snapshot(ca)


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("how", ["digest", "tx", "signature"])
def test_failed_switch_keeps_the_old_branch(store: KVStore, k: int, how: str) -> None:
    prefix, a, b, ca, _ = _branch_pair()
    c = fresh_chain(store)
    for blk in prefix + a:
        c.apply_block(blk)
    before = snapshot(c)
    bad = b[k]
    if how == "digest":
        bad = _resigned(Block([*bad.header()[:7], BAD_DIGEST], bad.signature, bad.txs, []),
                        WITNESS, c.chain_id)
    elif how == "tx":
        overspend = build_tx(POOR, c.chain_id, op_transfer(BOB.address, POOR_FUNDS),
                             ref_block_num=0, ref_block_prefix=id_prefix(c.chain_id),
                             expiration=bad.timestamp + 10, fee=10)
        bad = Block.build(WITNESS, c.chain_id, bad.height, bad.previous_id, bad.timestamp,
                          [*bad.txs, overspend], [], bad.state_digest)
    else:
        bad = Block.build(WITNESS2, c.chain_id, bad.height, bad.previous_id, bad.timestamp,
                          bad.txs, [], bad.state_digest)
    with pytest.raises(ChainError) as info:
        c.switch_to([*b[:k], bad, *b[k + 1:]])
    assert info.value.reason == {"digest": "bad_digest", "tx": "bad_tx",
                                 "signature": "wrong_witness"}[how]
    assert snapshot(c) == before == snapshot(ca)
    # the chain still works: the good branch is accepted afterwards
    c.switch_to(b)
    c.switch_to(a)
    assert snapshot(c) == snapshot(ca)


def test_switch_refuses_to_leave_the_final_block_and_changes_nothing(store: KVStore) -> None:
    prefix, a, b, _, _ = _branch_pair()
    c = fresh_chain(store)
    for blk in prefix + a:
        c.apply_block(blk)
    c.set_final(a[0].id)
    before = snapshot(c)
    with pytest.raises(ChainError) as info:
        c.switch_to(b)  # forks below the final block a[0]
    assert info.value.reason == "final"
    assert snapshot(c) == before


def test_switch_to_a_branch_off_the_main_chain_changes_nothing(store: KVStore) -> None:
    prefix, a, b, _, _ = _branch_pair()
    c = fresh_chain(store)
    for blk in prefix + a:
        c.apply_block(blk)
    before = snapshot(c)
    higher = forge(c, height=c.head.height + 5)  # parent is the head, height is not
    for branch in (b[1:], [forge(c, previous_id=H(b"unknown"))], [higher]):
        with pytest.raises(ChainError) as info:
            c.switch_to(branch)
        assert info.value.reason == "unknown_parent"
        assert snapshot(c) == before


# --- the fork-switch property -------------------------------------------------------------

SIGNERS = [ALICE, BOB, CAROL, DAVE]
TARGETS = [*SIGNERS, NOBODY]
SOCIETIES = ["soc-a", "soc-b"]

signer = st.integers(0, len(SIGNERS) - 1)
society = st.sampled_from(SOCIETIES)
tx_spec = st.one_of(
    st.tuples(st.just("transfer"), signer, st.integers(0, len(TARGETS) - 1),
              st.integers(1, 50_000)),
    st.tuples(st.just("create"), signer, st.sampled_from([*SOCIETIES, "soc-c"])),
    st.tuples(st.just("join"), signer, society),
    st.tuples(st.just("pledge"), signer, society, st.integers(100, 50_000)),
    st.tuples(st.just("claim"), signer, society, st.integers(1, 5_000), st.integers(1, 3_000)),
    st.tuples(st.just("vote"), signer, st.integers(0, 7), st.sampled_from([-1, 0, 1, 1])),
    st.tuples(st.just("give"), signer, st.integers(0, 7), st.integers(1, 2_000)),
    st.tuples(st.just("witness"), signer),
    st.tuples(st.just("vote_witness"), signer, st.booleans()),
)
# (slot gap, txs); a 25-slot gap now and then passes an observation or waiting period, or
# crosses a maintenance time (60 s)
block_spec = st.tuples(st.sampled_from([1, 1, 2, 3, 25]), st.lists(tx_spec, max_size=4))


def _op(spec: tuple[Any, ...], label: str, claims: list[bytes]) -> tuple[PrivateKey, list[Any]]:
    kind, who = spec[0], SIGNERS[spec[1]]
    if kind == "transfer":
        return who, op_transfer(TARGETS[spec[2]].address, spec[3], label)
    if kind == "create":
        return who, op_create(spec[2])
    if kind == "join":
        return who, op_join(spec[2], label)
    if kind == "pledge":
        return who, op_pledge(spec[3], spec[2])
    if kind == "claim":
        return who, op_claim(spec[3], spec[4], spec[2], subject=label)
    if kind in ("vote", "give"):
        claim_id = claims[spec[2] % len(claims)] if claims else H(label.encode())
        return who, (op_vote(claim_id, spec[3]) if kind == "vote" else op_give(claim_id, spec[3]))
    if kind == "witness":
        return who, op_register_witness(who.public_key, label)
    approvals = [WITNESS.address] + ([who.address] if spec[2] else [])
    return who, op_vote_witness(approvals)


def _setup(c: Chain) -> tuple[list[Block], list[bytes]]:
    """Two societies with members, escrow and karma, past the observation period, and an
    approved claim past its waiting period, so that random ops find something to do.
    Returns the blocks and the claim ids."""
    txs = [tx_on(c, ALICE, op_create("soc-a")), tx_on(c, BOB, op_create("soc-b"))]
    for who, soc in ((ALICE, "soc-a"), (BOB, "soc-a"), (CAROL, "soc-a"), (DAVE, "soc-b"),
                     (CAROL, "soc-b")):
        txs.append(tx_on(c, who, op_join(soc, "founder")))
    for who, soc in ((ALICE, "soc-a"), (BOB, "soc-a"), (CAROL, "soc-b"), (DAVE, "soc-b")):
        txs.append(tx_on(c, who, op_pledge(20_000, soc)))
    blocks = [produce(c, txs)]
    claim = tx_on(c, ALICE, op_claim(5_000, 1_000, "soc-a"))
    blocks.append(produce(c, [claim], slots=RULES.observation_s))
    blocks.append(produce(c, [tx_on(c, BOB, op_vote(claim.tx_id, 1))], slots=RULES.waiting_s))
    return blocks, [claim.tx_id]


def _build(
    c: Chain, specs: list[tuple[int, list[tuple[Any, ...]]]], label: str, claims: list[bytes]
) -> list[Block]:
    """Produce a block per spec on c (invalid txs are dropped); claims opened are appended
    to claims, so that later votes and gifts can name them."""
    out = []
    for gap, txs in specs:
        signed = []
        for spec in txs:
            who, op = _op(spec, label, claims)
            signed.append(tx_on(c, who, op))
        block = produce(c, signed, slots=gap, all_valid=False)
        for tx in block.txs:
            event(f"included op {tx.op[0]}")
            if tx.op[0] == 5:
                claims.append(tx.tx_id)
        out.append(block)
    return out


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    prefix_specs=st.lists(block_spec, max_size=4),
    a_specs=st.lists(block_spec, min_size=1, max_size=4),
    b_specs=st.lists(block_spec, min_size=1, max_size=4),
    b_extra_gap=st.integers(1, 2),
    bad_at=st.integers(0, 3),
)
def test_fork_switch_property(
    prefix_specs: list[tuple[int, list[tuple[Any, ...]]]],
    a_specs: list[tuple[int, list[tuple[Any, ...]]]],
    b_specs: list[tuple[int, list[tuple[Any, ...]]]],
    b_extra_gap: int,
    bad_at: int,
) -> None:
    # B's first block is in a later slot than A's, so the branches always differ
    b_specs = [(a_specs[0][0] + b_extra_gap, b_specs[0][1]), *b_specs[1:]]
    ca = fresh_chain()
    setup, claims = _setup(ca)
    prefix = [*setup, *_build(ca, prefix_specs, "p", claims)]
    prefix_claims = list(claims)
    a = _build(ca, a_specs, "a", claims)
    cb = fresh_chain()
    for blk in prefix:
        cb.apply_block(blk)
    b = _build(cb, b_specs, "b", prefix_claims)
    expected = {"A": snapshot(ca), "B": snapshot(cb)}
    assert a[0].id != b[0].id

    c = fresh_chain()
    for blk in prefix + a:
        c.apply_block(blk)
    assert snapshot(c) == expected["A"]
    for name, branch in (("B", b), ("A", a), ("B", b)):
        c.switch_to(branch)
        assert snapshot(c) == expected[name], f"after switching to {name}"

    # a branch whose k-th block carries a wrong digest: refused, B stays as it was
    k = bad_at % len(a)
    blk = a[k]
    bad = Block.build(WITNESS, c.chain_id, blk.height, blk.previous_id, blk.timestamp,
                      blk.txs, blk.votes, BAD_DIGEST)
    with pytest.raises(ChainError) as info:
        c.switch_to([*a[:k], bad, *a[k + 1:]])
    assert info.value.reason == "bad_digest"
    assert snapshot(c) == expected["B"]
    c.switch_to(a)
    assert snapshot(c) == expected["A"]
