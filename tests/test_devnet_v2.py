"""The devnet with version 2 (protocol section 11): ``load --mix`` with every version-2 op
next to the version-1 ones, then the BTC-IOU scenario, on one 2-node devnet (real
processes on 127.0.0.1, as tests/test_devnet.py runs them). Plus build_op's version-2
fields, without a devnet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devnet.load import MIX_OPS, parse_mix
from devnet.manifest import Account, DevnetError, Manifest
from devnet.txs import build_op
from muxernode import ops
from tests.test_devnet import SCENARIOS, devnet, log_tails, stop_everything

V2_OPS = ("create_asset", "issue_asset", "transfer_asset", "standing_pledge", "set_proxy",
          "charity_request", "withdraw_claim", "amend_claim", "comment")


def test_every_op_is_in_the_mix() -> None:
    assert set(MIX_OPS) == set(ops.OP_NAMES.values()) - {
        "create_society", "join", "register_witness", "vote_witness"}
    assert parse_mix("comment:2,set_proxy") == {"comment": 2.0, "set_proxy": 1.0}


def _manifest() -> Manifest:
    return Manifest(Path("."), "00" * 32, "", 1, [],
                    [Account("a1", "mx" + "11" * 20, "00" * 32),
                     Account("a2", "mx" + "22" * 20, "00" * 32)])


def test_build_op_v2_fields() -> None:
    m = _manifest()
    claim = "ab" * 32
    assert build_op("create_asset", {"symbol": "b1f2", "precision": 8, "max_supply": 10},
                    m) == [ops.OP_CREATE_ASSET, "B1F2", 8, 10, ""]
    assert build_op("issue_asset", {"symbol": "BTC", "to": "a2", "amount": 5}, m)[2] == \
        bytes.fromhex("22" * 20)
    assert build_op("set_proxy", {"society": "soc", "proxy": ""}, m) == \
        [ops.OP_SET_PROXY, "soc", b""]
    assert build_op("standing_pledge", {"society": "soc"}, m) == \
        [ops.OP_STANDING_PLEDGE, "soc", 0, 0]
    assert build_op("comment", {"claim": claim, "text": "hi"}, m) == \
        [ops.OP_COMMENT, bytes.fromhex(claim), "hi"]
    rules = build_op("create_society", {"society": "soc", "rules": {"asset": "btc"}}, m)[4]
    assert rules == [*ops.DEFAULT_RULES.as_list(), "BTC", 0, 10]
    # version-1 rules stay nine items: the same bytes as before version 2
    assert build_op("create_society", {"society": "soc", "rules": {"min_pledge": 5}},
                    m)[4][-1] == 5
    with pytest.raises(DevnetError, match="unknown rule"):
        build_op("create_society", {"society": "soc", "rules": {"assets": "X"}}, m)
    with pytest.raises(DevnetError, match="comment"):
        build_op("comment", {"claim": claim, "text": ""}, m)


@pytest.fixture(scope="module")
def devnet2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("devnet_v2") / "net"
    try:
        devnet("up", "--nodes", "2", "--accounts", "5", "--dir", str(d), "--detach",
               "--timeout", "40", timeout=90)
        yield d
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{log_tails(d)}") from None
    finally:
        stop_everything(d)


def test_load_mix_with_every_v2_op(devnet2: Path) -> None:
    mix = ",".join((*V2_OPS, "transfer", "pledge", "vote", "give", "claim"))
    out = devnet("load", "--dir", str(devnet2), "--tps", "30", "--duration", "5",
                 "--mix", mix, "--name", "v2", timeout=120)
    assert "accepted" in out.stdout
    (path,) = (devnet2 / "load").glob("v2-*.json")
    result = json.loads(path.read_text())
    assert result["state"] == "done" and result["rejected"] == {}, result["rejected"]
    # every op of the mix was accepted at least once, and everything accepted became final
    for name in (*V2_OPS, "transfer", "pledge", "vote", "give", "claim"):
        assert result["ops"].get(name, 0) >= 1, (name, result["ops"])
    # (a loaded machine may skip a little of the planned 150: the load never bursts past 1 s)
    assert result["final"] == result["accepted"] >= 100


def test_btc_iou_scenario(devnet2: Path) -> None:
    res = devnet("scenario", str(SCENARIOS / "btc-iou.toml"), "--dir", str(devnet2),
                 timeout=180)
    assert "scenario passed" in res.stdout, res.stdout
