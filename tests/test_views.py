"""muxernode.views over a real Ledger: every field of every view, to the unit.

One scenario on society SOC (RULES: 100 s decay periods losing 10 % each, 30 % approval,
10 s observation, 5 s waiting, 50 s claims, benefit 10x, bond 1000, min pledge 100):

    t=1_000_001  create SOC; ALICE, BOB, CAROL join and pledge 10_000 / 20_000 / 40_000
                 (karma 5_000 / 10_000 / 20_000, total 35_000); DAVE registers as a
                 witness; ERIN approves DAVE
    t=1_000_011  ALICE claims 30_000 committing 2_000 karma (limit 20_000)
    t=1_000_012  BOB approves (10_000), CAROL rejects (20_000)
    t=1_000_013  CAROL re-votes approve (20_000): approve 30_000, approved
    t=1_000_016  BOB gives 4_000, CAROL gives 6_000 (karma +2_000 / +3_000)
    t=1_000_100  the claim closes approved (a new decay period: karma x 0.9)
    t=1_000_101  BOB claims 5_000 (karma 1_000), CAROL claims 7_000 (karma 500)
    t=1_000_151  both close rejected (no votes)
"""

from __future__ import annotations

from typing import Any

import pytest

from consensus.crypto import PrivateKey
from muxernode import views
from muxernode.state import State
from tests.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    FUNDS,
    GENESIS_TIME,
    NOBODY,
    SOC,
    WITNESS,
    Chain,
    op_claim,
    op_create,
    op_give,
    op_join,
    op_pledge,
    op_register_witness,
    op_vote,
    op_vote_witness,
    store_contents,
)

T0 = GENESIS_TIME
EVIDENCE = bytes([0xAB]) * 32
RULES_JSON = {
    "decay_period_s": 100, "decay_ppm": 100_000, "approval_bp": 3_000, "observation_s": 10,
    "waiting_s": 5, "claim_ttl_s": 50, "benefit_ratio": 10, "claim_bond": 1_000,
    "min_pledge": 100, "asset": "MUX", "charity_bp": 0, "charity_slots": 10,
}
DAVE_URL = "https://dave.example/muxer"


class Scenario:
    def __init__(self) -> None:
        self.c = Chain()
        self.claim_a = b""
        self.claim_b = b""
        self.claim_c = b""

    @property
    def state(self) -> State:
        return self.c.ledger.state

    def setup(self) -> None:
        c = self.c
        c.begin(at=T0 + 1)
        c.ok(ALICE, op_create(SOC))
        for k, name, amount in ((ALICE, "alice", 10_000), (BOB, "bob", 20_000),
                                (CAROL, "carol", 40_000)):
            c.ok(k, op_join(SOC, name))
            c.ok(k, op_pledge(amount))
        c.ok(DAVE, op_register_witness(DAVE.public_key, DAVE_URL))
        c.ok(ERIN, op_vote_witness([DAVE.address]))
        c.commit()

    def claim(self) -> None:
        c = self.c
        c.begin(at=T0 + 11)
        self.claim_a = c.ok(ALICE, op_claim(30_000, 2_000, subject="roof",
                                            details="storm damage", evidence=EVIDENCE)).tx_id
        c.commit()

    def votes(self) -> None:
        c = self.c
        c.block(c.tx(BOB, op_vote(self.claim_a, 1)), c.tx(CAROL, op_vote(self.claim_a, -1)),
                at=T0 + 12)

    def revote(self) -> None:
        self.c.block(self.c.tx(CAROL, op_vote(self.claim_a, 1)), at=T0 + 13)

    def gives(self) -> None:
        c = self.c
        assert c.block(c.tx(BOB, op_give(self.claim_a, 4_000)),
                       c.tx(CAROL, op_give(self.claim_a, 6_000)), at=T0 + 16) == [None, None]

    def close(self) -> None:
        self.c.block(at=T0 + 100)

    def more_claims(self) -> None:
        c = self.c
        c.begin(at=T0 + 101)
        self.claim_b = c.ok(BOB, op_claim(5_000, 1_000, subject="car")).tx_id
        self.claim_c = c.ok(CAROL, op_claim(7_000, 500, subject="flood")).tx_id
        c.commit()

    def close_more(self) -> None:
        self.c.block(at=T0 + 151)


