"""The `muxer` wallet CLI (muxernode.wallet) through click's CliRunner.

Keys commands and offline validation run with no node at all. Transaction and query
commands run against ``FakeNode``: a tiny JSON-RPC server (http.server on 127.0.0.1, port
0, in a thread) that answers chain_info and captures what the wallet submits, so a test can
decode the tx bytes with consensus.tx, verify the signature and check every op field.
(The end-to-end run against a real node lives elsewhere.)
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from consensus.crypto import PrivateKey, address_to_text
from consensus.errors import REASONS
from consensus.tx import SignedTx, decode_tx, tapos_of, verify_tx
from muxernode import ops
from muxernode.keystore import Keystore
from muxernode.wallet import REASON_TEXT, main

PASS = "test passphrase"
ALICE_SEED = bytes.fromhex("11" * 32)
ALICE = PrivateKey(ALICE_SEED)
BOB = PrivateKey(bytes.fromhex("22" * 32))
CHAIN_ID = hashlib.sha256(b"wallet test chain").digest()
HEAD_ID = hashlib.sha256(b"head block").digest()
HEAD_HEIGHT = 70_123  # above 65535, so ref_block_num really is the low 16 bits
HEAD_TIME = 1_767_225_600
BASE_FEE = 10
CLAIM_ID = "ab" * 32


# --- the fake node ----------------------------------------------------------------------


class FakeRpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.error: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            self.error["data"] = data


Handler = Callable[[list[Any]], Any]


class FakeNode:
    """JSON-RPC over real HTTP. ``handlers`` maps a method to a function of the params;
    ``calls`` records (method, params) in order; submitted txs are decoded into ``txs``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.txs: list[SignedTx] = []
        self.tx_status: list[dict[str, Any]] = []  # answers for get_tx, in turn
        self.chain: dict[str, Any] = {
            "chain_id": CHAIN_ID.hex(), "head_height": HEAD_HEIGHT, "head_id": HEAD_ID.hex(),
            "head_time": HEAD_TIME, "final_height": HEAD_HEIGHT - 1, "final_id": "00" * 32,
            "block_interval_s": 1, "base_fee": BASE_FEE, "active_witnesses": [],
            "next_slot_time": HEAD_TIME + 1, "participation": 1.0,
        }
        # Every society is a MUX society with the default rules and every claim is in
        # "soc", unless a test says otherwise: the wallet reads a society's asset to know
        # the precision of its amounts and karma.
        self.handlers: dict[str, Handler] = {
            "chain_info": lambda p: self.chain,
            "submit_tx": self._submit,
            "get_tx": self._get_tx,
            "get_society": lambda p: {"society": p[0], "rules": ops.DEFAULT_RULES.as_json()},
            "get_claim": lambda p: {"claim_id": p[0], "society": "soc"},
        }
        self.lock = threading.Lock()
        self.server = HTTPServer(("127.0.0.1", 0), self._handler_class())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rpc"
        # A short poll interval so that shutdown() at teardown returns at once.
        self.thread = threading.Thread(
            target=lambda: self.server.serve_forever(poll_interval=0.02), daemon=True
        )

    def _submit(self, params: list[Any]) -> Any:
        tx = decode_tx(bytes.fromhex(params[0]), 8192)
        self.txs.append(tx)
        return {"tx_id": tx.tx_id.hex()}

    def _get_tx(self, params: list[Any]) -> Any:
        answer = self.tx_status.pop(0) if len(self.tx_status) > 1 else self.tx_status[0]
        return {"tx_id": params[0], **answer}

    def last_call(self) -> tuple[str, list[Any]]:
        return self.calls[-1]

    def methods(self) -> list[str]:
        return [m for m, _p in self.calls]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        node = self

        class RpcHandler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path != "/rpc":  # like any web server that is not a node
                    self.send_error(404, "no such page")
                    return
                req = json.loads(body)
                assert self.headers["Content-Type"] == "application/json"
                assert req["jsonrpc"] == "2.0" and isinstance(req["params"], list)
                with node.lock:
                    node.calls.append((req["method"], req["params"]))
                    try:
                        if req["method"] not in node.handlers:
                            raise FakeRpcError(-32601, f"method not found: {req['method']}")
                        result = node.handlers[req["method"]](req["params"])
                        answer = {"jsonrpc": "2.0", "result": result, "id": req["id"]}
                    except FakeRpcError as exc:
                        answer = {"jsonrpc": "2.0", "error": exc.error, "id": req["id"]}
                out = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output clean

        return RpcHandler


@pytest.fixture
def node() -> Iterator[FakeNode]:
    n = FakeNode()
    n.thread.start()
    try:
        yield n
    finally:
        n.server.shutdown()
        n.server.server_close()
        n.thread.join(timeout=5)


# --- running the CLI --------------------------------------------------------------------


