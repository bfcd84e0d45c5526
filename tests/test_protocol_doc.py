"""docs/protocol.md stays true where a machine can check it.

The protocol document is what outside developers build against, so every list in it that
the code also holds is compared with the live code here (imported, not copied): the
rejection reasons, the RPC methods and error codes, the opcodes and their names, the p2p
message types, the domain tags, and the test vectors (the nine tx vectors of
tests/test_vectors.py, and the vectors the document derives from them: the genesis state
entries and digest, block 1, a vote, Merkle roots, the schedule, karma decay).

Every comparison goes both ways: a name the code has and the document lacks fails, and so
does a name the document lists that the code does not know.

If a vector test fails after a deliberate change (a new state layout or state digest, say),
regenerate the document's Appendix A from the code and say so in the protocol's text: the
vectors are the wire format, a change to them is a protocol change.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from consensus import crypto
from consensus.block import Block
from consensus.chain import Chain
from consensus.codec import encode
from consensus.errors import REASONS
from consensus.genesis import parse_genesis
from consensus.merkle import merkle_root
from consensus.schedule import Schedule, round_order
from consensus.tx import build_tx
from consensus.vote import Vote
from muxernode import events, ops, rpc
from muxernode.ledger import Ledger, decay
from p2p import messages
from p2p.network import PROTOCOL_VERSION
from storage.kv import MemoryKV
from tests.test_vectors import (
    CHAIN_ID,
    EXPIRATION,
    FEE,
    GENESIS,
    REF_BLOCK_NUM,
    REF_BLOCK_PREFIX,
    VECTORS,
)

REPO = Path(__file__).resolve().parent.parent
DOC = (REPO / "docs" / "protocol.md").read_text(encoding="utf-8")
# the document without any whitespace: hex wrapped over lines, and "name = value" lines,
# are found whole in it
FLAT = re.sub(r"\s+", "", DOC)

def _tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every Markdown table: (header cells, body rows of cells), cells stripped."""
    out: list[tuple[list[str], list[list[str]]]] = []
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2:
            rows = [[c.strip() for c in row.strip().strip("|").split("|")] for row in block]
            out.append((rows[0], rows[2:]))  # rows[1] is the |---| separator
        block = []
    return out


def _first_column(header: str, second: str | None = None) -> list[list[str]]:
    """Body rows of every table whose first header cell is ``header`` (and second, if
    given, is ``second``)."""
    rows: list[list[str]] = []
    for head, body in _tables(DOC):
        if head[0].lower() == header and (second is None or head[1].lower() == second):
            rows.extend(body)
    return rows


def _name(cell: str) -> str:
    return cell.strip("`* ")


def _code_reasons() -> set[str]:
    """Every reason the code can raise: the registry, and each literal Rejected("...")."""
    found = set(REASONS)
    pattern = re.compile(r"""Rejected\(\s*["']([a-z_]+)["']""")
    for package in ("consensus", "muxernode"):
        for path in sorted((REPO / package).rglob("*.py")):
            found.update(pattern.findall(path.read_text(encoding="utf-8")))
    return found


def test_the_reason_table_is_the_codes_reasons() -> None:
    rows = _first_column("reason")
    doc = {_name(row[0]) for row in rows}
    code = _code_reasons()
    assert len(doc) == len(rows), "a reason is listed twice"
    assert code - doc == set(), f"reasons the code raises but 9.6 lacks: {sorted(code - doc)}"
    assert doc - code == set(), f"reasons in 9.6 that no code raises: {sorted(doc - code)}"
    # the version column: the base protocol's 29 reasons are version 1
    assert sum(1 for row in rows if row[1] == "1") == 29


def test_every_rpc_method_is_in_the_method_tables() -> None:
    doc = {_name(row[0]) for row in _first_column("method")}
    # subscribe and unsubscribe act on a WebSocket connection: a table of their own
    code = set(rpc.METHODS) | set(rpc.WS_METHODS)
    assert code - doc == set(), f"RPC methods missing from the doc: {sorted(code - doc)}"
    assert doc - code == set(), f"methods in the doc the node does not serve: {doc - code}"
    # the admin methods are marked as such
    admin = {_name(row[0]) for row in _first_column("method") if "admin" in row[2]}
    assert admin == set(rpc.ADMIN_METHODS)


