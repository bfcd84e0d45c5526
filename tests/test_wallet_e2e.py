"""A member's whole story through the `muxer` wallet against a real running daemon.

One `muxernode run` subprocess (one witness, 1-s blocks, real LevelDB and sockets), and the
wallet run in-process through click's CliRunner with MUXER_KEYSTORE (a temporary keystore),
MUXER_PASSPHRASE and MUXER_RPC. The keystore has no setting for its scrypt cost, so every
key costs the default scrypt (n = 2**15) once per import and once per signature.

The story (the module fixture ``story``), every step a `muxer` command:

    dora, alice, bob and carol import their funded genesis keys (MUXER_SEED)
    dora creates society "aid": decay 5 % per 2 s, approval 1 %, observation 2 s,
        waiting 1 s, claims open 12 s, benefit ratio 10, bond 5 MUX, min pledge 1 MUX
    alice, bob and carol join, then pledge 20, 30 and 25 MUX (--wait included);
        bob's pledge of 0.99999 MUX is refused (below min_pledge)
    once alice's observation period is over she claims 40 MUX committing 3 karma (karma is
        typed in MUX's units: 300000 units),
        with an evidence file (limit = min(40 MUX, 10 * 300000 units) = 30 MUX)
    bob and carol approve; carol's gift of 26 MUX is refused (her escrow is 25 MUX);
        bob gives 3 MUX and carol 2.5 MUX
    the claim closes at closes_at, approved: alice's bond comes back

The tests then read everything back with `--json` and compare it, to the unit, with values
computed here from protocol sections 3 and 4 and the block times of the story's txs:
balances, escrows, stakes, fees (all to the single witness), karma decayed to the head's
time (section 4.2), the vote tallies, the claim's limit, received amount and outcome.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from muxernode.node import init_data_dir
from muxernode.wallet import main
from tests.procs import Daemon, accounts, make_genesis

PASS = "correct horse battery staple"
FUNDS = 100_000_000_000  # make_genesis default per account
BASE_FEE = 10  # make_genesis default
MUX = 100_000
SOCIETY = "aid"
# rules (section 4.1), as given to `society create`
DECAY_PERIOD, DECAY_PPM, APPROVAL_BP = 2, 50_000, 100
OBSERVATION, WAITING, TTL = 2, 1, 12
BENEFIT, BOND, MIN_PLEDGE = 10, 5 * MUX, 1 * MUX
PLEDGES = {"alice": 20 * MUX, "bob": 30 * MUX, "carol": 25 * MUX}
CLAIM_AMOUNT, CLAIM_KARMA = 40 * MUX, 300_000
GIFTS = {"bob": 3 * MUX, "carol": 250_000}
EVIDENCE = b"photo of the roof after the storm\n"
TIMEOUT = 30.0


def karma_decay(k: int, t0: int, t: int) -> int:
    """Section 4.2 with this society's rules, in exact integers."""
    n = t // DECAY_PERIOD - t0 // DECAY_PERIOD
    if n <= 0 or DECAY_PPM == 0:
        return k
    if n > 4096:
        return 0
    num: int = (10**6 - DECAY_PPM) ** n
    den: int = 10 ** (6 * n)
    return k * num // den


@dataclass
class Karma:
    """A stored karma value and its stamp: decayed first, then changed (section 4.2)."""

    value: int = 0
    at: int = 0

    def worth(self, t: int) -> int:
        return karma_decay(self.value, self.at, t)

    def change(self, delta: int, t: int) -> None:
        self.value = max(0, self.worth(t) + delta)
        self.at = t


