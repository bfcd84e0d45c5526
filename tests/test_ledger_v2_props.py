"""Properties of the version-2 ledger over random op sequences (hypothesis).

Random programs mix every op of sections 3 and 11 (assets, societies in MUX and in a
user-issued asset with a charity split, standing pledges, proxies, claims, charity
requests, votes, gifts, withdrawals, amendments, comments) over blocks at random times.
After every block:

(a) conservation per asset: balances + escrows + charity escrows + held bonds + burned =
    issued supply, and for MUX the genesis supply;
(b) every member's karma counts at most once on every claim: the tallies are exactly the
    sum of the vote records (own weights and the weights each lists as counted through
    it), a member is either an own vote, an opt-out or listed by one proxy's vote, never
    two of these;
(c) an invalid tx changes nothing: replaying only the accepted txs at the same times
    gives byte-identical stores;
(d) the same blocks give the same state digest (the replay's digests match, block by
    block).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from consensus.crypto import PrivateKey, sha256
from consensus.tx import SignedTx
from muxernode import ledger as L
from tests.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    POOR,
    RULES,
    Chain,
    asset_conservation,
    check_witness_votes,
    conservation_total,
    make_genesis,
    op_amend,
    op_charity,
    op_claim,
    op_comment,
    op_create,
    op_create_asset,
    op_give,
    op_issue_asset,
    op_join,
    op_pledge,
    op_set_proxy,
    op_standing,
    op_transfer_asset,
    op_vote,
    op_withdraw,
    store_contents,
)

PROPS = settings(
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ACCOUNTS: tuple[PrivateKey, ...] = (ALICE, BOB, CAROL, DAVE, ERIN, POOR)
# "mux-aid" runs in MUX with a 25 % charity split, "btc-aid" in BTC with 2 charity slots
SOCIETIES = ("mux-aid", "btc-aid")
FAST = replace(RULES, decay_period_s=5, decay_ppm=100_000, approval_bp=1_000, observation_s=0,
               waiting_s=1, claim_ttl_s=15, benefit_ratio=5, claim_bond=50, min_pledge=10)
SOCIETY_RULES = {
    "mux-aid": replace(FAST, charity_bp=2500, charity_slots=1, items=12),
    "btc-aid": replace(FAST, asset="BTC", charity_bp=1000, charity_slots=2, items=12),
}
KINDS = ("issue", "transfer_asset", "pledge", "standing", "proxy", "unproxy", "claim",
         "charity", "vote", "vote", "vote", "vote", "vote", "give", "give", "withdraw",
         "amend", "comment", "create_asset_again")

actions = st.tuples(
    st.sampled_from(KINDS),
    st.integers(0, len(ACCOUNTS) - 1),
    st.integers(0, len(ACCOUNTS) - 1),
    st.one_of(st.integers(0, 300), st.integers(0, 50_000), st.just(2**62)),
    st.integers(0, 255),
)
dts = st.sampled_from([1, 1, 2, 3, 5, 16])
programs = st.lists(st.tuples(dts, st.lists(actions, min_size=1, max_size=10)),
                    min_size=2, max_size=7)
Action = tuple[str, int, int, int, int]


def prelude(c: Chain) -> list[bytes]:
    """ERIN is the BTC gateway; both societies exist; everyone but POOR joins both; BOB
    and DAVE have CAROL as their proxy; ALICE has a claim open in each society (its ids
    are returned), so that proxied votes and overrides are common from the first block."""
    c.ok(ERIN, op_create_asset("BTC", 2, 10**9))
    c.commit()
    for soc in SOCIETIES:
        c.ok(ALICE, op_create(soc, SOCIETY_RULES[soc]))
    for k in ACCOUNTS[:-1]:
        c.ok(ERIN, op_issue_asset(k.address, 20_000))
    c.commit()
    for k in ACCOUNTS[:-1]:
        for soc in SOCIETIES:
            c.ok(k, op_join(soc, "id"))
            c.ok(k, op_pledge(2_000, soc))
    c.commit()
    claims = []
    for soc in SOCIETIES:
        c.ok(BOB, op_set_proxy(CAROL.address, soc))
        c.ok(DAVE, op_set_proxy(CAROL.address, soc))
        claims.append(c.ok(ALICE, op_claim(5_000, 500, soc)).tx_id)
    c.commit()
    return claims


class Program:
    def __init__(self) -> None:
        self.claims: list[bytes] = []

    def op(self, c: Chain, action: Action) -> tuple[PrivateKey, list[Any]]:
        kind, s, r, amount, x = action
        signer, other = ACCOUNTS[s], ACCOUNTS[r]
        soc = SOCIETIES[x % 2]
        claim_id = self.claims[x % len(self.claims)] if self.claims and x % 7 else sha256(
            bytes([x]))
        if kind == "issue":
            return ERIN, op_issue_asset(other.address, amount)
        if kind == "transfer_asset":
            return signer, op_transfer_asset(other.address, amount)
        if kind == "pledge":
            return signer, op_pledge(amount, soc)
        if kind == "standing":
            if x % 5 == 0:
                return signer, op_standing(0, 0, soc)
            return signer, op_standing(amount, 5 + x % 11, soc)
        if kind == "proxy":
            return signer, op_set_proxy(other.address, soc)
        if kind == "unproxy":
            return signer, op_set_proxy(b"", soc)
        if kind == "claim":
            return signer, op_claim(amount, 1 + amount // 10, soc)
        if kind == "charity":
            return signer, op_charity(amount, soc)
        if kind == "vote":
            return signer, op_vote(claim_id, (x % 3) - 1)
        if kind == "give":
            return signer, op_give(claim_id, amount)
        if kind in ("withdraw", "amend") and self.claims and x % 3:
            # mostly from the claimant, the only one who may
            claim = c.get(L.claim_key(claim_id))
            if claim is not None:
                signer = next(k for k in ACCOUNTS if k.address == claim[L.C_CLAIMANT])
        if kind == "withdraw":
            return signer, op_withdraw(claim_id)
        if kind == "amend":
            return signer, op_amend(claim_id)
        if kind == "comment":
            return signer, op_comment(claim_id, "q" * (1 + x % 40))
        return signer, op_create_asset("BTC")  # asset_exists


def check_votes(c: Chain) -> None:
    """(b): from the committed vote records, every claim's tallies and counts."""
    records: dict[bytes, dict[bytes, list[Any]]] = {}
    for key, rec in c.ledger.state.iterate_committed(b"v"):
        records.setdefault(key[1:33], {})[key[33:]] = rec
    for key, claim in c.ledger.state.iterate_committed(b"c"):
        votes = records.get(key[1:], {})
        approve, reject = (
            sum(r[L.V_WEIGHT] + sum(w for _, w in r[L.V_COUNTED])
                for r in votes.values() if r[L.V_STANCE] == stance)
            for stance in (1, -1)
        )
        assert (claim[L.C_APPROVE], claim[L.C_REJECT]) == (approve, reject)
        counted = [(d, w, voter) for voter, r in votes.items() for d, w in r[L.V_COUNTED]]
        assert claim[L.C_VOTERS] == sum(1 for r in votes.values() if r[L.V_STANCE] != 0) + len(
            counted
        )
        assert claim[L.C_PROXIED] == sum(w for _, w, _ in counted)
        assert claim[L.C_CLAIMANT] not in votes  # no self vote, by proxy or not
        # every member counts at most once: never both on its own and through a proxy,
        # never through two proxies, and an opt-out is never counted
        delegators = [d for d, _, _ in counted]
        assert len(delegators) == len(set(delegators))
        assert not set(delegators) & set(votes)
        assert claim[L.C_CLAIMANT] not in delegators
        for r in votes.values():
            if r[L.V_COUNTED]:
                assert r[L.V_STANCE] != 0
                assert [d for d, _ in r[L.V_COUNTED]] == sorted(d for d, _ in r[L.V_COUNTED])


