"""Properties of the MUXER ledger over random tx sequences (hypothesis).

(a) conservation of money, (b) an invalid tx changes nothing, byte for byte,
(d) karma decay equals the formula of section 4.2, (e) determinism of the digest.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from consensus.crypto import PrivateKey, sha256
from consensus.genesis import Genesis
from consensus.tx import SignedTx
from muxernode import ledger as L
from muxernode.ops import Rules
from tests.ledger_helpers import (
    ALICE,
    BASE_FEE,
    BOB,
    CAROL,
    DAVE,
    NOBODY,
    POOR,
    WITNESS,
    WITNESS2,
    Chain,
    check_witness_votes,
    conservation_total,
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

PROPS = settings(
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- random programs ------------------------------------------------------------------------

ACCOUNTS: tuple[PrivateKey, ...] = (ALICE, BOB, CAROL, DAVE, POOR, NOBODY, WITNESS2)
SOCIETIES = ("s-a", "s-b", "s-c")
RULESETS: tuple[list[Any], ...] = (
    # fast decay (20 % per 5 s), claims open 20 s, gifts after 2 s, small bond
    Rules(5, 200_000, 1_000, 0, 2, 20, 3, 50, 10).as_list(),
    # no decay, observation 3 s, big bond, approval 50 %, claims open 12 s
    Rules(1, 0, 5_000, 3, 0, 12, 1000, 300, 1).as_list(),
    # invalid (waiting_s == claim_ttl_s): bad_rules
    [5, 200_000, 1_000, 0, 8, 8, 3, 50, 10],
)
KINDS = ("transfer", "create", "join", "pledge", "claim", "vote", "give", "register",
         "vote_witness", "bad", "replay", "stale")


def genesis_balances() -> list[tuple[PrivateKey, int]]:
    # DAVE is left with 60 after the prelude: a member with karma and hardly any money
    return [(ALICE, 10**6), (BOB, 200_000), (CAROL, 20_000), (DAVE, 2_100), (POOR, 100),
            (WITNESS2, 50)]


amounts = st.one_of(
    st.integers(0, 400),
    st.integers(0, 30_000),
    st.integers(0, 2 * 10**6),
    st.sampled_from([2**63 - 1, 10**12]),
)
# claims, votes and gifts weigh more: they need a lot to line up before they can succeed
WEIGHTED_KINDS = KINDS + ("claim",) * 2 + ("vote",) * 4 + ("give",) * 4 + ("pledge", "transfer")
actions = st.tuples(
    st.sampled_from(WEIGHTED_KINDS),
    st.one_of(st.integers(0, 3), st.integers(0, len(ACCOUNTS) - 1)),  # mostly members
    st.integers(0, len(ACCOUNTS) - 1),
    amounts,
    st.integers(0, 255),
)
# mostly short steps (claims live 5-8 s), sometimes long ones (closings, decay)
dts = st.sampled_from([1, 1, 1, 2, 2, 3, 5, 9, 30, 200])
blocks = st.lists(
    st.tuples(dts, st.booleans(), st.lists(actions, min_size=2, max_size=12)),
    min_size=2,
    max_size=8,
)

Action = tuple[str, int, int, int, int]
Block = tuple[int, bool, list[Action]]


class Program:
    """Turns random actions into txs against a chain, remembering claim ids and txs."""

    def __init__(self) -> None:
        self.claims: list[bytes] = []
        self.built: list[SignedTx] = []

    def tx(self, c: Chain, action: Action) -> SignedTx:
        kind, s, r, amount, x = action
        signer, other = ACCOUNTS[s], ACCOUNTS[r]
        soc = SOCIETIES[x % 5 // 2]  # s-a, s-a, s-b, s-b, s-c
        # mostly an open claim, sometimes any claim (maybe closed), sometimes an unknown id
        open_ids = [i for i in self.claims if c.claim(i)[L.C_STATUS] == L.CLAIM_OPEN]
        if open_ids and x % 8 < 6:
            claim_id = open_ids[x % len(open_ids)]
        elif self.claims and x % 8 == 6:
            claim_id = self.claims[x % len(self.claims)]
        else:
            claim_id = sha256(bytes([x]))
        fee = BASE_FEE - 1 if x % 17 == 0 else BASE_FEE * 30 if x % 13 == 0 else BASE_FEE
        if kind == "replay" and self.built:
            return self.built[x % len(self.built)]
        op: Any
        if kind == "transfer":
            op = op_transfer(other.address, amount)
        elif kind == "create":
            op = op_create(soc, RULESETS[x // 3 % len(RULESETS)])
        elif kind == "join":
            op = op_join(soc)
        elif kind == "pledge":
            op = op_pledge(amount, soc)
        elif kind == "claim":
            op = op_claim(amount, x % 2 * (amount % 3000) + x % 50, soc)
        elif kind == "vote":
            op = op_vote(claim_id, (1, 1, 1, -1, 0)[x % 5])
        elif kind == "give":
            op = op_give(claim_id, amount if x % 4 == 0 else amount % 300 + 1)
        elif kind == "register":
            op = op_register_witness(signer.public_key, "u")
        elif kind == "vote_witness":
            pool = [WITNESS.address, WITNESS2.address, other.address, ALICE.address]
            op = op_vote_witness([w for i, w in enumerate(pool) if x >> i & 1])
        elif kind == "bad":
            op = [[], [1, b"x", 1, ""], [6, claim_id, 2], [4, soc, -amount]][x % 4]
        else:  # "stale", or a replay before anything was built
            return c.tx(signer, op_transfer(other.address, 1), expiration=c.next_time)
        tx = c.tx(signer, op, fee=fee)
        self.built.append(tx)
        return tx

    def accepted(self, tx: SignedTx) -> None:
        event(f"accepted opcode {tx.op[0]}")
        if tx.op[0] == 5:
            self.claims.append(tx.tx_id)

    def prelude(self, c: Chain) -> None:
        """Two societies that every funded account joins and pledges to, so that random
        claims, votes and gifts have something to work on; and one open claim."""
        c.begin()
        c.ok(ALICE, op_create("s-a", RULESETS[0]))
        c.ok(BOB, op_create("s-b", RULESETS[1]))
        for k, amount in ((ALICE, 50_000), (BOB, 20_000), (CAROL, 4_000), (DAVE, 1_000)):
            for soc in ("s-a", "s-b"):
                c.ok(k, op_join(soc))
                c.ok(k, op_pledge(amount, soc))
        c.ok(WITNESS2, op_register_witness(WITNESS2.public_key))
        c.ok(ALICE, op_vote_witness([WITNESS2.address]))  # stake moves change votes
        c.ok(BOB, op_vote_witness([WITNESS.address, WITNESS2.address]))
        self.claims.append(c.ok(ALICE, op_claim(10_000, 1_000, "s-a")).tx_id)
        c.commit()

    def outcomes(self, c: Chain) -> None:
        for cid in self.claims:
            event(f"claim status {c.claim(cid)[L.C_STATUS]}")
            if c.claim(cid)[L.C_RECEIVED]:
                event("claim received gifts")


def producer_for(alt: bool) -> bytes:
    return ALICE.address if alt else WITNESS.address


# --- (a) conservation -----------------------------------------------------------------------


@PROPS
@given(blocks)
def test_conservation_over_random_programs(program: Sequence[Block]) -> None:
    c = Chain(make_genesis(genesis_balances(), witnesses=(WITNESS, WITNESS2)))
    supply = c.genesis.supply
    prog = Program()
    prog.prelude(c)
    for dt, alt, acts in program:
        c.begin(dt=dt, producer=producer_for(alt))
        for action in acts:
            tx = prog.tx(c, action)
            if c.apply(tx) is None:
                prog.accepted(tx)
        c.commit()
        assert conservation_total(c) == (supply, supply)
        assert conservation_total(c.ledger) == (supply, supply)
        check_witness_votes(c)
    # let every claim close, then check again: bonds are either back or burned
    c.block(dt=1000)
    assert conservation_total(c) == (supply, supply)
    for cid in prog.claims:
        assert c.claim(cid)[L.C_STATUS] != L.CLAIM_OPEN
    prog.outcomes(c)


# --- (b) an invalid tx changes nothing -------------------------------------------------------


@PROPS
@given(blocks)
def test_rejected_txs_change_nothing(program: Sequence[Block]) -> None:
    """Chain `full` gets every tx; chain `clean` only the ones `full` accepted. After every
    block both stores are identical byte for byte, and so are the digests."""
    genesis = make_genesis(genesis_balances(), witnesses=(WITNESS, WITNESS2))
    full, clean = Chain(genesis), Chain(genesis)
    prog = Program()
    prog.prelude(full)
    prog.prelude(clean)
    assert store_contents(full.kv) == store_contents(clean.kv)
    for dt, alt, acts in program:
        full.begin(dt=dt, producer=producer_for(alt))
        clean.begin(dt=dt, producer=producer_for(alt))
        for action in acts:
            tx = prog.tx(full, action)
            if full.apply(tx) is None:
                prog.accepted(tx)
                assert clean.apply(tx) is None
        full.commit()
        clean.commit()
        assert full.digest == clean.digest
        assert store_contents(full.kv) == store_contents(clean.kv)


def test_rejected_tx_in_the_middle_of_a_block_changes_nothing() -> None:
    genesis = make_genesis(genesis_balances())
    a, b = Chain(genesis), Chain(genesis)
    first = a.tx(ALICE, op_transfer(BOB.address, 10))
    last = a.tx(BOB, op_transfer(CAROL.address, 10))
    bad = [
        a.tx(DAVE, op_transfer(BOB.address, 3_000)),  # fee + amount > balance
        a.tx(ALICE, op_pledge(100, "s-a")),  # unknown society
        a.tx(ALICE, op_transfer(BOB.address, 1), fee=BASE_FEE - 1),
    ]
    assert a.block(first, *bad, last) == [None, "insufficient_balance", "unknown_society",
                                          "fee_too_low", None]
    assert b.block(first, last) == [None, None]
    assert a.digest == b.digest
    assert store_contents(a.kv) == store_contents(b.kv)


# --- (d) karma decay -------------------------------------------------------------------------


def decay_reference(k: int, t0: int, t: int, period: int, ppm: int) -> int:
    """Section 4.2, computed independently: period numbers by divmod, the factor as an
    exact fraction, rounded down once."""
    n = divmod(t, period)[0] - divmod(t0, period)[0]
    if n <= 0 or ppm == 0:
        return k
    if n > 4096:
        return 0
    value = Fraction(k) * Fraction(1_000_000 - ppm, 1_000_000) ** n
    return value.numerator // value.denominator


MAX = 2**63 - 1
karmas = st.one_of(st.integers(0, 10**6), st.integers(0, MAX), st.just(MAX))
ppms = st.one_of(st.just(0), st.integers(0, 999_999), st.sampled_from([1, 3844, 999_999]))
periods = st.one_of(st.integers(1, 100), st.integers(1, 10**6), st.just(86_400))
ns = st.one_of(st.integers(-3, 8), st.integers(4090, 4100), st.integers(0, 5000))


@settings(deadline=None, max_examples=150)
@given(karmas, st.integers(0, 2**40), periods, ppms, ns, st.integers(0, 10**6))
@example(k=MAX, t0=0, period=1, ppm=0, n=10**6, offset=0)  # ppm 0, n > 4096
@example(k=MAX, t0=5, period=10, ppm=3844, n=0, offset=9)  # n = 0 across seconds
@example(k=MAX, t0=0, period=1, ppm=1, n=4096, offset=0)  # the last n that decays
@example(k=MAX, t0=0, period=1, ppm=1, n=4097, offset=0)  # the first n that zeroes
@example(k=MAX, t0=0, period=1, ppm=999_999, n=1, offset=0)
@example(k=0, t0=0, period=7, ppm=500_000, n=3, offset=0)
@example(k=123, t0=100, period=10, ppm=500_000, n=-2, offset=0)  # t before t0
def test_decay_matches_formula(
    k: int, t0: int, period: int, ppm: int, n: int, offset: int
) -> None:
    t = max(0, (t0 // period + n) * period + offset % period)
    got = L.decay(k, t0, t, period, ppm)
    assert got == decay_reference(k, t0, t, period, ppm)
    assert 0 <= got <= k
    if ppm and 0 < t // period - t0 // period <= 4096 and k:
        assert got < k


@settings(deadline=None, max_examples=150)
@given(karmas, st.integers(0, 2**45), st.integers(0, 2**45), periods, ppms)
def test_decay_matches_formula_for_any_times(
    k: int, t0: int, t: int, period: int, ppm: int
) -> None:
    assert L.decay(k, t0, t, period, ppm) == decay_reference(k, t0, t, period, ppm)


@settings(deadline=None, max_examples=25)
@given(
    st.integers(1, 50),
    st.integers(0, 999_999),
    st.integers(20, 10**7),
    st.integers(1, 300),
)
def test_vote_weight_is_decayed_karma(period: int, ppm: int, pledge: int, dt: int) -> None:
    """Through the ledger: a karma value stored by a pledge weighs, dt seconds later, what
    the formula says; and the society total decays the same way."""
    rules = Rules(period, ppm, 1, 0, 0, 400, 10, 0, 1)
    c = Chain()
    c.begin()
    c.ok(ALICE, op_create(rules=rules))
    for k, amount in ((ALICE, 2), (BOB, pledge)):
        c.ok(k, op_join())
        c.ok(k, op_pledge(amount))
    cid = c.ok(ALICE, op_claim(1, 1)).tx_id  # observation_s = 0
    c.commit()
    bob = c.member(BOB)
    society = c.society()
    t = c.time + dt
    c.begin(at=t)
    stored = (bob[L.M_KARMA], bob[L.M_KARMA_AT])
    want = decay_reference(stored[0], stored[1], t, period, ppm)
    if want == 0:
        assert c.reject(BOB, op_vote(cid, 1)) == "no_karma"
    else:
        c.ok(BOB, op_vote(cid, 1))
        assert c.claim(cid)[L.C_APPROVE] == want
        assert c.get(L.vote_key(cid, BOB.address)) == [1, want, []]
    assert c.total_karma(t) == decay_reference(
        society[L.S_KARMA], society[L.S_KARMA_AT], t, period, ppm)
    c.commit()
    assert (c.member(BOB)[L.M_KARMA], c.member(BOB)[L.M_KARMA_AT]) == stored


# --- (e) determinism -------------------------------------------------------------------------

TRANSFER_CAST: tuple[PrivateKey, ...] = (ALICE, BOB, CAROL, DAVE)


def small_genesis() -> Genesis:
    return make_genesis([(ALICE, 1_000), (BOB, 300)])  # CAROL and DAVE start with nothing


transfers = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 1_000)),
    min_size=1, max_size=8,
)


def run_transfers(genesis: Genesis, txs_per_block: Sequence[Sequence[SignedTx]]) -> Chain:
    c = Chain(genesis)
    for txs in txs_per_block:
        c.block(*txs)
    return c


@settings(deadline=None, max_examples=60)
@given(transfers, st.data())
def test_same_blocks_same_digest_and_order_matters(
    spec: list[tuple[int, int, int]], data: st.DataObject
) -> None:
    genesis = small_genesis()
    builder = Chain(genesis)
    txs = [builder.tx(TRANSFER_CAST[s], op_transfer(TRANSFER_CAST[r].address, amount))
           for s, r, amount in spec]
    split = data.draw(st.integers(0, len(txs)))
    a = run_transfers(genesis, [txs[:split], txs[split:]])
    b = run_transfers(genesis, [txs[:split], txs[split:]])
    assert a.digests == b.digests
    assert store_contents(a.kv) == store_contents(b.kv)
    # another order of the same txs: the digest differs exactly when the state differs
    shuffled = data.draw(st.permutations(txs))
    d = run_transfers(genesis, [shuffled[:split], shuffled[split:]])
    assert (d.digest == a.digest) == (store_contents(d.kv) == store_contents(a.kv))


def test_order_dependent_transfers_give_different_digests() -> None:
    genesis = small_genesis()
    builder = Chain(genesis)
    to_carol = builder.tx(ALICE, op_transfer(CAROL.address, 500))
    carol_pays = builder.tx(CAROL, op_transfer(DAVE.address, 400))  # needs ALICE's 500
    first = run_transfers(genesis, [[to_carol, carol_pays]])
    second = run_transfers(genesis, [[carol_pays, to_carol]])
    again = run_transfers(genesis, [[to_carol, carol_pays]])
    assert first.results[1].changes == again.results[1].changes
    assert first.digest == again.digest
    assert first.balance(DAVE) == 400
    assert second.balance(DAVE) == 0
    assert first.digest != second.digest