@pytest.fixture
def keystore(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def funded(keystore: Path) -> Path:
    """A keystore holding alice (known seed) under a cheap scrypt n, so unlocking is fast."""
    Keystore(keystore, scrypt_n=2**10).import_seed("alice", ALICE_SEED.hex(), PASS)
    return keystore


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/rpc"


def run(
    keystore: Path, args: list[str], *, rpc: str | None = None, input: str | None = None,
    env: dict[str, str | None] | None = None,
) -> Result:
    base: dict[str, str | None] = {
        "MUXER_KEYSTORE": str(keystore),
        "MUXER_PASSPHRASE": PASS,
        "MUXER_RPC": rpc or _closed_port_url(),
        "MUXER_SEED": None,
        "COLUMNS": "200",
    }
    base.update(env or {})
    return CliRunner().invoke(
        main, args, input=input, env=base, catch_exceptions=False, prog_name="muxer"
    )


# --- reasons ----------------------------------------------------------------------------


V2_REASONS = {"asset_exists", "bad_symbol", "unknown_asset", "not_issuer", "over_supply",
              "no_standing_pledge", "proxy_chain", "too_many_delegators",
              "not_in_charity_slots", "not_claimant", "has_votes"}


def test_every_reason_has_a_sentence() -> None:
    assert set(REASON_TEXT) == set(REASONS) | V2_REASONS
    assert REASON_TEXT["insufficient_balance"] == (
        "the sender's balance cannot cover amount plus fee (the fee is MUX; an amount or "
        "bond is in its asset)"
    )
    assert all(text and not text.endswith(".") for text in REASON_TEXT.values())


# --- keys -------------------------------------------------------------------------------


def test_keys_new_list_show(keystore: Path) -> None:
    r = run(keystore, ["keys", "new", "alice"])
    assert r.exit_code == 0, r.output
    path = keystore / "alice.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    address = json.loads(path.read_text())["address"]
    assert address in r.stdout

    r = run(keystore, ["keys", "list"])
    assert r.exit_code == 0 and "alice" in r.stdout and address in r.stdout

    r = run(keystore, ["--json", "keys", "show", "alice"])
    assert r.exit_code == 0
    shown = json.loads(r.stdout)
    assert shown["address"] == address and shown["name"] == "alice"
    # --json after the command works too
    r = run(keystore, ["keys", "list", "--json"])
    assert [k["name"] for k in json.loads(r.stdout)] == ["alice"]


def test_keys_new_prompts_twice(keystore: Path) -> None:
    r = run(keystore, ["keys", "new", "alice"], input="s3cret\ns3cret\n",
            env={"MUXER_PASSPHRASE": None})
    assert r.exit_code == 0, r.output
    assert "s3cret" not in r.output  # hidden input
    assert Keystore(keystore).unlock("alice", "s3cret").address_text in r.stdout


def test_keys_new_refuses_existing_and_bad_names(keystore: Path) -> None:
    assert run(keystore, ["keys", "new", "alice"]).exit_code == 0
    before = (keystore / "alice.json").read_bytes()
    r = run(keystore, ["keys", "new", "alice"])
    assert r.exit_code == 1
    assert "already exists" in r.stderr
    assert (keystore / "alice.json").read_bytes() == before
    r = run(keystore, ["keys", "new", "../evil"])
    assert r.exit_code == 2 and "bad key name" in r.stderr
    assert "Traceback" not in r.output


def test_keys_import_from_env_and_prompt(keystore: Path) -> None:
    r = run(keystore, ["keys", "import", "alice"], env={"MUXER_SEED": ALICE_SEED.hex()})
    assert r.exit_code == 0, r.output
    assert ALICE.address_text in r.stdout
    assert ALICE_SEED.hex() not in r.output  # the seed is never printed
    r = run(keystore, ["keys", "import", "bob"], input=BOB.seed.hex() + "\n")
    assert r.exit_code == 0, r.output
    assert BOB.address_text in r.stdout
    assert BOB.seed.hex() not in r.output
    r = run(keystore, ["--json", "keys", "list"])
    assert {k["address"] for k in json.loads(r.stdout)} == {ALICE.address_text,
                                                             BOB.address_text}


def test_keys_import_bad_seed(keystore: Path) -> None:
    r = run(keystore, ["keys", "import", "alice"], env={"MUXER_SEED": "abc"})
    assert r.exit_code == 2
    assert "64 hex digits" in r.stderr
    assert not (keystore / "alice.json").exists()


def test_keys_show_unknown(keystore: Path) -> None:
    r = run(keystore, ["keys", "show", "ghost"])
    assert r.exit_code == 2 and "no key named 'ghost'" in r.stderr


# --- offline validation: nothing is signed or sent ---------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["transfer", "alice", BOB.address_text, "1.000001"], "at most 5"),
        (["transfer", "alice", BOB.address_text, "--", "-3"], "negative"),
        (["transfer", "alice", BOB.address_text, "0"], "more than zero"),
        (["transfer", "alice", BOB.address_text, "lots"], "not an amount"),
        (["transfer", "alice", BOB.address_text, "99999999999999999"], "too large"),
        (["transfer", "ghost", BOB.address_text, "1"], "no key named 'ghost'"),
        (["transfer", "alice", "mx1234", "1"], "40 hex digits"),
        (["transfer", "alice", "mx" + "G" * 40, "1"], "lowercase hex"),
        (["transfer", "alice", "nobody", "1"], "neither an address"),
        (["transfer", "alice", BOB.address_text, "1", "--memo", "x" * 257], "256 bytes"),
        (["transfer", "alice", BOB.address_text, "1", "--expires-in", "0"], "--expires-in"),
        (["pledge", "alice", "NO", "1"], "not a society id"),
        (["vote", "alice", "abc", "approve"], "64 hex digits, or a unique prefix"),
        (["vote", "alice", "abcz", "approve"], "64 hex digits, or a unique prefix"),
        (["vote", "alice", CLAIM_ID, "maybe"], "maybe"),
        (["give", "alice", CLAIM_ID, "1.5.5"], "not an amount"),
        (["society", "create", "alice", "soc", "--name", "n", "--purpose", "p",
          "--waiting-s", "100", "--claim-ttl-s", "100"], "waiting_s < claim_ttl_s"),
        (["society", "create", "alice", "soc", "--name", "n", "--purpose", "p",
          "--decay-ppm", "1000000"], "decay-ppm"),
        (["claim", "alice", "soc", "5", "--karma", "1", "--subject", "s",
          "--evidence", "/nonexistent/file"], "does not exist"),
        (["claim", "alice", "soc", "5", "--karma", "0", "--subject", "s",
          "--evidence", __file__], "--karma"),
        (["witness", "register", "alice", "--signing-key", "12", "--url", "u"], "64 hex"),
        (["witness", "vote", "alice"], "--clear"),
        (["witness", "vote", "alice", BOB.address_text, BOB.address_text], "once"),
    ],
)
def test_offline_validation(
    funded: Path, node: FakeNode, args: list[str], words: str
) -> None:
    r = run(funded, args, rpc=node.url)
    assert r.exit_code == 2, r.output
    assert words in r.stderr
    assert "Traceback" not in r.output
    # Refused before any network call: a typo never reaches the node.
    assert node.calls == []


def test_bad_passphrase_sends_nothing(funded: Path, node: FakeNode) -> None:
    r = run(funded, ["transfer", "alice", BOB.address_text, "1"], rpc=node.url,
            env={"MUXER_PASSPHRASE": "not it"})
    assert r.exit_code == 1
    assert "wrong passphrase" in r.stderr
    assert node.txs == []


def test_fee_below_base_fee(funded: Path, node: FakeNode) -> None:
    r = run(funded, ["transfer", "alice", BOB.address_text, "1", "--fee", "0.00001"],
            rpc=node.url)
    assert r.exit_code == 2
    assert "below the chain's base fee 0.00010 MUX" in r.stderr
    assert node.txs == []