@dataclass
class Story:
    env: dict[str, str]
    address: dict[str, str]
    tx: dict[str, dict[str, Any]] = field(default_factory=dict)  # step -> `--json` output
    time: dict[str, int] = field(default_factory=dict)  # step -> its block's timestamp
    refused: dict[str, Result] = field(default_factory=dict)
    balance_with_bond_held: int = 0
    claim_id: str = ""

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, list(args), env={**self.env, **(env or {})},
                                  catch_exceptions=False, prog_name="muxer")

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        r = self.run("--json", *args, env=env)
        assert r.exit_code == 0, f"muxer {' '.join(args)} exited {r.exit_code}: {r.output}"
        return json.loads(r.stdout)

    def send(self, step: str, *args: str, wait: bool = True) -> dict[str, Any]:
        extra = ["--wait", "included", "--timeout", str(int(TIMEOUT))] if wait else []
        out: dict[str, Any] = self.json(*args, *extra)
        assert out["fee"] == BASE_FEE and out["tx_id"]
        assert out["status"] in (("included", "final") if wait else ("pending",)), out
        self.tx[step] = out
        return out

    def head_time(self) -> int:
        return int(self.json("status")["head_time"])

    def wait_until(self, predicate: Any, timeout: float = TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError("condition not reached in time")

    def record_times(self) -> None:
        """The block time of every tx sent so far (each must be included by now)."""
        for step, out in self.tx.items():
            if step in self.time:
                continue
            got = self.json("tx", out["tx_id"])
            assert got["status"] in ("included", "final"), (step, got)
            self.time[step] = int(self.json("block", str(got["height"]))["timestamp"])


@contextmanager
def story_on_a_daemon(base: Path, names: list[str], *, seed: int, columns: int) -> Iterator[Story]:
    """A Story against one fresh daemon (one witness, 1-s blocks) whose funded genesis
    accounts are imported as ``names``, once the first block is there; the daemon stops
    cleanly at the end."""
    gdir = base / "genesis"
    init_data_dir(make_genesis(gdir, accounts=len(names), seed=seed), base / "node")
    daemon = Daemon(base / "node", witness_key=gdir / "w1.key")
    url = daemon.start()
    try:
        funded = accounts(gdir)
        s = Story(
            env={"MUXER_KEYSTORE": str(base / "keys"), "MUXER_PASSPHRASE": PASS,
                 "MUXER_RPC": url, "COLUMNS": str(columns)},
            address={n: a["address"] for n, a in zip(names, funded, strict=True)},
        )
        for name, acct in zip(names, funded, strict=True):
            key = s.json("keys", "import", name, env={"MUXER_SEED": acct["secret"]})
            assert key["address"] == acct["address"]
        s.wait_until(lambda: s.json("status")["head_height"] >= 1)
        yield s
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log()


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    base = tmp_path_factory.mktemp("wallet_e2e")
    with story_on_a_daemon(base, ["dora", "alice", "bob", "carol"], seed=77,
                           columns=200) as s:
        _tell(s, base)
        yield s


def _tell(s: Story, base: Path) -> None:
    s.send("create", "society", "create", "dora", SOCIETY, "--name", "Home repair",
           "--purpose", "Storm damage to the homes of members",
           "--decay-period-s", str(DECAY_PERIOD), "--decay-ppm", str(DECAY_PPM),
           "--approval-bp", str(APPROVAL_BP), "--observation-s", str(OBSERVATION),
           "--waiting-s", str(WAITING), "--claim-ttl-s", str(TTL),
           "--benefit-ratio", str(BENEFIT), "--claim-bond", "5", "--min-pledge", "1")
    for name in PLEDGES:
        s.send(f"join_{name}", "join", name, SOCIETY, "--identity", f"{name} of Elm Street")
    for name, units in PLEDGES.items():
        s.send(f"pledge_{name}", "pledge", name, SOCIETY, f"{units // MUX}")
    s.refused["pledge_below_min"] = s.run("pledge", "bob", SOCIETY, "0.99999")
    # alice may claim from joined_at + observation_s: wait for a head at that time, so that
    # the next block (the earliest her claim can be in) is later still
    joined = int(s.json("member", SOCIETY, "alice")["joined_at"])
    s.wait_until(lambda: s.head_time() >= joined + OBSERVATION)
    evidence = base / "roof.jpg"
    evidence.write_bytes(EVIDENCE)
    before = int(s.json("account", "alice")["balance"])
    out = s.send("claim", "claim", "alice", SOCIETY, f"{CLAIM_AMOUNT // MUX}",
                 "--karma", "3", "--subject", "Roof repair",
                 "--details", "The storm took half the tiles.", "--evidence", str(evidence))
    s.claim_id = out["tx_id"]
    s.balance_with_bond_held = before - int(s.json("account", "alice")["balance"])
    s.send("vote_bob", "vote", "bob", s.claim_id, "approve", wait=False)
    s.send("vote_carol", "vote", "carol", s.claim_id, "approve")
    s.refused["give_beyond_escrow"] = s.run("give", "carol", s.claim_id, "26")
    s.refused["give_beyond_escrow_json"] = s.run("--json", "give", "carol", s.claim_id, "26")
    s.send("give_bob", "give", "bob", s.claim_id, "3", wait=False)
    s.send("give_carol", "give", "carol", s.claim_id, "2.5")
    s.record_times()
    closes_at = s.time["claim"] + TTL
    s.wait_until(lambda: s.json("claim", s.claim_id)["status"] == "closed",
                 timeout=max(0.0, closes_at - time.time()) + TIMEOUT)


# --- what the rules say, computed from the story's block times ------------------------------


@dataclass
class Expected:
    karma: dict[str, Karma]
    total: Karma
    approve: int
    escrow: dict[str, int]
    balance: dict[str, int]
    fees: int


def expected(s: Story) -> Expected:
    """Replays the story's karma events in time order (section 4) and its money moves."""
    members = {n: Karma() for n in PLEDGES}
    total = Karma()
    approve = 0
    events: list[tuple[int, int, str, str, int]] = []  # (time, order, kind, who, amount)
    for name, units in PLEDGES.items():
        events.append((s.time[f"pledge_{name}"], len(events), "karma", name, units // 2))
    events.append((s.time["claim"], len(events), "karma", "alice", -CLAIM_KARMA))
    for name in GIFTS:
        events.append((s.time[f"vote_{name}"], len(events), "vote", name, 0))
    for name, units in GIFTS.items():
        events.append((s.time[f"give_{name}"], len(events), "karma", name, units // 2))
    for t, _order, kind, who, delta in sorted(events):
        if kind == "vote":
            approve += members[who].worth(t)  # the weight is the voter's karma at T
        else:
            members[who].change(delta, t)
            total.change(delta, t)
    received = sum(GIFTS.values())
    fees = {"dora": 1, "alice": 3, "bob": 4, "carol": 4}  # txs each sent (and had included)
    balance = {
        "dora": FUNDS - BASE_FEE,
        # the bond left with the claim and came back when it closed approved
        "alice": FUNDS - 3 * BASE_FEE - PLEDGES["alice"] - BOND + BOND + received,
        "bob": FUNDS - 4 * BASE_FEE - PLEDGES["bob"],
        "carol": FUNDS - 4 * BASE_FEE - PLEDGES["carol"],
    }
    escrow = {n: PLEDGES[n] - GIFTS.get(n, 0) for n in PLEDGES}
    return Expected(members, total, approve, escrow, balance, BASE_FEE * sum(fees.values()))


# --- the outcome, to the unit ----------------------------------------------------------------


def test_every_step_was_included_in_order(story: Story) -> None:
    t = story.time
    assert t["create"] <= t["join_alice"] <= t["pledge_alice"] < t["claim"]
    assert t["claim"] >= t["join_alice"] + OBSERVATION
    assert t["claim"] < t["vote_bob"] <= t["give_bob"] < t["claim"] + TTL
    assert t["give_carol"] >= t["claim"] + WAITING


def test_claim_closed_approved(story: Story) -> None:
    s = story
    e = expected(s)
    opened = s.time["claim"]
    claim = s.json("claim", s.claim_id)
    assert claim == {
        "claim_id": s.claim_id, "society": SOCIETY, "claimant": s.address["alice"],
        "amount": CLAIM_AMOUNT, "karma": CLAIM_KARMA,
        "limit": min(CLAIM_AMOUNT, BENEFIT * CLAIM_KARMA),  # 30 MUX: the karma binds
        "received": sum(GIFTS.values()), "approve": e.approve, "reject": 0,
        "approved": True, "status": "closed", "outcome": "approved",
        "opened_at": opened, "gives_from": opened + WAITING, "closes_at": opened + TTL,
        "subject": "Roof repair", "details": "The storm took half the tiles.",
        "evidence": hashlib.sha256(EVIDENCE).hexdigest(),
        # version 2 (section 11.8): a plain claim, two own votes, no proxy, no comment
        "kind": "claim", "voters": 2, "proxied": 0, "comments": 0,
    }
    # and the rules agree: net approval of at least 1 % of the total karma at closing
    assert e.approve * 10_000 >= APPROVAL_BP * e.total.worth(opened + TTL)
    listed = s.json("claims", SOCIETY)
    assert [c["claim_id"] for c in listed] == [s.claim_id]
    assert listed[0]["outcome"] == "approved" and listed[0]["received"] == 550_000


def test_balances_escrows_and_fees(story: Story) -> None:
    s = story
    e = expected(s)
    # while the claim was open its bond was held: 10 units of fee + 5 MUX
    assert s.balance_with_bond_held == BASE_FEE + BOND
    for name in ("dora", *PLEDGES):
        acct = s.json("account", name)
        escrow = e.escrow.get(name, 0)
        assert acct == {"address": s.address[name], "balance": e.balance[name],
                        "stake": e.balance[name] + escrow,
                        "societies": [SOCIETY] if name in PLEDGES else [],
                        "assets": {"MUX": e.balance[name]}}, name
    for name in PLEDGES:
        member = s.json("member", SOCIETY, name)
        assert member["escrow"] == e.escrow[name]
        assert member["pledged_total"] == PLEDGES[name]
        assert member["given_total"] == GIFTS.get(name, 0)
        assert "open_claim" not in member  # alice's claim closed
    # every fee went to the producer, the only witness; nothing was burned
    witness = s.json("account", _witness_address(s))
    assert witness["balance"] == e.fees == 12 * BASE_FEE
    society = s.json("society", SOCIETY)
    assert society["escrow_total"] == sum(e.escrow.values())
    total = sum(s.json("account", n)["stake"] for n in ("dora", *PLEDGES))
    assert total + witness["balance"] == 4 * FUNDS  # money is conserved


def _witness_address(s: Story) -> str:
    info = s.json("status")
    (address,) = info["active_witnesses"]
    assert isinstance(address, str)
    return address


def test_karma_decayed_at_head_time(story: Story) -> None:
    s = story
    e = expected(s)
    for _ in range(10):
        t0 = s.head_time()
        members = {n: s.json("member", SOCIETY, n) for n in PLEDGES}
        society = s.json("society", SOCIETY)
        if s.head_time() // DECAY_PERIOD == t0 // DECAY_PERIOD:  # one decay period: a value
            break
    else:
        pytest.fail("could not read the society within one decay period")
    for name, member in members.items():
        want = e.karma[name].worth(t0)
        assert member["karma"] == want, (name, member["karma"], want)
    assert society["total_karma"] == e.total.worth(t0)
    # decay really happened: the head is periods past the last change
    assert e.karma["alice"].worth(t0) < e.karma["alice"].value
    assert society == {
        "society": SOCIETY, "name": "Home repair",
        "purpose": "Storm damage to the homes of members",
        "rules": {"decay_period_s": DECAY_PERIOD, "decay_ppm": DECAY_PPM,
                  "approval_bp": APPROVAL_BP, "observation_s": OBSERVATION,
                  "waiting_s": WAITING, "claim_ttl_s": TTL, "benefit_ratio": BENEFIT,
                  "claim_bond": BOND, "min_pledge": MIN_PLEDGE,
                  # a version-1 society: the version-2 rules at their defaults
                  "asset": "MUX", "charity_bp": 0, "charity_slots": 10},
        "creator": s.address["dora"], "members": 3, "total_karma": society["total_karma"],
        "escrow_total": sum(e.escrow.values()), "charity_escrow_total": 0, "open_claims": 0,
    }


def test_refused_pledge_below_min_pledge(story: Story) -> None:
    r = story.refused["pledge_below_min"]
    assert r.exit_code == 1, r.output
    assert r.stdout == ""
    assert "transaction rejected" in r.stderr
    assert "below min_pledge" in r.stderr and "reason: bad_op" in r.stderr
    assert "Traceback" not in r.output
    # nothing moved: bob's pledged total is his one accepted pledge
    assert story.json("member", SOCIETY, "bob")["pledged_total"] == PLEDGES["bob"]


def test_refused_give_beyond_escrow(story: Story) -> None:
    r = story.refused["give_beyond_escrow"]
    assert r.exit_code == 1, r.output
    assert r.stdout == ""
    assert ("transaction rejected: the giver's escrow in this society cannot cover the "
            "amount; pledge more first") in r.stderr
    assert "reason: insufficient_escrow" in r.stderr
    # the node's words give the amounts in the units the wallet shows (25 MUX, not units)
    assert "25 MUX" in r.stderr and "2500000" not in r.stderr
    assert "Traceback" not in r.output
    r = story.refused["give_beyond_escrow_json"]
    assert r.exit_code == 1 and r.stdout == ""
    err = json.loads(r.stderr)["error"]
    assert err["reason"] == "insufficient_escrow" and err["code"] == -32000
    assert err["exit_code"] == 1
    # carol's one accepted gift is all that left her escrow
    assert story.json("member", SOCIETY, "carol")["given_total"] == GIFTS["carol"]


def test_human_output(story: Story) -> None:
    r = story.run("claim", story.claim_id[:8])  # a unique prefix names it
    assert r.exit_code == 0, r.output
    fields, votes, discussion = r.stdout.split("\n\n")
    lines = {line.split()[0]: line.split(None, 1)[1] for line in fields.splitlines()[1:]}
    # the votes, by the wallet's key names, weights in MUX's units; no comments yet
    assert "bob" in votes and "carol" in votes and "approve" in votes
    assert "discussion (0)" in discussion
    assert lines["received"] == "5.50000 MUX" and lines["limit"] == "30.00000 MUX"
    assert lines["outcome"] == "approved" and lines["status"] == "closed"
    r = story.run("member", SOCIETY, "bob")
    assert r.exit_code == 0, r.output
    lines = {line.split()[0]: line.split(None, 1)[1] for line in r.stdout.splitlines()[1:]
             if line.strip()}
    assert lines["escrow"] == "27.00000 MUX" and lines["given_total"] == "3.00000 MUX"
    # karma in the society asset's whole units, as the amounts it was earned from
    karma = story.json("member", SOCIETY, "bob")["karma"]
    assert lines["karma"] == f"{karma // MUX}.{karma % MUX:05d}"
    balance = FUNDS - 4 * BASE_FEE - PLEDGES["bob"]
    r = story.run("account", "bob")
    assert r.exit_code == 0, r.output
    assert f"{balance // MUX}.{balance % MUX:05d} MUX" in r.stdout
