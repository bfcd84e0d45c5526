"""RPC conformance (protocol section 9) against a real running daemon.

One `muxernode run` subprocess for the whole module (real LevelDB, real sockets on
127.0.0.1, port 0): one witness, 1-s blocks, and a config file with small limits
(max_body_bytes, max_batch, mempool_txs) so that each limit can be reached cheaply.

The module fixture submits one batch of 34 signed txs that builds this state in one block
(at time T; every society has decay_ppm 0 except "decay", so values do not move in time):

    fast   a2 pledges 10000, claims 50000 with karma 4000 (claim1, limit 40000);
           a3 pledges 60000, approves claim1 and gives it 1000;
           a4 joins without pledging (no karma);
           a5 pledges 10000 and claims 5000 with karma 500 (claim2, nobody votes)
    slow   waiting_s 3600: a6 claims (claim_slow), a7 pledges and approves it
    watch  observation_s 3600: a8 joins and pledges
    brief  claim_ttl_s 1: a9 claims (claim_brief, closes unapproved at T+1); a10 pledges
    decay  decay_period_s 2, decay_ppm 100000: a10 pledges 10000
    a1 sends 12345 to a11; a12 registers as a witness; a1 approves the genesis witness

Tests run in file order: read-only shape checks, then every rejection reason of section 9
(each from a real signed tx, with a check that nothing changed), then the tests that
change state (tx statuses, submit_txs, batches with notifications, a full mempool).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from consensus.codec import encode
from consensus.crypto import TAG_TX, PrivateKey, address_to_text
from consensus.errors import REASONS
from consensus.tx import SignedTx, build_tx, tapos_of
from muxernode.node import init_data_dir
from muxernode.ops import RULE_NAMES
from tests.procs import Daemon, RpcFailure, accounts, make_genesis, rpc, wait_for
from tests.test_rpc_node_v2 import V2_REASONS

BASE_FEE = 10
FUNDS = 100_000_000_000  # make_genesis default per account
MAX_BODY = 65_536
MAX_BATCH = 20
MEMPOOL_TXS = 40
LIFETIME = 3600
TIMEOUT = 20.0
SETUP_TXS = 34

#          decay_period, ppm, approval_bp, observation, waiting, ttl, benefit, bond, min_pledge
R_FAST = [10**6, 0, 300, 0, 0, 3600, 10, 1000, 100]
R_SLOW = [10**6, 0, 300, 0, 3600, 7200, 10, 1000, 100]
R_WATCH = [10**6, 0, 300, 3600, 0, 3600, 10, 1000, 100]
R_BRIEF = [10**6, 0, 300, 0, 0, 1, 10, 1000, 100]
R_DECAY = [2, 100_000, 300, 0, 0, 3600, 10, 1000, 100]
SOCIETY_RULES = {"fast": R_FAST, "slow": R_SLOW, "watch": R_WATCH, "brief": R_BRIEF,
                 "decay": R_DECAY}
MEMBERS = {"fast": ["a2", "a3", "a4", "a5"], "slow": ["a6", "a7"], "watch": ["a8"],
           "brief": ["a9", "a10"], "decay": ["a10"]}
EVIDENCE = {name: hashlib.sha256(name.encode()).digest()
            for name in ("claim1", "claim2", "claim_slow", "claim_brief")}

# --- result shapes ----------------------------------------------------------------------

HEX64 = re.compile(r"[0-9a-f]{64}")
MX = re.compile(r"mx[0-9a-f]{40}")
Check = Callable[[Any], bool]


def uint(v: Any) -> bool:
    return type(v) is int and 0 <= v <= 2**63 - 1


def hex64(v: Any) -> bool:
    return type(v) is str and HEX64.fullmatch(v) is not None


def mx(v: Any) -> bool:
    return type(v) is str and MX.fullmatch(v) is not None


def text(v: Any) -> bool:
    return type(v) is str


def boolean(v: Any) -> bool:
    return type(v) is bool


def share(v: Any) -> bool:
    return type(v) in (int, float) and 0 <= v <= 1


def list_of(check: Check) -> Check:
    def checker(v: Any) -> bool:
        return type(v) is list and all(check(x) for x in v)
    checker.__name__ = f"list_of({check.__name__})"
    return checker


def one_of(*values: Any) -> Check:
    def checker(v: Any) -> bool:
        return any(type(v) is type(x) and v == x for x in values)
    checker.__name__ = f"one_of{values}"
    return checker


def rules_obj(v: Any) -> bool:
    """The rules of a create_society op as given: the nine of 4.1 (these tests' ops)."""
    return type(v) is dict and list(v) == list(RULE_NAMES) and all(uint(x) for x in v.values())


def society_rules_obj(v: Any) -> bool:
    """get_society's rules: the nine, then asset, charity_bp, charity_slots (11.8)."""
    return (type(v) is dict and list(v) == [*RULE_NAMES, "asset", "charity_bp", "charity_slots"]
            and all(uint(v[n]) for n in RULE_NAMES) and text(v["asset"])
            and uint(v["charity_bp"]) and uint(v["charity_slots"]))


def assert_shape(obj: Any, required: Mapping[str, Check],
                 optional: Mapping[str, Check] | None = None, where: str = "result") -> None:
    """Exactly the required keys (plus any of the optional ones), each passing its check."""
    assert type(obj) is dict, f"{where} is {type(obj).__name__}, not an object: {obj!r}"
    optional = optional or {}
    missing = set(required) - set(obj)
    extra = set(obj) - set(required) - set(optional)
    assert not missing and not extra, f"{where}: missing {missing}, unexpected {extra}: {obj}"
    for key, check in {**required, **optional}.items():
        if key in obj:
            assert check(obj[key]), f"{where}.{key} = {obj[key]!r} fails {check.__name__}"


CHAIN_INFO = {"chain_id": hex64, "head_height": uint, "head_id": hex64, "head_time": uint,
              "final_height": uint, "final_id": hex64, "block_interval_s": uint,
              "base_fee": uint, "active_witnesses": list_of(mx), "next_slot_time": uint,
              "participation": share}
BLOCK = {"height": uint, "id": hex64, "previous": hex64, "timestamp": uint, "witness": mx,
         "tx_ids": list_of(hex64), "votes": list_of(hex64), "final": boolean}
TX_KNOWN = {"tx_id": hex64, "status": one_of("pending", "included", "final"), "sender": mx,
            "fee": uint, "op": lambda v: type(v) is dict}
ACCOUNT = {"address": mx, "balance": uint, "stake": uint, "societies": list_of(text),
           "assets": lambda v: type(v) is dict and uint(v.get("MUX"))}
WITNESS_IN_ACCOUNT = {"signing_key": hex64, "url": text, "votes": uint}
SOCIETY = {"society": text, "name": text, "purpose": text, "rules": society_rules_obj,
           "creator": mx,
           "members": uint, "total_karma": uint, "escrow_total": uint,
           "charity_escrow_total": uint, "open_claims": uint}
MEMBER = {"society": text, "address": mx, "identity": text, "joined_at": uint, "escrow": uint,
          "karma": uint, "pledged_total": uint, "given_total": uint, "charity_escrow": uint,
          "proxy": lambda v: v is None or mx(v), "delegators": uint}
CLAIM_SUMMARY = {"claim_id": hex64, "society": text, "claimant": mx, "amount": uint,
                 "karma": uint, "limit": uint, "received": uint, "approve": uint,
                 "reject": uint, "approved": boolean, "status": one_of("open", "closed"),
                 "opened_at": uint, "gives_from": uint, "closes_at": uint, "subject": text,
                 "kind": one_of("claim", "charity"), "voters": uint, "proxied": uint,
                 "comments": uint}
CLAIM = {**CLAIM_SUMMARY, "details": text, "evidence": hex64}
OUTCOME = {"outcome": one_of("approved", "rejected", "withdrawn")}
WITNESS = {"address": mx, "url": text, "votes": uint, "active": boolean, "signing_key": hex64,
           "last_slot": uint, "missed": uint}
PEER = {"node_id": text, "address": text, "direction": one_of("inbound", "outbound"),
        "head_height": uint}
OP_SHAPES: dict[str, dict[str, Check]] = {
    "transfer": {"to": mx, "amount": uint, "memo": text},
    "create_society": {"society": text, "name": text, "purpose": text, "rules": rules_obj},
    "join": {"society": text, "identity": text},
    "pledge": {"society": text, "amount": uint},
    "claim": {"society": text, "amount": uint, "karma": uint, "subject": text,
              "details": text, "evidence": hex64},
    "vote": {"claim_id": hex64, "stance": one_of(-1, 0, 1)},
    "give": {"claim_id": hex64, "amount": uint},
    "register_witness": {"signing_key": hex64, "url": text},
    "vote_witness": {"witnesses": list_of(mx)},
}


# --- the running node ---------------------------------------------------------------------


def op_create(society: str, rules: list[int]) -> list[Any]:
    return [2, society, f"The {society} society", f"Tests of {society}", rules]


def karma_decay(k: int, t0: int, t: int, period: int, ppm: int) -> int:
    """Section 4.2, written out again here (exact integers)."""
    n = t // period - t0 // period
    if n <= 0 or ppm == 0:
        return k
    if n > 4096:
        return 0
    num: int = (10**6 - ppm) ** n
    den: int = 10 ** (6 * n)
    return k * num // den


@dataclass
class Net:
    daemon: Daemon
    url: str
    chain_id: bytes
    keys: dict[str, PrivateKey]
    witness: PrivateKey
    genesis_time: int
    txs: dict[str, SignedTx] = field(default_factory=dict)
    setup_time: dict[str, int] = field(default_factory=dict)  # tx name -> its block's time

    @property
    def base(self) -> str:
        return self.url.rsplit("/", 1)[0]

    def call(self, method: str, *params: Any) -> Any:
        return rpc(self.url, method, *params)

    def head(self) -> dict[str, Any]:
        info: dict[str, Any] = self.call("chain_info")
        return info

    def addr(self, name: str) -> str:
        return self.keys[name].address_text

    def tx(self, name: str, op: list[Any], *, fee: int = BASE_FEE,
           expiration: int | None = None, tapos: tuple[int, int] | None = None,
           head: dict[str, Any] | None = None) -> SignedTx:
        """A signed tx from key ``name`` referring to the head (TaPoS), expiring in 600 s."""
        head = head or self.head()
        ref_num, ref_prefix = tapos or tapos_of(head["head_height"],
                                                bytes.fromhex(head["head_id"]))
        return build_tx(self.keys[name], self.chain_id, op, ref_block_num=ref_num,
                        ref_block_prefix=ref_prefix,
                        expiration=expiration or head["head_time"] + 600, fee=fee)

    def block_time(self, tx_id: str) -> int:
        got = self.call("get_tx", tx_id)
        assert got["status"] in ("included", "final"), got
        block: dict[str, Any] = self.call("get_block", got["height"])
        return int(block["timestamp"])

    def wait_height(self, height: int) -> dict[str, Any]:
        out: dict[str, Any] = wait_for(
            lambda: (h := self.head())["head_height"] >= height and h, timeout=TIMEOUT)
        return out

    def wait_included(self, tx_ids: list[str]) -> list[dict[str, Any]]:
        def done() -> list[dict[str, Any]] | None:
            got = [self.call("get_tx", t) for t in tx_ids]
            return got if all(g["status"] in ("included", "final") for g in got) else None
        out: list[dict[str, Any]] = wait_for(done, timeout=TIMEOUT)
        return out


def post(url: str, body: bytes | str, content_type: str = "application/json") -> httpx.Response:
    data = body.encode() if isinstance(body, str) else body
    return httpx.post(url, content=data, headers={"Content-Type": content_type}, timeout=10)


def call_doc(method: str, params: Any = None, req_id: Any = 1) -> dict[str, Any]:
    doc: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": req_id}
    if params is not None:
        doc["params"] = params
    return doc


def expect_error(net: Net, method: str, *params: Any) -> dict[str, Any]:
    with pytest.raises(RpcFailure) as info:
        net.call(method, *params)
    return info.value.error


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    base = tmp_path_factory.mktemp("rpcnode")
    gdir = base / "genesis"
    genesis = init_data_dir(make_genesis(gdir, accounts=14, seed=91), base / "node")
    config = base / "node.toml"
    config.write_text(
        f"[rpc]\nmax_body_bytes = {MAX_BODY}\nmax_batch = {MAX_BATCH}\n"
        f"[limits]\nmempool_txs = {MEMPOOL_TXS}\n", encoding="utf-8")
    keys = {a["name"]: PrivateKey(bytes.fromhex(a["secret"])) for a in accounts(gdir)}
    keys["nobody"] = PrivateKey(hashlib.sha256(b"nobody").digest())  # never funded
    witness = PrivateKey(bytes.fromhex((gdir / "w1.key").read_text().strip()))
    daemon = Daemon(base / "node", witness_key=gdir / "w1.key",
                    extra_args=["--config", str(config)])
    daemon.start()
    try:
        n = Net(daemon, daemon.url, genesis.chain_id, keys, witness, genesis.genesis_time)
        n.wait_height(1)
        _setup_chain(n)
        yield n
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log()


def _setup_chain(n: Net) -> None:
    head = n.head()
    seq: list[SignedTx] = []

    def add(name: str, who: str, op: list[Any]) -> bytes:
        n.txs[name] = tx = n.tx(who, op, head=head)
        seq.append(tx)
        return tx.tx_id

    for soc, rules in SOCIETY_RULES.items():
        add(f"create_{soc}", "a1", op_create(soc, rules))
    for who in MEMBERS["fast"]:
        add(f"join_{who}", who, [3, "fast", f"{who}-id"])
    add("pledge_a2", "a2", [4, "fast", 10_000])
    add("pledge_a3", "a3", [4, "fast", 60_000])
    add("pledge_a5", "a5", [4, "fast", 10_000])
    claim1 = add("claim1", "a2", [5, "fast", 50_000, 4000, "Flooded kitchen",
                                  "Water everywhere", EVIDENCE["claim1"]])
    add("claim2", "a5", [5, "fast", 5000, 500, "Broken arm", "Cast for six weeks",
                         EVIDENCE["claim2"]])
    add("vote_a3", "a3", [6, claim1, 1])
    add("give_a3", "a3", [7, claim1, 1000])
    add("join_a6", "a6", [3, "slow", "a6-id"])
    add("pledge_a6", "a6", [4, "slow", 1000])
    claim_slow = add("claim_slow", "a6", [5, "slow", 1000, 100, "Slow", "",
                                          EVIDENCE["claim_slow"]])
    add("join_a7", "a7", [3, "slow", "a7-id"])
    add("pledge_a7", "a7", [4, "slow", 1000])
    add("vote_a7", "a7", [6, claim_slow, 1])
    add("join_a8", "a8", [3, "watch", "a8-id"])
    add("pledge_a8", "a8", [4, "watch", 1000])
    add("join_a9", "a9", [3, "brief", "a9-id"])
    add("pledge_a9", "a9", [4, "brief", 1000])
    claim_brief = add("claim_brief", "a9", [5, "brief", 500, 100, "Brief", "",
                                            EVIDENCE["claim_brief"]])
    add("join_a10b", "a10", [3, "brief", "a10-id"])
    add("pledge_a10b", "a10", [4, "brief", 1000])
    add("join_a10", "a10", [3, "decay", "a10-id"])
    add("pledge_a10", "a10", [4, "decay", 10_000])
    add("transfer", "a1", [1, n.keys["a11"].address, 12_345, "rent"])
    add("register_witness", "a12", [8, n.keys["a12"].public_key, "https://w12.example"])
    add("vote_witness", "a1", [9, [n.witness.address]])
    assert len(seq) == SETUP_TXS < MEMPOOL_TXS
    answers = n.call("submit_txs", [tx.raw.hex() for tx in seq])
    assert answers == [{"tx_id": tx.tx_id.hex()} for tx in seq], answers
    n.wait_included([tx.tx_id.hex() for tx in seq])
    for name, tx in n.txs.items():
        n.setup_time[name] = n.block_time(tx.tx_id.hex())
    # claim_brief closes at the first block at or after opened_at + 1
    wait_for(lambda: n.call("get_claim", claim_brief.hex())["status"] == "closed",
             timeout=TIMEOUT)


def batch(net: Net, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    """One HTTP request; the results in call order (an error answer fails the test)."""
    docs = post(net.url, json.dumps([call_doc(m, p, i) for i, (m, p) in enumerate(calls)]))
    answers = {d["id"]: d for d in docs.json()}
    assert all("result" in answers[i] for i in range(len(calls))), answers
    return [answers[i]["result"] for i in range(len(calls))]


def at_one_head_time(net: Net, calls: list[tuple[str, list[Any]]]) -> tuple[int, list[Any]]:
    """Results of ``calls`` read at one head: chain_info before and after, same head_time."""
    for _ in range(20):
        out = batch(net, [("chain_info", []), *calls, ("chain_info", [])])
        if out[0]["head_time"] == out[-1]["head_time"]:
            return out[0]["head_time"], out[1:-1]
    raise AssertionError("the head moved during every read")


# --- every method of section 9: shapes and values -----------------------------------------


def test_chain_info(net: Net) -> None:
    info = net.head()
    assert_shape(info, CHAIN_INFO, where="chain_info")
    assert info["chain_id"] == net.chain_id.hex()
    assert info["block_interval_s"] == 1 and info["base_fee"] == BASE_FEE
    assert info["active_witnesses"] == [net.witness.address_text]
    assert 1 <= info["final_height"] <= info["head_height"]
    assert info["head_time"] < info["next_slot_time"] <= time.time() + 2
    assert (info["next_slot_time"] - net.genesis_time) % 1 == 0
    assert 0 < info["participation"] <= 1
    final, head = batch(net, [("get_block", [info["final_height"]]),
                              ("get_block", [info["head_height"]])])
    assert final["id"] == info["final_id"] and final["final"] is True
    assert head["id"] == info["head_id"] and head["timestamp"] == info["head_time"]
    assert head["final"] is (info["head_height"] <= info["final_height"])
    # the chain moves on: one block per 1-s slot, finality follows one block behind
    later = net.wait_height(info["head_height"] + 2)
    assert later["head_time"] >= info["head_time"] + 2
    assert later["final_height"] >= info["head_height"]


def test_get_block_genesis_setup_and_missing(net: Net) -> None:
    genesis = net.call("get_block", 0)
    assert genesis == {"height": 0, "id": net.chain_id.hex(), "previous": "",
                       "timestamp": net.genesis_time, "witness": "", "tx_ids": [],
                       "votes": [], "final": True}
    height = net.call("get_tx", net.txs["transfer"].tx_id.hex())["height"]
    block = net.call("get_block", height)
    assert_shape(block, BLOCK, where="get_block")
    assert block["height"] == height
    assert block["previous"] == net.call("get_block", height - 1)["id"]
    assert block["witness"] == net.witness.address_text
    assert block["timestamp"] == net.setup_time["transfer"]
    assert (block["timestamp"] - net.genesis_time) % 1 == 0
    assert block["tx_ids"] == [tx.tx_id.hex() for tx in net.txs.values()]  # one block, in order
    assert block["final"] is True  # votes: hashes of FFG votes it carries (shape checked)
    head = net.head()["head_height"]
    err = expect_error(net, "get_block", head + 1000)
    assert err["code"] == -32001 and err["data"] == {"what": "block", "id": head + 1000}


def test_get_tx_of_every_op_type(net: Net) -> None:
    seen: set[str] = set()
    for name, tx in net.txs.items():
        got = net.call("get_tx", tx.tx_id.hex())
        assert_shape(got, TX_KNOWN, {"height": uint}, where=f"get_tx({name})")
        assert got["tx_id"] == tx.tx_id.hex() and "height" in got
        assert got["sender"] == address_to_text(tx.sender) and got["fee"] == BASE_FEE
        op = got["op"]
        assert_shape(op, {"type": text, **OP_SHAPES[op["type"]]}, where=f"{name}.op")
        seen.add(op["type"])
    assert seen == set(OP_SHAPES)  # all nine operations
    op = net.call("get_tx", net.txs["transfer"].tx_id.hex())["op"]
    assert op == {"type": "transfer", "to": net.addr("a11"), "amount": 12_345, "memo": "rent"}
    op = net.call("get_tx", net.txs["create_fast"].tx_id.hex())["op"]
    assert op == {"type": "create_society", "society": "fast", "name": "The fast society",
                  "purpose": "Tests of fast", "rules": dict(zip(RULE_NAMES, R_FAST, strict=True))}
    op = net.call("get_tx", net.txs["claim1"].tx_id.hex())["op"]
    assert op == {"type": "claim", "society": "fast", "amount": 50_000, "karma": 4000,
                  "subject": "Flooded kitchen", "details": "Water everywhere",
                  "evidence": EVIDENCE["claim1"].hex()}
    claim1 = net.txs["claim1"].tx_id.hex()
    assert net.call("get_tx", net.txs["vote_a3"].tx_id.hex())["op"] == {
        "type": "vote", "claim_id": claim1, "stance": 1}
    assert net.call("get_tx", net.txs["give_a3"].tx_id.hex())["op"] == {
        "type": "give", "claim_id": claim1, "amount": 1000}
    assert net.call("get_tx", net.txs["join_a2"].tx_id.hex())["op"] == {
        "type": "join", "society": "fast", "identity": "a2-id"}
    assert net.call("get_tx", net.txs["pledge_a3"].tx_id.hex())["op"] == {
        "type": "pledge", "society": "fast", "amount": 60_000}
    assert net.call("get_tx", net.txs["register_witness"].tx_id.hex())["op"] == {
        "type": "register_witness", "signing_key": net.keys["a12"].public_key.hex(),
        "url": "https://w12.example"}
    assert net.call("get_tx", net.txs["vote_witness"].tx_id.hex())["op"] == {
        "type": "vote_witness", "witnesses": [net.witness.address_text]}
    unknown = "ab" * 32
    assert net.call("get_tx", unknown) == {"tx_id": unknown, "status": "unknown"}
    # input hex may use either case; output hex is lowercase
    assert net.call("get_tx", unknown.upper()) == {"tx_id": unknown, "status": "unknown"}


def test_get_account(net: Net) -> None:
    fees = BASE_FEE
    a1 = net.call("get_account", net.addr("a1"))
    assert_shape(a1, ACCOUNT, where="get_account(a1)")
    # 5 societies created, a transfer and a witness vote
    b1 = FUNDS - 7 * fees - 12_345
    assert a1 == {"address": net.addr("a1"), "balance": b1, "stake": b1, "societies": [],
                  "assets": {"MUX": b1}}
    a11 = net.call("get_account", net.addr("a11"))
    assert a11["balance"] == a11["stake"] == FUNDS + 12_345
    # a2: join, pledge, claim (bond 1000), received a gift of 1000
    a2 = net.call("get_account", net.addr("a2"))
    b2 = FUNDS - 3 * fees - 10_000 - 1000 + 1000
    assert a2 == {"address": net.addr("a2"), "balance": b2,
                  "stake": FUNDS - 3 * fees - 1000 + 1000, "societies": ["fast"],
                  "assets": {"MUX": b2}}
    a3 = net.call("get_account", net.addr("a3"))
    assert a3["balance"] == FUNDS - 4 * fees - 60_000
    assert a3["stake"] == a3["balance"] + 59_000  # escrow after giving 1000
    # a9's claim closed unapproved: its bond was burned
    a9 = net.call("get_account", net.addr("a9"))
    assert a9["balance"] == FUNDS - 3 * fees - 1000 - 1000 and a9["stake"] == a9["balance"] + 1000
    a10 = net.call("get_account", net.addr("a10"))
    assert a10["societies"] == ["brief", "decay"]
    a12 = net.call("get_account", net.addr("a12"))
    assert_shape(a12, ACCOUNT, {"witness": lambda v: type(v) is dict}, where="get_account(a12)")
    assert a12["witness"] == {"signing_key": net.keys["a12"].public_key.hex(),
                              "url": "https://w12.example", "votes": 0}
    w1, a1_now = batch(net, [("get_account", [net.witness.address_text]),
                             ("get_account", [net.addr("a1")])])
    assert_shape(w1["witness"], WITNESS_IN_ACCOUNT, where="get_account(w1).witness")
    assert w1["witness"]["votes"] == a1_now["stake"]  # a1 approves w1
    assert w1["balance"] >= SETUP_TXS * fees  # the producer of every block collects its fees
    fresh = net.addr("nobody")
    assert net.call("get_account", fresh) == {"address": fresh, "balance": 0, "stake": 0,
                                              "societies": [], "assets": {"MUX": 0}}


def test_get_society(net: Net) -> None:
    expected = {  # members, total_karma, escrow_total, open_claims
        "fast": (4, 5000 + 30_000 + 5000 - 4000 - 500 + 500, 10_000 + 59_000 + 10_000, 2),
        "slow": (2, 500 - 100 + 500, 2000, 1),
        "watch": (1, 500, 1000, 0),
        "brief": (2, 500 - 100 + 500, 2000, 0),
    }
    for soc, (members, karma, escrow, open_claims) in expected.items():
        got = net.call("get_society", soc)
        assert_shape(got, SOCIETY, where=f"get_society({soc})")
        assert got == {"society": soc, "name": f"The {soc} society",
                       "purpose": f"Tests of {soc}",
                       "rules": dict(zip(RULE_NAMES, SOCIETY_RULES[soc], strict=True))
                       | {"asset": "MUX", "charity_bp": 0, "charity_slots": 10},
                       "creator": net.addr("a1"), "members": members, "total_karma": karma,
                       "escrow_total": escrow, "charity_escrow_total": 0,
                       "open_claims": open_claims}
    err = expect_error(net, "get_society", "nosuch")
    assert err["code"] == -32001 and err["data"] == {"what": "society", "id": "nosuch"}


def test_get_member(net: Net) -> None:
    t = net.setup_time["join_a2"]
    a2 = net.call("get_member", "fast", net.addr("a2"))
    assert_shape(a2, MEMBER, {"open_claim": hex64}, where="get_member(a2)")
    assert a2 == {"society": "fast", "address": net.addr("a2"), "identity": "a2-id",
                  "joined_at": t, "escrow": 10_000, "karma": 5000 - 4000,
                  "pledged_total": 10_000, "given_total": 0,
                  "open_claim": net.txs["claim1"].tx_id.hex(), "charity_escrow": 0,
                  "proxy": None, "delegators": 0}
    a3 = net.call("get_member", "fast", net.addr("a3"))
    assert a3 == {"society": "fast", "address": net.addr("a3"), "identity": "a3-id",
                  "joined_at": t, "escrow": 59_000, "karma": 30_000 + 500,
                  "pledged_total": 60_000, "given_total": 1000, "charity_escrow": 0,
                  "proxy": None, "delegators": 0}
    a4 = net.call("get_member", "fast", net.addr("a4"))
    assert a4["karma"] == a4["escrow"] == a4["pledged_total"] == 0
    a9 = net.call("get_member", "brief", net.addr("a9"))  # its claim closed: no open_claim
    assert_shape(a9, MEMBER, where="get_member(a9)")
    assert a9["karma"] == 400 and a9["escrow"] == 1000
    err = expect_error(net, "get_member", "fast", net.addr("a1"))
    assert err["code"] == -32001
    assert err["data"] == {"what": "member", "id": ["fast", net.addr("a1")]}


def test_karma_reads_decay_to_head_time(net: Net) -> None:
    """Section 4.2: a read reports karma decayed to the head's time (and writes nothing)."""
    t0 = net.setup_time["pledge_a10"]
    period, ppm = R_DECAY[0], R_DECAY[1]
    seen: list[int] = []
    for _ in range(2):  # in two decay periods, each past the one of the pledge
        wait_for(lambda: net.head()["head_time"] // period > max(seen or [t0]) // period,
                 timeout=TIMEOUT)
        head_time, (member, society) = at_one_head_time(
            net, [("get_member", ["decay", net.addr("a10")]), ("get_society", ["decay"])])
        want = karma_decay(5000, t0, head_time, period, ppm)
        assert want < 5000
        assert member["karma"] == want and society["total_karma"] == want
        assert member["escrow"] == member["pledged_total"] == 10_000
        seen.append(head_time)


def test_get_claim_open_and_closed(net: Net) -> None:
    t = net.setup_time["claim1"]
    claim1 = net.call("get_claim", net.txs["claim1"].tx_id.hex())
    assert_shape(claim1, CLAIM, where="get_claim(claim1)")
    assert claim1 == {
        "claim_id": net.txs["claim1"].tx_id.hex(), "society": "fast",
        "claimant": net.addr("a2"), "amount": 50_000, "karma": 4000, "limit": 40_000,
        "received": 1000, "approve": 30_000, "reject": 0, "approved": True, "status": "open",
        "opened_at": t, "gives_from": t, "closes_at": t + 3600, "subject": "Flooded kitchen",
        "details": "Water everywhere", "evidence": EVIDENCE["claim1"].hex(),
        "kind": "claim", "voters": claim1["voters"], "proxied": 0, "comments": 0}
    assert claim1["voters"] == len(net.call("list_votes", claim1["claim_id"])) > 0
    claim2 = net.call("get_claim", net.txs["claim2"].tx_id.hex())
    assert claim2["limit"] == 5000 and claim2["approve"] == 0 and claim2["approved"] is False
    slow = net.call("get_claim", net.txs["claim_slow"].tx_id.hex())
    assert slow["gives_from"] == t + 3600 and slow["closes_at"] == t + 7200
    assert slow["approve"] == 500 and slow["approved"] is True and slow["limit"] == 1000
    brief = net.call("get_claim", net.txs["claim_brief"].tx_id.hex())
    assert_shape(brief, CLAIM, OUTCOME, where="get_claim(claim_brief)")
    assert brief["status"] == "closed" and brief["outcome"] == "rejected"
    assert brief["approved"] is False and brief["closes_at"] == t + 1
    assert brief["limit"] == 500 and brief["received"] == 0
    unknown = "cd" * 32
    err = expect_error(net, "get_claim", unknown)
    assert err["code"] == -32001 and err["data"] == {"what": "claim", "id": unknown}


def test_list_claims(net: Net) -> None:
    fast = net.call("list_claims", "fast")
    for item in fast:
        assert_shape(item, CLAIM_SUMMARY, OUTCOME, where="list_claims item")
    ids = sorted([net.txs["claim1"].tx_id.hex(), net.txs["claim2"].tx_id.hex()], reverse=True)
    assert [c["claim_id"] for c in fast] == ids  # same opened_at: by claim id, descending
    full = net.call("get_claim", ids[0])
    assert fast[0] == {k: v for k, v in full.items() if k not in ("details", "evidence")}
    brief = net.call("list_claims", "brief")
    assert [(c["status"], c.get("outcome")) for c in brief] == [("closed", "rejected")]
    assert net.call("list_claims", "watch") == []
    err = expect_error(net, "list_claims", "nosuch")
    assert err["code"] == -32001 and err["data"] == {"what": "society", "id": "nosuch"}


def test_list_witnesses(net: Net) -> None:
    witnesses, a1 = batch(net, [("list_witnesses", []), ("get_account", [net.addr("a1")])])
    for w in witnesses:
        assert_shape(w, WITNESS, where="list_witnesses item")
    # registration order: the genesis witness, then a12
    assert [w["address"] for w in witnesses] == [net.witness.address_text, net.addr("a12")]
    w1, w12 = witnesses
    assert w1["active"] is True and w1["votes"] == a1["stake"] and w1["url"] == ""
    assert w1["signing_key"] == net.witness.public_key.hex()
    assert w12["active"] is False and w12["votes"] == 0
    assert w12["url"] == "https://w12.example"
    assert w12["signing_key"] == net.keys["a12"].public_key.hex()


def test_list_witnesses_reports_production(net: Net) -> None:
    # docs/rpc.md: "last_slot / missed: the last slot the witness produced and the slots it
    # missed, as far as this node has seen; 0 and 0 when it has no record".
    head = net.head()
    head_slot = head["head_time"] - net.genesis_time  # 1-s slots
    (w1, _w12) = net.call("list_witnesses")
    assert w1["last_slot"] >= head_slot, w1


def test_peers(net: Net) -> None:
    peers = net.call("peers")
    assert type(peers) is list
    for p in peers:
        assert_shape(p, PEER, where="peers item")
    assert peers == []  # no [p2p] peers configured


# --- standard JSON-RPC errors and HTTP --------------------------------------------------------


PARSE_BODIES = ["{", '[{"jsonrpc": "2.0", "method": "chain_info", "id": 1}',
                '{"jsonrpc": "2.0", "method": "get_block", "params": [NaN], "id": 1}', ""]


@pytest.mark.parametrize("body", [*PARSE_BODIES, b"\xff\xfe{}"], ids=range(5))
def test_parse_error(net: Net, body: str | bytes) -> None:
    r = post(net.url, body)
    assert r.status_code == 200
    assert r.json() == {"jsonrpc": "2.0", "id": None,
                        "error": {"code": -32700, "message": "parse error"}}


INVALID_REQUESTS: list[tuple[Any, Any]] = [  # (request, id in the answer)
    (42, None),
    ("chain_info", None),
    (None, None),
    ({"jsonrpc": "1.0", "method": "chain_info", "params": [], "id": 7}, 7),
    ({"method": "chain_info", "params": [], "id": 8}, 8),
    ({"jsonrpc": 2.0, "method": "chain_info", "id": 9}, 9),
    ({"jsonrpc": "2.0", "method": 5, "params": [], "id": "x"}, "x"),
    ({"jsonrpc": "2.0", "params": [], "id": 10}, 10),
    ({"jsonrpc": "2.0", "method": "chain_info", "params": 5, "id": 11}, 11),
    ({"jsonrpc": "2.0", "method": "chain_info", "id": 1.5}, None),
    ({"jsonrpc": "2.0", "method": "chain_info", "id": True}, None),
]


@pytest.mark.parametrize(("request_doc", "answer_id"), INVALID_REQUESTS,
                         ids=range(len(INVALID_REQUESTS)))
def test_invalid_request(net: Net, request_doc: Any, answer_id: Any) -> None:
    r = post(net.url, json.dumps(request_doc))
    assert r.status_code == 200
    doc = r.json()
    assert set(doc) == {"jsonrpc", "id", "error"} and doc["jsonrpc"] == "2.0"
    assert doc["id"] == answer_id and doc["error"]["code"] == -32600, doc
    assert type(doc["error"]["message"]) is str


def test_method_not_found(net: Net) -> None:
    r = post(net.url, json.dumps(call_doc("no_such_method", [], "m")))
    doc = r.json()
    assert doc["id"] == "m" and doc["error"]["code"] == -32601, doc
    assert "no_such_method" in doc["error"]["message"]


A_CLAIM = "ab" * 32
GOOD_ADDR = "mx" + "12" * 20
INVALID_PARAMS: list[tuple[str, Any]] = [
    ("chain_info", [1]),
    ("chain_info", {"x": 1}),
    ("get_block", []),
    ("get_block", [1, 2]),
    ("get_block", ["1"]),
    ("get_block", [True]),
    ("get_block", [1.0]),
    ("get_block", [-1]),
    ("get_block", [2**63]),
    ("get_block", {"height": 1}),
    ("get_tx", ["zz" * 32]),
    ("get_tx", ["ab" * 31]),
    ("get_tx", ["0x" + "ab" * 31]),
    ("get_tx", [5]),
    ("get_claim", ["abc"]),
    ("get_claim", [A_CLAIM, A_CLAIM]),
    ("get_account", ["mx" + "g" * 40]),
    ("get_account", ["MX" + "12" * 20]),
    ("get_account", ["mx" + "AB" * 20]),
    ("get_account", ["12" * 20]),
    ("get_account", ["mx" + "12" * 19]),
    ("get_account", [None]),
    ("get_account", []),
    ("get_society", ["Fast"]),
    ("get_society", ["ab"]),
    ("get_society", [7]),
    ("get_member", ["fast"]),
    ("get_member", ["fast", "a2"]),
    ("get_member", ["FAST", GOOD_ADDR]),
    ("list_claims", []),
    ("list_claims", ["no such"]),
    ("list_witnesses", [0]),
    ("peers", ["x"]),
    ("submit_tx", ["xyz"]),
    ("submit_tx", ["0x00"]),
    ("submit_tx", [123]),
    ("submit_tx", []),
    ("submit_txs", ["00"]),
    ("submit_txs", [["00", "zz"]]),
    ("submit_txs", [[], []]),
]


@pytest.mark.parametrize(("method", "params"), INVALID_PARAMS,
                         ids=[f"{m}-{i}" for i, (m, _p) in enumerate(INVALID_PARAMS)])
def test_invalid_params(net: Net, method: str, params: Any) -> None:
    r = post(net.url, json.dumps(call_doc(method, params, 3)))
    doc = r.json()
    assert doc["id"] == 3 and doc["error"]["code"] == -32602, doc
    assert doc["error"]["message"].startswith("invalid params"), doc


def test_missing_params_mean_none_and_null_id_is_answered(net: Net) -> None:
    doc = post(net.url, json.dumps(call_doc("chain_info"))).json()
    assert_shape(doc["result"], CHAIN_INFO)
    doc = post(net.url, json.dumps(call_doc("get_block", [0], None))).json()
    assert doc["id"] is None and doc["result"]["height"] == 0
    docs = post(net.url, "[1, 2]").json()
    assert [(d["id"], d["error"]["code"]) for d in docs] == [(None, -32600), (None, -32600)]


def test_batch_mixed(net: Net) -> None:
    body = [
        call_doc("get_block", [0], "a"),
        {"jsonrpc": "2.0", "method": "get_block", "params": [0]},  # a notification
        call_doc("nope", [], "b"),
        42,
        call_doc("get_account", ["mx" + "AB" * 20], 3),
        {"jsonrpc": "1.0", "method": "chain_info", "id": 4},
        call_doc("get_claim", [A_CLAIM], 5),
        call_doc("chain_info", [], 6),
    ]
    r = post(net.url, json.dumps(body))
    assert r.status_code == 200
    docs = r.json()
    assert [d["id"] for d in docs] == ["a", "b", None, 3, 4, 5, 6]  # order kept, no notif.
    assert docs[0]["result"]["id"] == net.chain_id.hex()
    codes = [d["error"]["code"] if "error" in d else None for d in docs]
    assert codes == [None, -32601, -32600, -32602, -32600, -32001, None]
    assert_shape(docs[6]["result"], CHAIN_INFO)
    assert all(d["jsonrpc"] == "2.0" for d in docs)


def test_batch_empty(net: Net) -> None:
    doc = post(net.url, "[]").json()
    assert doc["id"] is None and doc["error"]["code"] == -32600, doc


def test_batch_limit(net: Net) -> None:
    at_limit = [call_doc("get_block", [0], i) for i in range(MAX_BATCH)]
    docs = post(net.url, json.dumps(at_limit)).json()
    assert [d["id"] for d in docs] == list(range(MAX_BATCH))
    over = [call_doc("get_block", [0], i) for i in range(MAX_BATCH + 1)]
    doc = post(net.url, json.dumps(over)).json()
    assert type(doc) is dict, "a batch over the limit gets one error, not an array"
    assert doc["id"] is None and doc["error"]["code"] == -32600
    assert "batch too large" in doc["error"]["message"]


def test_only_notifications_get_no_answer(net: Net) -> None:
    note = {"jsonrpc": "2.0", "method": "chain_info", "params": []}
    r = post(net.url, json.dumps(note))
    assert r.status_code == 204 and r.content == b""
    r = post(net.url, json.dumps([note, {**note, "method": "nope"}]))
    assert r.status_code == 204 and r.content == b""


def test_body_over_max_body_bytes(net: Net) -> None:
    pad = "x" * MAX_BODY
    body = json.dumps({**call_doc("chain_info", []), "pad": pad})
    r = post(net.url, body)
    assert r.status_code == 413
    # the limit is on the body: one just under it is served
    small = json.dumps({**call_doc("chain_info", []), "pad": pad[: MAX_BODY - 200]})
    assert len(small) <= MAX_BODY
    assert "result" in post(net.url, small).json()
    # a chunked body (no Content-Length) over the limit is refused too
    chunks = iter([body[: MAX_BODY // 2].encode(), body[MAX_BODY // 2:].encode()])
    r = httpx.post(net.url, content=chunks, headers={"Content-Type": "application/json"},
                   timeout=10)
    assert r.status_code == 413


def test_http_routes(net: Net) -> None:
    assert post(net.url, json.dumps(call_doc("chain_info")), "text/plain").status_code == 415
    assert httpx.get(net.url, timeout=10).status_code == 405
    assert httpx.get(net.base + "/nope", timeout=10).status_code == 404
    assert httpx.post(net.base + "/health", timeout=10).status_code == 405


def test_health(net: Net) -> None:
    r = httpx.get(net.base + "/health", timeout=10)
    assert r.status_code == 200
    doc = r.json()
    assert doc["status"] == "ok" and uint(doc["head_height"]) and uint(doc["final_height"])


def test_metrics(net: Net) -> None:
    head = net.head()["head_height"]
    r = httpx.get(net.base + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    values: dict[str, float] = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    assert values["muxer_head_height"] >= head
    assert values["muxer_final_height"] >= values["muxer_head_height"] - 2
    assert values["muxer_txs_admitted_total"] >= SETUP_TXS
    assert values["muxer_txs_included_total"] >= SETUP_TXS
    for name in ("muxer_mempool_txs", "muxer_mempool_bytes", "muxer_peers",
                 "muxer_tx_per_second", "muxer_block_apply_seconds_count"):
        assert name in values, name
    # LevelDB's own figures (the data dir was written before the daemon reopened it, so
    # the reopen left at least one table file)
    assert values["muxer_leveldb_memory_bytes"] > 0
    assert values["muxer_leveldb_table_files"] >= 1
    # the cycle collector: the daemon's start-up runs a full collection before it tunes
    # the thresholds (muxernode/daemon.py GC_THRESHOLDS), and it is counted
    assert values['muxer_gc_collections_total{generation="2"}'] >= 1
    for g in range(3):
        assert values[f'muxer_gc_pause_seconds_total{{generation="{g}"}}'] >= 0


# --- rejections: every reason of section 9, each from a real signed tx ----------------------


@dataclass(frozen=True)
class Bad:
    raw: bytes
    tx_id: bytes


def signed(tx: SignedTx) -> Bad:
    return Bad(tx.raw, tx.tx_id)


def resign(key: PrivateKey, chain_id: bytes, unsigned: list[Any]) -> Bad:
    """Sign an arbitrary unsigned_tx array (one build_tx would not make)."""
    body = encode(unsigned)
    return Bad(encode([unsigned, key.sign(TAG_TX + chain_id + body)]),
               hashlib.sha256(body).digest())


def _trailing_byte(n: Net) -> Bad:
    tx = n.tx("a1", [1, n.keys["a11"].address, 1, ""])
    return Bad(tx.raw + b"\x00", tx.tx_id)


def _tx_version_2(n: Net) -> Bad:
    tx = n.tx("a1", [1, n.keys["a11"].address, 1, ""])
    return resign(n.keys["a1"], n.chain_id, [2, *tx.unsigned()[1:]])


def _flipped_signature(n: Net) -> Bad:
    tx = n.tx("a1", [1, n.keys["a11"].address, 1, ""])
    sig = bytes([tx.signature[0] ^ 1]) + tx.signature[1:]
    return Bad(encode([tx.unsigned(), sig]), tx.tx_id)


def _other_chain(n: Net) -> Bad:
    tx = n.tx("a1", [1, n.keys["a11"].address, 1, ""])
    return resign(n.keys["a1"], hashlib.sha256(b"another chain").digest(), tx.unsigned())


def _all_balance(n: Net) -> Bad:
    balance = n.call("get_account", n.addr("a4"))["balance"]
    return signed(n.tx("a4", [1, n.keys["a1"].address, balance, ""]))  # + fee: too much


def _expiring(delta: int) -> Callable[[Net], Bad]:
    def build(n: Net) -> Bad:
        head = n.head()
        return signed(n.tx("a1", [1, n.keys["a11"].address, 1, ""], head=head,
                           expiration=head["head_time"] + delta))
    return build


def _wrong_ref_prefix(n: Net) -> Bad:
    head = n.head()
    num, prefix = tapos_of(head["head_height"], bytes.fromhex(head["head_id"]))
    return signed(n.tx("a1", [1, n.keys["a11"].address, 1, ""], head=head,
                       tapos=(num, prefix ^ 1)))


def _op(who: str, op: Callable[[Net], list[Any]], fee: int = BASE_FEE) -> Callable[[Net], Bad]:
    return lambda n: signed(n.tx(who, op(n), fee=fee))


def _claim_id(name: str) -> Callable[[Net], bytes]:
    return lambda n: n.txs[name].tx_id


CLAIM1, CLAIM2 = _claim_id("claim1"), _claim_id("claim2")
CLAIM_SLOW, CLAIM_BRIEF = _claim_id("claim_slow"), _claim_id("claim_brief")
RULES_WAIT_EQ_TTL = [10**6, 0, 300, 0, 3600, 3600, 10, 1000, 100]
RULES_PPM_1M = [10**6, 10**6, 300, 0, 0, 3600, 10, 1000, 100]

REJECTIONS: list[tuple[str, str, Callable[[Net], Bad]]] = [
    ("bad_encoding", "trailing-byte", _trailing_byte),
    ("bad_encoding", "tx-version-2", _tx_version_2),
    ("too_large", "memo-9000-bytes", _op("a1", lambda n: [1, n.keys["a11"].address, 1,
                                                           "x" * 9000])),
    ("bad_signature", "flipped-bit", _flipped_signature),
    ("bad_signature", "other-chain-id", _other_chain),
    ("expired", "expiration-at-head", _expiring(0)),
    ("expiration_too_far", "lifetime-plus-60", _expiring(LIFETIME + 60)),
    ("unknown_ref_block", "wrong-prefix", _wrong_ref_prefix),
    ("duplicate", "setup-transfer-again", lambda n: signed(n.txs["transfer"])),
    ("fee_too_low", "base-fee-minus-1",
     _op("a1", lambda n: [1, n.keys["a11"].address, 1, ""], fee=BASE_FEE - 1)),
    ("insufficient_balance", "amount-plus-fee", _all_balance),
    ("insufficient_balance", "no-account", _op("nobody", lambda n: [3, "fast", "x"])),
    ("unknown_society", "join", _op("a2", lambda n: [3, "nosuch", "a2-id"])),
    ("society_exists", "create-fast", _op("a1", lambda n: op_create("fast", R_FAST))),
    ("bad_society_id", "upper-case", _op("a2", lambda n: [3, "Fast", "a2-id"])),
    ("bad_society_id", "too-short", _op("a1", lambda n: op_create("ab", R_FAST))),
    ("bad_rules", "waiting-equals-ttl",
     _op("a1", lambda n: op_create("badrules", RULES_WAIT_EQ_TTL))),
    ("bad_rules", "decay-ppm-1000000", _op("a1", lambda n: op_create("badppm", RULES_PPM_1M))),
    ("not_member", "pledge", _op("a4", lambda n: [4, "slow", 1000])),
    ("already_member", "join-again", _op("a2", lambda n: [3, "fast", "a2-id"])),
    ("observation_period", "claim", _op("a8", lambda n: [5, "watch", 100, 10, "s", "",
                                                          bytes(32)])),
    ("open_claim_exists", "second-claim", _op("a2", lambda n: [5, "fast", 100, 10, "s", "",
                                                                bytes(32)])),
    ("insufficient_karma", "claim", _op("a3", lambda n: [5, "fast", 100, 30_501, "s", "",
                                                          bytes(32)])),
    ("unknown_claim", "vote", _op("a3", lambda n: [6, bytes.fromhex("ef" * 32), 1])),
    ("unknown_claim", "give", _op("a3", lambda n: [7, bytes.fromhex("ef" * 32), 100])),
    ("claim_closed", "vote", _op("a10", lambda n: [6, CLAIM_BRIEF(n), 1])),
    ("claim_closed", "give", _op("a10", lambda n: [7, CLAIM_BRIEF(n), 100])),
    ("self_vote", "vote", _op("a2", lambda n: [6, CLAIM1(n), 1])),
    ("self_vote", "give", _op("a2", lambda n: [7, CLAIM1(n), 100])),
    ("no_karma", "vote", _op("a4", lambda n: [6, CLAIM1(n), 1])),
    ("waiting_period", "give", _op("a7", lambda n: [7, CLAIM_SLOW(n), 100])),
    ("not_approved", "give", _op("a3", lambda n: [7, CLAIM2(n), 100])),
    ("insufficient_escrow", "give", _op("a5", lambda n: [7, CLAIM1(n), 10_001])),
    ("over_limit", "give", _op("a3", lambda n: [7, CLAIM1(n), 39_001])),
    ("unknown_witness", "vote-witness", _op("a1", lambda n: [9, [bytes(range(20))]])),
    ("bad_op", "unknown-opcode", _op("a1", lambda n: [99, 1])),
    ("bad_op", "pledge-below-min-pledge", _op("a2", lambda n: [4, "fast", 99])),
    ("bad_op", "transfer-zero", _op("a1", lambda n: [1, n.keys["a11"].address, 0, ""])),
    ("bad_op", "stance-2", _op("a3", lambda n: [6, CLAIM1(n), 2])),
]


def snapshot(net: Net) -> dict[str, Any]:
    """All the state the setup made, as the RPC reports it (minus time-decayed values)."""
    calls: list[tuple[str, list[Any]]] = []
    for name in [*net.keys, "w1"]:
        address = net.witness.address_text if name == "w1" else net.addr(name)
        calls.append(("get_account", [address]))
    for soc, members in MEMBERS.items():
        calls += [("get_society", [soc]), ("list_claims", [soc])]
        calls += [("get_member", [soc, net.addr(m)]) for m in members]
    calls += [("get_claim", [net.txs[c].tx_id.hex()]) for c in EVIDENCE]
    calls.append(("list_witnesses", []))
    out: dict[str, Any] = {}
    for start in range(0, len(calls), MAX_BATCH):
        part = calls[start:start + MAX_BATCH]
        for (method, params), result in zip(part, batch(net, part), strict=True):
            if method in ("get_society", "get_member") and params[0] == "decay":
                result.pop("total_karma", None)
                result.pop("karma", None)
            if method == "list_witnesses":  # production records move with every block
                for w in result:
                    w.pop("last_slot", None)
                    w.pop("missed", None)
            out[f"{method}{params}"] = result
    return out


@pytest.fixture(scope="module")
def before_rejections(net: Net) -> dict[str, Any]:
    return snapshot(net)


def test_rejection_cases_cover_section_9() -> None:
    reasons = {reason for reason, _name, _build in REJECTIONS}
    assert reasons <= set(REASONS)
    # mempool_full is test_mempool_full below; those of section 11 are in
    # test_rpc_node_v2.py; every other reason has a case here
    assert set(REASONS) - reasons == {"mempool_full"} | V2_REASONS


@pytest.mark.parametrize(("reason", "build"), [(r, b) for r, _n, b in REJECTIONS],
                         ids=[f"{r}-{n}" for r, n, _b in REJECTIONS])
def test_rejected(net: Net, before_rejections: dict[str, Any], reason: str,
                  build: Callable[[Net], Bad]) -> None:
    bad = build(net)
    with pytest.raises(RpcFailure) as info:
        net.call("submit_tx", bad.raw.hex())
    err = info.value.error
    assert err["code"] == -32000, err
    assert err.get("data") == {"reason": reason}, err
    assert type(err["message"]) is str and err["message"], err
    if reason != "duplicate":  # the original of a duplicate is on the chain, of course
        assert net.call("get_tx", bad.tx_id.hex()) == {"tx_id": bad.tx_id.hex(),
                                                        "status": "unknown"}


def test_rejections_changed_nothing(net: Net, before_rejections: dict[str, Any]) -> None:
    head = net.head()["head_height"]
    net.wait_height(head + 2)  # blocks were made since: nothing rejected got into them
    after = snapshot(net)
    changed = {k: (v, after[k]) for k, v in before_rejections.items() if after[k] != v}
    assert not changed, changed
    tx = net.call("get_tx", net.txs["transfer"].tx_id.hex())
    assert tx["status"] == "final"  # the duplicate did not disturb the original
    metrics = httpx.get(net.base + "/metrics", timeout=10).text
    assert "\nmuxer_mempool_txs 0.0\n" in metrics


# --- tests that change state ------------------------------------------------------------------


def test_get_tx_pending_included_final(net: Net) -> None:
    """A tx is pending in the mempool, included in the head block, then final once the next
    block makes its block final (one witness: the head's parent is final)."""
    for attempt in range(3):
        tx = net.tx("a14", [1, net.keys["a11"].address, 100 + attempt, "status"])
        tx_id = tx.tx_id.hex()
        submitted, first = batch(net, [("submit_tx", [tx.raw.hex()]), ("get_tx", [tx_id])])
        assert submitted == {"tx_id": tx_id}
        assert_shape(first, TX_KNOWN, where="get_tx(pending)")
        # included at once would mean a block was made between the two calls: try again
        if first["status"] != "pending":
            continue
        assert first == {"tx_id": tx_id, "status": "pending", "sender": net.addr("a14"),
                         "fee": BASE_FEE, "op": {"type": "transfer", "to": net.addr("a11"),
                                                 "amount": 100 + attempt, "memo": "status"}}
        # an idempotent resubmission while pending
        assert net.call("submit_tx", tx.raw.hex()) == {"tx_id": tx_id}
        seen: list[tuple[str, int | None, int, int]] = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            got, info = batch(net, [("get_tx", [tx_id]), ("chain_info", [])])
            seen.append((got["status"], got.get("height"), info["head_height"],
                         info["final_height"]))
            if got["status"] == "final":
                break
            time.sleep(0.02)
        statuses = [s for s, *_ in seen]
        assert statuses[-1] == "final", seen
        if "included" not in statuses:
            continue  # the block and its successor both came between two polls: retry
        assert statuses == sorted(statuses, key=["pending", "included", "final"].index), seen
        for status, height, head, final in seen:
            if status == "included":
                assert height is not None and final < height <= head
            elif status == "final":
                assert height is not None and height <= final
        height = seen[-1][1]
        assert height is not None
        block = net.call("get_block", height)
        assert tx_id in block["tx_ids"] and block["final"] is True
        final = net.call("get_tx", tx_id)
        assert_shape(final, TX_KNOWN, {"height": uint}, where="get_tx(final)")
        assert final == {**first, "status": "final", "height": height}
        return
    pytest.fail("never saw both pending and included in 3 attempts")


def test_submit_txs_items_in_order(net: Net) -> None:
    good = net.tx("a14", [1, net.keys["a11"].address, 7, "batch"])
    low_fee = net.tx("a14", [1, net.keys["a11"].address, 8, "batch"], fee=1)
    other = net.tx("a14", [1, net.keys["a11"].address, 9, "batch"])
    answers = net.call("submit_txs", [good.raw.hex(), low_fee.raw.hex(), good.raw.hex(),
                                      other.raw.hex(), (good.raw + b"\x01").hex()])
    assert type(answers) is list and len(answers) == 5
    assert answers[0] == answers[2] == {"tx_id": good.tx_id.hex()}
    assert answers[3] == {"tx_id": other.tx_id.hex()}
    for i, reason in ((1, "fee_too_low"), (4, "bad_encoding")):
        assert set(answers[i]) == {"error"}, answers[i]
        err = answers[i]["error"]
        assert err["code"] == -32000 and err["data"] == {"reason": reason}
        assert type(err["message"]) is str
    assert net.call("submit_txs", []) == []
    net.wait_included([good.tx_id.hex(), other.tx_id.hex()])
    assert net.call("get_tx", low_fee.tx_id.hex())["status"] == "unknown"


def test_notification_runs_without_answer(net: Net) -> None:
    tx = net.tx("a14", [1, net.keys["a11"].address, 11, "notified"])
    note = {"jsonrpc": "2.0", "method": "submit_tx", "params": [tx.raw.hex()]}
    r = post(net.url, json.dumps([note, call_doc("get_tx", [tx.tx_id.hex()], 1)]))
    (answer,) = r.json()  # the notification ran first, in its place, and has no entry
    assert answer["id"] == 1 and answer["result"]["status"] in ("pending", "included")
    net.wait_included([tx.tx_id.hex()])


def test_mempool_full(net: Net) -> None:
    """[limits] mempool_txs = 40: the 41st tx in one submission is refused, mempool_full."""
    head = net.head()
    net.wait_height(head["head_height"] + 1)  # earlier txs have left the mempool
    head = net.head()
    before = net.call("get_account", net.addr("a13"))["balance"]
    txs = [net.tx("a13", [1, net.keys["a11"].address, 1 + i, ""], head=head)
           for i in range(MEMPOOL_TXS + 5)]
    answers = net.call("submit_txs", [tx.raw.hex() for tx in txs])
    ok = [a for a in answers if "tx_id" in a]
    assert answers[: len(ok)] == [{"tx_id": tx.tx_id.hex()} for tx in txs[: len(ok)]]
    assert len(ok) == MEMPOOL_TXS
    for a in answers[len(ok):]:
        assert a["error"]["code"] == -32000 and a["error"]["data"] == {"reason": "mempool_full"}
    admitted = txs[: len(ok)]
    net.wait_included([tx.tx_id.hex() for tx in admitted])
    after = net.call("get_account", net.addr("a13"))["balance"]
    # exactly the admitted ones moved money: the refused ones changed nothing
    assert before - after == sum(1 + i + BASE_FEE for i in range(len(ok)))
    for tx in txs[len(ok):]:
        assert net.call("get_tx", tx.tx_id.hex())["status"] == "unknown"
