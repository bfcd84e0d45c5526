"""The member web app's signing code against the node's codec, and how the node serves it.

The page (muxernode/web/js/codec.js, run in Chromium) builds and signs a tx for every op of
sections 3 and 11 with values at every MessagePack size boundary; the node's own decoder
(consensus.tx.decode_tx, muxernode.ops.op_of) must read the same tx id, a valid signature
and the op the page meant, and Python's build_tx with the same inputs must give the very
same bytes (Ed25519 signatures are deterministic). The page's encoding is therefore the
canonical one of section 1, byte for byte. A tx the page built is then accepted by the
running daemon.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from consensus.crypto import PrivateKey, address_of, address_to_text
from consensus.tx import build_tx, decode_tx, verify_tx
from muxernode.keystore import Keystore
from muxernode.ops import OP_NAMES, op_of, op_to_json
from tests.procs import wait_for
from tests.web_helpers import Node, browser, node

__all__ = ["browser", "node"]

SEED = bytes(range(1, 33))
ADDR = "mx" + "ab" * 20
CLAIM = "cd" * 32
EVIDENCE = "ef" * 32
CYR = "Взаимопомощь — помощь друг другу"
RULES12 = {"decay_period_s": 86400, "decay_ppm": 3844, "approval_bp": 300,
           "observation_s": 7776000, "waiting_s": 259200, "claim_ttl_s": 2592000,
           "benefit_ratio": 10, "claim_bond": 10000000, "min_pledge": 100000,
           "asset": "BTC.IOU", "charity_bp": 500, "charity_slots": 10}
RULES9 = {k: v for k, v in RULES12.items() if k not in ("asset", "charity_bp", "charity_slots")}
# integers either side of each MessagePack width (fixint, uint8, uint16, uint32, uint64)
BOUNDARIES = [1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1]


def _cases() -> list[dict[str, Any]]:
    """Ops as the page takes them (amounts as decimal strings: a BigInt cannot cross
    page.evaluate), each with the Python array the node must decode it to."""
    out: list[dict[str, Any]] = []

    def add(op: dict[str, Any], arr: list[Any]) -> None:
        out.append({"op": op, "arr": arr})

    a, c, e = bytes.fromhex(ADDR[2:]), bytes.fromhex(CLAIM), bytes.fromhex(EVIDENCE)
    for n in BOUNDARIES:
        add({"type": "transfer", "to": ADDR, "amount": str(n), "memo": "x" * (n % 300)},
            [1, a, n, "x" * (n % 300)])
    add({"type": "create_society", "society": "flood-aid", "name": "Flood aid",
         "purpose": CYR, "rules": RULES9}, [2, "flood-aid", "Flood aid", CYR,
                                            list(RULES9.values())])
    add({"type": "create_society", "society": "btc-aid", "name": "B" * 64, "purpose": "p" * 300,
         "rules": RULES12}, [2, "btc-aid", "B" * 64, "p" * 300, list(RULES12.values())])
    add({"type": "join", "society": "flood-aid", "identity": "Анна"},
        [3, "flood-aid", "Анна"])
    add({"type": "join", "society": "flood-aid", "identity": "h" * 64},
        [3, "flood-aid", "h" * 64])
    add({"type": "pledge", "society": "flood-aid", "amount": "100000"},
        [4, "flood-aid", 100000])
    add({"type": "claim", "society": "flood-aid", "amount": str(2**40), "karma": "50000",
         "subject": "Roof", "details": "d" * 4096, "evidence": EVIDENCE},
        [5, "flood-aid", 2**40, 50000, "Roof", "d" * 4096, e])
    for stance in (-1, 0, 1):
        add({"type": "vote", "claim_id": CLAIM, "stance": stance}, [6, c, stance])
    add({"type": "give", "claim_id": CLAIM, "amount": "300"}, [7, c, 300])
    add({"type": "register_witness", "signing_key": EVIDENCE, "url": "https://w.example"},
        [8, e, "https://w.example"])
    ws = [bytes([i]) * 20 for i in range(16)]  # 16: past fixarray's 15
    add({"type": "vote_witness", "witnesses": ["mx" + w.hex() for w in ws]}, [9, ws])
    add({"type": "vote_witness", "witnesses": []}, [9, []])
    add({"type": "create_asset", "symbol": "BTC.IOU", "precision": 8,
         "max_supply": str(2**63 - 1), "description": "BTC"},
        [10, "BTC.IOU", 8, 2**63 - 1, "BTC"])
    add({"type": "issue_asset", "symbol": "BTC.IOU", "to": ADDR, "amount": "70000",
         "memo": ""}, [11, "BTC.IOU", a, 70000, ""])
    add({"type": "transfer_asset", "symbol": "BTC.IOU", "to": ADDR, "amount": "5",
         "memo": "m"}, [12, "BTC.IOU", a, 5, "m"])
    add({"type": "standing_pledge", "society": "flood-aid", "amount": "100000",
         "interval_s": "2592000"}, [13, "flood-aid", 100000, 2592000])
    add({"type": "standing_pledge", "society": "flood-aid", "amount": "0", "interval_s": "0"},
        [13, "flood-aid", 0, 0])
    add({"type": "set_proxy", "society": "flood-aid", "proxy": ADDR}, [14, "flood-aid", a])
    add({"type": "set_proxy", "society": "flood-aid", "proxy": ""}, [14, "flood-aid", b""])
    add({"type": "charity_request", "society": "flood-aid", "amount": "65536",
         "subject": "S" * 80, "details": CYR, "evidence": EVIDENCE},
        [15, "flood-aid", 65536, "S" * 80, CYR, e])
    add({"type": "withdraw_claim", "claim_id": CLAIM}, [16, c])
    add({"type": "amend_claim", "claim_id": CLAIM, "details": "more", "evidence": EVIDENCE},
        [17, c, "more", e])
    add({"type": "comment", "claim_id": CLAIM, "text": "Спасибо!"}, [18, c, "Спасибо!"])
    return out


BUILD_ALL = """async ([seedHex, chainHex, cases, envelope]) => {
  const c = await import('/static/js/codec.js');
  const out = [];
  for (const k of cases) {
    const tx = await c.buildTx({seed: c.unhex(seedHex), chainId: c.unhex(chainHex),
                                op: k.op, ...envelope});
    out.push({raw: tx.rawHex, id: tx.txIdHex});
  }
  return out;
}"""


def test_every_op_encodes_as_the_node_decodes(browser: Any, node: Node) -> None:
    cases = _cases()
    assert {k["arr"][0] for k in cases} == set(OP_NAMES), "a case for every opcode"
    # the envelope's integers too, across their widths
    envelopes: list[dict[str, Any]] = [
        {"refBlockNum": 0, "refBlockPrefix": 0, "expiration": 1, "fee": 10},
        {"refBlockNum": 65535, "refBlockPrefix": 2**32 - 1, "expiration": str(2**32 + 7),
         "fee": str(2**63 - 1)},
    ]
    page = browser.new_page()
    try:
        page.goto(node.web_url)
        key = PrivateKey(SEED)
        for env in envelopes:
            built = page.evaluate(BUILD_ALL, [SEED.hex(), node.chain_id.hex(), cases, env])
            assert len(built) == len(cases)
            for case, got in zip(cases, built, strict=True):
                raw = bytes.fromhex(got["raw"])
                tx = decode_tx(raw, 1 << 20)  # the node's decoder: canonical or refused
                assert tx.tx_id.hex() == got["id"], case["op"]["type"]
                assert verify_tx(tx, node.chain_id), case["op"]["type"]
                assert tx.op == case["arr"], case["op"]["type"]
                assert op_to_json(op_of(tx))["type"] == case["op"]["type"]
                ours = build_tx(key, node.chain_id, case["arr"],
                                ref_block_num=int(env["refBlockNum"]),
                                ref_block_prefix=int(env["refBlockPrefix"]),
                                expiration=int(env["expiration"]), fee=int(env["fee"]))
                assert ours.raw == raw, case["op"]["type"]
    finally:
        page.close()


def test_a_tx_the_page_signs_is_accepted(browser: Any, node: Node) -> None:
    info = node.daemon.rpc("chain_info")
    a1, a2 = node.keys["a1"], node.keys["a2"]
    to = address_to_text(address_of(a2.public_key))
    page = browser.new_page()
    try:
        page.goto(node.web_url)
        tx = page.evaluate("""async ([seed, chain, to, info]) => {
          const c = await import('/static/js/codec.js');
          const [num, prefix] = c.tapos(info.head_height, info.head_id);
          const tx = await c.buildTx({seed: c.unhex(seed), chainId: c.unhex(chain),
            op: {type: 'transfer', to, amount: '123456', memo: 'из браузера'},
            refBlockNum: num, refBlockPrefix: prefix, expiration: info.head_time + 600,
            fee: info.base_fee});
          return {raw: tx.rawHex, id: tx.txIdHex};
        }""", [node.secrets["a1"], node.chain_id.hex(), to, info])
    finally:
        page.close()
    assert node.daemon.rpc("submit_tx", tx["raw"]) == {"tx_id": tx["id"]}
    got = wait_for(lambda: (t := node.daemon.rpc("get_tx", tx["id"]))["status"] != "pending"
                   and t, timeout=20)
    assert got["op"] == {"type": "transfer", "to": to, "amount": 123456, "memo": "из браузера"}
    assert got["sender"] == address_to_text(address_of(a1.public_key))


def test_static_files_headers_and_no_traversal(node: Node) -> None:
    base = node.web_url.rstrip("/")
    r = httpx.get(base + "/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    csp = r.headers["content-security-policy"]
    host = base.removeprefix("http://")
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert re.search(r"script-src 'self' 'sha256-[A-Za-z0-9+/=]+'", csp), csp
    assert f"connect-src 'self' ws://{host} wss://{host}" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-cache"
    again = httpx.get(base + "/", headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    js = httpx.get(base + "/static/js/codec.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert httpx.get(base + "/static/vendor/preact/LICENSE").status_code == 404  # not served
    for bad in ("/static/../rpc.py", "/static/..%2f..%2fwebapp.py", "/static/%2e%2e/webapp.py",
                "/static//etc/passwd", "/static/js/../../webapp.py", "/static/../../pyproject.toml",
                "/static/package.json", "/static/js", "/index.html", "/static/"):
        got = httpx.get(base + bad)
        assert got.status_code == 404, (bad, got.status_code)
        assert b"import" not in got.content
    assert httpx.post(base + "/", content=b"x").status_code == 405
    # a hostile Host header never reaches the CSP
    evil = httpx.get(base + "/", headers={"host": "a.example; script-src *"})
    assert "script-src *" not in evil.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/static/js/app.js", "/static/css/app.css",
                                  "/static/vendor/msgpack/index.mjs"])
def test_app_files_served(node: Node, path: str) -> None:
    r = httpx.get(node.web_url.rstrip("/") + path)
    assert r.status_code == 200 and r.content


def test_keystore_files_cross_between_the_cli_wallet_and_the_page(
        browser: Any, node: Node, tmp_path: Path) -> None:
    """A key file the CLI wallet wrote imports in the page (through the form); the file the
    page exports unlocks in the CLI wallet to the same key; a wrong passphrase is refused."""
    cli = Keystore(tmp_path / "keys", scrypt_n=2**10)
    info = cli.import_seed("carol", node.secrets["a3"], "Пароль 12345")
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        page.goto(node.web_url + "#/keys")
        form = page.locator("form").filter(
            has=page.get_by_role("heading", name="Import keystore file"))
        form.get_by_label("Keystore file").set_input_files(str(info.path))
        form.get_by_label("The file's passphrase", exact=True).fill("wrong passphrase")
        form.get_by_role("button", name="Import").click()
        form.get_by_role("alert").get_by_text("Wrong passphrase").wait_for()
        form.get_by_label("The file's passphrase", exact=True).fill("Пароль 12345")
        form.get_by_role("button", name="Import").click()
        form.get_by_text("Key imported and unlocked.").wait_for()
        # the page holds the key under the file's name and address
        page.get_by_role("heading", name="carol").wait_for()
        page.get_by_text(info.address).first.wait_for()
        # lock, then unlock with the passphrase of this browser (the file's, here)
        row = page.locator("li").filter(has=page.get_by_role("heading", name="carol"))
        page.get_by_role("banner").get_by_role("button", name="Lock").click()
        row.get_by_label("Passphrase").fill("not it at all")
        row.get_by_role("button", name="Unlock").click()
        row.get_by_role("alert").get_by_text("Wrong passphrase").wait_for()
        row.get_by_label("Passphrase").fill("Пароль 12345")
        row.get_by_role("button", name="Unlock").click()
        row.locator(".badge").get_by_text("Unlocked", exact=True).wait_for()
        page.get_by_role("banner").get_by_text(info.address[:8]).wait_for()
        exported = page.evaluate("""async (seed) => {
          const k = await import('/static/js/keys.js');
          const c = await import('/static/js/codec.js');
          return k.keystoreFile('dave', c.unhex(seed), 'export pass 1');
        }""", node.secrets["a3"])
    finally:
        ctx.close()
    (tmp_path / "keys" / "dave.json").write_text(exported)
    key = cli.unlock("dave", "export pass 1")
    assert key.public_key.hex() == info.public_key
    assert json.loads(exported)["kdf_params"]["n"] == 2**15