def without_assets(view: dict[str, Any]) -> dict[str, Any]:
    """The account view less ``assets``, after checking that it holds the MUX balance
    (11.8: MUX always; no other asset exists in this scenario)."""
    out = dict(view)
    assert out.pop("assets") == {"MUX": view["balance"]}
    return out


def some(view: dict[str, Any] | None) -> dict[str, Any]:
    assert view is not None
    return view


def claim_a_json(s: Scenario, **changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "claim_id": s.claim_a.hex(),
        "society": SOC,
        "claimant": ALICE.address_text,
        "amount": 30_000,
        "karma": 2_000,
        "limit": 20_000,
        "received": 0,
        "approve": 0,
        "reject": 0,
        "approved": False,
        "status": "open",
        "opened_at": T0 + 11,
        "gives_from": T0 + 16,
        "closes_at": T0 + 61,
        "subject": "roof",
        "details": "storm damage",
        "evidence": "ab" * 32,
        "voters": 0,
        "proxied": 0,
        "comments": 0,
    }
    out["kind"] = "claim"
    # BOB and CAROL are the two voters of this scenario (votes, then revote)
    if changes.get("approve") or changes.get("reject"):
        out["voters"] = 2
    out.update(changes)
    return out


def member_json(k: PrivateKey, identity: str, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"society": SOC, "address": k.address_text, "identity": identity,
                           "joined_at": T0 + 1, "charity_escrow": 0, "proxy": None,
                           "delegators": 0}
    out.update(fields)
    return out


def society_json(**changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "society": SOC, "name": "A society", "purpose": "Tests", "rules": RULES_JSON,
        "creator": ALICE.address_text, "members": 3, "total_karma": 35_000,
        "escrow_total": 70_000, "charity_escrow_total": 0, "open_claims": 0,
    }
    out.update(changes)
    return out


@pytest.fixture
def s() -> Scenario:
    sc = Scenario()
    sc.setup()
    return sc


def test_society_after_setup(s: Scenario) -> None:
    assert views.society_view(s.state, SOC, T0 + 1) == society_json()
    # 100 s later: one decay period, total karma x 0.9, nothing else moves
    assert views.society_view(s.state, SOC, T0 + 100) == society_json(total_karma=31_500)
    assert views.society_view(s.state, "nosuch", T0 + 1) is None


def test_members_after_setup(s: Scenario) -> None:
    assert views.member_view(s.state, SOC, ALICE.address, T0 + 1) == member_json(
        ALICE, "alice", escrow=10_000, karma=5_000, pledged_total=10_000, given_total=0)
    assert views.member_view(s.state, SOC, CAROL.address, T0 + 99) == member_json(
        CAROL, "carol", escrow=40_000, karma=20_000, pledged_total=40_000, given_total=0)
    assert views.member_view(s.state, SOC, CAROL.address, T0 + 250) == member_json(
        CAROL, "carol", escrow=40_000, karma=16_200, pledged_total=40_000, given_total=0)
    assert views.member_view(s.state, SOC, DAVE.address, T0 + 1) is None
    assert views.member_view(s.state, "nosuch", ALICE.address, T0 + 1) is None


def test_accounts_and_witness_fields(s: Scenario) -> None:
    assert without_assets(views.account_view(s.state, ALICE.address, T0 + 1)) == {
        "address": ALICE.address_text, "balance": FUNDS - 30 - 10_000, "stake": FUNDS - 30,
        "societies": [SOC]}
    assert without_assets(views.account_view(s.state, DAVE.address, T0 + 1)) == {
        "address": DAVE.address_text, "balance": FUNDS - 10, "stake": FUNDS - 10,
        "societies": [],
        # ERIN's stake after paying her vote_witness fee
        "witness": {"signing_key": DAVE.public_key.hex(), "url": DAVE_URL,
                    "votes": FUNDS - 10}}
    # the genesis witness collected the 9 fees of block 1
    assert without_assets(views.account_view(s.state, WITNESS.address, T0 + 1)) == {
        "address": WITNESS.address_text, "balance": 90, "stake": 90, "societies": [],
        "witness": {"signing_key": WITNESS.public_key.hex(), "url": "", "votes": 0}}
    # a valid address with no state is a zero account, not an error
    assert without_assets(views.account_view(s.state, NOBODY.address, T0 + 1)) == {
        "address": NOBODY.address_text, "balance": 0, "stake": 0, "societies": []}