def check_money(c: Chain) -> None:
    total, supply = conservation_total(c)
    assert total == supply
    for symbol, (held, issued) in asset_conservation(c.kv).items():
        assert held == issued, symbol
    check_witness_votes(c)


def run(program: Sequence[tuple[int, list[Action]]]) -> tuple[Chain, list[list[SignedTx]]]:
    balances = [(k, 10**7) for k in ACCOUNTS[:-1]] + [(POOR, 100)]
    c = Chain(make_genesis(balances))
    p = Program()
    p.claims = prelude(c)
    accepted: list[list[SignedTx]] = []
    for dt, acts in program:
        c.begin(dt=dt)
        kept = []
        for i, action in enumerate(acts):
            signer, op = p.op(c, action)
            tx = c.tx(signer, op, fee=10 + i)  # distinct fees: no accidental duplicates
            if c.apply(tx) is None:
                kept.append(tx)
                if op[0] in (5, 15):
                    p.claims.append(tx.tx_id)
        c.commit()
        accepted.append(kept)
        check_money(c)
        check_votes(c)
    return c, accepted


@PROPS
@given(programs)
# BOB (CAROL's delegator) votes first, then CAROL (BOB keeps his own vote, DAVE counts
# through her), then DAVE overrides and BOB opts out, then CAROL re-votes
@example([(1, [("vote", 1, 0, 0, 2)]), (1, [("vote", 2, 0, 0, 2)]),
          (1, [("vote", 3, 0, 0, 6), ("vote", 1, 0, 0, 4)]), (1, [("vote", 2, 0, 0, 6)])])
def test_v2_programs_conserve_count_once_and_replay(
    program: Sequence[tuple[int, list[Action]]]
) -> None:
    c, accepted = run(program)
    for op in sorted({tx.op[0] for txs in accepted for tx in txs}):
        event(f"accepted opcode {op}")
    # (c) and (d): the accepted txs alone, at the same times, give the same bytes and digests
    balances = [(k, 10**7) for k in ACCOUNTS[:-1]] + [(POOR, 100)]
    replay = Chain(make_genesis(balances))
    prelude(replay)
    for (dt, _), txs in zip(program, accepted, strict=True):
        assert replay.block(*txs, dt=dt) == [None] * len(txs)
    assert replay.digests == c.digests
    assert store_contents(replay.kv) == store_contents(c.kv)


def test_the_generator_reaches_the_v2_paths() -> None:
    """A fixed program that exercises proxies voting, charity gifts and standing pledges,
    so that the random search above starts from a program known to get that far."""
    program: list[tuple[int, list[Action]]] = [
        (1, [("proxy", 1, 2, 0, 0), ("proxy", 3, 2, 0, 0), ("standing", 0, 0, 100, 1),
             ("claim", 4, 0, 500, 0), ("charity", 4, 0, 100, 1)]),
        (1, [("vote", 2, 0, 0, 2), ("vote", 3, 0, 0, 0), ("vote", 4, 0, 0, 3)]),
        (2, [("give", 1, 0, 100, 2), ("comment", 1, 0, 0, 1), ("amend", 4, 0, 0, 1)]),
        (16, [("withdraw", 0, 0, 0, 1)]),
    ]
    c, accepted = run(program)
    kinds = {tx.op[0] for txs in accepted for tx in txs}
    assert {13, 14, 5, 15, 6, 7, 17, 18} <= kinds
    assert c.get(L.standing_key("btc-aid", ALICE.address)) is not None or any(
        a == ALICE.address for _, a, _ in c.ledger.last_scheduled)