def test_node_unreachable(funded: Path) -> None:
    url = _closed_port_url()
    r = run(funded, ["transfer", "alice", BOB.address_text, "1"], rpc=url)
    assert r.exit_code == 1
    assert f"cannot reach node at {url}" in r.stderr
    assert "Traceback" not in r.output
    r = run(funded, ["status"], rpc=url)
    assert r.exit_code == 1 and "cannot reach node" in r.stderr


# --- transactions against the fake node ---------------------------------------------------


def _one_tx(node: FakeNode) -> SignedTx:
    assert len(node.txs) == 1
    tx = node.txs[0]
    assert verify_tx(tx, CHAIN_ID)
    assert not verify_tx(tx, hashlib.sha256(b"another chain").digest())
    assert tx.sender_pubkey == ALICE.public_key
    assert (tx.ref_block_num, tx.ref_block_prefix) == tapos_of(HEAD_HEIGHT, HEAD_ID)
    assert tx.ref_block_num == HEAD_HEIGHT & 0xFFFF
    return tx


def test_transfer(funded: Path, node: FakeNode) -> None:
    r = run(funded, ["transfer", "alice", BOB.address_text, "12.5", "--memo", "rent"],
            rpc=node.url)
    assert r.exit_code == 0, r.output
    tx = _one_tx(node)
    assert tx.fee == BASE_FEE
    assert tx.expiration == HEAD_TIME + 600
    op = ops.decode_op(tx.op)
    assert op == ops.Transfer(BOB.address, 1_250_000, "rent")
    assert tx.tx_id.hex() in r.stdout
    assert node.methods() == ["chain_info", "submit_tx"]
    # the hex went over the wire exactly as signed
    assert node.calls[1][1] == [tx.raw.hex()]


def test_transfer_to_key_name_with_options(funded: Path, node: FakeNode) -> None:
    Keystore(funded, scrypt_n=2**10).import_seed("bob", BOB.seed.hex(), "other")
    r = run(funded, ["--json", "transfer", "alice", "bob", "0.00001", "--fee", "0.001",
                     "--expires-in", "90"], rpc=node.url)
    assert r.exit_code == 0, r.output
    tx = _one_tx(node)
    assert tx.fee == 100 and tx.expiration == HEAD_TIME + 90
    assert ops.decode_op(tx.op) == ops.Transfer(BOB.address, 1, "")
    out = json.loads(r.stdout)
    assert out == {"tx_id": tx.tx_id.hex(), "op": "transfer", "sender": ALICE.address_text,
                   "fee": 100, "expiration": HEAD_TIME + 90, "status": "pending"}


def test_society_create_defaults(funded: Path, node: FakeNode) -> None:
    r = run(funded, ["society", "create", "alice", "flood-aid", "--name", "Flood aid",
                     "--purpose", "help after floods"], rpc=node.url)
    assert r.exit_code == 0, r.output
    op = ops.decode_op(_one_tx(node).op)
    assert op == ops.CreateSociety("flood-aid", "Flood aid", "help after floods",
                                   ops.DEFAULT_RULES)
    assert ops.DEFAULT_RULES.as_list() == [86400, 3844, 300, 7776000, 259200, 2592000, 10,
                                           10000000, 100000]


def test_society_create_every_rule(funded: Path, node: FakeNode) -> None:
    r = run(funded, ["society", "create", "alice", "soc", "--name", "n", "--purpose", "p",
                     "--decay-period-s", "100", "--decay-ppm", "100000",
                     "--approval-bp", "3000", "--observation-s", "10", "--waiting-s", "5",
                     "--claim-ttl-s", "50", "--benefit-ratio", "7", "--claim-bond", "0.01",
                     "--min-pledge", "0.001"], rpc=node.url)
    assert r.exit_code == 0, r.output
    op = ops.decode_op(_one_tx(node).op)
    assert isinstance(op, ops.CreateSociety)
    assert op.rules == ops.Rules(100, 100000, 3000, 10, 5, 50, 7, 1000, 100)


def test_join_pledge_vote_give(funded: Path, node: FakeNode) -> None:
    cases: list[tuple[list[str], ops.Op]] = [
        (["join", "alice", "soc", "--identity", "Alice A."], ops.Join("soc", "Alice A.")),
        (["pledge", "alice", "soc", "2"], ops.Pledge("soc", 200_000)),
        (["vote", "alice", CLAIM_ID.upper(), "approve"], ops.Vote(bytes.fromhex(CLAIM_ID), 1)),
        (["vote", "alice", CLAIM_ID, "reject"], ops.Vote(bytes.fromhex(CLAIM_ID), -1)),
        (["vote", "alice", CLAIM_ID, "withdraw"], ops.Vote(bytes.fromhex(CLAIM_ID), 0)),
        (["give", "alice", CLAIM_ID, "0.5"], ops.Give(bytes.fromhex(CLAIM_ID), 50_000)),
    ]
    for args, expected in cases:
        node.txs.clear()
        r = run(funded, args, rpc=node.url)
        assert r.exit_code == 0, (args, r.output)
        assert ops.decode_op(_one_tx(node).op) == expected, args


def test_claim_hashes_evidence(funded: Path, node: FakeNode, tmp_path: Path) -> None:
    evidence = tmp_path / "receipt.pdf"
    evidence.write_bytes(b"%PDF- hospital bill " * 5000)  # several read chunks
    # karma is typed in the society asset's units, as amounts: 0.01 karma of a MUX society
    r = run(funded, ["claim", "alice", "soc", "250", "--karma", "0.01", "--subject",
                     "surgery", "--details", "knee", "--evidence", str(evidence)],
            rpc=node.url)
    assert r.exit_code == 0, r.output
    op = ops.decode_op(_one_tx(node).op)
    assert op == ops.Claim("soc", 25_000_000, 1000, "surgery", "knee",
                           hashlib.sha256(evidence.read_bytes()).digest())
    assert ("get_society", ["soc"]) in node.calls
    # the explicit form is the same command
    node.txs.clear()
    r = run(funded, ["claim", "open", "alice", "soc", "250", "--karma", "0.01", "--subject",
                     "surgery", "--details", "knee", "--evidence", str(evidence)],
            rpc=node.url)
    assert r.exit_code == 0 and ops.decode_op(_one_tx(node).op) == op