def test_list_witnesses(s: Scenario) -> None:
    got = views.list_witnesses(s.state, {WITNESS.address}, {WITNESS.address: (42, 3)})
    assert got == [
        {"address": WITNESS.address_text, "url": "", "votes": 0, "active": True,
         "signing_key": WITNESS.public_key.hex(), "last_slot": 42, "missed": 3},
        {"address": DAVE.address_text, "url": DAVE_URL, "votes": FUNDS - 10, "active": False,
         "signing_key": DAVE.public_key.hex(), "last_slot": 0, "missed": 0},
    ]


def test_claim_lifecycle(s: Scenario) -> None:
    st = s.state
    s.claim()
    assert views.claim_view(st, s.claim_a, T0 + 11) == claim_a_json(s)
    assert views.member_view(st, SOC, ALICE.address, T0 + 11) == member_json(
        ALICE, "alice", escrow=10_000, karma=3_000, pledged_total=10_000, given_total=0,
        open_claim=s.claim_a.hex())
    assert views.society_view(st, SOC, T0 + 11) == society_json(total_karma=33_000,
                                                                 open_claims=1)
    assert views.account_view(st, ALICE.address, T0 + 11)["balance"] == (
        FUNDS - 30 - 10_000 - 10 - 1_000)

    s.votes()
    assert views.claim_view(st, s.claim_a, T0 + 12) == claim_a_json(
        s, approve=10_000, reject=20_000)

    s.revote()
    assert views.claim_view(st, s.claim_a, T0 + 13) == claim_a_json(
        s, approve=30_000, approved=True)
    # approval is evaluated at the head's time: 30_000 * 10_000 >= 3_000 * 33_000 * 0.9**n
    # holds at every later time since total karma only decays
    assert some(views.claim_view(st, s.claim_a, T0 + 60))["approved"] is True

    s.gives()
    assert views.claim_view(st, s.claim_a, T0 + 16) == claim_a_json(
        s, approve=30_000, approved=True, received=10_000)
    assert views.member_view(st, SOC, BOB.address, T0 + 16) == member_json(
        BOB, "bob", escrow=16_000, karma=12_000, pledged_total=20_000, given_total=4_000)
    assert views.member_view(st, SOC, CAROL.address, T0 + 16) == member_json(
        CAROL, "carol", escrow=34_000, karma=23_000, pledged_total=40_000, given_total=6_000)
    assert views.society_view(st, SOC, T0 + 16) == society_json(
        total_karma=38_000, escrow_total=60_000, open_claims=1)
    assert without_assets(views.account_view(st, ALICE.address, T0 + 16)) == {
        "address": ALICE.address_text, "balance": FUNDS - 30 - 10_000 - 10 - 1_000 + 10_000,
        "stake": FUNDS - 1_040 + 10_000, "societies": [SOC]}
    assert without_assets(views.account_view(st, BOB.address, T0 + 16)) == {
        "address": BOB.address_text, "balance": FUNDS - 20 - 20_000 - 10 - 10,
        "stake": FUNDS - 40 - 4_000, "societies": [SOC]}

    s.close()  # t = T0 + 100: one decay period later; bond back to ALICE
    closed = claim_a_json(s, approve=30_000, approved=True, received=10_000,
                          status="closed", outcome="approved")
    assert views.claim_view(st, s.claim_a, T0 + 100) == closed
    assert views.member_view(st, SOC, ALICE.address, T0 + 100) == member_json(
        ALICE, "alice", escrow=10_000, karma=2_700, pledged_total=10_000, given_total=0)
    assert views.member_view(st, SOC, BOB.address, T0 + 100) == member_json(
        BOB, "bob", escrow=16_000, karma=10_800, pledged_total=20_000, given_total=4_000)
    assert views.member_view(st, SOC, CAROL.address, T0 + 100) == member_json(
        CAROL, "carol", escrow=34_000, karma=20_700, pledged_total=40_000, given_total=6_000)
    assert views.society_view(st, SOC, T0 + 100) == society_json(
        total_karma=34_200, escrow_total=60_000)
    # a later head: two periods, x 0.81 (12_000 * 0.81 = 9_720, 38_000 * 0.81 = 30_780)
    assert some(views.member_view(st, SOC, BOB.address, T0 + 250))["karma"] == 9_720
    assert some(views.society_view(st, SOC, T0 + 250))["total_karma"] == 30_780
    assert views.account_view(st, ALICE.address, T0 + 100)["balance"] == FUNDS - 40


