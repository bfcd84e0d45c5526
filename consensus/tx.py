"""The transaction envelope (protocol section 3).

    unsigned_tx = [1, ref_block_num, ref_block_prefix, expiration, sender_pubkey, fee, op]
    signed_tx   = [unsigned_tx, signature]
    tx_id       = H(packb(unsigned_tx))
    signature   = Ed25519 over b"MUXER/tx/v1" + chain_id + packb(unsigned_tx)

The envelope treats ``op`` as an opaque array whose first item is an opcode: the
application (muxernode.ops) gives it meaning. Decoding checks everything that needs no
chain state except the signature, which is the expensive part and is verified separately
(on a thread pool in the node) exactly once per tx.
"""

from __future__ import annotations

from typing import Any

from consensus.codec import CodecError, decode, encode
from consensus.crypto import TAG_TX, PrivateKey, address_of, sha256, verify
from consensus.errors import Rejected

__all__ = ["TX_VERSION", "SignedTx", "build_tx", "decode_tx", "tx_id_of", "verify_tx"]

TX_VERSION = 1
U16 = 0xFFFF
U32 = 0xFFFFFFFF
MAX_AMOUNT = 2**63 - 1
# [unsigned, sig]: fixarray(2) header + unsigned + bin8 header (2 bytes) + 64-byte signature
_SIG_TAIL = 2 + 64


class SignedTx:
    """A decoded, shape-checked signed transaction. Immutable by convention."""

    __slots__ = (
        "app_op",
        "expiration",
        "fee",
        "op",
        "raw",
        "ref_block_num",
        "ref_block_prefix",
        "sender",
        "sender_pubkey",
        "signature",
        "tx_id",
    )

    def __init__(
        self,
        ref_block_num: int,
        ref_block_prefix: int,
        expiration: int,
        sender_pubkey: bytes,
        fee: int,
        op: list[Any],
        signature: bytes,
        raw: bytes,
        unsigned_bytes: bytes,
    ) -> None:
        self.ref_block_num = ref_block_num
        self.ref_block_prefix = ref_block_prefix
        self.expiration = expiration
        self.sender_pubkey = sender_pubkey
        self.fee = fee
        self.op = op
        self.signature = signature
        self.raw = raw
        self.tx_id = sha256(unsigned_bytes)
        self.sender = address_of(sender_pubkey)
        # The application's typed form of ``op``, filled on first use (muxernode.ops
        # ``op_of``): a node applies one tx several times (admission, the re-checks after
        # each new head, the block) and its static decoding is the same every time.
        self.app_op: Any = None

    @property
    def unsigned_bytes(self) -> bytes:
        """packb(unsigned_tx): a slice of raw, not kept (a mempool holds many txs)."""
        return self.raw[1:-_SIG_TAIL]

    def unsigned(self) -> list[Any]:
        return [
            TX_VERSION,
            self.ref_block_num,
            self.ref_block_prefix,
            self.expiration,
            self.sender_pubkey,
            self.fee,
            self.op,
        ]

    def obj(self) -> list[Any]:
        """The signed_tx array, as it is embedded in a block."""
        return [self.unsigned(), self.signature]

    def __repr__(self) -> str:
        return f"SignedTx({self.tx_id.hex()[:16]}, op={self.op[:1]})"


def tx_id_of(raw: bytes) -> bytes:
    """The tx_id of a signed tx's canonical bytes: H(packb(unsigned_tx)), which is raw
    without the array byte in front and the signature's bin at the end."""
    return sha256(raw[1:-_SIG_TAIL])


def _uint(x: Any, limit: int) -> bool:
    return type(x) is int and 0 <= x <= limit


def tx_from_obj(obj: Any, raw: bytes) -> SignedTx:
    """Shape-check a decoded signed_tx array. ``raw`` must be its canonical encoding."""
    if type(obj) is not list or len(obj) != 2:
        raise Rejected("bad_encoding", "a signed tx is an array [unsigned_tx, signature]")
    unsigned, signature = obj
    if type(unsigned) is not list or len(unsigned) != 7:
        raise Rejected("bad_encoding", "unsigned_tx is an array of 7 items")
    version, ref_num, ref_prefix, expiration, pubkey, fee, op = unsigned
    if version != TX_VERSION or type(version) is not int:
        raise Rejected("bad_encoding", f"unsupported tx version {version!r}")
    if not _uint(ref_num, U16):
        raise Rejected("bad_encoding", "ref_block_num must be an integer 0..65535")
    if not _uint(ref_prefix, U32):
        raise Rejected("bad_encoding", "ref_block_prefix must be an integer 0..2**32-1")
    if not _uint(expiration, 2**63 - 1):
        raise Rejected("bad_encoding", "expiration must be a non-negative integer")
    if type(pubkey) is not bytes or len(pubkey) != 32:
        raise Rejected("bad_encoding", "sender_pubkey must be 32 bytes")
    if not _uint(fee, MAX_AMOUNT):
        raise Rejected("bad_encoding", "fee must be an integer 0..2**63-1")
    if type(op) is not list or not op or type(op[0]) is not int:
        raise Rejected("bad_op", "op must be an array starting with an opcode")
    if type(signature) is not bytes or len(signature) != 64:
        raise Rejected("bad_encoding", "signature must be 64 bytes")
    # raw = 0x92 + packb(unsigned) + 0xc4 0x40 + signature, because raw is canonical.
    return SignedTx(
        ref_num, ref_prefix, expiration, pubkey, fee, op, signature, raw, raw[1:-_SIG_TAIL]
    )


def decode_tx(raw: bytes, max_tx_bytes: int) -> SignedTx:
    """Decode and shape-check a signed tx; raises Rejected (never verifies the signature)."""
    if len(raw) > max_tx_bytes:
        raise Rejected("too_large", f"tx is {len(raw)} bytes, max_tx_bytes is {max_tx_bytes}")
    try:
        obj = decode(raw)
    except CodecError as exc:
        raise Rejected("bad_encoding", str(exc)) from None
    return tx_from_obj(obj, raw)


def verify_tx(tx: SignedTx, chain_id: bytes) -> bool:
    return verify(tx.sender_pubkey, tx.signature, TAG_TX + chain_id + tx.unsigned_bytes)


def build_tx(
    key: PrivateKey,
    chain_id: bytes,
    op: list[Any],
    *,
    ref_block_num: int,
    ref_block_prefix: int,
    expiration: int,
    fee: int,
) -> SignedTx:
    """Build and sign a transaction (used by the wallet, the devnet and tests)."""
    unsigned = [TX_VERSION, ref_block_num, ref_block_prefix, expiration, key.public_key, fee, op]
    unsigned_bytes = encode(unsigned)
    signature = key.sign(TAG_TX + chain_id + unsigned_bytes)
    raw = encode([unsigned, signature])
    return SignedTx(
        ref_block_num,
        ref_block_prefix,
        expiration,
        key.public_key,
        fee,
        op,
        signature,
        raw,
        unsigned_bytes,
    )


def tapos_of(height: int, block_id: bytes) -> tuple[int, int]:
    """(ref_block_num, ref_block_prefix) naming the block of that height and id."""
    return height & U16, int.from_bytes(block_id[:4], "big")
