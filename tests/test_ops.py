"""The nine operations (protocol section 3) and society rules (section 4.1): static checks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import decode, encode
from consensus.errors import Rejected
from muxernode.ops import (
    DEFAULT_RULES,
    OP_NAMES,
    RULE_NAMES,
    AmendClaim,
    CharityRequest,
    Claim,
    Comment,
    CreateAsset,
    CreateSociety,
    Give,
    IssueAsset,
    Join,
    Op,
    Pledge,
    RegisterWitness,
    Rules,
    SetProxy,
    StandingPledge,
    Transfer,
    TransferAsset,
    Vote,
    VoteWitness,
    WithdrawClaim,
    decode_op,
    encode_op,
    op_to_json,
)

A20 = bytes(range(20))
B20 = bytes(range(100, 120))
ID32 = bytes(range(32))
KEY32 = bytes(range(32, 64))
RULES = [86400, 3844, 300, 7776000, 259200, 2592000, 10, 10000000, 100000]
MAX_AMOUNT = 2**63 - 1

VALID: dict[str, list[Any]] = {
    "transfer": [1, A20, 500, "rent"],
    "create_society": [2, "farmers-1", "Farmers", "Crop failure", RULES],
    "join": [3, "farmers-1", "salted-hash"],
    "pledge": [4, "farmers-1", 100000],
    "claim": [5, "farmers-1", 700, 50, "hail", "the storm of May", ID32],
    "vote": [6, ID32, -1],
    "give": [7, ID32, 300],
    "register_witness": [8, KEY32, "https://w.example"],
    "vote_witness": [9, [A20, B20]],
    # version 2 (section 11)
    "create_asset": [10, "BTC.IOU", 8, 21 * 10**14, "bitcoin held by the gateway"],
    "issue_asset": [11, "BTC.IOU", A20, 5 * 10**8, "deposit 1"],
    "transfer_asset": [12, "BTC.IOU", B20, 10**8, ""],
    "standing_pledge": [13, "farmers-1", 100000, 2592000],
    "set_proxy": [14, "farmers-1", A20],
    "charity_request": [15, "farmers-1", 5000, "roof", "after the storm", ID32],
    "withdraw_claim": [16, ID32],
    "amend_claim": [17, ID32, "the receipts", KEY32],
    "comment": [18, ID32, "Which hospital?"],
}


def reason(obj: Any) -> str:
    with pytest.raises(Rejected) as exc:
        decode_op(obj)
    return exc.value.reason


# --- the nine ops: decode, encode, json ----------------------------------------------------


def test_opcodes_and_names() -> None:
    assert {i + 1: name for i, name in enumerate(VALID)} == OP_NAMES
    opcodes = [Transfer.OPCODE, CreateSociety.OPCODE, Join.OPCODE, Pledge.OPCODE, Claim.OPCODE,
               Vote.OPCODE, Give.OPCODE, RegisterWitness.OPCODE, VoteWitness.OPCODE,
               CreateAsset.OPCODE, IssueAsset.OPCODE, TransferAsset.OPCODE,
               StandingPledge.OPCODE, SetProxy.OPCODE, CharityRequest.OPCODE,
               WithdrawClaim.OPCODE, AmendClaim.OPCODE, Comment.OPCODE]
    assert opcodes == list(range(1, 19))


@pytest.mark.parametrize("name", list(VALID))
def test_round_trip(name: str) -> None:
    arr = VALID[name]
    op = decode_op(arr)
    assert OP_NAMES[op.OPCODE] == name
    assert encode_op(op) == arr
    assert decode_op(decode(encode(encode_op(op)))) == op


def test_typed_values() -> None:
    assert decode_op(VALID["transfer"]) == Transfer(A20, 500, "rent")
    assert decode_op(VALID["create_society"]) == CreateSociety(
        "farmers-1", "Farmers", "Crop failure", DEFAULT_RULES
    )
    assert decode_op(VALID["join"]) == Join("farmers-1", "salted-hash")
    assert decode_op(VALID["pledge"]) == Pledge("farmers-1", 100000)
    assert decode_op(VALID["claim"]) == Claim(
        "farmers-1", 700, 50, "hail", "the storm of May", ID32
    )
    assert decode_op(VALID["vote"]) == Vote(ID32, -1)
    assert decode_op(VALID["give"]) == Give(ID32, 300)
    assert decode_op(VALID["register_witness"]) == RegisterWitness(KEY32, "https://w.example")
    assert decode_op(VALID["vote_witness"]) == VoteWitness((A20, B20))


MX_A = "mx" + A20.hex()
MX_B = "mx" + B20.hex()

JSON: dict[str, dict[str, Any]] = {
    "transfer": {"type": "transfer", "to": MX_A, "amount": 500, "memo": "rent"},
    "create_society": {
        "type": "create_society",
        "society": "farmers-1",
        "name": "Farmers",
        "purpose": "Crop failure",
        "rules": {
            "decay_period_s": 86400,
            "decay_ppm": 3844,
            "approval_bp": 300,
            "observation_s": 7776000,
            "waiting_s": 259200,
            "claim_ttl_s": 2592000,
            "benefit_ratio": 10,
            "claim_bond": 10000000,
            "min_pledge": 100000,
        },
    },
    "join": {"type": "join", "society": "farmers-1", "identity": "salted-hash"},
    "pledge": {"type": "pledge", "society": "farmers-1", "amount": 100000},
    "claim": {
        "type": "claim",
        "society": "farmers-1",
        "amount": 700,
        "karma": 50,
        "subject": "hail",
        "details": "the storm of May",
        "evidence": ID32.hex(),
    },
    "vote": {"type": "vote", "claim_id": ID32.hex(), "stance": -1},
    "give": {"type": "give", "claim_id": ID32.hex(), "amount": 300},
    "register_witness": {
        "type": "register_witness",
        "signing_key": KEY32.hex(),
        "url": "https://w.example",
    },
    "vote_witness": {"type": "vote_witness", "witnesses": [MX_A, MX_B]},
    "create_asset": {"type": "create_asset", "symbol": "BTC.IOU", "precision": 8,
                     "max_supply": 21 * 10**14, "description": "bitcoin held by the gateway"},
    "issue_asset": {"type": "issue_asset", "symbol": "BTC.IOU", "to": MX_A,
                    "amount": 5 * 10**8, "memo": "deposit 1"},
    "transfer_asset": {"type": "transfer_asset", "symbol": "BTC.IOU", "to": MX_B,
                       "amount": 10**8, "memo": ""},
    "standing_pledge": {"type": "standing_pledge", "society": "farmers-1", "amount": 100000,
                        "interval_s": 2592000},
    "set_proxy": {"type": "set_proxy", "society": "farmers-1", "proxy": MX_A},
    "charity_request": {"type": "charity_request", "society": "farmers-1", "amount": 5000,
                        "subject": "roof", "details": "after the storm",
                        "evidence": ID32.hex()},
    "withdraw_claim": {"type": "withdraw_claim", "claim_id": ID32.hex()},
    "amend_claim": {"type": "amend_claim", "claim_id": ID32.hex(), "details": "the receipts",
                    "evidence": KEY32.hex()},
    "comment": {"type": "comment", "claim_id": ID32.hex(), "text": "Which hospital?"},
}


@pytest.mark.parametrize("name", list(VALID))
def test_op_to_json(name: str) -> None:
    out = op_to_json(decode_op(VALID[name]))
    assert out == JSON[name]
    assert list(out) == list(JSON[name])  # field order of section 3
    assert json.loads(json.dumps(out)) == out  # plain JSON types only


def test_rules_names_and_defaults() -> None:
    assert tuple(JSON["create_society"]["rules"]) == RULE_NAMES
    assert DEFAULT_RULES.as_list() == RULES
    assert Rules.from_obj(RULES) == DEFAULT_RULES
    assert DEFAULT_RULES.as_json() == JSON["create_society"]["rules"]


# --- envelope-level failures: bad_op -------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [None, 1, "transfer", b"\x01", [], ["1"], [b"\x01"], [True, A20, 1, ""], [1.0], [None],
     (1, A20, 500, "x")],
    ids=repr,
)
def test_not_an_op(obj: Any) -> None:
    assert reason(obj) == "bad_op"


@pytest.mark.parametrize("code", [0, 10, 11, -1, 255, 2**63])
def test_unknown_opcode(code: int) -> None:
    assert reason([code, A20, 1, ""]) == "bad_op"


@pytest.mark.parametrize("name", list(VALID))
def test_wrong_arity(name: str) -> None:
    arr = VALID[name]
    assert reason(arr[:-1]) == "bad_op"
    assert reason([*arr, 0]) == "bad_op"
    assert reason(arr[:1]) == "bad_op"


# --- field types and amounts ---------------------------------------------------------------


def with_(name: str, i: int, value: Any) -> list[Any]:
    arr = list(VALID[name])
    arr[i] = value
    return arr


AMOUNT_FIELDS = [("transfer", 2), ("pledge", 2), ("claim", 2), ("claim", 3), ("give", 2)]


@pytest.mark.parametrize(("name", "i"), AMOUNT_FIELDS)
@pytest.mark.parametrize(
    "bad", [0, -1, MAX_AMOUNT + 1, True, 1.0, "5", b"\x05", None], ids=repr
)
def test_amount_bounds(name: str, i: int, bad: Any) -> None:
    assert reason(with_(name, i, bad)) == "bad_op"


@pytest.mark.parametrize(("name", "i"), AMOUNT_FIELDS)
@pytest.mark.parametrize("good", [1, MAX_AMOUNT])
def test_amount_limits_accepted(name: str, i: int, good: int) -> None:
    arr = with_(name, i, good)
    assert encode_op(decode_op(arr)) == arr


BIN_FIELDS = [
    ("transfer", 1, 20),
    ("claim", 6, 32),
    ("vote", 1, 32),
    ("give", 1, 32),
    ("register_witness", 1, 32),
]


@pytest.mark.parametrize(("name", "i", "size"), BIN_FIELDS)
def test_bin_fields(name: str, i: int, size: int) -> None:
    for bad in (bytes(size - 1), bytes(size + 1), b"", "a" * size, bytearray(size), None,
                list(range(size))):
        assert reason(with_(name, i, bad)) == "bad_op", (name, bad)
    ok = with_(name, i, b"\xff" * size)
    assert encode_op(decode_op(ok)) == ok


# --- text limits, counted in UTF-8 bytes ---------------------------------------------------

TEXT_FIELDS = [
    ("transfer", 3, 256),
    ("create_society", 2, 64),
    ("create_society", 3, 1024),
    ("join", 2, 256),
    ("claim", 4, 80),
    ("claim", 5, 4096),
    ("register_witness", 2, 256),
]


def texts_of_bytes(n: int) -> list[str]:
    """Strings of exactly n UTF-8 bytes made of 1-, 2-, 3- and 4-byte characters."""
    out = ["a" * n, "é" * (n // 2) + "a" * (n % 2), "€" * (n // 3) + "a" * (n % 3),
           "😀" * (n // 4) + "a" * (n % 4)]
    for s in out:
        assert len(s.encode()) == n
    return out


@pytest.mark.parametrize(("name", "i", "limit"), TEXT_FIELDS)
def test_text_at_limit_accepted(name: str, i: int, limit: int) -> None:
    for text in [*texts_of_bytes(limit), "", "é"]:
        arr = with_(name, i, text)
        assert encode_op(decode_op(arr)) == arr


@pytest.mark.parametrize(("name", "i", "limit"), TEXT_FIELDS)
def test_text_over_limit_rejected(name: str, i: int, limit: int) -> None:
    for text in texts_of_bytes(limit + 1):
        assert reason(with_(name, i, text)) == "bad_op", (name, len(text))
    # fewer characters than the limit, more bytes: the byte count decides
    sneaky = "é" * (limit // 2 + 1)
    assert len(sneaky) <= limit < len(sneaky.encode())
    assert reason(with_(name, i, sneaky)) == "bad_op"
    assert reason(with_(name, i, "😀" * (limit // 4 + 1))) == "bad_op"
    # one multi-byte char pushed over: limit - 1 bytes of ascii plus a 2-byte char
    assert reason(with_(name, i, "a" * (limit - 1) + "é")) == "bad_op"


@pytest.mark.parametrize(("name", "i", "limit"), TEXT_FIELDS)
def test_text_type(name: str, i: int, limit: int) -> None:
    for bad in (b"text", None, 5, ["a"]):
        assert reason(with_(name, i, bad)) == "bad_op"
    # a lone surrogate is a Python str but not UTF-8 text
    assert reason(with_(name, i, "\ud800")) == "bad_op"


# --- society ids ---------------------------------------------------------------------------

SOCIETY_FIELDS = [("create_society", 1), ("join", 1), ("pledge", 1), ("claim", 1)]
GOOD_IDS = ["abc", "a-b", "---", "000", "a" * 32, "z9-" * 10 + "ab",
            "0123456789abcdefghijklmnopqrstuv"]
BAD_IDS: list[Any] = [
    "", "ab", "a" * 33, "Abc", "ABC", "ab_c", "ab c", "ab.c", "abé", "ab\n", "abc\n", "\nabc",
    "٣٣٣",  # Arabic-Indic digits are not 0-9
    "\uff41\uff42\uff43",  # fullwidth letters
    b"abc", 123, None, ["abc"],
]


@pytest.mark.parametrize(("name", "i"), SOCIETY_FIELDS)
def test_society_id_accepted(name: str, i: int) -> None:
    for sid in GOOD_IDS:
        arr = with_(name, i, sid)
        assert encode_op(decode_op(arr)) == arr


@pytest.mark.parametrize(("name", "i"), SOCIETY_FIELDS)
@pytest.mark.parametrize("sid", BAD_IDS, ids=repr)
def test_society_id_rejected(name: str, i: int, sid: Any) -> None:
    assert reason(with_(name, i, sid)) == "bad_society_id"


# --- rules (4.1) ---------------------------------------------------------------------------


def rules_with(**kw: int) -> list[int]:
    r = dict(zip(RULE_NAMES, RULES, strict=True))
    r.update(kw)
    return [r[n] for n in RULE_NAMES]


GOOD_RULES = [
    rules_with(decay_period_s=1),
    rules_with(decay_ppm=0),
    rules_with(decay_ppm=999_999),
    rules_with(approval_bp=1),
    rules_with(approval_bp=10_000),
    rules_with(observation_s=0),
    rules_with(observation_s=MAX_AMOUNT),
    rules_with(waiting_s=0, claim_ttl_s=1),
    rules_with(waiting_s=31_535_999, claim_ttl_s=31_536_000),
    rules_with(benefit_ratio=1),
    rules_with(benefit_ratio=1000),
    rules_with(claim_bond=0),
    rules_with(min_pledge=1),
    rules_with(min_pledge=MAX_AMOUNT),
]
BAD_RULES: list[Any] = [
    rules_with(decay_period_s=0),
    rules_with(decay_ppm=1_000_000),
    rules_with(approval_bp=0),
    rules_with(approval_bp=10_001),
    rules_with(waiting_s=100, claim_ttl_s=100),
    rules_with(waiting_s=101, claim_ttl_s=100),
    rules_with(waiting_s=0, claim_ttl_s=0),
    rules_with(claim_ttl_s=31_536_001),
    rules_with(benefit_ratio=0),
    rules_with(benefit_ratio=1001),
    rules_with(min_pledge=0),
    rules_with(decay_ppm=-1),
    rules_with(claim_bond=-1),
    rules_with(observation_s=MAX_AMOUNT + 1),
    RULES[:8],
    [*RULES, 1],
    [],
    [*RULES[:8], True],
    [*RULES[:8], 1.0],
    [*RULES[:8], "1"],
    [*RULES[:8], None],
    {"min_pledge": 1},
    None,
    5,
]


@pytest.mark.parametrize("rules", GOOD_RULES, ids=repr)
def test_rules_accepted(rules: list[int]) -> None:
    arr = with_("create_society", 4, rules)
    op = decode_op(arr)
    assert isinstance(op, CreateSociety)
    assert op.rules.as_list() == rules
    assert encode_op(op) == arr


@pytest.mark.parametrize("rules", BAD_RULES, ids=repr)
def test_rules_rejected(rules: Any) -> None:
    assert reason(with_("create_society", 4, rules)) == "bad_rules"


# --- vote stance ---------------------------------------------------------------------------


@pytest.mark.parametrize("stance", [-1, 0, 1])
def test_stance_accepted(stance: int) -> None:
    op = decode_op([6, ID32, stance])
    assert op == Vote(ID32, stance)
    assert op_to_json(op)["stance"] == stance


@pytest.mark.parametrize("stance", [2, -2, 100, True, False, 1.0, "1", None, b"\x01"], ids=repr)
def test_stance_rejected(stance: Any) -> None:
    assert reason([6, ID32, stance]) == "bad_op"


# --- vote_witness --------------------------------------------------------------------------


def addrs(n: int) -> list[bytes]:
    return [bytes([i]) * 20 for i in range(n)]


@pytest.mark.parametrize("n", [0, 1, 29, 30])
def test_vote_witness_accepted(n: int) -> None:
    op = decode_op([9, addrs(n)])
    assert op == VoteWitness(tuple(addrs(n)))
    assert encode_op(op) == [9, addrs(n)]
    assert op_to_json(op)["witnesses"] == ["mx" + a.hex() for a in addrs(n)]


@pytest.mark.parametrize(
    "witnesses",
    [
        addrs(31),
        addrs(40),
        [A20, A20],
        [*addrs(29), bytes(20)],  # 30 items, one repeated (addrs(29)[0] == bytes(20))
        [A20, bytes(19)],
        [A20, bytes(21)],
        [A20, "mx" + A20.hex()],
        [None],
        A20,
        "mx" + A20.hex(),
        None,
    ],
    ids=lambda w: f"{type(w).__name__}-{len(w) if hasattr(w, '__len__') else ''}",
)
def test_vote_witness_rejected(witnesses: Any) -> None:
    assert reason([9, witnesses]) == "bad_op"


# --- properties ----------------------------------------------------------------------------

amounts = st.integers(1, MAX_AMOUNT)
society_ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=3, max_size=32)


def text_upto(limit: int) -> st.SearchStrategy[str]:
    return st.text(max_size=limit).filter(lambda s: len(s.encode()) <= limit)


def bins(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


@st.composite
def rules_strategy(draw: st.DrawFn) -> Rules:
    ttl = draw(st.integers(1, 31_536_000))
    return Rules(
        draw(st.integers(1, MAX_AMOUNT)),
        draw(st.integers(0, 999_999)),
        draw(st.integers(1, 10_000)),
        draw(st.integers(0, MAX_AMOUNT)),
        draw(st.integers(0, ttl - 1)),
        ttl,
        draw(st.integers(1, 1000)),
        draw(st.integers(0, MAX_AMOUNT)),
        draw(st.integers(1, MAX_AMOUNT)),
    )


any_op: st.SearchStrategy[Op] = st.one_of(
    st.builds(Transfer, bins(20), amounts, text_upto(256)),
    st.builds(CreateSociety, society_ids, text_upto(64), text_upto(1024), rules_strategy()),
    st.builds(Join, society_ids, text_upto(256)),
    st.builds(Pledge, society_ids, amounts),
    st.builds(Claim, society_ids, amounts, amounts, text_upto(80), text_upto(4096), bins(32)),
    st.builds(Vote, bins(32), st.sampled_from([-1, 0, 1])),
    st.builds(Give, bins(32), amounts),
    st.builds(RegisterWitness, bins(32), text_upto(256)),
    st.builds(
        VoteWitness,
        st.lists(bins(20), max_size=30, unique=True).map(tuple),
    ),
)


@settings(max_examples=400, deadline=None)
@given(any_op)
def test_property_op_round_trip(op: Op) -> None:
    arr = encode_op(op)
    assert arr[0] == op.OPCODE
    assert decode_op(arr) == op
    raw = encode(arr)
    assert decode(raw) == arr
    assert decode_op(decode(raw)) == op
    assert encode(encode_op(decode_op(decode(raw)))) == raw
    out = op_to_json(op)
    assert out["type"] == OP_NAMES[op.OPCODE]
    assert json.loads(json.dumps(out)) == out