def test_the_subscription_topics_are_the_codes() -> None:
    doc = [_name(row[0]) for row in _first_column("topic")]
    assert doc == list(events.TOPICS)
    assert f"atmost{events.MAX_SUBSCRIPTIONS}subscriptions" in FLAT
    assert f"unreadnotificationspass{events.MAX_UNREAD}" in FLAT


def test_every_rpc_error_code_is_in_the_error_table() -> None:
    doc = {int(row[0]) for row in _first_column("code")}
    code = {v for k, v in vars(rpc).items()
            if k.isupper() and type(v) is int and -32768 <= v <= -32000}
    assert doc == code, f"9.2 {sorted(doc)} != the code's {sorted(code)}"


def test_every_opcode_is_documented_with_its_number_and_name() -> None:
    rows = _first_column("op", "name")
    doc = {int(row[0]): _name(row[1]) for row in rows}
    assert len(doc) == len(rows), "an opcode is listed twice"
    assert doc == ops.OP_NAMES


def test_every_p2p_message_type_is_in_the_message_table() -> None:
    doc = {int(row[0]): row[1] for row in _first_column("type", "name")}
    for number, cls in messages._TYPES.items():
        wire = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).upper()
        wire = {"NOT_FOUND": "NOTFOUND", "SNAPSHOT_OFFER": "SNAPSHOT"}.get(wire, wire)
        assert doc.get(number) == wire, f"p2p message {number} {wire} is not in 8.2"
    assert set(doc) == set(messages._TYPES)
    assert f"TheprotocolversioninHELLOis{PROTOCOL_VERSION}." in FLAT


def test_domain_tags_are_the_codes() -> None:
    from p2p.handshake import TAG_P2P
    for tag in (crypto.TAG_TX, crypto.TAG_BLOCK, crypto.TAG_VOTE, crypto.TAG_SCHEDULE, TAG_P2P):
        assert f"`{tag.decode()}`" in DOC


def test_default_rules_and_bounds() -> None:
    assert str(ops.DEFAULT_RULES.as_list()).replace(" ", "") in FLAT
    assert "3-32 characters of `a-z 0-9 -`" in DOC


def test_the_nine_tx_vectors_are_published() -> None:
    assert CHAIN_ID.hex() in FLAT
    for name, seed, _op, tx_hex, tx_id_hex in VECTORS:
        assert tx_hex in FLAT, f"the {name} vector's bytes are not in Appendix A"
        assert tx_id_hex in FLAT, f"the {name} vector's tx_id is not in Appendix A"
        key = crypto.PrivateKey(bytes([seed]) * 32)
        assert key.public_key.hex() in FLAT and key.address_text in FLAT


def _addr(seed: int) -> bytes:
    return crypto.PrivateKey(bytes([seed]) * 32).address


CLAIM_ID = bytes.fromhex(VECTORS[4][4])
# Appendix A.8: name, sender seed, op, tx_id (the bytes are checked by rebuilding the tx)
V2_VECTORS: list[tuple[str, int, list[Any], str]] = [
    ("create_asset", 1, [10, "BTC.GW", 8, 2100000000000000, "Bitcoin IOUs of an example gateway"],
     "9f43f5d8e4507ed7e903c7b9d27c7c51b4f3740347a3857609c242c240742144"),
    ("issue_asset", 1, [11, "BTC.GW", _addr(2), 50000000, "deposit 0.5 BTC"],
     "6141451331c4cbf12536840529b17d91f0b6cec5fadc9ab81ce93ff9d692eee9"),
    ("transfer_asset", 2, [12, "BTC.GW", _addr(3), 10000000, "for the roof"],
     "7d92339080751b83f7e4ce21f3a36f95ebd2237d385234b0da44912fef49bf10"),
    ("standing_pledge", 4, [13, "farmers-1", 100000, 2592000],
     "d083b51c5a6f35afce17e39decf7df399561ef280ce0c2bb91db13d4a1a97ad4"),
    ("set_proxy", 7, [14, "farmers-1", _addr(6)],
     "da1366b1d8c640f9ba9bd67eef5305f0c0ea25a9af76fd14ef9c7585d0b61177"),
    ("charity_request", 9, [15, "farmers-1", 2000000, "school roof",
                            "The village school lost its roof in the storm.",
                            crypto.sha256(b"roof.jpg")],
     "c19a606fdb390cb2422f6115bdbb040d709922b9497b4e720c3a909d4e23b770"),
    ("withdraw_claim", 5, [16, CLAIM_ID],
     "3210ffacb35d9a03444d21360c2e9bc4df26d7d8b3ce2d247a8767ef6581473c"),
    ("amend_claim", 5, [17, CLAIM_ID, "Hail destroyed the barley and the oats on 2 May.",
                        crypto.sha256(b"hail-photo-2.jpg")],
     "b560efe9029cc8f201c2b96544588031486e1ef6ecf4308399cc73839ea70788"),
    ("comment", 6, [18, CLAIM_ID, "Photos of the field are in the evidence."],
     "3a6b859fe6a35137ba6abc33358c50fb288e39e86b1c8fd697cab5aaaa1c0d17"),
]


