"""The mempool keeps, without re-applying, the pending txs a new head did not touch
(consensus/mempool.py with muxernode/pending.py's recorder): over random pools and blocks
the kept pool and the pending overlay equal those of a full re-check, on LevelDB."""

from __future__ import annotations

import ast
import inspect
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from consensus.app import BlockContext
from consensus.chain import Chain
from consensus.crypto import PrivateKey
from consensus.errors import Rejected
from consensus.mempool import Mempool
from consensus.tx import SignedTx
from muxernode import ops
from muxernode.ledger import Ledger
from muxernode.pending import SINK, TIME_FREE, PendingRecorder
from storage.leveldb import LevelDBStore
from tests.chain_helpers import GENESIS, fresh_chain, produce, tx_on
from tests.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    POOR,
    WITNESS,
    op_create,
    op_join,
    op_pledge,
    op_transfer,
    op_vote_witness,
)

CAST = [ALICE, BOB, CAROL, DAVE, POOR]


class Twin:
    """One chain and two mempools over it: one with the recorder (keeps what it can), one
    without (re-applies every tx on every head, as before)."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.clock = chain.head.timestamp + 1
        self.keep_view = Ledger(chain.store, GENESIS.params, GENESIS.genesis_time)
        self.full_view = Ledger(chain.store, GENESIS.params, GENESIS.genesis_time)
        self._version = chain.version
        self.keep = Mempool(self.keep_view, self.context, self.refresh_keep,
                            recorder=PendingRecorder(self.keep_view))
        self.full = Mempool(self.full_view, self.context, self.refresh_full)

    def context(self) -> BlockContext:
        return self.chain.context_for(max(self.clock, self.chain.head.timestamp + 1), SINK)

    def refresh_keep(self) -> set[bytes] | None:
        # as the node does (Node._refresh_pending)
        chain, state = self.chain, self.keep_view.state
        changed: set[bytes] | None = None
        if self._version == chain.version:
            state.rollback()
            changed = set()
        elif self._version == chain.version - 1 and chain.last_changes is not None:
            changed = state.absorb(chain.last_changes)
        else:
            state.reset()
        self._version = chain.version
        return changed

    def refresh_full(self) -> None:
        self.full_view.state.reset()

    def add(self, tx: SignedTx) -> None:
        reasons = []
        for mp in (self.keep, self.full):
            try:
                mp.add(tx)
                reasons.append("admitted")
            except Rejected as exc:
                reasons.append(exc.reason)
        assert reasons[0] == reasons[1], reasons

    def new_head(self, included: list[bytes]) -> None:
        self.full.on_new_head(included)
        self.keep.on_new_head(included)
        self.check()

    def check(self) -> None:
        assert [t.tx_id for t in self.keep.pending()] == [t.tx_id for t in self.full.pending()]
        assert self.keep.size_bytes == self.full.size_bytes
        for mp in (self.keep, self.full):
            mp._ensure_open()  # an empty pool opens its view lazily
        a, b = self.keep_view.state, self.full_view.state
        keys = a.touched() | b.touched()
        assert {k: a.peek(k) for k in keys} == {k: b.peek(k) for k in keys}


def setup_chain(store: LevelDBStore) -> Chain:
    chain = fresh_chain(store)
    produce(chain, [tx_on(chain, ALICE, op_create())])
    produce(chain, [tx_on(chain, k, op_join(identity=k.address_text)) for k in (BOB, CAROL)])
    return chain


@st.composite
def tx_spec(draw: st.DrawFn) -> tuple[Any, ...]:
    kind = draw(st.sampled_from(["transfer", "transfer", "transfer", "sink", "pledge",
                                 "join", "vote_witness"]))
    sender = draw(st.sampled_from(CAST))
    to = draw(st.sampled_from(CAST))
    amount = draw(st.sampled_from([1, 500, 990, 10**11, 10**12]))
    lifetime = draw(st.integers(1, 12))
    back = draw(st.integers(0, 2))
    return kind, sender, to, amount, lifetime, back


def build(chain: Chain, spec: tuple[Any, ...], memo: str) -> SignedTx:
    kind, sender, to, amount, lifetime, back = spec
    op: list[Any]
    if kind == "transfer":
        op = op_transfer(to.address, amount, memo)
    elif kind == "sink":
        op = op_transfer(SINK, amount, memo)
    elif kind == "pledge":
        op = op_pledge(100 + amount % 1000)
    elif kind == "join":
        op = op_join(identity=memo)
    else:
        op = op_vote_witness([WITNESS.address] if amount % 2 else [])
    sign: PrivateKey = sender
    return tx_on(chain, sign, op, expiration=chain.head.timestamp + lifetime,
                 ref_height=max(0, chain.head.height - back))


tx_step = st.tuples(st.just("tx"), tx_spec())
step = st.one_of(
    tx_step, tx_step, tx_step,
    # a block: which pending txs (a mask), outside txs, slots after the head, and where
    # the pending clock stands after it (ahead of the block, or just after it)
    st.tuples(st.just("block"), st.lists(st.booleans(), max_size=12),
              st.lists(tx_spec(), max_size=3), st.integers(1, 3), st.integers(0, 3)),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=60))
def test_keeping_equals_a_full_recheck(steps: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = LevelDBStore(str(Path(tmp) / "db"))
        chain = setup_chain(store)
        twin = Twin(chain)
        for n, s in enumerate(steps):
            if s[0] == "tx":
                twin.add(build(chain, s[1], f"m{n}"))
                continue
            _, mask, outside, slots, ahead = s
            pending = list(twin.full.pending())
            chosen = [t for t, on in zip(pending, mask, strict=False) if on]
            extra = [build(chain, o, f"x{n}.{i}") for i, o in enumerate(outside)]
            ts = chain.head.timestamp + slots
            block, _dropped = chain.build_block(WITNESS, ts, chosen + extra, [])
            twin.clock = max(twin.clock, ts + ahead)
            twin.new_head([t.tx_id for t in block.txs])
        event(f"kept {'some' if twin.keep.kept else 'none'}")
        event(f"dropped {'some' if twin.full.dropped else 'none'}")
        assert twin.keep.kept + twin.keep.reapplied >= twin.full.kept  # full keeps none
        assert twin.full.kept == 0
        store.close()


def test_untouched_txs_are_kept_and_touched_ones_reapplied(tmp_path: Path) -> None:
    chain = setup_chain(LevelDBStore(str(tmp_path / "db")))
    twin = Twin(chain)
    mine = [tx_on(chain, DAVE, op_transfer(CAROL.address, 5, f"d{i}")) for i in range(20)]
    theirs = [tx_on(chain, BOB, op_transfer(CAROL.address, 5, f"b{i}")) for i in range(20)]
    for tx in mine + theirs:
        twin.add(tx)
    # a block from outside the pool changes BOB's balance: BOB's txs are re-applied (the
    # first comes out differently, which makes the keys it wrote dirty for the rest);
    # DAVE's, before them, read nothing the block changed and are laid back
    spend = tx_on(chain, BOB, op_transfer(ALICE.address, 7, "out"))
    block, _ = chain.build_block(WITNESS, chain.head.timestamp + 1, [spend], [])
    assert [t.tx_id for t in block.txs] == [spend.tx_id]
    twin.new_head([spend.tx_id])
    assert (twin.keep.kept, twin.keep.reapplied) == (20, 20)
    assert len(twin.keep) == 40


def test_disjoint_senders_and_recipients_are_all_kept(tmp_path: Path) -> None:
    chain = setup_chain(LevelDBStore(str(tmp_path / "db")))
    twin = Twin(chain)
    pool = [tx_on(chain, DAVE, op_transfer(POOR.address, 5, f"d{i}")) for i in range(30)]
    for tx in pool:
        twin.add(tx)
    spend = tx_on(chain, BOB, op_transfer(ALICE.address, 7, "out"))
    chain.build_block(WITNESS, chain.head.timestamp + 1, [spend], [])
    twin.new_head([spend.tx_id])
    assert (twin.keep.kept, twin.keep.reapplied) == (30, 0)
    assert twin.full.reapplied == 30
    # the fee sink and the id counters are deltas: the overlay matched (check() ran)
    # a block that includes the first pool tx changes DAVE: the rest are re-applied
    twin.clock = chain.head.timestamp + 5
    block, _ = chain.build_block(WITNESS, chain.head.timestamp + 1, pool[:1], [])
    assert len(block.txs) == 1
    twin.new_head([pool[0].tx_id])
    assert twin.keep.kept == 30 and twin.keep.reapplied == 29


def test_an_expired_or_unanchored_tx_is_not_kept(tmp_path: Path) -> None:
    chain = setup_chain(LevelDBStore(str(tmp_path / "db")))
    twin = Twin(chain)
    short = tx_on(chain, DAVE, op_transfer(POOR.address, 5, "short"),
                  expiration=chain.head.timestamp + 2)
    long = tx_on(chain, ALICE, op_transfer(POOR.address, 5, "long"),
                 expiration=chain.head.timestamp + 50)
    twin.add(short)
    twin.add(long)
    chain.build_block(WITNESS, chain.head.timestamp + 2, [], [])
    twin.new_head([])
    assert [t.tx_id for t in twin.keep.pending()] == [long.tx_id]
    assert twin.keep.dropped == 1


def test_time_free_handlers_do_not_read_the_block_time() -> None:
    """TIME_FREE's promise, checked against the ledger's source: the handler (and the
    Ledger methods it calls, transitively) never use their ``t``."""
    handlers = {ops.Transfer: "_transfer", ops.RegisterWitness: "_register_witness",
                ops.VoteWitness: "_vote_witness", ops.CreateAsset: "_create_asset",
                ops.IssueAsset: "_issue_asset", ops.TransferAsset: "_transfer_asset",
                ops.SetProxy: "_set_proxy", ops.WithdrawClaim: "_withdraw_claim",
                ops.AmendClaim: "_amend_claim"}
    assert set(handlers) == set(TIME_FREE)
    seen: set[str] = set()

    def check(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        fn = getattr(Ledger, name)
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert "t" not in names, f"Ledger.{name} reads the block time"
        attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                 and isinstance(n.value, ast.Name) and n.value.id == "self"}
        assert "_ctx" not in attrs or name == "_pay_fee", f"Ledger.{name} reads the context"
        assert "iterate_committed" not in attrs and "iterate_store" not in attrs
        for attr in attrs:
            if attr.startswith("_") and callable(getattr(Ledger, attr, None)):
                check(attr)

    for name in handlers.values():
        check(name)
