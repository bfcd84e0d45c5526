"""Version 2 through the `muxer` wallet against a real running daemon (protocol section 11).

One `muxernode run` subprocess (one witness, 1-s blocks, real LevelDB and sockets), the
wallet in-process through click's CliRunner, as in test_wallet_e2e. The story (the module
fixture ``story``), every step a `muxer` command:

    gate (a gateway) creates asset BTC (precision 8) and issues BTC IOUs to alice, bob,
        carol and dan; alice sends carol 0.5 BTC
    gate creates society "btc-aid" of asset BTC: 20 % of every pledge to charity escrow,
        2 charity slots, a bond of 0.01 BTC, claims open a minute
    alice, bob and carol join; alice and bob pledge; carol pledges once and sets a
        standing pledge of 0.01 BTC every 2 s, and makes alice her proxy
    dan, who is no member, asks for 0.05 BTC of charity; alice (for herself and, as proxy,
        for carol) and bob approve; dan and alice discuss it; bob gives 0.02 BTC from his
        charity escrow, and a gift of 0.04 BTC more is refused (it can receive 0.03 BTC more)
    alice opens a claim, amends it, then withdraws it (the bond comes back)
    carol stops her standing pledge once it ran; bob sets alice as his proxy, then clears it

The tests read it all back with --json and in the tables a person sees (80 columns).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_wallet_e2e import Story, story_on_a_daemon

BTC = 10**8
SOCIETY = "btc-aid"
ISSUED = {"alice": 2 * BTC, "bob": 3 * BTC, "carol": 1 * BTC, "dan": BTC // 10}
PLEDGE = {"alice": BTC // 2, "bob": BTC, "carol": BTC // 5}
STANDING = BTC // 100
BOND = BTC // 100
CHARITY_BP = 2000
ASK = 5 * BTC // 100
GIFT = 2 * BTC // 100


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    base = tmp_path_factory.mktemp("wallet_e2e_v2")
    with story_on_a_daemon(base, ["gate", "alice", "bob", "carol", "dan"], seed=78,
                           columns=80) as s:
        _tell(s, base)
        yield s


def _btc(units: int) -> str:
    return f"{units // BTC}.{units % BTC:08d}"


def _tell(s: Story, base: Path) -> None:
    s.send("asset", "asset", "create", "gate", "BTC", "--precision", "8", "--max-supply",
           "21000000", "--description", "BTC IOU, redeemed by the gate")
    for name, units in ISSUED.items():
        s.send(f"issue_{name}", "asset", "issue", "gate", "BTC", name, _btc(units), wait=False)
    s.send("move", "asset", "transfer", "alice", "BTC", "carol", "0.5")
    s.send("create", "society", "create", "gate", SOCIETY, "--name", "BTC aid",
           "--purpose", "help in bitcoin", "--asset", "BTC", "--decay-period-s", "2",
           "--decay-ppm", "0", "--approval-bp", "100", "--observation-s", "2",
           "--waiting-s", "1", "--claim-ttl-s", "60", "--claim-bond", "0.01",
           "--min-pledge", "0.001", "--charity-bp", str(CHARITY_BP), "--charity-slots", "2")
    for name in PLEDGE:  # the last one waits: a pledge needs its sender to be a member
        s.send(f"join_{name}", "join", name, SOCIETY, "--identity", name,
               wait=name == "carol")
    for name, units in PLEDGE.items():
        s.send(f"pledge_{name}", "pledge", name, SOCIETY, _btc(units), wait=False)
    s.send("standing", "pledge", "carol", SOCIETY, "0.01", "--every", "2s", wait=False)
    s.send("proxy", "proxy", "set", "carol", SOCIETY, "alice")
    evidence = base / "rent.txt"
    evidence.write_bytes(b"the landlord's letter\n")
    out = s.send("charity", "charity", "request", "dan", SOCIETY, "0.05", "--subject",
                 "Rent this month", "--details", "lost my job", "--evidence", str(evidence))
    s.tx["charity_id"] = {"id": out["tx_id"]}
    prefix = out["tx_id"][:8]
    s.send("vote_alice", "vote", "alice", prefix, "approve", wait=False)
    s.send("vote_bob", "vote", "bob", prefix, "approve")
    s.send("comment_dan", "comment", "dan", prefix, "The letter is the evidence; ask away.",
           wait=False)
    s.send("comment_alice", "comment", "alice", prefix, "Thanks, it reads fine to me.")
    s.wait_until(lambda: s.head_time() >= s.json("claim", out["tx_id"])["gives_from"])
    s.send("give_bob", "give", "bob", prefix, "0.02")
    s.refused["over_limit"] = s.run("give", "bob", prefix, "0.04")
    # alice's own claim: opened, amended while nobody voted, withdrawn
    joined = int(s.json("member", SOCIETY, "alice")["joined_at"])
    s.wait_until(lambda: s.head_time() >= joined + 2)
    s.refused["karma"] = s.run("claim", "alice", SOCIETY, "0.1", "--karma", "1000",
                               "--subject", "Boiler", "--evidence", str(evidence))
    out = s.send("claim", "claim", "alice", SOCIETY, "0.1", "--karma", "0.01", "--subject",
                 "Boiler", "--details", "broken", "--evidence", str(evidence))
    s.tx["claim_id"] = {"id": out["tx_id"]}
    s.send("amend", "claim", "amend", "alice", out["tx_id"][:10], "--details",
           "broken in January", "--evidence", str(evidence))
    s.send("withdraw", "claim", "withdraw", "alice", out["tx_id"][:10])
    s.wait_until(lambda: (s.json("--json", "member", SOCIETY, "carol")
                          .get("standing_pledge") or {}).get("executed", 0) >= 1)
    s.send("stop", "pledge", "carol", SOCIETY, "--stop")
    s.send("proxy_bob", "proxy", "set", "bob", SOCIETY, "alice")
    s.send("proxy_bob_clear", "proxy", "clear", "bob", SOCIETY)


def _charity(s: Story) -> str:
    return str(s.tx["charity_id"]["id"])


def test_asset_supply_and_balances(story: Story) -> None:
    s = story
    a = s.json("asset", "show", "BTC")
    assert a["issuer"] == s.address["gate"] and a["precision"] == 8
    assert a["supply"] == sum(ISSUED.values()) and a["max_supply"] == 21_000_000 * BTC
    assert [x["symbol"] for x in s.json("asset", "list")] == ["BTC"]
    # alice: issued 2, sent 0.5, pledged 0.5; her claim's bond came back when she withdrew
    alice = s.json("account", "alice")
    assert alice["assets"]["BTC"] == ISSUED["alice"] - BTC // 2 - PLEDGE["alice"]
    r = s.run("account", "alice")
    assert r.exit_code == 0, r.output
    assert "assets.BTC  1.00000000 BTC" in r.stdout
    # dan's bond is held while his request is open; he got the gift
    assert s.json("account", "dan")["assets"]["BTC"] == ISSUED["dan"] - BOND + GIFT


def test_standing_pledge_and_proxy(story: Story) -> None:
    s = story
    carol = s.json("member", SOCIETY, "carol")
    assert "standing_pledge" not in carol  # stopped
    assert carol["proxy"] == s.address["alice"]
    executed = (carol["pledged_total"] - PLEDGE["carol"]) // STANDING
    assert executed >= 1 and carol["pledged_total"] == PLEDGE["carol"] + executed * STANDING
    # every pledge split: 20 % to the charity escrow
    assert carol["charity_escrow"] == carol["pledged_total"] * CHARITY_BP // 10_000
    # bob made alice his proxy too, then cleared it: carol is her one delegator
    assert s.json("member", SOCIETY, "alice")["delegators"] == 1
    assert s.json("member", SOCIETY, "bob")["proxy"] is None
    r = s.run("member", SOCIETY, "carol")
    assert r.exit_code == 0, r.output
    lines = dict(line.split(None, 1) for line in r.stdout.splitlines()[1:])
    assert lines["karma"] == _btc(carol["karma"])  # karma in BTC's units, unitless
    assert lines["escrow"] == _btc(carol["escrow"]) + " BTC"


def test_charity_request_votes_and_gift(story: Story) -> None:
    s = story
    c = s.json("claim", _charity(s))
    assert c["kind"] == "charity" and c["status"] == "open" and c["approved"]
    assert (c["amount"], c["limit"], c["received"], c["karma"]) == (ASK, ASK, GIFT, 0)
    assert c["voters"] == 3 and c["proxied"] > 0 and c["comments"] == 2
    votes = {v["voter"]: v for v in _rpc_votes(s)}
    assert votes[s.address["carol"]]["via"] == s.address["alice"]
    assert votes[s.address["bob"]]["via"] is None
    bob = s.json("member", SOCIETY, "bob")
    assert bob["charity_escrow"] == PLEDGE["bob"] * CHARITY_BP // 10_000 - GIFT
    assert bob["escrow"] == PLEDGE["bob"] - PLEDGE["bob"] * CHARITY_BP // 10_000


def _rpc_votes(s: Story) -> list[dict[str, Any]]:
    from muxernode.rpc_client import RpcClient

    with RpcClient(s.env["MUXER_RPC"]) as c:
        out: list[dict[str, Any]] = c.call("list_votes", _charity(s))
    return out


def test_claim_show_in_80_columns(story: Story) -> None:
    s = story
    r = s.run("claim", _charity(s)[:8])
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert f"claim {_charity(s)}" in out  # the full id, found from 8 digits
    head = out.split("\n\n")[0].splitlines()[1:]  # the claim's fields, before the tables
    fields = dict(line.split(None, 1) for line in head)
    assert fields["received"] == "0.02000000 BTC" and fields["kind"] == "charity"
    assert "votes" in out and "via" in out and "alice" in out and "carol" in out
    assert "discussion (2)" in out and "dan, " in out and "ask away." in out
    r = s.run("claims", SOCIETY)
    assert r.exit_code == 0, r.output
    assert max(len(line) for line in r.stdout.splitlines()) <= 80, r.stdout
    assert _charity(s)[:10] in r.stdout and "amount BTC" in r.stdout
    assert "(charity)" in r.stdout and "approved" in r.stdout
    assert "withdrawn" in r.stdout


def test_claim_amended_and_withdrawn(story: Story) -> None:
    s = story
    c = s.json("claim", str(s.tx["claim_id"]["id"]))
    assert c["details"] == "broken in January"
    assert c["status"] == "closed" and c["outcome"] == "withdrawn"


def test_rejections_say_the_units_the_wallet_shows(story: Story) -> None:
    r = story.refused["over_limit"]
    assert r.exit_code == 1 and "reason: over_limit" in r.stderr
    assert "can receive 0.03 BTC more" in r.stderr, r.stderr
    r = story.refused["karma"]
    assert r.exit_code == 1 and "reason: insufficient_karma" in r.stderr
    assert "1000" in r.stderr and "100000000000" not in r.stderr, r.stderr


def test_json_output_is_units(story: Story) -> None:
    out = story.json("claim", _charity(story))
    assert out["received"] == GIFT
    assert json.dumps(out)  # plain JSON, amounts as integers of units