def test_witness_register_and_vote(funded: Path, node: FakeNode) -> None:
    signing = PrivateKey(bytes.fromhex("33" * 32)).public_key
    r = run(funded, ["witness", "register", "alice", "--signing-key", signing.hex(),
                     "--url", "https://w.example"], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert ops.decode_op(_one_tx(node).op) == ops.RegisterWitness(signing, "https://w.example")

    node.txs.clear()
    w2 = PrivateKey(bytes.fromhex("44" * 32)).address
    r = run(funded, ["witness", "vote", "alice", BOB.address_text, address_to_text(w2)],
            rpc=node.url)
    assert r.exit_code == 0, r.output
    assert ops.decode_op(_one_tx(node).op) == ops.VoteWitness((BOB.address, w2))

    node.txs.clear()
    r = run(funded, ["witness", "vote", "alice", "--clear"], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert ops.decode_op(_one_tx(node).op) == ops.VoteWitness(())


def test_wait_final(funded: Path, node: FakeNode) -> None:
    node.tx_status = [{"status": "pending"}, {"status": "included", "height": 9},
                      {"status": "final", "height": 9}]
    r = run(funded, ["--json", "transfer", "alice", BOB.address_text, "1", "--wait", "final"],
            rpc=node.url)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["status"] == "final" and out["height"] == 9
    assert node.methods().count("get_tx") == 3
    assert all(p == [out["tx_id"]] for m, p in node.calls if m == "get_tx")


def test_wait_included_accepts_final(funded: Path, node: FakeNode) -> None:
    node.tx_status = [{"status": "final", "height": 4}]
    r = run(funded, ["transfer", "alice", BOB.address_text, "1", "--wait", "included"],
            rpc=node.url)
    assert r.exit_code == 0, r.output
    assert "final" in r.stdout


def test_wait_times_out(funded: Path, node: FakeNode) -> None:
    node.tx_status = [{"status": "included", "height": 5}]
    r = run(funded, ["transfer", "alice", BOB.address_text, "1", "--wait", "final",
                     "--timeout", "1"], rpc=node.url)
    assert r.exit_code == 1
    assert "gave up after 1 s" in r.stderr and "'included' at height 5" in r.stderr


def test_wait_notices_expiry(funded: Path, node: FakeNode) -> None:
    node.tx_status = [{"status": "pending"}]
    calls = {"n": 0}

    def chain_info(_p: list[Any]) -> Any:
        calls["n"] += 1
        # the first answer builds the tx; later ones show the chain past its expiration
        return node.chain if calls["n"] == 1 else {**node.chain, "head_time": HEAD_TIME + 600}

    node.handlers["chain_info"] = chain_info
    r = run(funded, ["transfer", "alice", BOB.address_text, "1", "--wait", "included"],
            rpc=node.url)
    assert r.exit_code == 1
    assert "expired without being included" in r.stderr


def test_wait_interrupted_names_the_tx(funded: Path, node: FakeNode) -> None:
    def gone(_p: list[Any]) -> Any:
        raise FakeRpcError(-32603, "internal error")

    node.handlers["get_tx"] = gone
    r = run(funded, ["transfer", "alice", BOB.address_text, "1", "--wait", "final"],
            rpc=node.url)
    assert r.exit_code == 1
    assert f"tx {node.txs[0].tx_id.hex()} was submitted, but waiting for it failed" in r.stderr


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_rejection_reasons(funded: Path, node: FakeNode, reason: str) -> None:
    def reject(_p: list[Any]) -> Any:
        raise FakeRpcError(-32000, f"node words for {reason}", {"reason": reason})

    node.handlers["submit_tx"] = reject
    r = run(funded, ["transfer", "alice", BOB.address_text, "1"], rpc=node.url)
    assert r.exit_code == 1
    assert REASON_TEXT[reason] in r.stderr
    assert f"node words for {reason}" in r.stderr
    assert "Traceback" not in r.output


def test_rejection_json_and_unknown_reason(funded: Path, node: FakeNode) -> None:
    def reject(_p: list[Any]) -> Any:
        raise FakeRpcError(-32000, "the sender's balance is 3", {"reason": "insufficient_balance"})

    node.handlers["submit_tx"] = reject
    r = run(funded, ["--json", "transfer", "alice", BOB.address_text, "1"], rpc=node.url)
    assert r.exit_code == 1 and r.stdout == ""
    err = json.loads(r.stderr)["error"]
    assert err["reason"] == "insufficient_balance" and err["code"] == -32000
    assert "cannot cover amount plus fee" in err["message"]

    def novel(_p: list[Any]) -> Any:
        raise FakeRpcError(-32000, "a rule from the future", {"reason": "brand_new"})

    node.handlers["submit_tx"] = novel
    r = run(funded, ["transfer", "alice", BOB.address_text, "1"], rpc=node.url)
    assert r.exit_code == 1 and "a rule from the future" in r.stderr


def test_node_that_lies_about_the_tx_id(funded: Path, node: FakeNode) -> None:
    node.handlers["submit_tx"] = lambda p: {"tx_id": "00" * 32}
    r = run(funded, ["transfer", "alice", BOB.address_text, "1"], rpc=node.url)
    assert r.exit_code == 1 and "acknowledged" in r.stderr


def test_not_a_muxer_node(funded: Path, node: FakeNode) -> None:
    node.handlers["chain_info"] = lambda p: {"hello": "world"}
    r = run(funded, ["transfer", "alice", BOB.address_text, "1"], rpc=node.url)
    assert r.exit_code == 1 and "chain_info has no valid 'chain_id'" in r.stderr
    # a URL where an HTTP server answers, but not JSON-RPC
    r = run(funded, ["status"], rpc=node.url.replace("/rpc", "/nothing"))
    assert r.exit_code == 1
    assert "did not answer JSON-RPC (HTTP 404" in r.stderr


# --- queries ----------------------------------------------------------------------------


def test_status(funded: Path, node: FakeNode) -> None:
    r = run(funded, ["status"], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert str(HEAD_HEIGHT) in r.stdout and "2026-01-01 00:00:00 UTC" in r.stdout
    assert "0.00010 MUX" in r.stdout  # base_fee, an amount
    r = run(funded, ["status", "--json"], rpc=node.url)
    assert json.loads(r.stdout) == node.chain


def test_account_by_key_name_formats_amounts(funded: Path, node: FakeNode) -> None:
    node.handlers["get_account"] = lambda p: {
        "address": p[0], "balance": 1_250_000, "stake": 1_750_001, "societies": ["soc"],
        "witness": {"signing_key": "aa" * 32, "url": "u", "votes": 300_000},
    }
    r = run(funded, ["account", "alice"], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert node.last_call() == ("get_account", [ALICE.address_text])
    assert "12.50000 MUX" in r.stdout and "17.50001 MUX" in r.stdout
    assert "3.00000 MUX" in r.stdout  # a witness's votes are stake
    r = run(funded, ["--json", "account", ALICE.address_text], rpc=node.url)
    assert json.loads(r.stdout)["balance"] == 1_250_000  # raw units in JSON


def test_society_and_member_and_claims(funded: Path, node: FakeNode) -> None:
    rules = ops.DEFAULT_RULES.as_json()
    node.handlers["get_society"] = lambda p: {
        "society": p[0], "name": "Flood aid", "purpose": "p", "rules": rules,
        "creator": ALICE.address_text, "members": 3, "total_karma": 77,
        "escrow_total": 500_000, "open_claims": 1,
    }
    r = run(funded, ["society", "flood-aid"], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert node.last_call() == ("get_society", ["flood-aid"])
    assert "rules.claim_bond" in r.stdout and "100.00000 MUX" in r.stdout
    assert "5.00000 MUX" in r.stdout and "77" in r.stdout

    node.handlers["get_member"] = lambda p: {
        "society": p[0], "address": p[1], "identity": "A", "joined_at": HEAD_TIME,
        "escrow": 100, "karma": 50, "pledged_total": 200, "given_total": 100,
    }
    r = run(funded, ["member", "flood-aid", "alice"], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert ("get_member", ["flood-aid", ALICE.address_text]) in node.calls
    assert "0.00200 MUX" in r.stdout
    # karma in the society asset's whole units, as amounts (50 units of MUX: 0.00050)
    assert "karma          0.00050" in r.stdout

    node.handlers["list_claims"] = lambda p: [{
        "claim_id": CLAIM_ID, "subject": "roof", "amount": 10_000_000, "received": 0,
        "approved": False, "status": "open", "closes_at": HEAD_TIME + 100,
    }]
    r = run(funded, ["claims", "flood-aid"], rpc=node.url)
    assert r.exit_code == 0, r.output
    # short ids as git's (10 digits), the unit in the heading
    assert CLAIM_ID[:10] in r.stdout and CLAIM_ID[:11] not in r.stdout
    assert "amount MUX" in r.stdout and "100.00000" in r.stdout and "roof" in r.stdout


def test_claim_show_and_hostile_text(funded: Path, node: FakeNode) -> None:
    node.handlers["get_claim"] = lambda p: {
        "claim_id": p[0], "society": "soc", "claimant": BOB.address_text,
        "amount": 300_000, "karma": 40, "limit": 200_000, "received": 0, "approve": 40,
        "reject": 0, "approved": True, "status": "open", "opened_at": HEAD_TIME,
        "gives_from": HEAD_TIME + 5, "closes_at": HEAD_TIME + 50,
        "subject": "[bold]help\x1b[2J\u202e", "details": "line1\nline2", "evidence": "cd" * 32,
    }
    r = run(funded, ["claim", CLAIM_ID], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert ("get_claim", [CLAIM_ID]) in node.calls
    assert "\x1b" not in r.stdout and "\u202e" not in r.stdout  # escapes shown, not obeyed
    assert "[bold]help\\x1b[2J\\u202e" in r.stdout  # and markup-looking text shown as is
    assert "2.00000 MUX" in r.stdout
    r = run(funded, ["claim", "show", CLAIM_ID, "--json"], rpc=node.url)
    assert json.loads(r.stdout)["limit"] == 200_000


def test_block_tx_witnesses(funded: Path, node: FakeNode) -> None:
    node.handlers["get_block"] = lambda p: {
        "height": p[0], "id": "aa" * 32, "previous": "bb" * 32, "timestamp": HEAD_TIME,
        "witness": BOB.address_text, "tx_ids": ["cc" * 32], "votes": [], "final": True,
    }
    r = run(funded, ["block", "12"], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert node.last_call() == ("get_block", [12]) and "cc" * 32 in r.stdout

    node.handlers["get_tx"] = lambda p: {
        "tx_id": p[0], "status": "final", "height": 3, "sender": ALICE.address_text,
        "fee": 10, "op": {"type": "transfer", "to": BOB.address_text, "amount": 100_000,
                          "memo": ""},
    }
    r = run(funded, ["tx", "DD" * 32], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert node.last_call() == ("get_tx", ["dd" * 32])
    assert "op.amount" in r.stdout and "1.00000 MUX" in r.stdout and "0.00010 MUX" in r.stdout

    node.handlers["list_witnesses"] = lambda p: [{
        "address": BOB.address_text, "url": "u", "votes": 123_400_000, "active": True,
        "signing_key": "ee" * 32, "last_slot": 9, "missed": 0,
    }]
    r = run(funded, ["witnesses"], rpc=node.url)
    assert r.exit_code == 0 and "1234.00000" in r.stdout and "votes MUX" in r.stdout
    assert BOB.address_text in r.stdout  # an address to copy: never cut


def test_not_found_answers(funded: Path, node: FakeNode) -> None:
    def missing(what: str) -> Handler:
        def handler(p: list[Any]) -> Any:
            key = p if what == "member" else p[0]
            raise FakeRpcError(-32001, "not found", {"what": what, "id": key})
        return handler

    node.handlers.update(get_society=missing("society"), get_block=missing("block"),
                         get_member=missing("member"), get_claim=missing("claim"))
    cases = [
        (["society", "nope"], "no society 'nope'"),
        (["block", "999"], "no block at height 999"),
        (["member", "soc", "alice"], f"{ALICE.address_text} is not a member of society 'soc'"),
        (["claim", CLAIM_ID], f"no claim '{CLAIM_ID}'"),
    ]
    for args, words in cases:
        r = run(funded, args, rpc=node.url)
        assert r.exit_code == 1, args
        assert words in r.stderr, (args, r.stderr)


def test_unknown_method_and_bad_params(funded: Path, node: FakeNode) -> None:
    r = run(funded, ["witnesses"], rpc=node.url)  # the fake has no list_witnesses
    assert r.exit_code == 1
    assert "does not know this method (method not found: list_witnesses)" in r.stderr

    def bad(_p: list[Any]) -> Any:
        raise FakeRpcError(-32602, "invalid params: address: nope")

    node.handlers["get_account"] = bad
    r = run(funded, ["account", BOB.address_text], rpc=node.url)
    assert r.exit_code == 1 and "the node refused the request" in r.stderr


def test_help_for_each_command(keystore: Path) -> None:
    for args in (["--help"], ["keys", "--help"], ["society", "--help"], ["claim", "--help"],
                 ["society", "create", "--help"], ["claim", "open", "--help"],
                 ["transfer", "--help"], ["witness", "vote", "--help"]):
        r = run(keystore, args)
        assert r.exit_code == 0, (args, r.output)
    r = run(keystore, ["society", "create", "--help"])
    for flag in ("--decay-period-s", "--decay-ppm", "--approval-bp", "--observation-s",
                 "--waiting-s", "--claim-ttl-s", "--benefit-ratio", "--claim-bond",
                 "--min-pledge", "--fee", "--expires-in", "--wait", "--timeout"):
        assert flag in r.stdout, flag


def test_environment_is_not_leaked(keystore: Path) -> None:
    # MUXER_PASSPHRASE is read but never echoed.
    r = run(keystore, ["keys", "new", "alice"], env={"MUXER_PASSPHRASE": "hunter2-secret"})
    assert r.exit_code == 0 and "hunter2-secret" not in r.output


# --- units of a society's asset, karma, claim id prefixes, 80 columns ---------------------


def _btc_society(node: FakeNode) -> None:
    """Society "btc-aid" of asset BTC (precision 8); "soc" stays a MUX society."""
    rules = {**ops.DEFAULT_RULES.as_json(), "asset": "BTC", "charity_bp": 0,
             "charity_slots": 10}
    node.handlers["get_society"] = lambda p: {
        "society": p[0], "rules": rules if p[0] == "btc-aid" else ops.DEFAULT_RULES.as_json()}
    node.handlers["get_asset"] = lambda p: {
        "symbol": p[0], "issuer": BOB.address_text, "precision": 8, "max_supply": 2**62,
        "supply": 0, "description": "", "burned": 0} if p[0] == "BTC" else None
    node.handlers["get_claim"] = lambda p: {"claim_id": p[0], "society": "btc-aid"}


def test_amounts_and_karma_in_the_society_asset(funded: Path, node: FakeNode) -> None:
    _btc_society(node)
    r = run(funded, ["pledge", "alice", "btc-aid", "1.5"], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert ops.decode_op(_one_tx(node).op) == ops.Pledge("btc-aid", 150_000_000)
    node.txs.clear()
    r = run(funded, ["give", "alice", CLAIM_ID, "0.00000001"], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert ops.decode_op(_one_tx(node).op) == ops.Give(bytes.fromhex(CLAIM_ID), 1)
    node.txs.clear()
    r = run(funded, ["claim", "alice", "btc-aid", "0.5", "--karma", "0.25", "--subject", "s",
                     "--evidence", __file__], rpc=node.url)
    assert r.exit_code == 0, r.output
    op = ops.decode_op(_one_tx(node).op)
    assert isinstance(op, ops.Claim) and (op.amount, op.karma) == (50_000_000, 25_000_000)
    # more decimals than the asset has: refused before the passphrase, nothing sent
    node.txs.clear()
    node.calls.clear()
    for args, words in [
        (["pledge", "alice", "btc-aid", "0.000000001"], "at most 8 are allowed for BTC"),
        (["pledge", "alice", "soc", "0.000001"], "at most 5 are allowed for MUX"),
        (["claim", "alice", "soc", "1", "--karma", "0.000001", "--subject", "s",
          "--evidence", __file__], "--karma: the amount has 6 decimals, at most 5 are "
                                   "allowed for karma"),
    ]:
        r = run(funded, args, rpc=node.url, env={"MUXER_PASSPHRASE": "wrong"})
        assert r.exit_code == 2, (args, r.output)
        assert words in r.stderr, (args, r.stderr)
    assert node.txs == [] and "submit_tx" not in node.methods()


def test_member_and_claims_of_an_asset_society(funded: Path, node: FakeNode) -> None:
    _btc_society(node)
    node.handlers["get_member"] = lambda p: {
        "society": p[0], "address": p[1], "escrow": 150_000_000, "karma": 75_000_000,
        "charity_escrow": 0, "pledged_total": 150_000_000, "given_total": 0}
    r = run(funded, ["member", "btc-aid", "alice"], rpc=node.url)
    assert r.exit_code == 0, r.output
    lines = dict(line.split(None, 1) for line in r.stdout.splitlines()[1:])
    assert lines["escrow"] == "1.50000000 BTC" and lines["karma"] == "0.75000000"
    node.handlers["get_account"] = lambda p: {
        "address": p[0], "balance": 250_000, "stake": 250_000, "societies": ["btc-aid"],
        "assets": {"MUX": 250_000, "BTC": 12_345_678_900}}
    r = run(funded, ["account", "alice"], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert "assets.MUX  2.50000 MUX" in r.stdout
    assert "assets.BTC  123.45678900 BTC" in r.stdout


def _claims(node: FakeNode, ids: dict[str, list[str]]) -> None:
    """list_claims answers the given ids per society; the keystore's alice is in "soc"."""
    node.handlers["get_account"] = lambda p: {
        "address": p[0], "balance": 0, "stake": 0, "societies": ["soc"]}
    node.handlers["list_claims"] = lambda p: [
        {"claim_id": c, "society": p[0], "subject": f"subject of {c[:6]}", "amount": 1,
         "received": 0, "approved": False, "status": "open", "closes_at": HEAD_TIME}
        for c in ids.get(p[0], [])]


def test_claim_id_prefix(funded: Path, node: FakeNode) -> None:
    a, b = "abcd01" + "0" * 58, "abcd02" + "1" * 58
    _claims(node, {"soc": [a, b], "other": ["ef" * 32]})
    r = run(funded, ["vote", "alice", "ABCD01", "approve"], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert ops.decode_op(_one_tx(node).op) == ops.Vote(bytes.fromhex(a), 1)
    # shown by a prefix too
    r = run(funded, ["claim", "abcd02"], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert ("get_claim", [b]) in node.calls
    # ambiguous: each candidate is listed, nothing is sent
    node.txs.clear()
    r = run(funded, ["vote", "alice", "abcd", "approve"], rpc=node.url)
    assert r.exit_code == 2
    assert "ambiguous; 2 claims start with it" in r.stderr
    assert a in r.stderr and b in r.stderr and "subject of abcd01" in r.stderr
    # a claim in a society none of the keys belongs to is not found without list_societies
    r = run(funded, ["claim", "efef"], rpc=node.url)
    assert r.exit_code == 1
    assert "no claim id starts with 'efef' in the societies of your keys (soc)" in r.stderr
    assert node.txs == []


def test_claim_id_prefix_in_every_society(funded: Path, node: FakeNode) -> None:
    c = "ef" * 32
    _claims(node, {"soc": [], "other": [c]})
    pages = {None: {"items": [{"society": "soc"}], "next": "p2"},
             "p2": {"items": [{"society": "other"}], "next": None}}
    node.handlers["list_societies"] = lambda p: pages[p[0].get("before")]
    r = run(funded, ["claim", "efef"], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert ("get_claim", [c]) in node.calls
    r = run(funded, ["claim", "0000"], rpc=node.url)
    assert r.exit_code == 1 and "no claim id starts with '0000' on the chain" in r.stderr


def test_claims_table_fits_80_columns(funded: Path, node: FakeNode) -> None:
    ids = [f"{i:02x}" * 32 for i in range(3)]
    _claims(node, {"flood-aid": ids})
    node.handlers["list_claims"] = lambda p: [
        {"claim_id": c, "subject": "the river took the ground floor and the kitchen " * 2,
         "amount": 123_456_789_000, "received": 50_000, "approved": i == 1,
         "status": "open" if i < 2 else "closed", "outcome": "rejected",
         "closes_at": HEAD_TIME + 100} for i, c in enumerate(ids)]
    r = run(funded, ["claims", "flood-aid"], rpc=node.url, env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, r.stdout
    for c in ids:  # each short id whole on one line
        assert sum(c[:10] in line for line in lines) == 1
    assert r.stdout.count("1234567.89000") == 3 and "amount MUX" in r.stdout
    assert r.stdout.count("2026-01-01 00:01") == 3
    assert "approved" in r.stdout and "closed:" in r.stdout and "rejected" in r.stdout


# --- version 2 commands (protocol section 11) ----------------------------------------------


def test_v2_transactions(funded: Path, node: FakeNode, tmp_path: Path) -> None:
    _btc_society(node)
    evidence = tmp_path / "bill.txt"
    evidence.write_bytes(b"a bill")
    digest = hashlib.sha256(b"a bill").digest()
    cid = bytes.fromhex(CLAIM_ID)
    cases: list[tuple[list[str], ops.Op]] = [
        (["asset", "create", "alice", "BTC", "--precision", "8", "--max-supply", "21000000",
          "--description", "BTC IOU"],
         ops.CreateAsset("BTC", 8, 21_000_000 * 10**8, "BTC IOU")),
        (["asset", "issue", "alice", "BTC", BOB.address_text, "1.5", "--memo", "deposit"],
         ops.IssueAsset("BTC", BOB.address, 150_000_000, "deposit")),
        (["asset", "transfer", "alice", "BTC", BOB.address_text, "0.001"],
         ops.TransferAsset("BTC", BOB.address, 100_000, "")),
        (["pledge", "alice", "btc-aid", "0.1", "--every", "30d"],
         ops.StandingPledge("btc-aid", 10_000_000, 30 * 86_400)),
        (["pledge", "alice", "soc", "2", "--every", "3600"],
         ops.StandingPledge("soc", 200_000, 3600)),
        (["pledge", "alice", "soc", "--stop"], ops.StandingPledge("soc", 0, 0)),
        (["proxy", "set", "alice", "soc", BOB.address_text], ops.SetProxy("soc", BOB.address)),
        (["proxy", "clear", "alice", "soc"], ops.SetProxy("soc", b"")),
        (["charity", "request", "alice", "btc-aid", "0.25", "--subject", "food",
          "--details", "a week", "--evidence", str(evidence)],
         ops.CharityRequest("btc-aid", 25_000_000, "food", "a week", digest)),
        (["claim", "withdraw", "alice", CLAIM_ID], ops.WithdrawClaim(cid)),
        (["claim", "amend", "alice", CLAIM_ID, "--details", "more", "--evidence",
          str(evidence)], ops.AmendClaim(cid, "more", digest)),
        (["comment", "alice", CLAIM_ID, "which hospital?"], ops.Comment(cid, "which hospital?")),
    ]
    for args, expected in cases:
        node.txs.clear()
        r = run(funded, args, rpc=node.url)
        assert r.exit_code == 0, (args, r.output)
        assert ops.decode_op(_one_tx(node).op) == expected, args


def test_society_create_v2_rules(funded: Path, node: FakeNode) -> None:
    _btc_society(node)
    r = run(funded, ["society", "create", "alice", "btc-aid", "--name", "n", "--purpose", "p",
                     "--asset", "BTC", "--claim-bond", "0.01", "--min-pledge", "0.0001",
                     "--charity-bp", "1000", "--charity-slots", "3"], rpc=node.url)
    assert r.exit_code == 0, r.output
    op = ops.decode_op(_one_tx(node).op)
    assert isinstance(op, ops.CreateSociety)
    assert op.rules.as_list()[7:] == [1_000_000, 10_000, "BTC", 1000, 3]
    # without version-2 options the rules stay the nine of version 1 (the same bytes)
    node.txs.clear()
    r = run(funded, ["society", "create", "alice", "soc", "--name", "n", "--purpose", "p"],
            rpc=node.url)
    assert r.exit_code == 0, r.output
    assert ops.encode_op(ops.decode_op(_one_tx(node).op))[4] == ops.DEFAULT_RULES.as_list()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["pledge", "alice", "soc", "1", "--every", "soon"], "not a period"),
        (["pledge", "alice", "soc", "1", "--every", "400d"], "1 s to 365 days"),
        (["pledge", "alice", "soc", "1", "--stop"], "--stop takes no AMOUNT"),
        (["pledge", "alice", "soc"], "give an AMOUNT"),
        (["asset", "create", "alice", "btc", "--precision", "8", "--max-supply", "1"],
         "not an asset symbol"),
        (["asset", "create", "alice", "MUX", "--precision", "8", "--max-supply", "1"],
         "chain's own asset"),
        (["asset", "create", "alice", "BTC", "--precision", "19", "--max-supply", "1"],
         "--precision"),
        (["asset", "create", "alice", "BTC", "--precision", "0", "--max-supply", "1.5"],
         "at most 0 are allowed for BTC"),
        (["asset", "transfer", "alice", "MUX", BOB.address_text, "1"], "muxer transfer"),
        (["comment", "alice", CLAIM_ID, ""], "must not be empty"),
        (["proxy", "set", "alice", "soc", "nobody"], "neither an address"),
    ],
)
def test_v2_offline_validation(funded: Path, node: FakeNode, args: list[str], words: str) -> None:
    r = run(funded, args, rpc=node.url)
    assert r.exit_code == 2, r.output
    assert words in r.stderr, r.stderr
    assert "submit_tx" not in node.methods()


def test_asset_show_and_list(funded: Path, node: FakeNode) -> None:
    _btc_society(node)
    r = run(funded, ["asset", "show", "BTC"], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert "max_supply   46116860184.27387904 BTC" in r.stdout
    r = run(funded, ["asset", "show", "MUX"], rpc=node.url)
    assert r.exit_code == 1 and "chain's own asset" in r.stderr
    node.handlers["list_assets"] = lambda p: [{
        "symbol": "BTC", "issuer": ALICE.address_text, "precision": 8,
        "max_supply": 21_000_000 * 10**8, "supply": 150_000_000, "burned": 0,
        "description": "BTC IOU redeemed by the gateway at example.org " * 2}]
    r = run(funded, ["asset", "list"], rpc=node.url, env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
    assert "1.50000000" in r.stdout and "21000000.00000000" in r.stdout
    assert "alice" in r.stdout  # the issuer is one of the wallet's keys


def test_claim_show_votes_and_discussion(funded: Path, node: FakeNode) -> None:
    node.handlers["get_claim"] = lambda p: {
        "claim_id": p[0], "society": "soc", "kind": "claim", "amount": 300_000,
        "claimant": ALICE.address_text, "details": "the water came in at night " * 6,
        "status": "open", "voters": 2, "proxied": 40_000, "comments": 2}
    node.handlers["list_votes"] = lambda p: [
        {"voter": BOB.address_text, "stance": 1, "weight": 60_000, "via": None},
        {"voter": ALICE.address_text, "stance": 1, "weight": 40_000, "via": BOB.address_text}]
    pages = {None: {"items": [{"tx_id": "aa" * 32, "height": 5, "time": HEAD_TIME,
                               "author": BOB.address_text, "text": "which roof? " * 12}],
                    "next": "c1"},
             "c1": {"items": [{"tx_id": "bb" * 32, "height": 6, "time": HEAD_TIME + 60,
                               "author": ALICE.address_text, "text": "mine\x1b[2J"}],
                    "next": None}}
    node.handlers["list_comments"] = lambda p: pages[p[1].get("after")]
    r = run(funded, ["claim", CLAIM_ID], rpc=node.url, env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "proxied   0.40000" in out  # karma in MUX's units
    assert f"claimant  {ALICE.address_text} (alice)" in out  # whose, for the wallet's keys
    assert f"claim_id  {CLAIM_ID}" in out  # an id is never broken, even at 80 columns
    # long text wrapped at spaces, every word kept
    assert " ".join(out.split()).count("the water came in at night") == 6
    assert "weight" in out and "0.60000" in out and "0.40000" in out
    assert "alice" in out and BOB.address_text[:10] in out  # names for the wallet's keys
    assert "discussion (2)" in out and "2026-01-01 00:01 UTC" in out
    assert "which roof?" in out and "\x1b" not in out and "mine\\x1b[2J" in out


def test_admin_peer_by_prefix(funded: Path, node: FakeNode, tmp_path: Path) -> None:
    data = tmp_path / "node"
    data.mkdir()
    (data / "rpc.token").write_text("t0ken\n")
    a, b = "ab12" + "0" * 60, "ab34" + "1" * 60
    node.handlers["peers"] = lambda p: [
        {"node_id": n, "address": "127.0.0.1:9001", "direction": "out", "head_height": 5}
        for n in (a, b)]
    node.handlers["drop_peer"] = lambda p: {"dropped": p[0]}
    node.handlers["ban_peer"] = lambda p: {"banned": p[0], "seconds": p[1]}
    admin = ["admin", "--data-dir", str(data)]
    r = run(funded, [*admin, "peers"], rpc=node.url, env={"COLUMNS": "80"})
    assert r.exit_code == 0 and a[:10] in r.stdout and a not in r.stdout
    r = run(funded, [*admin, "drop-peer", "AB34"], rpc=node.url)
    assert r.exit_code == 0, r.output
    assert ("drop_peer", [b]) in node.calls
    r = run(funded, [*admin, "ban-peer", "ab12", "--seconds", "60"], rpc=node.url)
    assert r.exit_code == 0 and ("ban_peer", [a, 60]) in node.calls
    r = run(funded, [*admin, "drop-peer", "ab"], rpc=node.url)
    assert r.exit_code == 2 and "unique prefix of at least 4" in r.stderr
    r = run(funded, [*admin, "drop-peer", "abab"], rpc=node.url)
    assert r.exit_code == 1 and "no connected peer's node id starts with 'abab'" in r.stderr
    c = "ab12" + "2" * 60
    node.handlers["peers"] = lambda p: [{"node_id": a}, {"node_id": c}]
    r = run(funded, [*admin, "drop-peer", "ab12"], rpc=node.url)
    assert r.exit_code == 2 and "ambiguous; 2 peers start with it" in r.stderr
    assert a in r.stderr and c in r.stderr and node.last_call()[0] == "peers"


def test_tx_shows_the_op_in_its_units(funded: Path, node: FakeNode) -> None:
    _btc_society(node)
    ops_json = {
        "sp": {"type": "standing_pledge", "society": "btc-aid", "amount": 150_000_000,
               "interval_s": 30 * 86_400},
        "ia": {"type": "issue_asset", "symbol": "BTC", "to": BOB.address_text,
               "amount": 1, "memo": ""},
        "cs": {"type": "create_society", "society": "new-aid", "name": "n", "purpose": "p",
               "rules": {**ops.DEFAULT_RULES.as_json(), "claim_bond": 10**6, "asset": "BTC",
                         "charity_bp": 0, "charity_slots": 10}},
    }
    shown = {"sp": ["op.amount      1.50000000 BTC", "op.interval_s  2592000 (30d)"],
             "ia": ["op.amount  0.00000001 BTC"],
             "cs": ["op.rules.claim_bond      0.01000000 BTC"]}
    for key, op in ops_json.items():
        node.handlers["get_tx"] = lambda p, op=op: {  # type: ignore[misc]
            "tx_id": p[0], "status": "final", "height": 3, "sender": ALICE.address_text,
            "fee": 10, "op": op}
        r = run(funded, ["tx", "dd" * 32], rpc=node.url)
        assert r.exit_code == 0, r.output
        assert "fee" in r.stdout and "0.00010 MUX" in r.stdout  # fees stay MUX
        for words in shown[key]:
            assert words in r.stdout, (key, r.stdout)
