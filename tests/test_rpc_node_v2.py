"""Version 2 of the protocol (section 11) against a real running daemon, through the RPC.

One `muxernode run` subprocess (real LevelDB, real sockets on 127.0.0.1), one witness and
1-s blocks. The module fixture builds, in two blocks, a society that runs on a gateway's
BTC IOU (the seed's gifts "in bitcoins"):

    gw     creates BTC (precision 8) and issues it to a1..a6 and to the outsider a8
    a1     creates "btc-aid" (asset BTC, charity_bp 2000, charity_slots 1, observation 0,
           waiting 0, claims of 3600 s, decay_period_s 2)
    a2..a6 join and pledge; a3 and a4 set a5 as their proxy; a6 sets a standing pledge
    a2     files a claim; a5 approves it (for herself, a3 and a4); a6 approves; a2 amends
           nothing (it has votes); comments from a3 and a2
    a8     (not a member) and a1 file charity requests; a2 and a3 approve a1's, a6 a8's;
           a5 gives to a1's from her charity escrow (one slot: a8's cannot receive)
    a4     files a claim, amends it (no votes yet) and withdraws it

Then every field of 11.8 is checked, every reason of section 11 is produced by a real
signed tx (tests/test_rpc_node.py covers those of section 9), and each rejection is
checked to change nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from consensus.crypto import PrivateKey
from consensus.tx import SignedTx, build_tx, tapos_of
from muxernode.node import init_data_dir
from tests.procs import Daemon, RpcFailure, accounts, make_genesis, rpc, wait_for

BASE_FEE = 10
FUNDS = 100_000_000_000
TIMEOUT = 20.0
BTC = "BTC"
SOC = "btc-aid"
#        decay_period, ppm, approval_bp, observation, waiting, ttl, benefit, bond, min_pledge
RULES = [2, 0, 300, 0, 0, 3600, 10, 1000, 100, BTC, 2000, 1]
ISSUED = 10**9
EVIDENCE = hashlib.sha256(b"the bill").digest()

# the reasons of section 11; each has a case in V2_REJECTIONS below
V2_REASONS = frozenset({
    "asset_exists", "bad_symbol", "unknown_asset", "not_issuer", "over_supply",
    "no_standing_pledge", "proxy_chain", "too_many_delegators", "not_in_charity_slots",
    "not_claimant", "has_votes",
})


@dataclass
class Net:
    daemon: Daemon
    url: str
    chain_id: bytes
    keys: dict[str, PrivateKey]
    txs: dict[str, SignedTx] = field(default_factory=dict)

    def call(self, method: str, *params: Any) -> Any:
        return rpc(self.url, method, *params)

    def addr(self, name: str) -> str:
        return self.keys[name].address_text

    def raw_addr(self, name: str) -> bytes:
        return self.keys[name].address

    def tx(self, name: str, op: list[Any], *, fee: int = BASE_FEE,
           head: dict[str, Any] | None = None) -> SignedTx:
        head = head or self.call("chain_info")
        num, prefix = tapos_of(head["head_height"], bytes.fromhex(head["head_id"]))
        return build_tx(self.keys[name], self.chain_id, op, ref_block_num=num,
                        ref_block_prefix=prefix, expiration=head["head_time"] + 600, fee=fee)

    def submit_block(self, named: list[tuple[str, str, list[Any]]]) -> None:
        """Submit the txs in one batch (in order) and wait until every one is included."""
        head = self.call("chain_info")
        seq = []
        for name, who, op in named:
            self.txs[name] = tx = self.tx(who, op, head=head)
            seq.append(tx)
        answers = self.call("submit_txs", [tx.raw.hex() for tx in seq])
        assert answers == [{"tx_id": tx.tx_id.hex()} for tx in seq], answers

        def done() -> bool:
            got = [self.call("get_tx", tx.tx_id.hex())["status"] for tx in seq]
            return all(s in ("included", "final") for s in got)
        wait_for(done, timeout=TIMEOUT)

    def id(self, name: str) -> bytes:
        return self.txs[name].tx_id


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    base = tmp_path_factory.mktemp("rpcv2")
    gdir = base / "genesis"
    genesis = init_data_dir(make_genesis(gdir, accounts=10, seed=92), base / "node")
    keys = {a["name"]: PrivateKey(bytes.fromhex(a["secret"])) for a in accounts(gdir)}
    keys["gw"] = keys.pop("a10")
    daemon = Daemon(base / "node", witness_key=gdir / "w1.key")
    daemon.start()
    try:
        n = Net(daemon, daemon.url, genesis.chain_id, keys)
        wait_for(lambda: n.call("chain_info")["head_height"] >= 1, timeout=TIMEOUT)
        _setup(n)
        yield n
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log()


def _setup(n: Net) -> None:
    issue = [(f"issue_{w}", "gw", [11, BTC, n.raw_addr(w), ISSUED, f"deposit {w}"])
             for w in ("a1", "a2", "a3", "a4", "a5", "a6", "a8")]
    n.submit_block([
        ("create_asset", "gw", [10, BTC, 8, 21 * 10**14, "BTC held by the gateway"]),
        *issue,
        ("create_society", "a1", [2, SOC, "BTC mutual aid", "Medical bills, in BTC", RULES]),
        *[(f"join_{w}", w, [3, SOC, f"{w}-id"]) for w in ("a2", "a3", "a4", "a5", "a6")],
        *[(f"pledge_{w}", w, [4, SOC, 100_000]) for w in ("a2", "a3", "a4", "a5", "a6")],
        ("proxy_a3", "a3", [14, SOC, n.raw_addr("a5")]),
        ("proxy_a4", "a4", [14, SOC, n.raw_addr("a5")]),
        ("standing_a6", "a6", [13, SOC, 1000, 2]),
        ("transfer_asset", "a1", [12, BTC, n.raw_addr("a7"), 500, "a gift"]),
    ])
    n.submit_block([
        ("claim", "a2", [5, SOC, 300_000, 40_000, "Hospital bill", "Appendix", EVIDENCE]),
        ("claim_a4", "a4", [5, SOC, 1000, 100, "Small", "", EVIDENCE]),
        ("charity", "a8", [15, SOC, 5_000, "School roof", "After the storm", EVIDENCE]),
        ("charity2", "a1", [15, SOC, 5_000, "Shelter", "Beds", EVIDENCE]),
    ])
    n.submit_block([
        ("vote_a5", "a5", [6, n.id("claim"), 1]),
        ("vote_a6", "a6", [6, n.id("claim"), 1]),
        ("vote_charity", "a6", [6, n.id("charity"), 1]),
        ("vote_charity2", "a2", [6, n.id("charity2"), 1]),
        ("vote_charity2b", "a3", [6, n.id("charity2"), 1]),
        ("amend_a4", "a4", [17, n.id("claim_a4"), "Receipts attached", EVIDENCE]),
        ("comment_q", "a3", [18, n.id("claim"), "Which hospital?"]),
        ("comment_a", "a2", [18, n.id("claim"), "St. Mary's; the bill is attached."]),
        ("comment_t", "a6", [18, n.id("claim"), "Get well soon"]),
    ])
    n.submit_block([
        ("give", "a6", [7, n.id("claim"), 20_000]),
        ("give_charity", "a5", [7, n.id("charity2"), 1_000]),
        ("withdraw_a4", "a4", [16, n.id("claim_a4")]),
    ])


def test_assets(net: Net) -> None:
    btc = net.call("get_asset", BTC)
    assert btc == {"symbol": BTC, "issuer": net.addr("gw"), "precision": 8,
                   "max_supply": 21 * 10**14, "supply": 7 * ISSUED,
                   "description": "BTC held by the gateway", "burned": 0}
    assert net.call("get_asset", "MUX") is None
    assert net.call("get_asset", "NOPE") is None
    assert net.call("list_assets") == [btc]
    a7 = net.call("get_account", net.addr("a7"))
    assert a7["assets"] == {"MUX": a7["balance"], BTC: 500}
    assert a7["balance"] == FUNDS  # a7 has sent nothing: MUX only moves for fees


def test_society_and_members(net: Net) -> None:
    soc = net.call("get_society", SOC)
    assert (soc["rules"]["asset"], soc["rules"]["charity_bp"], soc["rules"]["charity_slots"]) \
        == (BTC, 2000, 1)
    assert soc["open_claims"] == 3  # the claim and the two charity requests
    names = ("a2", "a3", "a4", "a5", "a6")

    def consistent() -> bool:
        # a6's standing pledge executes every 2 s: read until no block fell between reads
        soc = net.call("get_society", SOC)
        pledged = sum(net.call("get_member", SOC, net.addr(w))["pledged_total"] for w in names)
        again = net.call("get_society", SOC)
        held = int(soc["escrow_total"]) + int(soc["charity_escrow_total"])
        return bool(soc == again and held + 20_000 + 1_000 == pledged)
    wait_for(consistent, timeout=TIMEOUT)
    a5 = net.call("get_member", SOC, net.addr("a5"))
    assert (a5["proxy"], a5["delegators"]) == (None, 2)
    assert a5["charity_escrow"] == 20_000 - 1_000
    a3 = net.call("get_member", SOC, net.addr("a3"))
    assert (a3["proxy"], a3["delegators"]) == (net.addr("a5"), 0)


def test_list_members_pages_through_the_society(net: Net) -> None:
    names = ("a2", "a3", "a4", "a5", "a6")
    items: list[dict[str, Any]] = []
    after: dict[str, Any] = {}
    pages = 0
    while True:
        page = net.call("list_members", SOC, {"limit": 2, **after})
        assert len(page["items"]) <= 2
        items += page["items"]
        pages += 1
        if page["next"] is None:
            break
        assert page["next"] == items[-1]["address"][2:]
        after = {"after": page["next"]}
    assert pages == 3
    by_address = {net.addr(w): w for w in names}
    assert [m["address"] for m in items] == sorted(by_address)  # address order
    for m in items:
        w = by_address[m["address"]]
        full = net.call("get_member", SOC, m["address"])
        assert m["identity"] == f"{w}-id" and m["joined_at"] == full["joined_at"]
        assert (m["proxy"], m["delegators"]) == (full["proxy"], full["delegators"])
        if w != "a6":  # a6's standing pledge moves her escrow and karma every 2 s
            assert (m["karma"], m["escrow"], m["charity_escrow"]) == (
                full["karma"], full["escrow"], full["charity_escrow"])
    a5 = next(m for m in items if by_address[m["address"]] == "a5")
    assert (a5["proxy"], a5["delegators"]) == (None, 2)
    with pytest.raises(RpcFailure) as bad:
        net.call("list_members", SOC, {"after": "00" * 19})
    assert bad.value.error["code"] == -32602
    with pytest.raises(RpcFailure) as unknown:
        net.call("list_members", "no-such-soc")
    assert unknown.value.error["code"] == -32001


def test_standing_pledge_executes_on_the_chain(net: Net) -> None:
    before = net.call("get_standing_pledge", SOC, net.addr("a6"))
    assert before["amount"] == 1000 and before["interval_s"] == 2
    wait_for(lambda: net.call("get_standing_pledge", SOC, net.addr("a6"))["executed"]
             >= before["executed"] + 2, timeout=TIMEOUT)
    after = net.call("get_standing_pledge", SOC, net.addr("a6"))
    assert after["missed"] == 0 and after["next_at"] > before["next_at"]
    member = net.call("get_member", SOC, net.addr("a6"))
    assert member["pledged_total"] >= 100_000 + 1000 * after["executed"]
    assert net.call("get_standing_pledge", SOC, net.addr("a2")) is None
    # section 12: each execution is in the member's history, as a pledge with no tx
    hist = net.call("get_history", net.addr("a6"), {"types": ["pledge"], "limit": 100})
    scheduled = [i for i in hist["items"] if i.get("scheduled")]
    assert len(scheduled) >= 2 and all(i["tx_id"] is None for i in scheduled)
    assert scheduled[0]["op"] == {"type": "pledge", "society": SOC, "amount": 1000}


def test_claim_votes_by_proxy_and_comments(net: Net) -> None:
    claim = net.call("get_claim", net.id("claim").hex())
    votes = net.call("list_votes", net.id("claim").hex())
    by_voter = {v["voter"]: v for v in votes}
    assert set(by_voter) == {net.addr(w) for w in ("a3", "a4", "a5", "a6")}
    assert by_voter[net.addr("a3")]["via"] == net.addr("a5")
    assert by_voter[net.addr("a4")]["via"] == net.addr("a5")
    assert by_voter[net.addr("a5")]["via"] is None and by_voter[net.addr("a6")]["via"] is None
    assert claim["voters"] == 4 == len(votes)
    assert claim["proxied"] == by_voter[net.addr("a3")]["weight"] + by_voter[
        net.addr("a4")]["weight"]
    assert claim["approve"] == sum(v["weight"] for v in votes)
    assert (claim["kind"], claim["received"], claim["comments"]) == ("claim", 20_000, 3)
    page = net.call("list_comments", net.id("claim").hex(), {"limit": 2})
    assert [c["text"] for c in page["items"]] == ["Which hospital?",
                                                  "St. Mary's; the bill is attached."]
    assert page["items"][0]["author"] == net.addr("a3")
    assert page["items"][0]["tx_id"] == net.id("comment_q").hex()
    rest = net.call("list_comments", net.id("claim").hex(), {"after": page["next"]})
    assert [c["text"] for c in rest["items"]] == ["Get well soon"] and rest["next"] is None
    for bad in ({"limit": 0}, {"limit": 101}, {"after": "zz"}, {"after": "00" * 5},
                {"other": 1}, [1]):
        with pytest.raises(RpcFailure) as info:
            net.call("list_comments", net.id("claim").hex(), bad)
        assert info.value.error["code"] == -32602, bad
    with pytest.raises(RpcFailure) as info:
        net.call("list_votes", "ab" * 32)
    assert info.value.error["code"] == -32001


def test_charity_and_withdrawn(net: Net) -> None:
    charity = net.call("get_claim", net.id("charity").hex())
    assert (charity["kind"], charity["karma"], charity["limit"]) == ("charity", 0, 5_000)
    assert charity["claimant"] == net.addr("a8")
    withdrawn = net.call("get_claim", net.id("claim_a4").hex())
    assert (withdrawn["status"], withdrawn["outcome"]) == ("closed", "withdrawn")
    assert withdrawn["details"] == "Receipts attached"
    a4 = net.call("get_account", net.addr("a4"))
    # pledged 100_000, the bond came back on the withdrawal (nothing received)
    assert a4["assets"][BTC] == ISSUED - 100_000


def test_get_tx_names_every_v2_op(net: Net) -> None:
    seen = {}
    for tx in net.txs.values():
        got = net.call("get_tx", tx.tx_id.hex())
        seen[got["op"]["type"]] = got["op"]
    assert set(seen) >= {"create_asset", "issue_asset", "transfer_asset", "standing_pledge",
                         "set_proxy", "charity_request", "withdraw_claim", "amend_claim",
                         "comment"}
    assert seen["set_proxy"]["proxy"] in (net.addr("a5"),)
    assert seen["standing_pledge"] == {"type": "standing_pledge", "society": SOC,
                                       "amount": 1000, "interval_s": 2}
    assert seen["create_society"]["rules"]["asset"] == BTC


# --- every reason of section 11, from real signed txs -----------------------------------


def _op(who: str, op: Callable[[Net], list[Any]]) -> Callable[[Net], SignedTx]:
    return lambda n: n.tx(who, op(n))


V2_REJECTIONS: list[tuple[str, str, Callable[[Net], SignedTx]]] = [
    ("asset_exists", "btc-again", _op("a1", lambda n: [10, BTC, 2, 10, ""])),
    ("bad_symbol", "mux", _op("a1", lambda n: [10, "MUX", 2, 10, ""])),
    ("bad_symbol", "lower-case", _op("a1", lambda n: [10, "eth", 2, 10, ""])),
    ("unknown_asset", "issue-mux", _op("gw", lambda n: [11, "MUX", n.raw_addr("a1"), 1, ""])),
    ("unknown_asset", "society-of-nothing",
     _op("a1", lambda n: [2, "eth-aid", "n", "p", [*RULES[:9], "ETH", 0, 1]])),
    ("not_issuer", "issue", _op("a1", lambda n: [11, BTC, n.raw_addr("a1"), 1, ""])),
    ("over_supply", "issue", _op("gw", lambda n: [11, BTC, n.raw_addr("a1"), 21 * 10**14, ""])),
    ("insufficient_balance", "asset-transfer",
     _op("a7", lambda n: [12, BTC, n.raw_addr("a1"), 501, ""])),
    ("no_standing_pledge", "cancel", _op("a2", lambda n: [13, SOC, 0, 0])),
    ("bad_op", "standing-interval-below-decay-period", _op("a2", lambda n: [13, SOC, 1000, 1])),
    ("proxy_chain", "proxy-has-proxy", _op("a2", lambda n: [14, SOC, n.raw_addr("a3")])),
    ("proxy_chain", "sender-is-proxy", _op("a5", lambda n: [14, SOC, n.raw_addr("a6")])),
    ("self_vote", "own-proxy", _op("a2", lambda n: [14, SOC, n.raw_addr("a2")])),
    ("not_member", "proxy-outsider", _op("a2", lambda n: [14, SOC, n.raw_addr("a8")])),
    ("not_in_charity_slots", "second-request",
     _op("a4", lambda n: [7, n.id("charity"), 100])),
    ("open_claim_exists", "second-request", _op("a8", lambda n: [15, SOC, 10, "s", "", bytes(32)])),
    ("not_claimant", "withdraw", _op("a3", lambda n: [16, n.id("claim")])),
    ("not_claimant", "amend", _op("a3", lambda n: [17, n.id("claim"), "x", bytes(32)])),
    ("has_votes", "amend", _op("a2", lambda n: [17, n.id("claim"), "x", bytes(32)])),
    ("claim_closed", "withdraw-again", _op("a4", lambda n: [16, n.id("claim_a4")])),
    ("not_member", "comment", _op("a7", lambda n: [18, n.id("claim"), "hello"])),
    ("bad_op", "comment-empty", _op("a3", lambda n: [18, n.id("claim"), ""])),
    # 11.8: a field of the wrong MessagePack type is bad_op, not bad_encoding
    ("bad_op", "bin-for-str", _op("a1", lambda n: [10, b"ETH", 2, 10, ""])),
    ("bad_op", "str-for-address", _op("a1", lambda n: [12, BTC, "x" * 20, 1, ""])),
]


def test_v2_rejections_cover_section_11() -> None:
    # too_many_delegators needs 1001 members and proxy txs: tests/test_ledger_v2.py reaches
    # it with the bound lowered; every other reason of section 11 comes from the node here
    assert {r for r, _, _ in V2_REJECTIONS} >= V2_REASONS - {"too_many_delegators"}


@pytest.mark.parametrize(("reason", "build"), [(r, b) for r, _n, b in V2_REJECTIONS],
                         ids=[f"{r}-{n}" for r, n, _b in V2_REJECTIONS])
def test_v2_rejected(net: Net, reason: str, build: Callable[[Net], SignedTx]) -> None:
    before = [net.call("get_account", net.addr(w)) for w in ("a1", "a2", "a7", "gw")]
    tx = build(net)
    with pytest.raises(RpcFailure) as info:
        net.call("submit_tx", tx.raw.hex())
    err = info.value.error
    assert err["code"] == -32000 and err.get("data") == {"reason": reason}, err
    assert type(err["message"]) is str and err["message"]
    assert net.call("get_tx", tx.tx_id.hex())["status"] == "unknown"
    after = [net.call("get_account", net.addr(w)) for w in ("a1", "a2", "a7", "gw")]
    assert after == before