def test_the_version_2_tx_vectors() -> None:
    """A.8: the code builds the published bytes, and its op decoder takes them."""
    for name, seed, op, tx_id_hex in V2_VECTORS:
        tx = build_tx(crypto.PrivateKey(bytes([seed]) * 32), CHAIN_ID, op,
                      ref_block_num=REF_BLOCK_NUM, ref_block_prefix=REF_BLOCK_PREFIX,
                      expiration=EXPIRATION, fee=FEE)
        assert tx.tx_id.hex() == tx_id_hex
        assert f"tx({len(tx.raw)}bytes){tx.raw.hex()}tx_id{tx_id_hex}" in FLAT, name
        typed = ops.decode_op(op)
        assert ops.encode_op(typed) == op
        assert ops.op_to_json(typed)["type"] == name


def _chain_with_block_1() -> tuple[dict[bytes, bytes | None], bytes, Block]:
    """The vectors genesis' state entries, and block 1 of Appendix A.6 built by the code."""
    g = parse_genesis(GENESIS)
    genesis = Ledger(MemoryKV(), g.params, g.genesis_time).init_genesis(g)
    store = MemoryKV()
    Chain.initialize(store, Ledger(store, g.params, g.genesis_time), g)
    schedule = Schedule(g.chain_id, [(1, [w.address for w in g.witnesses])])
    chain = Chain(store, Ledger(store, g.params, g.genesis_time), g, schedule.witness_at)
    seed, op = VECTORS[0][1], VECTORS[0][2]
    tx = build_tx(crypto.PrivateKey(bytes([seed]) * 32), CHAIN_ID, op,
                  ref_block_num=REF_BLOCK_NUM, ref_block_prefix=REF_BLOCK_PREFIX,
                  expiration=EXPIRATION, fee=FEE)
    block, dropped = chain.build_block(crypto.PrivateKey(bytes([1]) * 32), g.genesis_time + 1,
                                       [tx], [])
    assert dropped == []
    return dict(genesis.changes), genesis.state_digest, block


def test_the_genesis_state_and_digest_vectors() -> None:
    changes, digest, _block = _chain_with_block_1()
    for key, value in changes.items():
        entry = key[1:]  # without the store's state prefix
        if entry == b"#":  # the accumulator's own record, outside the state
            continue
        assert value is not None
        shown = entry.decode() if entry[:1] in (b"E", b"G", b"Q", b"W") else entry.hex()
        assert shown + value.hex() in FLAT, f"genesis entry {shown} is not in Appendix A.5"
    assert f"genesis_state_digest={digest.hex()}" in FLAT


def test_the_digest_formula_of_6_4_gives_the_published_genesis_digest() -> None:
    """An outside reader's check: the entries listed in A.5 and the formula of 6.4 alone
    (hashlib and an RFC 8439 ChaCha20, nothing of muxernode.state) give A.5's digest."""
    section = DOC[DOC.index("### A.5"):DOC.index("### A.6")]
    listing = section.split("```")[1]
    acc, p = 1, 2**3072 - 1103717
    for line in listing.strip().splitlines():
        key_text, value_hex = line.split()
        key = key_text.encode() if len(key_text) == 1 else bytes.fromhex(key_text)
        data = len(key).to_bytes(4, "big") + key + bytes.fromhex(value_hex)
        stream = Cipher(algorithms.ChaCha20(hashlib.sha256(data).digest(), bytes(16)),
                        mode=None).encryptor().update(bytes(384))
        acc = acc * int.from_bytes(stream, "little") % p
    inner = hashlib.sha256(acc.to_bytes(384, "little")).digest()
    digest = hashlib.sha256(b"MUXER/state/v2" + inner).hexdigest()
    assert f"genesis_state_digest={digest}" in FLAT


