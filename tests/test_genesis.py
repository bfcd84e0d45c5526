"""Genesis files and the chain id (protocol section 2)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest

from consensus.crypto import PrivateKey
from consensus.genesis import (
    DEFAULT_PARAMS,
    GenesisError,
    Params,
    compute_chain_id,
    load_genesis,
    parse_genesis,
)

W1 = PrivateKey(bytes([1]) * 32)
W2 = PrivateKey(bytes([2]) * 32)
ALICE = PrivateKey(bytes([10]) * 32)
BOB = PrivateKey(bytes([11]) * 32)

DOC: dict[str, Any] = {
    "chain_name": "muxer-test",
    "genesis_time": 1767225600,
    "params": {
        "block_interval_s": 1,
        "active_witnesses": 4,
        "maintenance_interval_s": 60,
        "max_block_bytes": 2097152,
        "max_tx_bytes": 8192,
        "max_tx_lifetime_s": 3600,
        "base_fee": 10,
    },
    "witnesses": [
        {"name": "w1", "address": W1.address_text, "signing_key": W1.public_key.hex()},
        {"name": "w2", "address": W2.address_text, "signing_key": W2.public_key.hex()},
    ],
    "balances": [
        {"address": ALICE.address_text, "amount": 100000000000},
        {"address": BOB.address_text, "amount": 5},
    ],
}


def doc(**changes: Any) -> dict[str, Any]:
    d = copy.deepcopy(DOC)
    for k, v in changes.items():
        if v is ...:
            del d[k]
        else:
            d[k] = v
    return d


def direct_chain_id(d: dict[str, Any], params: list[int]) -> bytes:
    """Section 2, spelled out with msgpack and hashlib only."""
    obj = [
        1,
        d["chain_name"],
        d["genesis_time"],
        params,
        [[bytes.fromhex(w["address"][2:]), bytes.fromhex(w["signing_key"])]
         for w in d["witnesses"]],
        [[bytes.fromhex(b["address"][2:]), b["amount"]] for b in d.get("balances", [])],
    ]
    return hashlib.sha256(msgpack.packb(obj, use_bin_type=True)).digest()


def test_chain_id_matches_protocol_text() -> None:
    g = parse_genesis(DOC)
    params = [1, 4, 60, 2097152, 8192, 3600, 10]
    assert g.chain_id == direct_chain_id(DOC, params)
    assert g.chain_id == compute_chain_id(g.chain_name, g.genesis_time, g.params, g.witnesses,
                                          g.balances)
    assert g.chain_name == "muxer-test"
    assert g.genesis_time == 1767225600
    assert g.params.as_list() == params
    assert [w.name for w in g.witnesses] == ["w1", "w2"]
    assert [w.address for w in g.witnesses] == [W1.address, W2.address]
    assert [w.signing_key for w in g.witnesses] == [W1.public_key, W2.public_key]
    assert g.balances == ((ALICE.address, 100000000000), (BOB.address, 5))
    assert g.supply == 100000000005


def test_chain_id_depends_on_order_and_every_field() -> None:
    base = parse_genesis(DOC).chain_id
    variants = [
        doc(chain_name="muxer-test2"),
        doc(genesis_time=1767225601),
        doc(params={**DOC["params"], "base_fee": 11}),
        doc(witnesses=DOC["witnesses"][::-1]),
        doc(balances=DOC["balances"][::-1]),
        doc(balances=DOC["balances"][:1]),
    ]
    ids = {base} | {parse_genesis(v).chain_id for v in variants}
    assert len(ids) == 1 + len(variants)
    # the witness name is not part of the chain id
    renamed = doc()
    renamed["witnesses"][0]["name"] = "another name"
    assert parse_genesis(renamed).chain_id == base


def test_defaults_when_params_omitted() -> None:
    d = doc(params=...)
    g = parse_genesis(d)
    assert g.params == Params() == DEFAULT_PARAMS
    assert g.params.block_interval_s == 3
    assert g.params.active_witnesses == 21
    assert g.params.maintenance_interval_s == 3600
    assert g.params.base_fee == 1000
    assert g.params.max_block_bytes == 2097152
    assert g.params.max_tx_bytes == 8192
    assert g.params.max_tx_lifetime_s == 3600
    assert g.chain_id == direct_chain_id(d, [3, 21, 3600, 2097152, 8192, 3600, 1000])
    assert parse_genesis(doc(params={})).chain_id == g.chain_id


def test_partial_params_take_defaults_for_the_rest() -> None:
    g = parse_genesis(doc(params={"base_fee": 7, "block_interval_s": 2}))
    assert g.params.as_list() == [2, 21, 3600, 2097152, 8192, 3600, 7]


def test_balances_optional_and_to_json_round_trip() -> None:
    g = parse_genesis(doc(balances=...))
    assert g.balances == ()
    assert g.supply == 0
    full = parse_genesis(DOC)
    again = parse_genesis(json.loads(json.dumps(full.to_json())))
    assert again == full
    assert full.to_json()["params"] == DOC["params"]


def test_default_witness_names() -> None:
    d = doc()
    for w in d["witnesses"]:
        del w["name"]
    assert [w.name for w in parse_genesis(d).witnesses] == ["w1", "w2"]


def test_duplicate_balance_addresses_are_kept_in_order() -> None:
    d = doc(balances=[DOC["balances"][1], DOC["balances"][1]])
    g = parse_genesis(d)
    assert g.balances == ((BOB.address, 5), (BOB.address, 5))
    assert g.chain_id == direct_chain_id(d, parse_genesis(DOC).params.as_list())


def test_max_supply_boundary() -> None:
    cap = 2**63 - 1
    ok = doc(balances=[{"address": ALICE.address_text, "amount": cap}])
    assert parse_genesis(ok).supply == cap
    over = doc(balances=[{"address": ALICE.address_text, "amount": cap},
                         {"address": BOB.address_text, "amount": 1}])
    with pytest.raises(GenesisError, match="supply exceeds"):
        parse_genesis(over)


# --- malformed genesis files ---------------------------------------------------------------

W0 = DOC["witnesses"][0]
B0 = DOC["balances"][0]


def witness(**kw: Any) -> list[dict[str, Any]]:
    w = {**W0, **kw}
    return [{k: v for k, v in w.items() if v is not ...}]


def balance(**kw: Any) -> list[dict[str, Any]]:
    b = {**B0, **kw}
    return [{k: v for k, v in b.items() if v is not ...}]


CASES: list[tuple[str, Any, str]] = [
    ("not-object", [DOC], "JSON object"),
    ("not-object-str", "genesis", "JSON object"),
    ("no-chain-name", doc(chain_name=...), "chain_name"),
    ("empty-chain-name", doc(chain_name=""), "chain_name"),
    ("int-chain-name", doc(chain_name=5), "chain_name"),
    ("no-time", doc(genesis_time=...), "genesis_time"),
    ("negative-time", doc(genesis_time=-1), "genesis_time"),
    ("str-time", doc(genesis_time="1767225600"), "genesis_time"),
    ("float-time", doc(genesis_time=1767225600.0), "genesis_time"),
    ("bool-time", doc(genesis_time=True), "genesis_time"),
    ("huge-time", doc(genesis_time=2**63), "genesis_time"),
    ("params-array", doc(params=[1, 2]), "params must be an object"),
    ("unknown-param", doc(params={"block_interval": 1}), "unknown params"),
    ("zero-param", doc(params={"block_interval_s": 0}), "params.block_interval_s"),
    ("negative-param", doc(params={"base_fee": -1}), "params.base_fee"),
    ("str-param", doc(params={"max_tx_bytes": "8192"}), "params.max_tx_bytes"),
    ("float-param", doc(params={"active_witnesses": 4.0}), "params.active_witnesses"),
    ("bool-param", doc(params={"active_witnesses": True}), "params.active_witnesses"),
    ("null-param", doc(params={"base_fee": None}), "params.base_fee"),
    ("no-witnesses", doc(witnesses=...), "at least one witness"),
    ("empty-witnesses", doc(witnesses=[]), "at least one witness"),
    ("witnesses-object", doc(witnesses={"w1": W0}), "witnesses must be an array"),
    ("witnesses-int", doc(witnesses=5), "witnesses must be an array"),
    ("witness-not-object", doc(witnesses=["w1"]), r"witnesses\[0\] must be an object"),
    ("witness-no-address", doc(witnesses=witness(address=...)), r"witnesses\[0\]"),
    ("witness-bad-prefix", doc(witnesses=witness(address="0x" + W1.address.hex())),
     "must start with 'mx'"),
    ("witness-short-address", doc(witnesses=witness(address=W1.address_text[:-2])),
     "40 hex digits"),
    ("witness-upper-address", doc(witnesses=witness(address=W1.address_text.upper()
                                                     .replace("MX", "mx"))), "lowercase"),
    ("witness-int-address", doc(witnesses=witness(address=5)), "must be a string"),
    ("witness-no-key", doc(witnesses=witness(signing_key=...)), "signing_key must be 64 hex"),
    ("witness-short-key", doc(witnesses=witness(signing_key=W1.public_key.hex()[:-2])),
     "signing_key must be 64 hex"),
    ("witness-long-key", doc(witnesses=witness(signing_key=W1.public_key.hex() + "00")),
     "signing_key must be 64 hex"),
    ("witness-nonhex-key", doc(witnesses=witness(signing_key="zz" * 32)), r"witnesses\[0\]"),
    ("witness-int-key", doc(witnesses=witness(signing_key=7)), r"witnesses\[0\]"),
    ("duplicate-witness", doc(witnesses=[W0, {**W0, "name": "again"}]), "distinct"),
    ("balances-object", doc(balances={"a": 1}), "balances must be an array"),
    ("balances-int", doc(balances=5), "balances must be an array"),
    ("balance-not-object", doc(balances=[[ALICE.address_text, 5]]),
     r"balances\[0\] must be an object"),
    ("balance-bad-address", doc(balances=balance(address="mx1234")), r"balances\[0\]"),
    ("balance-no-address", doc(balances=balance(address=...)), r"balances\[0\]"),
    ("balance-null-address", doc(balances=balance(address=None)), "must be a string"),
    ("balance-no-amount", doc(balances=balance(amount=...)), r"balances\[0\]\.amount"),
    ("balance-zero", doc(balances=balance(amount=0)), r"balances\[0\]\.amount"),
    ("balance-negative", doc(balances=balance(amount=-5)), r"balances\[0\]\.amount"),
    ("balance-str", doc(balances=balance(amount="5")), r"balances\[0\]\.amount"),
    ("balance-float", doc(balances=balance(amount=5.0)), r"balances\[0\]\.amount"),
    ("balance-too-big", doc(balances=balance(amount=2**63)), r"balances\[0\]\.amount"),
]


@pytest.mark.parametrize(("bad", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_genesis(bad: Any, match: str) -> None:
    with pytest.raises(GenesisError, match=match):
        parse_genesis(bad)


def test_load_genesis_file(tmp_path: Path) -> None:
    p = tmp_path / "genesis.json"
    p.write_text(json.dumps(DOC), encoding="utf-8")
    assert load_genesis(p) == parse_genesis(DOC)
    assert load_genesis(str(p)).chain_id == parse_genesis(DOC).chain_id


def test_load_genesis_errors(tmp_path: Path) -> None:
    with pytest.raises(GenesisError, match="cannot read genesis file"):
        load_genesis(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(GenesisError, match="not valid JSON"):
        load_genesis(bad)
    arr = tmp_path / "arr.json"
    arr.write_text("[]", encoding="utf-8")
    with pytest.raises(GenesisError, match="JSON object"):
        load_genesis(arr)
