"""consensus/mempool.py over the real Ledger: admission against head + pending, caps and
fee-rate eviction, new heads, txs of popped blocks, expiry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from consensus.app import BlockContext
from consensus.block import Block
from consensus.chain import Chain
from consensus.crypto import PrivateKey
from consensus.errors import Rejected
from consensus.mempool import Mempool
from consensus.tx import SignedTx
from muxernode.ledger import Ledger
from storage.kv import KVStore, MemoryKV
from storage.leveldb import LevelDBStore
from tests.chain_helpers import GENESIS, clone, fresh_chain, next_time, tx_on
from tests.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    LIFETIME,
    NOBODY,
    POOR,
    POOR_FUNDS,
    WITNESS,
    op_create,
    op_join,
    op_transfer,
)


class Pool:
    """A chain, the mempool's own Ledger view over the same store, and the mempool.

    ``refresh`` is how the view follows the chain: "reset" drops its whole cache;
    "forget" drops only the keys the last commit changed (as the node does)."""

    def __init__(
        self,
        store: KVStore | None = None,
        *,
        max_count: int = 1000,
        max_bytes: int = 1 << 20,
        refresh: str = "reset",
    ) -> None:
        self.chain: Chain = fresh_chain(store)
        self.view = Ledger(self.chain.store, GENESIS.params, GENESIS.genesis_time)
        self.clock: int | None = None  # time of the next block, if not head + 1 slot
        self.refresh = refresh
        self._version = self.chain.version
        self.mempool = Mempool(self.view, self.context, self.refresh_view, max_count, max_bytes)

    def context(self) -> BlockContext:
        ts = next_time(self.chain)
        if self.clock is not None:
            ts = max(ts, self.clock)
        return self.chain.context_for(ts, bytes(20))

    def refresh_view(self) -> None:
        chain, state = self.chain, self.view.state
        if self.refresh == "forget" and self._version == chain.version:
            state.rollback()
        elif (self.refresh == "forget" and self._version == chain.version - 1
              and chain.last_changes is not None):
            state.forget(chain.last_changes)
        else:
            state.reset()
        self._version = chain.version

    def tx(self, signer: PrivateKey, op: list[Any], **kw: Any) -> SignedTx:
        return tx_on(self.chain, signer, op, **kw)

    def add(self, tx: SignedTx) -> None:
        self.mempool.add(tx)

    def refuse(self, tx: SignedTx) -> str:
        before = self.ids()
        with pytest.raises(Rejected) as info:
            self.mempool.add(tx)
        assert self.ids() == before, "a refused tx changed the mempool"
        return info.value.reason

    def ids(self) -> list[bytes]:
        return [t.tx_id for t in self.mempool.pending()]

    def produce(self, slots: int = 1, max_bytes: int | None = None) -> Block:
        """Produce a block from the pending txs (as the node does) and tell the mempool."""
        block, dropped = self.chain.build_block(
            WITNESS, next_time(self.chain, slots), self.mempool.pending(), [],
            max_bytes=max_bytes,
        )
        assert dropped == [], "the mempool offered a tx that is invalid on its head"
        self.mempool.on_new_head([t.tx_id for t in block.txs])
        return block

    def balance(self, who: PrivateKey) -> int:
        """Committed balance (the chain's view)."""
        app = self.chain.app
        assert isinstance(app, Ledger)
        rec = app.state.get(b"a" + who.address)
        return 0 if rec is None else int(rec[0])


@pytest.fixture(params=["reset", "forget"])
def refresh(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def check_consistent(pool: Pool) -> None:
    """Size accounting is exact and every pending tx applies, in order, on the head."""
    mp = pool.mempool
    pending = list(mp.pending())
    assert mp.size_bytes == sum(len(t.raw) for t in pending)
    assert len(mp) == len(pending) <= mp.max_count and mp.size_bytes <= mp.max_bytes
    chain = pool.chain
    ledger = Ledger(chain.store, GENESIS.params, GENESIS.genesis_time)
    ledger.begin_block(pool.context())
    for tx in pending:
        ledger.apply_tx(tx)  # raises if the mempool holds a tx invalid in that position
    ledger.abort_block()


# --- admission ------------------------------------------------------------------------------


def test_admits_a_tx_spending_what_an_earlier_pending_tx_received(refresh: str) -> None:
    pool = Pool(refresh=refresh)
    fund = pool.tx(ALICE, op_transfer(NOBODY.address, 10_000))
    spend = pool.tx(NOBODY, op_transfer(BOB.address, 9_000))
    assert pool.refuse(spend) == "insufficient_balance"  # not yet: NOBODY has nothing
    pool.add(fund)
    pool.add(spend)
    assert pool.ids() == [fund.tx_id, spend.tx_id]
    assert fund.tx_id in pool.mempool and pool.mempool.get(spend.tx_id) is spend
    # NOBODY has 10_000 - 9_000 - 10 (fee) = 990 left in the pending view
    assert pool.refuse(pool.tx(NOBODY, op_transfer(CAROL.address, 981))) == "insufficient_balance"
    rest = pool.tx(NOBODY, op_transfer(CAROL.address, 980))
    pool.add(rest)
    # nothing is committed by admission
    assert pool.balance(NOBODY) == 0 and pool.chain.head.height == 0
    check_consistent(pool)
    block = pool.produce()
    assert [t.tx_id for t in block.txs] == [fund.tx_id, spend.tx_id, rest.tx_id]
    assert pool.balance(NOBODY) == 0 and len(pool.mempool) == 0


def test_double_spend_is_refused_and_leaves_the_view_unchanged(refresh: str) -> None:
    pool = Pool(refresh=refresh)
    first = pool.tx(POOR, op_transfer(BOB.address, 900))
    pool.add(first)
    assert pool.refuse(pool.tx(POOR, op_transfer(CAROL.address, 900))) == "insufficient_balance"
    # exactly what is left after the first spend is still spendable: 1000 - 910 = 90
    last = pool.tx(POOR, op_transfer(CAROL.address, 80))
    pool.add(last)
    assert pool.refuse(pool.tx(POOR, op_transfer(DAVE.address, 1))) == "insufficient_balance"
    assert pool.ids() == [first.tx_id, last.tx_id]
    check_consistent(pool)
    pool.produce()
    assert pool.balance(POOR) == 0


def test_ops_depending_on_pending_ops_are_admitted() -> None:
    pool = Pool()
    create = pool.tx(ALICE, op_create("club"))
    join = pool.tx(BOB, op_join("club", "bob"))
    assert pool.refuse(join) == "unknown_society"
    pool.add(create)
    pool.add(join)
    assert pool.refuse(pool.tx(BOB, op_join("club", "bob again"))) == "already_member"
    assert pool.refuse(pool.tx(CAROL, op_create("club"))) == "society_exists"
    assert pool.ids() == [create.tx_id, join.tx_id]


def test_duplicates_are_refused() -> None:
    pool = Pool()
    tx = pool.tx(ALICE, op_transfer(BOB.address, 5))
    pool.add(tx)
    assert pool.refuse(tx) == "duplicate"
    pool.produce()
    assert len(pool.mempool) == 0
    assert pool.refuse(tx) == "duplicate"  # already on the chain


def test_envelope_rejections_pass_through() -> None:
    pool = Pool()
    pool.produce()
    t = pool.chain.head.timestamp
    assert pool.refuse(pool.tx(ALICE, op_join("x"), fee=9)) == "fee_too_low"
    assert pool.refuse(pool.tx(ALICE, op_join("x"), expiration=t + 1)) == "expired"
    assert pool.refuse(pool.tx(ALICE, op_join("x"), expiration=t + 2 + LIFETIME)) == (
        "expiration_too_far")
    pool.add(pool.tx(ALICE, op_transfer(BOB.address, 1), expiration=t + 1 + LIFETIME))
    assert len(pool.mempool) == 1


# --- caps and eviction ------------------------------------------------------------------------


def _same_size(pool: Pool, signer: PrivateKey, fee: int, memo: str = "m") -> SignedTx:
    return pool.tx(signer, op_transfer(CAROL.address, 100, memo), fee=fee)


def test_count_cap() -> None:
    pool = Pool(max_count=3)
    txs = [_same_size(pool, k, 10) for k in (ALICE, BOB, DAVE)]
    for tx in txs:
        pool.add(tx)
    assert pool.refuse(_same_size(pool, CAROL, 10)) == "mempool_full"
    assert pool.ids() == [t.tx_id for t in txs] and pool.mempool.evicted == 0
    pool.produce()
    pool.add(_same_size(pool, CAROL, 10))  # room again once the block took them
    assert len(pool.mempool) == 1


def test_byte_cap() -> None:
    probe = Pool()
    size = len(_same_size(probe, ALICE, 10).raw)
    pool = Pool(max_bytes=2 * size + size // 2)
    a, b = _same_size(pool, ALICE, 10), _same_size(pool, BOB, 10)
    pool.add(a)
    pool.add(b)
    assert pool.mempool.size_bytes == len(a.raw) + len(b.raw) == 2 * size
    assert pool.refuse(_same_size(pool, DAVE, 10)) == "mempool_full"
    assert pool.mempool.size_bytes == 2 * size


def test_lowest_fee_rate_is_evicted_when_full(refresh: str) -> None:
    pool = Pool(max_count=3, refresh=refresh)
    t20, t10, t30 = (_same_size(pool, k, fee) for k, fee in ((ALICE, 20), (BOB, 10), (DAVE, 30)))
    for tx in (t20, t10, t30):
        pool.add(tx)
    assert len({len(t.raw) for t in (t20, t10, t30)}) == 1
    assert pool.refuse(_same_size(pool, CAROL, 9)) == "mempool_full"
    assert pool.refuse(_same_size(pool, CAROL, 10)) == "mempool_full"  # equal rate: no
    t40 = _same_size(pool, CAROL, 40)
    pool.add(t40)
    assert pool.ids() == [t20.tx_id, t30.tx_id, t40.tx_id]
    assert pool.mempool.evicted == 1
    assert pool.refuse(_same_size(pool, BOB, 15)) == "mempool_full"  # below the new cheapest
    check_consistent(pool)


def test_a_big_newcomer_evicts_as_many_cheap_txs_as_it_needs() -> None:
    probe = Pool()
    small = len(_same_size(probe, ALICE, 10).raw)
    pool = Pool(max_bytes=4 * small)
    cheap = [_same_size(pool, k, fee) for k, fee in ((ALICE, 11), (BOB, 10), (DAVE, 12))]
    for tx in cheap:
        pool.add(tx)
    big = pool.tx(CAROL, op_transfer(BOB.address, 1, "x" * (small + 20)), fee=10_000)
    assert 2 * small < len(big.raw) <= 3 * small  # needs exactly two small ones out
    pool.add(big)
    # two victims were needed, the two cheapest; the dearest small one stays
    assert pool.ids() == [cheap[2].tx_id, big.tx_id]
    assert pool.mempool.evicted == 2
    assert pool.mempool.size_bytes <= 4 * small
    check_consistent(pool)


def test_eviction_drops_the_txs_that_depended_on_the_victim_at_the_next_head(
        refresh: str) -> None:
    """An eviction costs O(victims), not a re-check of the whole pool (a stream of
    slightly better-paying txs would otherwise cost O(pool) each: a 17-s stall under
    load). A tx that depended on a victim stays until the next head re-checks the pool,
    and is dropped then; a block never carries it (building re-applies every tx)."""
    pool = Pool(max_count=3, refresh=refresh)
    fund = pool.tx(ALICE, op_transfer(NOBODY.address, 10_000), fee=10)
    spend = pool.tx(NOBODY, op_transfer(BOB.address, 1_000), fee=50)
    other = _same_size(pool, BOB, 30)
    for tx in (fund, spend, other):
        pool.add(tx)
    newcomer = _same_size(pool, CAROL, 40)
    pool.add(newcomer)
    assert pool.ids() == [spend.tx_id, other.tx_id, newcomer.tx_id]
    assert pool.mempool.evicted == 1 and pool.mempool.dropped == 0
    block, dropped = pool.chain.build_block(WITNESS, next_time(pool.chain),
                                            pool.mempool.pending(), [])
    assert [t.tx_id for t in dropped] == [spend.tx_id]  # never in a block
    assert [t.tx_id for t in block.txs] == [other.tx_id, newcomer.tx_id]
    pool.mempool.on_new_head([t.tx_id for t in block.txs])
    assert pool.ids() == [] and pool.mempool.dropped == 1
    check_consistent(pool)


def test_an_invalid_newcomer_evicts_nobody(refresh: str) -> None:
    """A tx that pays a high fee but is invalid must not empty a full mempool."""
    pool = Pool(max_count=2, refresh=refresh)
    a, b = _same_size(pool, ALICE, 10), _same_size(pool, BOB, 11)
    pool.add(a)
    pool.add(b)
    invalid = pool.tx(POOR, op_transfer(BOB.address, POOR_FUNDS), fee=100)
    assert pool.refuse(invalid) == "insufficient_balance"
    assert pool.ids() == [a.tx_id, b.tx_id] and pool.mempool.evicted == 0
    assert pool.refuse(pool.tx(BOB, op_join("nosuch"), fee=100)) == "unknown_society"
    assert pool.ids() == [a.tx_id, b.tx_id]
    check_consistent(pool)


def test_a_newcomer_that_needed_its_victim_is_dropped_with_it_at_the_next_head(
        refresh: str) -> None:
    """Valid on the full pool, invalid once its own funding is evicted: admitted (the
    check is on the current view), and dropped at the next head's re-check; a block never
    carries it."""
    pool = Pool(max_count=2, refresh=refresh)
    fund = pool.tx(ALICE, op_transfer(NOBODY.address, 30), fee=10)  # the cheapest
    other = _same_size(pool, BOB, 20)
    pool.add(fund)
    pool.add(other)
    needs_fund = pool.tx(NOBODY, op_transfer(BOB.address, 5), fee=15)
    pool.add(needs_fund)
    assert pool.ids() == [other.tx_id, needs_fund.tx_id] and pool.mempool.evicted == 1
    pool.mempool.on_new_head([])
    assert pool.ids() == [other.tx_id] and pool.mempool.dropped == 1
    check_consistent(pool)
    dave = _same_size(pool, DAVE, 30)
    pool.add(dave)  # room again: no eviction needed
    assert pool.ids() == [other.tx_id, dave.tx_id] and pool.mempool.evicted == 1


# --- new heads ------------------------------------------------------------------------------


def test_new_head_drops_included_txs_and_keeps_the_rest(refresh: str) -> None:
    pool = Pool(refresh=refresh)
    txs = [_same_size(pool, k, 10) for k in (ALICE, BOB, DAVE)]
    for tx in txs:
        pool.add(tx)
    block = pool.produce(max_bytes=1024 + 2 * (len(txs[0].raw) + 2))  # room for two
    assert [t.tx_id for t in block.txs] == [txs[0].tx_id, txs[1].tx_id]
    assert pool.ids() == [txs[2].tx_id]
    assert pool.mempool.size_bytes == len(txs[2].raw) and pool.mempool.dropped == 0
    check_consistent(pool)
    pool.produce()
    assert len(pool.mempool) == 0 and pool.mempool.size_bytes == 0


def test_new_head_rechecks_the_rest_against_the_new_state(refresh: str) -> None:
    pool = Pool(refresh=refresh)
    mine = pool.tx(POOR, op_transfer(BOB.address, 900))
    keep = pool.tx(ALICE, op_transfer(BOB.address, 1))
    pool.add(mine)
    pool.add(keep)
    # a block from elsewhere spends POOR's funds another way
    other = pool.tx(POOR, op_transfer(CAROL.address, 950))
    block, _ = pool.chain.build_block(WITNESS, next_time(pool.chain), [other], [])
    pool.mempool.on_new_head([t.tx_id for t in block.txs])
    assert pool.ids() == [keep.tx_id]
    assert pool.mempool.dropped == 1
    check_consistent(pool)


def test_a_split_recheck_ends_where_a_whole_one_does(refresh: str) -> None:
    """``limit`` re-checks that many at once and leaves the rest to ``recheck``: txs that
    wait are still in the pool, and once all are re-checked the pool is what a whole
    re-check leaves (invalid ones dropped, order kept)."""
    whole, split = Pool(refresh=refresh), Pool(refresh=refresh)
    for pool in (whole, split):
        txs = [pool.tx(POOR, op_transfer(BOB.address, 900)),
               pool.tx(ALICE, op_transfer(BOB.address, 1)),
               pool.tx(BOB, op_transfer(CAROL.address, 2)),
               pool.tx(DAVE, op_transfer(CAROL.address, 3))]
        for tx in txs:
            pool.add(tx)
        other = pool.tx(POOR, op_transfer(CAROL.address, 950))  # spends POOR's funds
        block, _ = pool.chain.build_block(WITNESS, next_time(pool.chain), [other], [])
        ids = [t.tx_id for t in block.txs]
        if pool is whole:
            pool.mempool.on_new_head(ids)
            assert pool.mempool.unchecked == 0
        else:
            pool.mempool.on_new_head(ids, limit=1)
            # one re-checked (POOR's, now invalid: dropped), three wait and stay pending
            assert pool.mempool.unchecked == 3 and len(pool.mempool) == 3
            assert pool.mempool.dropped == 1
            assert pool.mempool.recheck(2) == 1
            assert pool.mempool.recheck() == 0
        check_consistent(pool)
    assert split.ids() == whole.ids() == [t.tx_id for t in txs[1:]]
    assert split.mempool.dropped == whole.mempool.dropped == 1


def test_a_tx_admitted_during_a_split_recheck_and_a_newer_head(refresh: str) -> None:
    """Admission goes on while txs wait for their re-check; of two conflicting txs the one
    checked first stays, and a newer head starts the re-check over (the txs its block
    included leave, the rest wait again)."""
    pool = Pool(refresh=refresh)
    first = pool.tx(POOR, op_transfer(BOB.address, POOR_FUNDS - 100))
    filler = [pool.tx(k, op_transfer(CAROL.address, 1)) for k in (ALICE, BOB, DAVE)]
    for tx in [*filler, first]:
        pool.add(tx)
    pool.chain.build_block(WITNESS, next_time(pool.chain), [], [])  # an empty block
    pool.mempool.on_new_head([], limit=1)
    assert pool.mempool.unchecked == 3  # first still waits
    second = pool.tx(POOR, op_transfer(CAROL.address, POOR_FUNDS - 100), fee=11)
    pool.add(second)  # checked on the view as it stands: POOR's funds look unspent
    assert pool.mempool.recheck() == 0
    assert second.tx_id in pool.ids() and first.tx_id not in pool.ids()
    check_consistent(pool)
    # a newer head while txs wait: the waiting queue restarts on it
    pool.mempool.on_new_head([], limit=1)
    pool.chain.build_block(WITNESS, next_time(pool.chain), [filler[2]], [])
    pool.mempool.on_new_head([filler[2].tx_id], limit=0)
    assert pool.mempool.unchecked == 3
    assert pool.mempool.recheck() == 0
    assert pool.ids() == [filler[0].tx_id, filler[1].tx_id, second.tx_id]
    check_consistent(pool)


def test_txs_of_popped_blocks_are_offered_again(refresh: str) -> None:
    pool = Pool(refresh=refresh)
    fund = pool.tx(ALICE, op_transfer(NOBODY.address, 10_000))
    spend = pool.tx(NOBODY, op_transfer(BOB.address, 5_000))
    pool.add(fund)
    pool.add(spend)
    block = pool.produce()
    # both need fund on chain; pinned also names the block (TaPoS), later names genesis
    later = pool.tx(NOBODY, op_transfer(CAROL.address, 4_000), ref_height=0)
    pinned = pool.tx(BOB, op_transfer(CAROL.address, 1))
    pool.add(later)
    pool.add(pinned)
    assert pool.ids() == [later.tx_id, pinned.tx_id]

    popped = pool.chain.pop_block()
    assert popped.id == block.id
    pool.mempool.on_new_head([], readd=popped.txs)

    # the popped txs come first, so the later tx that depends on them still applies; the
    # tx naming the popped block is gone (unknown_ref_block)
    assert pool.ids() == [fund.tx_id, spend.tx_id, later.tx_id]
    assert pool.mempool.dropped == 1
    check_consistent(pool)
    again = pool.produce(slots=2)
    assert [t.tx_id for t in again.txs] == [fund.tx_id, spend.tx_id, later.tx_id]


def test_readded_txs_do_not_break_the_caps(refresh: str) -> None:
    """Txs of a popped block come back first; what no longer fits is dropped, newest last."""
    pool = Pool(max_count=3, refresh=refresh)

    def tx(k: PrivateKey) -> SignedTx:  # names genesis, so a pop does not invalidate it
        return pool.tx(k, op_transfer(CAROL.address, 100), ref_height=0)

    on_chain = [tx(ALICE), tx(BOB)]
    for t in on_chain:
        pool.add(t)
    pool.produce()
    waiting = [tx(DAVE), tx(CAROL)]
    for t in waiting:
        pool.add(t)
    popped = pool.chain.pop_block()
    pool.mempool.on_new_head([], readd=popped.txs)
    assert pool.ids() == [on_chain[0].tx_id, on_chain[1].tx_id, waiting[0].tx_id]
    assert pool.mempool.dropped == 1
    check_consistent(pool)
    # the byte cap likewise
    pool = Pool(max_bytes=2 * len(on_chain[0].raw) + 10, refresh=refresh)
    first = [tx(ALICE), tx(BOB)]
    for t in first:
        pool.add(t)
    pool.produce()
    later = tx(DAVE)
    pool.add(later)
    pool.mempool.on_new_head([], readd=pool.chain.pop_block().txs)
    assert pool.ids() == [t.tx_id for t in first]
    check_consistent(pool)


def test_after_a_fork_switch_txs_only_on_the_old_branch_come_back(refresh: str) -> None:
    pool = Pool(refresh=refresh)
    pool.produce()
    both = pool.tx(ALICE, op_transfer(BOB.address, 1))
    only_old = pool.tx(BOB, op_transfer(ALICE.address, 2))
    pool.add(both)
    pool.add(only_old)
    old_block = pool.produce()
    # the other branch, built on a copy at the fork point, holds only `both`
    fork = clone(pool.chain)
    fork.pop_block()
    new_block, _ = fork.build_block(WITNESS, next_time(fork, 2), [both], [])
    popped = pool.chain.switch_to([new_block])
    assert [b.id for b in popped] == [old_block.id]
    pool.mempool.on_new_head([t.tx_id for t in new_block.txs],
                             readd=[t for b in popped for t in b.txs])
    assert pool.ids() == [only_old.tx_id]  # `both` is on the chain: dropped as duplicate
    assert pool.mempool.dropped == 1
    check_consistent(pool)


def test_expired_txs_are_dropped_on_rebuild(refresh: str) -> None:
    pool = Pool(refresh=refresh)
    t0 = pool.chain.head.timestamp
    short = pool.tx(ALICE, op_transfer(BOB.address, 1), expiration=t0 + 3)
    long = pool.tx(BOB, op_transfer(ALICE.address, 1), expiration=t0 + 50)
    pool.add(short)
    pool.add(long)
    # an empty block at t0 + 2: the next block (t0 + 3) can no longer hold `short`
    block, _ = pool.chain.build_block(WITNESS, t0 + 2, [], [])
    pool.mempool.on_new_head([t.tx_id for t in block.txs])
    assert pool.ids() == [long.tx_id] and pool.mempool.dropped == 1
    # the same by the clock alone: the next block is due later than `long` allows
    pool.clock = t0 + 50
    pool.mempool.on_new_head([])
    assert pool.ids() == [] and pool.mempool.dropped == 2


# --- on LevelDB, and a random walk ------------------------------------------------------------


@pytest.fixture
def ldb(tmp_path: Path) -> Iterator[LevelDBStore]:
    db = LevelDBStore(str(tmp_path / "db"))
    yield db
    db.close()


def test_mempool_over_leveldb(ldb: LevelDBStore) -> None:
    pool = Pool(ldb, refresh="forget")
    fund = pool.tx(ALICE, op_transfer(NOBODY.address, 10_000))
    spend = pool.tx(NOBODY, op_transfer(BOB.address, 9_000))
    pool.add(fund)
    pool.add(spend)
    pool.produce()
    again = pool.tx(NOBODY, op_transfer(BOB.address, 900))
    pool.add(again)
    assert pool.refuse(pool.tx(NOBODY, op_transfer(CAROL.address, 80))) == (
        "insufficient_balance")
    check_consistent(pool)


KEYS = [ALICE, BOB, CAROL, DAVE, POOR, NOBODY]
tx_step = st.tuples(st.just("tx"), st.integers(0, 5), st.integers(0, 5),
                   st.integers(1, 1_500), st.integers(10, 60))
step = st.one_of(
    tx_step, tx_step, tx_step, tx_step,  # arrivals outnumber blocks, so the caps bite
    st.tuples(st.just("block"), st.integers(1, 3)),
    st.tuples(st.just("pop")),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=8, max_size=30), refresh=st.sampled_from(["reset", "forget"]))
def test_mempool_stays_valid_on_its_head(steps: list[tuple[Any, ...]], refresh: str) -> None:
    """Whatever arrives, every pending tx stays valid in order on the head (after an
    eviction: once the pool is re-checked, as every new head does), within the caps, and
    a block built from the mempool drops nothing."""
    pool = Pool(MemoryKV(), max_count=4, max_bytes=560, refresh=refresh)
    memo = 0
    for s in steps:
        if s[0] == "tx":
            memo += 1
            tx = pool.tx(KEYS[s[1]], op_transfer(KEYS[s[2]].address, s[3], str(memo)), fee=s[4])
            evicted = pool.mempool.evicted
            try:
                pool.add(tx)
            except Rejected as exc:
                event(f"refused: {exc.reason}")
                assert exc.reason in ("insufficient_balance", "mempool_full")
                assert tx.tx_id not in pool.mempool
                assert pool.mempool.evicted == evicted  # a refused tx evicts nobody
            else:
                event("admitted" + (" by eviction" if pool.mempool.evicted > evicted else ""))
                assert tx.tx_id in pool.mempool
                if pool.mempool.evicted > evicted:
                    # txs that depended on a victim leave at the next head's re-check
                    pool.mempool.on_new_head([])
        elif s[0] == "block":
            pool.produce(slots=s[1])
        elif pool.chain.head.height > 0:
            popped = pool.chain.pop_block()
            pool.mempool.on_new_head([], readd=popped.txs)
        check_consistent(pool)