def _labelled(name: str) -> bytes:
    """The hex value of a ``name = <hex>`` line of Appendix A."""
    m = re.search(rf"^{name} = ([0-9a-f]+)$", DOC, re.MULTILINE)
    assert m is not None, f"no {name} in Appendix A"
    return bytes.fromhex(m.group(1))


def test_the_block_and_vote_vectors_hold_together_by_the_text() -> None:
    """An outside reader's check of A.6 and A.7 with hashlib, msgpack and cryptography."""
    header = _labelled("header")
    block_id = _labelled("block_1_id")
    assert hashlib.sha256(header).digest() == block_id
    fields = msgpack.unpackb(header)
    assert fields[0] == 1 and fields[1] == 1 and fields[2] == CHAIN_ID
    assert fields[5] == _labelled("tx_root") and fields[6] == _labelled("votes_root")
    assert fields[7] == _labelled("block_1_state_digest")
    w1 = Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32).public_key()
    w1.verify(_labelled("block_1_signature"), b"MUXER/block/v1" + CHAIN_ID + block_id)
    tx_id = bytes.fromhex(VECTORS[0][4])
    assert fields[5] == hashlib.sha256(b"\x00" + tx_id).digest()  # one leaf
    payload = _labelled("vote_signing_payload")
    assert payload == b"MUXER/vote/v1" + CHAIN_ID + msgpack.packb(
        [CHAIN_ID, 0, block_id, 1], use_bin_type=True)


def test_the_block_and_vote_vectors() -> None:
    _changes, _digest, block = _chain_with_block_1()
    assert f"header={encode(block.header()).hex()}" in FLAT
    assert f"block_1_id={block.id.hex()}" in FLAT
    assert f"tx_root={block.tx_root.hex()}" in FLAT
    assert f"votes_root={block.votes_root.hex()}" in FLAT
    assert f"block_1_state_digest={block.state_digest.hex()}" in FLAT
    assert f"block_1_signature={block.signature.hex()}" in FLAT
    assert block.raw.hex() in FLAT
    vote = Vote.sign(crypto.PrivateKey(bytes([1]) * 32), CHAIN_ID, CHAIN_ID, 0, block.id, 1)
    assert f"vote_signing_payload={vote.signing_payload(CHAIN_ID).hex()}" in FLAT
    assert f"vote_hash={vote.hash.hex()}" in FLAT
    assert vote.raw.hex() in FLAT


def test_the_merkle_schedule_and_decay_vectors() -> None:
    items = [bytes([i]) * 32 for i in range(3)]
    assert f"merkle_root([])={merkle_root([]).hex()}" in FLAT
    assert f"merkle_root([00…00])={merkle_root(items[:1]).hex()}" in FLAT
    assert f"merkle_root([00…00,01…01])={merkle_root(items[:2]).hex()}" in FLAT
    assert f"merkle_root([00…00,01…01,02…02])={merkle_root(items).hex()}" in FLAT
    four = [crypto.PrivateKey(bytes([i]) * 32).address for i in range(1, 5)]
    for r in range(3):
        order = "".join(a.hex()[:8] for a in round_order(CHAIN_ID, r, four))
        assert f"round_{r}={order}" in FLAT
    for args in ((1000000, 0, 86400 * 180, 86400, 3844), (1000000, 86399, 86400, 86400, 3844),
                 (1000000, 0, 86399, 86400, 3844), (1000000, 0, 4097 * 86400, 86400, 3844)):
        k, t0, t, period, ppm = args
        shown = f"decay({k},{t0},{'4097*86400' if t == 4097 * 86400 else t},{period},{ppm})"
        assert f"{shown}={decay(*args)}#" in FLAT