def test_list_claims_newest_first_and_rejected_outcome(s: Scenario) -> None:
    st = s.state
    assert views.list_claims(st, SOC, T0 + 1) == []
    assert views.list_claims(st, "nosuch", T0 + 1) is None
    s.claim()
    s.votes()
    s.revote()
    s.gives()
    s.close()
    s.more_claims()
    newer = sorted([s.claim_b, s.claim_c], reverse=True)  # same opened_at: id descending
    b_json = {
        "claim_id": s.claim_b.hex(), "society": SOC, "claimant": BOB.address_text,
        "amount": 5_000, "karma": 1_000, "limit": 5_000, "received": 0, "approve": 0,
        "reject": 0, "approved": False, "status": "open", "opened_at": T0 + 101,
        "gives_from": T0 + 106, "closes_at": T0 + 151, "subject": "car", "voters": 0,
        "proxied": 0, "comments": 0, "kind": "claim",
    }
    c_json = dict(b_json, claim_id=s.claim_c.hex(), claimant=CAROL.address_text,
                  amount=7_000, karma=500, subject="flood")
    a_json = claim_a_json(s, approve=30_000, approved=True, received=10_000,
                          status="closed", outcome="approved")
    del a_json["details"], a_json["evidence"]
    by_id = {s.claim_b: b_json, s.claim_c: c_json}
    got = views.list_claims(st, SOC, T0 + 101)
    assert got == [by_id[newer[0]], by_id[newer[1]], a_json]
    assert views.list_claims(st, SOC, T0 + 101, limit=1) == [by_id[newer[0]]]
    assert views.list_claims(st, SOC, T0 + 101, limit=0) == []
    # decayed then reduced by the committed karma: 10_800 - 1_000, 34_200 - 1_000 - 500
    assert views.member_view(st, SOC, BOB.address, T0 + 101) == member_json(
        BOB, "bob", escrow=16_000, karma=9_800, pledged_total=20_000, given_total=4_000,
        open_claim=s.claim_b.hex())
    assert views.society_view(st, SOC, T0 + 101) == society_json(
        total_karma=32_700, escrow_total=60_000, open_claims=2)

    s.close_more()  # nobody voted: both close rejected, bonds burned
    got = views.list_claims(st, SOC, T0 + 151)
    assert got is not None
    assert [(x["status"], x.get("outcome"), x["approved"]) for x in got] == [
        ("closed", "rejected", False), ("closed", "rejected", False),
        ("closed", "approved", True)]
    assert views.claim_view(st, s.claim_b, T0 + 151) == dict(
        b_json, status="closed", outcome="rejected", details="details",
        evidence="00" * 32)
    assert views.society_view(st, SOC, T0 + 151) == society_json(
        total_karma=32_700, escrow_total=60_000)
    assert "open_claim" not in (views.member_view(st, SOC, BOB.address, T0 + 151) or {})
    # BOB paid 3 more fees (vote, give, claim) and lost the bond
    assert views.account_view(st, BOB.address, T0 + 151)["balance"] == FUNDS - 21_050
    assert views.claim_view(st, bytes(32), T0 + 151) is None


def test_sources_ledger_snapshot_and_no_writes(s: Scenario) -> None:
    s.claim()
    before = store_contents(s.c.kv)
    snap = State(s.c.kv.snapshot())
    t = T0 + 150
    for source in (s.state, s.c.ledger, snap):
        assert views.society_view(source, SOC, t) == views.society_view(s.state, SOC, t)
        assert views.claim_view(source, s.claim_a, t) == views.claim_view(s.state,
                                                                          s.claim_a, t)
        assert views.member_view(source, SOC, ALICE.address, t) is not None
        assert views.account_view(source, ERIN.address, t)["stake"] == FUNDS - 10
        assert len(views.list_claims(source, SOC, t) or []) == 1
        assert len(views.list_witnesses(source, set(), {})) == 2
    # reading (decaying to a later time included) stores nothing
    assert store_contents(s.c.kv) == before
    assert not s.state.in_block
