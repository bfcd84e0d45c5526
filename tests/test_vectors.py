"""Fixed test vectors: one signed tx of each of the nine ops, byte for byte.

Everything here is a literal: the genesis (so the chain id), the seeds, the fields, the
expected encodings and tx ids. The same values are published in docs/protocol-notes.md,
section "Fixed test vectors", for outside clients. If a test here fails, the wire format
changed: that is a protocol change, not a test to update.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consensus.codec import decode, encode
from consensus.crypto import PrivateKey, sha256, verify
from consensus.genesis import parse_genesis
from consensus.tx import build_tx, decode_tx, tapos_of, verify_tx
from muxernode.ops import decode_op, encode_op, op_to_json

GENESIS: dict[str, Any] = {
    "chain_name": "muxer-vectors",
    "genesis_time": 1767225600,
    "params": {
        "block_interval_s": 1,
        "active_witnesses": 1,
        "maintenance_interval_s": 60,
        "max_block_bytes": 2097152,
        "max_tx_bytes": 8192,
        "max_tx_lifetime_s": 3600,
        "base_fee": 10,
    },
    "witnesses": [
        {
            "name": "w1",
            "address": "mx34750f98bd59fcfc946da45aaabe933be154a4b5",
            "signing_key": "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
        }
    ],
    "balances": [
        {"address": PrivateKey(bytes([i]) * 32).address_text, "amount": 10**12}
        for i in range(1, 10)
    ],
}
CHAIN_ID = bytes.fromhex("f141df14c29be749d80ea2bfc00192353d2287e64c8f00ec490b1d3a53cd9466")
REF_BLOCK_NUM = 0  # TaPoS of block 0 (genesis, whose id is the chain id)
REF_BLOCK_PREFIX = 0xF141DF14
EXPIRATION = 1767226200  # genesis_time + 600
FEE = 10

ADDR_1 = bytes.fromhex("34750f98bd59fcfc946da45aaabe933be154a4b5")  # seed 01 * 32
ADDR_2 = bytes.fromhex("6a3803d5f059902a1c6dafbc9ba4729212f7caac")  # seed 02 * 32
ADDR_8 = bytes.fromhex("5c29b78f10a35a49a6231d08ee840a04bcc3a37a")  # seed 08 * 32
KEY_88 = bytes.fromhex("dac31ebca159d283f8341fd90d7fa1cd95bf5eccab657f7952662e67e56afbe3")
EVIDENCE = bytes.fromhex("9f8b34ebc62bb09eef2c635161ee0406446f1b174eb4e20b256de00f2c87f84c")
# the claim vector's tx_id
CLAIM_ID = bytes.fromhex("2c194d428ec9219052ecccbdd2b58f556d6f151178f8b6e10f759ae694592c65")
RULES = [86400, 3844, 300, 7776000, 259200, 2592000, 10, 10000000, 100000]

# name, seed byte (key = PrivateKey(bytes([seed]) * 32)), op, tx hex, tx_id hex
VECTORS: list[tuple[str, int, list[Any], str, str]] = [
    (
        "transfer",
        1,
        [1, ADDR_2, 250000, "rent for May"],
        (
            "92970100cef141df14ce6955bb58c4208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801"
            "b40f6f5c0a9401c4146a3803d5f059902a1c6dafbc9ba4729212f7caacce0003d090ac72656e7420666f7220"
            "4d6179c440dceb4135b78c094754f01cc52a8dc4d4c6e9201ce4848eb9def069b061f824f56462dc1abe144c"
            "08281fd62bf53bd53a7970b122bc0a6d07d94fbc9a0dee5106"
        ),
        "79095e1992323ab86491b1faac4620fcabd3f2aa6acbefdc3766c0ba8204b814",
    ),
    (
        "create_society",
        2,
        [2, "farmers-1", "Farmers' mutual", "Crop failure and hail", RULES],
        (
            "92970100cef141df14ce6955bb58c4208139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b"
            "8fc9b3940a9502a96661726d6572732d31af4661726d65727327206d757475616cb543726f70206661696c75"
            "726520616e64206861696c99ce00015180cd0f04cd012cce0076a700ce0003f480ce00278d000ace00989680"
            "ce000186a0c440d9eb6c8c1ad595a3273581debac2b3ff825b7e043ff05ad762b16c9822b70caabbc1eddbcd"
            "bd7559940a87dd44ee6df0a4e66f32a39a37da9115cf581c4bbd0e"
        ),
        "491ef0b5181bbc32eadb85a286b33b33d26c9c68e28383cbad78ab705e514f6b",
    ),
    (
        "join",
        3,
        [3, "farmers-1", "Ana Ribeiro, São Paulo"],
        (
            "92970100cef141df14ce6955bb58c420ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614"
            "ac8737d10a9303a96661726d6572732d31b7416e61205269626569726f2c2053c3a36f205061756c6fc440a6"
            "89cca7c9923c5170f84262faaac7c6d2cbeee343aff7203be24ab91bde4b77facd5d40b5d46200541a4f3932"
            "d8c4d862c8ee7fc4785fad6ee9f586da825308"
        ),
        "a97a50a71b77cf19c05033e9b25111bf0c59f8815003d3abf15bc87322b3df63",
    ),
    (
        "pledge",
        4,
        [4, "farmers-1", 100000],
        (
            "92970100cef141df14ce6955bb58c420ca93ac1705187071d67b83c7ff0efe8108e8ec4530575d7726879333"
            "dbdabe7c0a9304a96661726d6572732d31ce000186a0c4405ebe44f939fd93ba1d101e4fbd6a46a61da12721"
            "90eb68541e756138297a58e97396cef7a1be4851d7443417ec92228e958e2d03d4563945d06c94c07a26ee0f"
        ),
        "3df58b0a48f213270912a1c08b163e1ca139191daa0e073ae4e7c95897cc120f",
    ),
    (
        "claim",
        5,
        [5, "farmers-1", 5000000, 50000, "hail damage",
         "Hail destroyed the barley on 2 May.", EVIDENCE],
        (
            "92970100cef141df14ce6955bb58c4206e7a1cdd29b0b78fd13af4c5598feff4ef2a97166e3ca6f2e4fbfccd"
            "80505bf10a9705a96661726d6572732d31ce004c4b40cdc350ab6861696c2064616d616765d9234861696c20"
            "64657374726f79656420746865206261726c6579206f6e2032204d61792ec4209f8b34ebc62bb09eef2c6351"
            "61ee0406446f1b174eb4e20b256de00f2c87f84cc4407fe21bd1ea6747a80079079c3cc8551a12a183b73303"
            "14b56d9f0959bb318f31f08d7e9bfa2b970440bd27fcf4c25dd16c646022956ddabf70ee1073949bdf07"
        ),
        "2c194d428ec9219052ecccbdd2b58f556d6f151178f8b6e10f759ae694592c65",
    ),
    (
        "vote",
        6,
        [6, CLAIM_ID, 1],
        (
            "92970100cef141df14ce6955bb58c4208a875fff1eb38451577acd5afee405456568dd7c89e090863a0557bc"
            "7af49f170a9306c4202c194d428ec9219052ecccbdd2b58f556d6f151178f8b6e10f759ae694592c6501c440"
            "ee5f537bb1a9f5291a0e8213dd4b2625636dd30191358cee49f8ca796d6a9f9f6c080da6e82479b678775bde"
            "8773fc00f932607562bb460351cc875aeaf84301"
        ),
        "4baac41ddd23d1424dc42d99db2cc53eb7520d81ef1123ee7f8131c2396249f7",
    ),
    (
        "give",
        7,
        [7, CLAIM_ID, 1000000],
        (
            "92970100cef141df14ce6955bb58c420ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea69"
            "1446d22c0a9307c4202c194d428ec9219052ecccbdd2b58f556d6f151178f8b6e10f759ae694592c65ce000f"
            "4240c44078b902b99012c004e3484b606757cc20a1fe7dda3ebbd67fa9235a0988a707b18f020d5a186068c6"
            "8ef37d4e1bbef582acd72add7ae0465ef4369d7d987b6107"
        ),
        "2a676f0a4ddeea90a142d41221e78ab86fecdf9462511df61c86517fc3819d39",
    ),
    (
        "register_witness",
        8,
        [8, KEY_88, "https://w8.example:8080"],
        (
            "92970100cef141df14ce6955bb58c4201398f62c6d1a457c51ba6a4b5f3dbd2f69fca93216218dc8997e416b"
            "d17d93ca0a9308c420dac31ebca159d283f8341fd90d7fa1cd95bf5eccab657f7952662e67e56afbe3b76874"
            "7470733a2f2f77382e6578616d706c653a38303830c440fec224770836e7d17d44e15905a4c0cd47923ee932"
            "b0ccacf7cdaee0f70926e511b4df1e1b14b5e79052c51ccac9aacf3890df6b529f74288136f39ece231c07"
        ),
        "e66fabdce80479536e243d4e2dce614bd547cda597953896b9572487ef98cf46",
    ),
    (
        "vote_witness",
        9,
        [9, [ADDR_1, ADDR_8]],
        (
            "92970100cef141df14ce6955bb58c420fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac8"
            "35e9f6180a920992c41434750f98bd59fcfc946da45aaabe933be154a4b5c4145c29b78f10a35a49a6231d08"
            "ee840a04bcc3a37ac440dd4db510bfcca1007719ddce817a53b8b77b54c600030e52a0bf04f064e14c4f75ab"
            "bd225bea7d97bc487c2118e9761a78d8a1daceade6035836f1ce314a330e"
        ),
        "015ea37c6964ef6b867b869b42b5d9fe025d1e1b3be751526e0960de0109c6f9",
    ),
]


def test_genesis_and_chain_id() -> None:
    g = parse_genesis(GENESIS)
    assert g.chain_id == CHAIN_ID
    direct = [
        1,
        "muxer-vectors",
        1767225600,
        [1, 1, 60, 2097152, 8192, 3600, 10],
        [[ADDR_1, bytes.fromhex(GENESIS["witnesses"][0]["signing_key"])]],
        [[bytes.fromhex(b["address"][2:]), b["amount"]] for b in GENESIS["balances"]],
    ]
    assert hashlib.sha256(msgpack.packb(direct, use_bin_type=True)).digest() == CHAIN_ID
    w1 = PrivateKey(bytes([1]) * 32)
    assert w1.address == ADDR_1
    assert w1.public_key.hex() == GENESIS["witnesses"][0]["signing_key"]
    assert PrivateKey(bytes([2]) * 32).address == ADDR_2
    assert PrivateKey(bytes([8]) * 32).address == ADDR_8
    assert PrivateKey(bytes([88]) * 32).public_key == KEY_88
    assert tapos_of(0, CHAIN_ID) == (REF_BLOCK_NUM, REF_BLOCK_PREFIX)
    assert sha256(b"hail-photo.jpg") == EVIDENCE


def test_vectors_cover_the_nine_ops() -> None:
    assert [op[0] for _, _, op, _, _ in VECTORS] == list(range(1, 10))
    assert VECTORS[4][4] == CLAIM_ID.hex()


@pytest.mark.parametrize(("name", "seed", "op", "tx_hex", "tx_id_hex"), VECTORS,
                         ids=[v[0] for v in VECTORS])
def test_vector(name: str, seed: int, op: list[Any], tx_hex: str, tx_id_hex: str) -> None:
    key = PrivateKey(bytes([seed]) * 32)
    tx = build_tx(key, CHAIN_ID, op, ref_block_num=REF_BLOCK_NUM,
                  ref_block_prefix=REF_BLOCK_PREFIX, expiration=EXPIRATION, fee=FEE)
    assert tx.raw.hex() == tx_hex
    assert tx.tx_id.hex() == tx_id_hex
    # the published bytes decode to the same tx, pass every stateless check and verify
    raw = bytes.fromhex(tx_hex)
    back = decode_tx(raw, 8192)
    assert back.tx_id == bytes.fromhex(tx_id_hex) == sha256(back.unsigned_bytes)
    assert back.unsigned() == [1, REF_BLOCK_NUM, REF_BLOCK_PREFIX, EXPIRATION, key.public_key,
                               FEE, op]
    assert verify_tx(back, CHAIN_ID)
    assert verify(key.public_key, raw[-64:], b"MUXER/tx/v1" + CHAIN_ID + encode(back.unsigned()))
    assert decode(raw) == [back.unsigned(), raw[-64:]]
    typed = decode_op(back.op)
    assert encode_op(typed) == op
    assert op_to_json(typed)["type"] == name


@pytest.mark.parametrize(("name", "seed", "op", "tx_hex", "tx_id_hex"), VECTORS,
                         ids=[v[0] for v in VECTORS])
def test_vector_from_protocol_text(
    name: str, seed: int, op: list[Any], tx_hex: str, tx_id_hex: str
) -> None:
    """The same bytes from section 3 alone: msgpack, hashlib and cryptography directly."""
    sk = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    pub = sk.public_key().public_bytes_raw()
    unsigned = [1, REF_BLOCK_NUM, REF_BLOCK_PREFIX, EXPIRATION, pub, FEE, op]
    unsigned_bytes = msgpack.packb(unsigned, use_bin_type=True)
    signature = sk.sign(b"MUXER/tx/v1" + CHAIN_ID + unsigned_bytes)
    assert msgpack.packb([unsigned, signature], use_bin_type=True).hex() == tx_hex
    assert hashlib.sha256(unsigned_bytes).hexdigest() == tx_id_hex


# RFC 8032 section 7.1, TEST 1: the signature primitive itself
def test_rfc8032_vector() -> None:
    key = PrivateKey(bytes.fromhex(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
    assert key.public_key.hex() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    assert key.sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
