"""Version 2 of the ledger (protocol section 11): assets, society rules v2, standing pledges,
vote proxies, charity requests, withdraw and amend, comments. Every reason code of section
11 is asserted here (tests/test_ledger.py checks that each one the code raises is)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from consensus.crypto import PrivateKey
from consensus.errors import Rejected
from muxernode import ledger as L
from muxernode import views
from tests.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    FUNDS,
    NOBODY,
    POOR,
    RULES,
    SOC,
    WITNESS,
    Chain,
    asset_conservation,
    conservation_total,
    key,
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
    op_transfer,
    op_transfer_asset,
    op_vote,
    op_withdraw,
)

FEE = 10
BOND = RULES.claim_bond
BTC_RULES = replace(RULES, asset="BTC", charity_bp=2000, charity_slots=1, items=12)


def check(c: Chain) -> None:
    """Conservation of MUX and of every asset, from committed state."""
    total, supply = conservation_total(c)
    assert total == supply
    for symbol, (held, issued) in asset_conservation(c.kv).items():
        assert held == issued, symbol


def btc_chain(members: tuple[PrivateKey, ...] = (BOB, CAROL, DAVE), amount: int = 10**9
              ) -> Chain:
    """ERIN is the gateway: creates BTC, issues to everyone; ALICE founds a BTC society."""
    c = Chain()
    c.ok(ERIN, op_create_asset())
    c.commit()
    for k in (ALICE, *members):
        c.ok(ERIN, op_issue_asset(k.address, amount))
    c.commit()
    c.society_with_members([(k, 0) for k in members], rules=BTC_RULES)
    return c


# --- 11.1 assets ------------------------------------------------------------------------


def test_create_issue_transfer_asset() -> None:
    c = Chain()
    assert c.reject(ALICE, op_create_asset("MUX")) == "bad_symbol"
    assert c.reject(ALICE, op_create_asset("1BC")) == "bad_symbol"
    assert c.reject(ALICE, op_create_asset("BT")) == "bad_symbol"
    assert c.reject(ALICE, op_create_asset("btc")) == "bad_symbol"
    assert c.reject(ALICE, op_create_asset("BTC", precision=19)) == "bad_op"
    assert c.reject(ALICE, op_create_asset("BTC", max_supply=0)) == "bad_op"
    assert c.reject(ALICE, [10, b"BTC", 8, 10, ""]) == "bad_op"  # bin where str is due
    c.ok(ALICE, op_create_asset("BTC", max_supply=1000))
    assert c.reject(BOB, op_create_asset("BTC")) == "asset_exists"
    c.commit()
    assert c.get(L.asset_key("BTC")) == [ALICE.address, 8, 1000, 0, "an IOU", 0]
    assert c.reject(BOB, op_issue_asset(BOB.address, 5)) == "not_issuer"
    assert c.reject(ALICE, op_issue_asset(BOB.address, 1001)) == "over_supply"
    assert c.reject(ALICE, op_issue_asset(BOB.address, 5, "ETH")) == "unknown_asset"
    assert c.reject(ALICE, op_issue_asset(BOB.address, 5, "MUX")) == "unknown_asset"
    assert c.reject(ALICE, op_transfer_asset(BOB.address, 5, "MUX")) == "unknown_asset"
    c.ok(ALICE, op_issue_asset(BOB.address, 600))
    c.ok(ALICE, op_issue_asset(BOB.address, 400))
    assert c.reject(ALICE, op_issue_asset(BOB.address, 1)) == "over_supply"
    assert c.reject(BOB, op_transfer_asset(CAROL.address, 1001)) == "insufficient_balance"
    c.ok(BOB, op_transfer_asset(CAROL.address, 250))
    c.ok(BOB, op_transfer_asset(ALICE.address, 750))  # back to the issuer: a redemption
    c.commit()
    assert c.get(L.asset_balance_key(BOB.address, "BTC")) is None  # zero: no entry
    assert c.get(L.asset_balance_key(CAROL.address, "BTC")) == 250
    assert c.get(L.asset_key("BTC"))[L.A_SUPPLY] == 1000
    # fees are MUX only: a holder without MUX cannot move its asset
    assert c.reject(NOBODY, op_transfer_asset(BOB.address, 1)) == "insufficient_balance"
    check(c)
    acct = views.account_view(c.ledger, CAROL.address, c.time)
    assert acct["assets"] == {"MUX": FUNDS, "BTC": 250}
    assert views.asset_view(c.ledger, "MUX") is None
    assert views.asset_view(c.ledger, "BTC") == {
        "symbol": "BTC", "issuer": ALICE.address_text, "precision": 8, "max_supply": 1000,
        "supply": 1000, "description": "an IOU", "burned": 0}
    assert [a["symbol"] for a in views.list_assets(c.ledger)] == ["BTC"]


def test_asset_rejection_messages_use_whole_units() -> None:
    c = Chain()
    c.ok(ALICE, op_create_asset("BTC", precision=8, max_supply=2 * 10**8))
    c.commit()
    c.begin()
    with pytest.raises(Rejected) as exc:
        c.ledger.apply_tx(c.tx(ALICE, op_issue_asset(BOB.address, 3 * 10**8)))
    assert "2 BTC more" in exc.value.message


# --- 11.2 rules v2 ----------------------------------------------------------------------


def test_society_of_an_asset_and_charity_split() -> None:
    c = Chain()
    assert c.reject(ALICE, op_create("btc-soc", BTC_RULES)) == "unknown_asset"
    bad = [*RULES.as_list(), "BTC", 5001, 1]
    assert c.reject(ALICE, op_create("btc-soc", bad)) == "bad_rules"
    assert c.reject(ALICE, op_create("btc-soc", [*RULES.as_list(), "BTC", 0, 0])) == "bad_rules"
    assert c.reject(ALICE, op_create("btc-soc", [*RULES.as_list(), "BTC", 0])) == "bad_rules"
    assert c.reject(ALICE, op_create("btc-soc", [*RULES.as_list(), "btc", 0, 1])) == "bad_rules"
    c = btc_chain()
    s = views.society_view(c.ledger, SOC, c.time)
    assert s is not None
    assert (s["rules"]["asset"], s["rules"]["charity_bp"], s["rules"]["charity_slots"]) == (
        "BTC", 2000, 1)
    mux_before = c.balance(BOB)
    c.ok(BOB, op_pledge(10_000))
    c.commit()
    m = c.member(BOB)
    assert (m[L.M_ESCROW], m[L.M_CHARITY], m[L.M_KARMA]) == (8_000, 2_000, 5_000)
    assert c.balance(BOB) == mux_before - FEE  # fee in MUX, pledge in BTC
    assert c.escrow(BOB) == 0  # BTC escrow is no MUX stake
    assert c.get(L.asset_balance_key(BOB.address, "BTC")) == 10**9 - 10_000
    s = views.society_view(c.ledger, SOC, c.time)
    assert s is not None
    assert (s["escrow_total"], s["charity_escrow_total"]) == (8_000, 2_000)
    # a pledge beyond the BTC balance is refused even with plenty of MUX
    assert c.reject(BOB, op_pledge(10**9)) == "insufficient_balance"
    check(c)


def test_claim_and_gift_in_the_society_asset_bond_burned_in_it() -> None:
    c = btc_chain()
    for k in (BOB, CAROL, DAVE):
        c.ok(k, op_pledge(100_000))
    c.commit()
    claim = c.ok(BOB, op_claim(30_000, 5_000))
    c.commit()
    assert c.get(L.asset_balance_key(BOB.address, "BTC")) == 10**9 - 100_000 - BOND
    c.ok(CAROL, op_vote(claim.tx_id, 1))
    c.ok(DAVE, op_vote(claim.tx_id, 1))
    c.commit()
    c.begin(at=c.claim(claim.tx_id)[L.C_GIVES_FROM])
    c.ok(CAROL, op_give(claim.tx_id, 20_000))
    c.commit()
    assert c.get(L.asset_balance_key(BOB.address, "BTC")) == 10**9 - 100_000 - BOND + 20_000
    check(c)
    # a second claim nobody approves: its bond is burned in BTC
    c.block(at=c.claim(claim.tx_id)[L.C_CLOSES])
    c.ok(CAROL, op_claim(10, 1))
    c.commit()
    closes = c.time + RULES.claim_ttl_s
    c.block(at=closes)
    assert c.get(L.asset_key("BTC"))[L.A_BURNED] == BOND
    check(c)


# --- 11.3 standing pledges --------------------------------------------------------------


def test_standing_pledge_set_execute_miss_cancel() -> None:
    c = Chain()
    c.society_with_members([(BOB, 0), (POOR, 0)])
    assert c.reject(CAROL, op_standing(100, 100)) == "not_member"
    assert c.reject(BOB, op_standing(0, 0)) == "no_standing_pledge"
    assert c.reject(BOB, op_standing(99, 100)) == "bad_op"  # below min_pledge
    assert c.reject(BOB, op_standing(100, 99)) == "bad_op"  # below decay_period_s
    assert c.reject(BOB, op_standing(100, 31_536_001)) == "bad_op"
    assert c.reject(BOB, op_standing(100, 0)) == "bad_op"
    assert c.reject(BOB, op_standing(0, 100)) == "bad_op"
    t = c.next_time
    c.ok(BOB, op_standing(500, 100))
    c.commit()
    assert views.standing_pledge_view(c.ledger, SOC, BOB.address) == {
        "society": SOC, "address": BOB.address_text, "amount": 500, "interval_s": 100,
        "next_at": t + 100, "executed": 0, "missed": 0, "missed_in_row": 0}
    bal = c.balance(BOB)
    producer_before = c.balance(WITNESS)
    c.block(at=t + 99)
    assert c.member(BOB)[L.M_ESCROW] == 0
    c.block(at=t + 100)
    assert c.member(BOB)[L.M_ESCROW] == 500
    assert c.balance(BOB) == bal - 500 - FEE  # the fee of an execution is base_fee
    assert c.balance(WITNESS) == producer_before + FEE
    assert c.ledger.last_scheduled == [(SOC, BOB.address, 500)]
    # a long gap: one execution, then next_at jumps past T
    c.block(at=t + 450)
    sp = views.standing_pledge_view(c.ledger, SOC, BOB.address)
    assert sp is not None
    assert (sp["executed"], sp["next_at"]) == (2, t + 500)
    assert c.member(BOB)[L.M_ESCROW] == 1000
    check(c)
    # POOR cannot cover it: three misses in a row cancel it
    t2 = c.next_time
    c.ok(POOR, op_standing(5_000, 100))  # more than POOR holds
    c.commit()
    for i in range(1, 3):
        c.block(at=t2 + 100 * i)
        sp = views.standing_pledge_view(c.ledger, SOC, POOR.address)
        assert sp is not None and sp["missed_in_row"] == i and sp["executed"] == 0
    c.block(at=t2 + 300)
    assert views.standing_pledge_view(c.ledger, SOC, POOR.address) is None
    assert POOR.address not in [a for _, a, _ in c.ledger.last_scheduled]
    # cancel and replace
    c.ok(BOB, op_standing(200, 300))
    c.commit()
    sp = views.standing_pledge_view(c.ledger, SOC, BOB.address)
    assert sp is not None and (sp["amount"], sp["executed"]) == (200, 0)
    c.ok(BOB, op_standing(0, 0))
    c.commit()
    assert views.standing_pledge_view(c.ledger, SOC, BOB.address) is None
    assert list(c.ledger.state.iterate_committed(b"n")) == []
    check(c)


def test_at_most_1000_standing_pledges_per_block_in_order() -> None:
    people = [key(100 + i) for i in range(120)]
    from tests.ledger_helpers import make_genesis

    c = Chain(make_genesis([(k, FUNDS) for k in (ALICE, *people)]))
    c.society_with_members([(k, 0) for k in people])
    t = c.next_time
    for k in people:
        c.ok(k, op_standing(100, 100))
    c.commit()
    import muxernode.ledger as ledger_module

    old = ledger_module.MAX_SCHEDULED
    ledger_module.MAX_SCHEDULED = 50  # the same rule at a size a unit test can afford
    try:
        c.block(at=t + 100)
        first = c.ledger.last_scheduled
        c.block()
        second = c.ledger.last_scheduled
        c.block()
        third = c.ledger.last_scheduled
    finally:
        ledger_module.MAX_SCHEDULED = old
    assert len(first) == 50 and len(second) == 50 and len(third) == 20
    order = [a for _, a, _ in first + second + third]
    assert order == sorted(k.address for k in people)  # (next_at, society, address)
    check(c)


# --- 11.4 proxies -----------------------------------------------------------------------


def proxy_chain() -> tuple[Chain, bytes]:
    c = Chain()
    c.society_with_members([(BOB, 2000), (CAROL, 4000), (DAVE, 6000), (ERIN, 1000)])
    c.ok(ALICE, op_join(SOC, "alice"))
    c.ok(ALICE, op_pledge(10_000))
    c.commit()
    c.block(at=c.time + RULES.observation_s)
    tx = c.ok(ALICE, op_claim(100_000, 2_000))
    c.commit()
    return c, tx.tx_id


def test_set_proxy_rules() -> None:
    c = Chain()
    c.society_with_members([(BOB, 200), (CAROL, 200), (DAVE, 200)])
    assert c.reject(BOB, op_set_proxy(ERIN.address)) == "not_member"
    assert c.reject(ERIN, op_set_proxy(BOB.address)) == "not_member"
    assert c.reject(BOB, op_set_proxy(BOB.address)) == "self_vote"
    assert c.reject(BOB, op_set_proxy(b"\x01" * 19)) == "bad_op"
    c.ok(BOB, op_set_proxy(b""))  # clearing none: valid, changes nothing but the fee
    c.ok(BOB, op_set_proxy(CAROL.address))
    c.ok(BOB, op_set_proxy(CAROL.address), fee=FEE + 1)  # the same again: no double count
    c.commit()
    assert c.member(CAROL)[L.M_DELEGATORS] == 1
    assert c.get(L.delegators_key(SOC, CAROL.address)) == [BOB.address]
    assert c.reject(DAVE, op_set_proxy(BOB.address)) == "proxy_chain"  # BOB has a proxy
    assert c.reject(CAROL, op_set_proxy(DAVE.address)) == "proxy_chain"  # CAROL is a proxy
    c.ok(BOB, op_set_proxy(DAVE.address))  # replace
    c.commit()
    assert c.member(CAROL)[L.M_DELEGATORS] == 0
    assert c.get(L.delegators_key(SOC, CAROL.address)) is None
    assert c.member(DAVE)[L.M_DELEGATORS] == 1
    m = views.member_view(c.ledger, SOC, BOB.address, c.time)
    assert m is not None and m["proxy"] == DAVE.address_text
    c.ok(BOB, op_set_proxy(b""))
    c.commit()
    assert c.member(DAVE)[L.M_DELEGATORS] == 0
    assert c.member(BOB)[L.M_PROXY] == b""


def test_too_many_delegators() -> None:
    c = Chain()
    c.society_with_members([(BOB, 200), (CAROL, 200)])
    old = L.MAX_DELEGATORS
    L.MAX_DELEGATORS = 1  # the same rule at a size a unit test can afford
    try:
        c.ok(CAROL, op_set_proxy(BOB.address))
        c.commit()
        c.ok(DAVE, op_join())
        c.commit()
        assert c.reject(DAVE, op_set_proxy(BOB.address)) == "too_many_delegators"
    finally:
        L.MAX_DELEGATORS = old


def test_proxy_vote_counts_delegators_once_and_can_be_overridden() -> None:
    c, cid = proxy_chain()
    t = c.next_time
    k = {p: c.karma(p, t) for p in (BOB, CAROL, DAVE, ERIN)}
    c.ok(CAROL, op_set_proxy(BOB.address))
    c.ok(DAVE, op_set_proxy(BOB.address))
    c.ok(ALICE, op_set_proxy(BOB.address))  # the claimant: never counted on its own claim
    c.commit()
    c.ok(BOB, op_vote(cid, 1))
    c.commit()
    claim = c.claim(cid)
    assert claim[L.C_APPROVE] == k[BOB] + k[CAROL] + k[DAVE]
    assert claim[L.C_PROXIED] == k[CAROL] + k[DAVE]
    votes = views.list_votes(c.ledger, cid)
    assert votes is not None
    assert sorted((v["voter"], v["stance"], v["weight"], v["via"]) for v in votes) == sorted([
        (BOB.address_text, 1, k[BOB], None),
        (CAROL.address_text, 1, k[CAROL], BOB.address_text),
        (DAVE.address_text, 1, k[DAVE], BOB.address_text),
    ])
    view = views.claim_view(c.ledger, cid, c.time)
    assert view is not None and (view["voters"], view["proxied"]) == (3, k[CAROL] + k[DAVE])
    # CAROL overrides: her weight leaves BOB's side, then counts on hers
    c.ok(CAROL, op_vote(cid, -1))
    c.commit()
    claim = c.claim(cid)
    assert (claim[L.C_APPROVE], claim[L.C_REJECT]) == (k[BOB] + k[DAVE], k[CAROL])
    assert claim[L.C_PROXIED] == k[DAVE]
    # DAVE opts out with stance 0: nothing of his counts, and a re-vote by BOB does not
    # count him again
    c.ok(DAVE, op_vote(cid, 0))
    c.ok(BOB, op_vote(cid, 1), fee=FEE + 1)
    c.commit()
    claim = c.claim(cid)
    assert (claim[L.C_APPROVE], claim[L.C_REJECT], claim[L.C_VOTERS]) == (k[BOB], k[CAROL], 2)
    # BOB withdraws: his whole weight goes
    c.ok(BOB, op_vote(cid, 0))
    c.commit()
    claim = c.claim(cid)
    assert (claim[L.C_APPROVE], claim[L.C_REJECT], claim[L.C_VOTERS]) == (0, k[CAROL], 1)
    assert claim[L.C_PROXIED] == 0


def test_proxy_without_karma_votes_for_delegators() -> None:
    c, cid = proxy_chain()
    new = key(30)
    c.ok(ALICE, op_transfer(new.address, 10**6))
    c.commit()
    c.ok(new, op_join())
    c.commit()
    assert c.reject(new, op_vote(cid, 1)) == "no_karma"
    c.ok(ERIN, op_set_proxy(new.address))
    c.commit()
    c.ok(new, op_vote(cid, 1))
    c.commit()
    votes = views.list_votes(c.ledger, cid)
    assert votes is not None
    assert {(v["voter"], v["weight"]) for v in votes} == {
        (new.address_text, 0), (ERIN.address_text, c.karma(ERIN, c.time))}


# --- 11.5 charity -----------------------------------------------------------------------


def test_a_delegator_that_changes_proxy_counts_once() -> None:
    """CAROL, counted through BOB, moves to DAVE (and on to ERIN's side and back): DAVE's
    vote does not count her again while BOB's vote counts her; her own vote takes her out
    of BOB's; a re-vote by BOB drops her, and then her current proxy counts her."""
    c, cid = proxy_chain()
    t = c.next_time
    k = {p: c.karma(p, t) for p in (BOB, CAROL, DAVE, ERIN)}
    c.ok(CAROL, op_set_proxy(BOB.address))
    c.commit()
    c.ok(BOB, op_vote(cid, 1))
    c.commit()
    c.ok(CAROL, op_set_proxy(b""))
    c.ok(CAROL, op_set_proxy(DAVE.address), fee=FEE + 1)
    c.commit()
    assert [p for p, _ in c.member(CAROL)[L.M_FORMER]] == [BOB.address]
    c.ok(DAVE, op_vote(cid, -1))
    c.commit()
    claim = c.claim(cid)
    assert (claim[L.C_APPROVE], claim[L.C_REJECT]) == (k[BOB] + k[CAROL], k[DAVE])
    assert (claim[L.C_VOTERS], claim[L.C_PROXIED]) == (3, k[CAROL])
    # a re-vote by BOB: CAROL is not his delegator any more, so her count through him goes
    c.ok(BOB, op_vote(cid, 1), fee=FEE + 2)
    c.commit()
    claim = c.claim(cid)
    assert (claim[L.C_APPROVE], claim[L.C_VOTERS], claim[L.C_PROXIED]) == (k[BOB], 2, 0)
    # ... and a re-vote by DAVE, her proxy now, counts her
    c.ok(DAVE, op_vote(cid, -1), fee=FEE + 3)
    c.commit()
    claim = c.claim(cid)
    assert (claim[L.C_REJECT], claim[L.C_VOTERS], claim[L.C_PROXIED]) == (
        k[DAVE] + k[CAROL], 3, k[CAROL])
    # she overrides: out of DAVE's side, onto hers
    c.ok(CAROL, op_vote(cid, 1))
    c.commit()
    claim = c.claim(cid)
    assert (claim[L.C_APPROVE], claim[L.C_REJECT]) == (k[BOB] + k[CAROL], k[DAVE])
    assert (claim[L.C_VOTERS], claim[L.C_PROXIED]) == (3, 0)
    assert c.get(L.vote_key(cid, DAVE.address))[L.V_COUNTED] == []


def test_an_override_finds_the_former_proxy_that_counted_it() -> None:
    c, cid = proxy_chain()
    t = c.next_time
    k = {p: c.karma(p, t) for p in (BOB, CAROL)}
    c.ok(CAROL, op_set_proxy(BOB.address))
    c.commit()
    c.ok(BOB, op_vote(cid, 1))
    c.commit()
    c.ok(CAROL, op_set_proxy(b""))  # no proxy now; still counted through BOB
    c.commit()
    assert c.claim(cid)[L.C_APPROVE] == k[BOB] + k[CAROL]
    c.ok(CAROL, op_vote(cid, -1))
    c.commit()
    claim = c.claim(cid)
    assert (claim[L.C_APPROVE], claim[L.C_REJECT], claim[L.C_VOTERS]) == (k[BOB], k[CAROL], 2)
    assert c.get(L.vote_key(cid, BOB.address))[L.V_COUNTED] == []


def test_former_proxies_are_kept_for_one_claim_ttl() -> None:
    c = Chain()
    c.society_with_members([(BOB, 200), (CAROL, 200), (DAVE, 200)])
    c.ok(BOB, op_set_proxy(CAROL.address))
    c.commit()
    c.ok(BOB, op_set_proxy(DAVE.address))
    c.commit()
    assert [p for p, _ in c.member(BOB)[L.M_FORMER]] == [CAROL.address]
    c.block(at=c.time + RULES.claim_ttl_s + 1)
    c.ok(BOB, op_set_proxy(b""))
    c.commit()
    # CAROL was dropped more than a TTL ago: no claim open now can have counted BOB
    assert [p for p, _ in c.member(BOB)[L.M_FORMER]] == [DAVE.address]


def test_charity_request_from_outsider_funded_from_charity_escrow_in_slots() -> None:
    c = btc_chain((BOB, CAROL, DAVE))
    for k in (BOB, CAROL, DAVE):
        c.ok(k, op_pledge(100_000))
    outsider = ALICE  # the founder, not a member here
    c.ok(ERIN, op_issue_asset(POOR.address, 10 * BOND))
    c.commit()
    assert c.reject(NOBODY, op_charity(500)) == "insufficient_balance"  # no account at all
    r1 = c.ok(POOR, op_charity(5_000))
    assert c.reject(POOR, op_charity(5_000), fee=FEE + 1) == "open_claim_exists"
    r2 = c.ok(outsider, op_charity(5_000))
    c.commit()
    view = views.claim_view(c.ledger, r1.tx_id, c.time)
    assert view is not None
    assert (view["kind"], view["karma"], view["limit"]) == ("charity", 0, 5_000)
    # both approved, r2 more: with one slot only r2 can receive
    c.ok(BOB, op_vote(r1.tx_id, 1))
    c.ok(BOB, op_vote(r2.tx_id, 1))
    c.ok(CAROL, op_vote(r2.tx_id, 1))
    c.commit()
    c.begin(at=c.claim(r1.tx_id)[L.C_GIVES_FROM])
    assert c.reject(DAVE, op_give(r1.tx_id, 100)) == "not_in_charity_slots"
    assert c.reject(DAVE, op_give(r2.tx_id, 20_001)) == "insufficient_escrow"
    c.ok(DAVE, op_give(r2.tx_id, 5_000))
    c.commit()
    assert c.member(DAVE)[L.M_CHARITY] == 15_000
    assert c.member(DAVE)[L.M_ESCROW] == 80_000  # the claim escrow is untouched
    assert c.get(L.asset_balance_key(outsider.address, "BTC")) == 10**9 - BOND + 5_000
    assert c.reject(CAROL, op_give(r2.tx_id, 1)) == "over_limit"
    # r2 withdrawn after receiving: its bond is burned; r1 now holds the slot
    c.ok(outsider, op_withdraw(r2.tx_id))
    c.ok(DAVE, op_give(r1.tx_id, 1_000))
    c.commit()
    assert c.claim(r2.tx_id)[L.C_STATUS] == L.CLAIM_WITHDRAWN
    assert c.get(L.asset_key("BTC"))[L.A_BURNED] == BOND
    # a member's open claim and its open charity request do not block each other
    m = views.member_view(c.ledger, SOC, BOB.address, c.time)
    assert m is not None and "open_claim" not in m
    check(c)


# --- 11.6 withdraw and amend ------------------------------------------------------------


def test_withdraw_and_amend() -> None:
    c, cid = proxy_chain()
    assert c.reject(BOB, op_withdraw(cid)) == "not_claimant"
    assert c.reject(BOB, op_amend(cid)) == "not_claimant"
    assert c.reject(ALICE, op_withdraw(b"\x09" * 32)) == "unknown_claim"
    c.ok(ALICE, op_amend(cid, "receipts attached", b"\x05" * 32))
    c.commit()
    claim = c.claim(cid)
    assert (claim[L.C_DETAILS], claim[L.C_EVIDENCE]) == ("receipts attached", b"\x05" * 32)
    c.ok(BOB, op_vote(cid, 1))
    c.commit()
    assert c.reject(ALICE, op_amend(cid)) == "has_votes"
    c.ok(BOB, op_vote(cid, 0))  # a withdrawn vote leaves none
    c.commit()
    c.ok(ALICE, op_amend(cid, "again"))
    bal = c.balance(ALICE)
    karma = c.member(ALICE)[L.M_KARMA]
    c.ok(ALICE, op_withdraw(cid))
    c.commit()
    assert c.balance(ALICE) == bal - FEE + BOND  # nothing received: the bond returns
    assert c.member(ALICE)[L.M_KARMA] == karma  # committed karma is not returned
    assert c.member(ALICE)[L.M_OPEN] == b""
    view = views.claim_view(c.ledger, cid, c.time)
    assert view is not None and (view["status"], view["outcome"]) == ("closed", "withdrawn")
    assert c.reject(ALICE, op_withdraw(cid)) == "claim_closed"
    assert c.reject(ALICE, op_amend(cid)) == "claim_closed"
    assert c.get(L.CLOSE_QUEUE) == []
    c.abort()
    # a withdrawn claim is not closed again at its closing time
    c.block(at=c.time + RULES.claim_ttl_s)
    assert c.claim(cid)[L.C_STATUS] == L.CLAIM_WITHDRAWN
    check(c)


def test_withdrawing_a_claim_with_votes_burns_its_bond() -> None:
    """Our deviation from 11.6 (docs/protocol.md): a claim that has votes keeps its bond
    at stake when withdrawn, so a failing false claim cannot be withdrawn for free."""
    c, cid = proxy_chain()
    c.ok(BOB, op_vote(cid, -1))
    c.commit()
    bal = c.balance(ALICE)
    burned = c.globals()[L.G_BURNED]
    c.ok(ALICE, op_withdraw(cid))
    c.commit()
    assert c.balance(ALICE) == bal - FEE  # nothing received, but a vote: the bond burns
    assert c.globals()[L.G_BURNED] == burned + BOND
    check(c)


# --- 11.7 comments ----------------------------------------------------------------------


def test_comments_change_no_state_and_are_indexed() -> None:
    c, cid = proxy_chain()
    assert c.reject(NOBODY, op_comment(cid)) == "insufficient_balance"
    assert c.reject(POOR, op_comment(cid)) == "not_member"
    assert c.reject(BOB, op_comment(b"\x09" * 32)) == "unknown_claim"
    assert c.reject(BOB, op_comment(cid, "")) == "bad_op"
    assert c.reject(BOB, op_comment(cid, "x" * 1025)) == "bad_op"
    digest_before = c.digest
    c.ok(BOB, op_comment(cid, "Which hospital?"))
    c.ok(ALICE, op_comment(cid, "St. Mary's; the bill is attached."))
    c.commit()
    c.ok(CAROL, op_comment(cid, "Thank you"))
    c.commit()
    assert c.digest != digest_before  # the fees moved
    page = views.list_comments(c.ledger, cid, None, 2)
    assert page is not None
    assert [i["text"] for i in page["items"]] == ["Which hospital?",
                                                   "St. Mary's; the bill is attached."]
    assert page["items"][0]["author"] == BOB.address_text
    assert page["next"] is not None
    rest = views.list_comments(c.ledger, cid, bytes.fromhex(page["next"]), 2)
    assert rest is not None and [i["text"] for i in rest["items"]] == ["Thank you"]
    assert rest["next"] is None
    view = views.claim_view(c.ledger, cid, c.time)
    assert view is not None and view["comments"] == 3
    # the index is outside the state: the state's keys hold no comment text
    assert all(b"Thank you" not in v for _, v in c.kv.iterate(b"S"))


def test_invalid_v2_txs_change_nothing() -> None:
    c, cid = proxy_chain()
    before = dict(c.kv.iterate(b""))
    c.begin()
    reasons = [c.apply(c.tx(k, op)) for k, op in [
        (BOB, op_withdraw(cid)), (BOB, op_amend(cid)), (POOR, op_comment(cid)),
        (BOB, op_set_proxy(BOB.address)), (BOB, op_standing(0, 0)),
        (BOB, op_issue_asset(BOB.address, 1)), (BOB, op_transfer_asset(BOB.address, 1)),
    ]]
    assert None not in reasons
    c.abort()
    assert dict(c.kv.iterate(b"")) == before

