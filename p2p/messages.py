"""The p2p message set (protocol section 8 leaves it to us; docs/p2p.md is its reference).

Every message body is a MessagePack array ``[type, field, ...]``. Bodies are encoded with the
canonical encoder (consensus.codec.encode) but decoded with a plain, fast ``unpackb``: the p2p
layer does not hash its messages, so it has no need to insist on one encoding. It does refuse
maps and extension types (an attacker could otherwise make us build dicts and ext objects we
never look at), and every field is checked for type, size and range before a message object
exists. Anything wrong raises MessageError with a reason; the caller scores the peer.

Items inside TXS / BLOCKS / VOTES / BLOCK_RANGE stay opaque ``bytes``: whether they are valid
transactions, blocks or votes is the node's business, never this layer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise
from typing import Any, ClassVar

import msgpack

from consensus.codec import encode

__all__ = [
    "ID_LEN",
    "MAX_BYE_REASON",
    "MAX_COMPACT_TXS",
    "MAX_GET_BLOCKS",
    "MAX_HOST_LEN",
    "MAX_INV_IDS",
    "MAX_ITEMS",
    "MAX_PEER_ENTRIES",
    "MAX_SNAPSHOT_CHUNK",
    "MAX_SNAPSHOT_CHUNKS",
    "MAX_SNAPSHOT_MANIFEST",
    "NONCE_LEN",
    "PUBKEY_LEN",
    "SHORT_ID_LEN",
    "SIGNATURE_LEN",
    "STATE_SYNC_TYPES",
    "BlockRange",
    "BlockTxn",
    "Blocks",
    "Bye",
    "Chunk",
    "CmpctBlock",
    "CmpctSeen",
    "GetBlockTxn",
    "GetBlocks",
    "GetChunk",
    "GetData",
    "GetHeads",
    "GetSnapshot",
    "Heads",
    "Hello",
    "HelloAck",
    "Inv",
    "Kind",
    "Message",
    "MessageError",
    "NotFound",
    "Peers",
    "PeersReq",
    "Ping",
    "Pong",
    "SendCmpct",
    "SnapshotOffer",
    "Txs",
    "Votes",
    "decode_message",
    "encode_message",
    "serves_from",
]

ID_LEN = 32  # tx_id, block_id and vote hash are all SHA-256 digests
PUBKEY_LEN = 32
NONCE_LEN = 32
SIGNATURE_LEN = 64
MAX_INV_IDS = 4096  # ids per INV / GET_DATA / NOTFOUND: ~140 KiB, many ids per message
MAX_ITEMS = 4096  # raw items per TXS / BLOCKS / VOTES (the 4 MiB frame bounds the bytes)
MAX_GET_BLOCKS = 500  # blocks per GET_BLOCKS / BLOCK_RANGE
MAX_PEER_ENTRIES = 1000  # addresses per PEERS
MAX_HOST_LEN = 255  # a DNS name is at most 253 characters
MAX_BYE_REASON = 256
SHORT_ID_LEN = 6  # compact blocks: salted short tx ids, as BIP 152 (docs/p2p.md)
MAX_COMPACT_TXS = 32768  # txs per compact block (a 2 MiB block holds at most ~20,000)
MAX_HEADER_BYTES = 512  # an encoded block header is about 200 bytes
MAX_U64 = 2**64 - 1
MAX_HEIGHT = 2**63 - 1


class MessageError(ValueError):
    """A frame body that is not a well-formed message; ``reason`` says what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Kind(IntEnum):
    """What an inventory id names."""

    TX = 0
    BLOCK = 1
    VOTE = 2


# --- field checks ---------------------------------------------------------------------------
# ``type(x) is int`` (not isinstance) so that bools, which msgpack decodes as True/False,
# never pass as integers.


def _arity(f: list[Any], n: int, name: str, *, at_least: bool = False) -> None:
    if len(f) < n or (not at_least and len(f) != n):
        raise MessageError(f"{name}: expected {n} fields, got {len(f)}")


def _int(x: Any, what: str, lo: int = 0, hi: int = MAX_U64) -> int:
    if type(x) is not int:
        raise MessageError(f"{what} must be an integer")
    if not lo <= x <= hi:
        raise MessageError(f"{what} out of range [{lo}, {hi}]: {x}")
    return x


def _bin(x: Any, what: str, size: int | None = None) -> bytes:
    if type(x) is not bytes:
        raise MessageError(f"{what} must be bin")
    if size is not None and len(x) != size:
        raise MessageError(f"{what} must be {size} bytes, got {len(x)}")
    return x


def _str(x: Any, what: str, max_bytes: int) -> str:
    if type(x) is not str:
        raise MessageError(f"{what} must be str")
    if len(x.encode("utf-8", "surrogatepass")) > max_bytes:
        raise MessageError(f"{what} longer than {max_bytes} bytes")
    return x


def _list(x: Any, what: str, max_len: int, *, min_len: int = 0) -> list[Any]:
    if type(x) is not list:
        raise MessageError(f"{what} must be an array")
    if not min_len <= len(x) <= max_len:
        raise MessageError(f"{what} must have {min_len}..{max_len} entries, has {len(x)}")
    return x


def _kind(x: Any) -> Kind:
    k = _int(x, "kind", 0, max(Kind))
    return Kind(k)


def _ids(x: Any, what: str) -> list[bytes]:
    return [_bin(i, f"{what} id", ID_LEN) for i in _list(x, what, MAX_INV_IDS, min_len=1)]


def _items(x: Any, what: str, max_len: int, *, min_len: int) -> list[bytes]:
    items = _list(x, what, max_len, min_len=min_len)
    for raw in items:
        if type(raw) is not bytes or not raw:
            raise MessageError(f"{what} items must be non-empty bin")
    return items


# --- messages -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """First message of a connection: who I am, which chain, a fresh nonce to sign."""

    TYPE: ClassVar[int] = 1
    version: int
    chain_id: bytes
    node_pubkey: bytes
    nonce: bytes
    listen_port: int  # 0 = not listening; the peer learns our host from the socket
    head_height: int
    head_id: bytes
    # which blocks the sender serves (GET_BLOCKS): every one from lowest_block up, and
    # with keep_blocks > 0 (a pruning node) only the last keep_blocks below its head as it
    # grows; (1, 0) serves all. Optional on the wire: a 7-field HELLO means (1, 0).
    lowest_block: int = 1
    keep_blocks: int = 0

    def fields(self) -> list[Any]:
        return [self.version, self.chain_id, self.node_pubkey, self.nonce, self.listen_port,
                self.head_height, self.head_id, self.lowest_block, self.keep_blocks]

    @classmethod
    def parse(cls, f: list[Any]) -> Hello:
        # Extra trailing fields are allowed so that a later version's longer HELLO still
        # decodes far enough to be refused for its version, not as a "malformed" message.
        _arity(f, 7, "HELLO", at_least=True)
        if len(f) == 8:
            raise MessageError("HELLO: lowest_block without keep_blocks")
        return cls(
            _int(f[0], "version", 0, 2**32 - 1),
            _bin(f[1], "chain_id", 32),
            _bin(f[2], "node_pubkey", PUBKEY_LEN),
            _bin(f[3], "nonce", NONCE_LEN),
            _int(f[4], "listen_port", 0, 65535),
            _int(f[5], "head_height", 0, MAX_HEIGHT),
            _bin(f[6], "head_id", ID_LEN),
            _int(f[7], "lowest_block", 1, MAX_HEIGHT) if len(f) > 7 else 1,
            _int(f[8], "keep_blocks", 0, MAX_HEIGHT) if len(f) > 8 else 0,
        )


def serves_from(lowest_block: int, keep_blocks: int, head_height: int) -> int:
    """The lowest height whose block a peer that said (lowest_block, keep_blocks) in its
    HELLO surely serves once its head is at head_height."""
    if keep_blocks:
        return max(lowest_block, head_height - keep_blocks + 1)
    return lowest_block


@dataclass(frozen=True, slots=True)
class HelloAck:
    """Proof of the node key: a signature over the OTHER side's nonce (see handshake.py)."""

    TYPE: ClassVar[int] = 2
    signature: bytes

    def fields(self) -> list[Any]:
        return [self.signature]

    @classmethod
    def parse(cls, f: list[Any]) -> HelloAck:
        _arity(f, 1, "HELLO_ACK")
        return cls(_bin(f[0], "signature", SIGNATURE_LEN))


@dataclass(frozen=True, slots=True)
class Ping:
    TYPE: ClassVar[int] = 3
    nonce: int

    def fields(self) -> list[Any]:
        return [self.nonce]

    @classmethod
    def parse(cls, f: list[Any]) -> Ping:
        _arity(f, 1, "PING")
        return cls(_int(f[0], "nonce"))


@dataclass(frozen=True, slots=True)
class Pong:
    TYPE: ClassVar[int] = 4
    nonce: int

    def fields(self) -> list[Any]:
        return [self.nonce]

    @classmethod
    def parse(cls, f: list[Any]) -> Pong:
        _arity(f, 1, "PONG")
        return cls(_int(f[0], "nonce"))


@dataclass(frozen=True, slots=True)
class Inv:
    """I have these items (many ids per message)."""

    TYPE: ClassVar[int] = 5
    kind: Kind
    ids: list[bytes]

    def fields(self) -> list[Any]:
        return [int(self.kind), self.ids]

    @classmethod
    def parse(cls, f: list[Any]) -> Inv:
        _arity(f, 2, "INV")
        return cls(_kind(f[0]), _ids(f[1], "INV"))


@dataclass(frozen=True, slots=True)
class GetData:
    """Send me these items; answered by TXS/BLOCKS/VOTES, then NOTFOUND for the rest."""

    TYPE: ClassVar[int] = 6
    kind: Kind
    ids: list[bytes]

    def fields(self) -> list[Any]:
        return [int(self.kind), self.ids]

    @classmethod
    def parse(cls, f: list[Any]) -> GetData:
        _arity(f, 2, "GET_DATA")
        return cls(_kind(f[0]), _ids(f[1], "GET_DATA"))


@dataclass(frozen=True, slots=True)
class Txs:
    TYPE: ClassVar[int] = 7
    raws: list[bytes]

    def fields(self) -> list[Any]:
        return [self.raws]

    @classmethod
    def parse(cls, f: list[Any]) -> Txs:
        _arity(f, 1, "TXS")
        return cls(_items(f[0], "TXS", MAX_ITEMS, min_len=1))


@dataclass(frozen=True, slots=True)
class Blocks:
    TYPE: ClassVar[int] = 8
    raws: list[bytes]

    def fields(self) -> list[Any]:
        return [self.raws]

    @classmethod
    def parse(cls, f: list[Any]) -> Blocks:
        _arity(f, 1, "BLOCKS")
        return cls(_items(f[0], "BLOCKS", MAX_ITEMS, min_len=1))


@dataclass(frozen=True, slots=True)
class Votes:
    TYPE: ClassVar[int] = 9
    raws: list[bytes]

    def fields(self) -> list[Any]:
        return [self.raws]

    @classmethod
    def parse(cls, f: list[Any]) -> Votes:
        _arity(f, 1, "VOTES")
        return cls(_items(f[0], "VOTES", MAX_ITEMS, min_len=1))


@dataclass(frozen=True, slots=True)
class GetBlocks:
    """Sync: the blocks of heights from_height .. from_height + count - 1 of your chain."""

    TYPE: ClassVar[int] = 10
    from_height: int
    count: int

    def fields(self) -> list[Any]:
        return [self.from_height, self.count]

    @classmethod
    def parse(cls, f: list[Any]) -> GetBlocks:
        _arity(f, 2, "GET_BLOCKS")
        return cls(_int(f[0], "from_height", 0, MAX_HEIGHT),
                   _int(f[1], "count", 1, MAX_GET_BLOCKS))


@dataclass(frozen=True, slots=True)
class GetHeads:
    TYPE: ClassVar[int] = 11

    def fields(self) -> list[Any]:
        return []

    @classmethod
    def parse(cls, f: list[Any]) -> GetHeads:
        _arity(f, 0, "GET_HEADS")
        return cls()


@dataclass(frozen=True, slots=True)
class Heads:
    TYPE: ClassVar[int] = 12
    head_height: int
    head_id: bytes
    final_height: int

    def fields(self) -> list[Any]:
        return [self.head_height, self.head_id, self.final_height]

    @classmethod
    def parse(cls, f: list[Any]) -> Heads:
        _arity(f, 3, "HEADS")
        height = _int(f[0], "head_height", 0, MAX_HEIGHT)
        return cls(height, _bin(f[1], "head_id", ID_LEN),
                   _int(f[2], "final_height", 0, height))


@dataclass(frozen=True, slots=True)
class PeersReq:
    TYPE: ClassVar[int] = 13

    def fields(self) -> list[Any]:
        return []

    @classmethod
    def parse(cls, f: list[Any]) -> PeersReq:
        _arity(f, 0, "PEERS_REQ")
        return cls()


@dataclass(frozen=True, slots=True)
class Peers:
    TYPE: ClassVar[int] = 14
    addresses: list[tuple[str, int]]

    def fields(self) -> list[Any]:
        return [[[h, p] for h, p in self.addresses]]

    @classmethod
    def parse(cls, f: list[Any]) -> Peers:
        _arity(f, 1, "PEERS")
        out: list[tuple[str, int]] = []
        for entry in _list(f[0], "PEERS", MAX_PEER_ENTRIES):
            e = _list(entry, "PEERS entry", 2, min_len=2)
            host = _str(e[0], "PEERS host", MAX_HOST_LEN)
            if not host:
                raise MessageError("PEERS host is empty")
            out.append((host, _int(e[1], "PEERS port", 1, 65535)))
        return cls(out)


@dataclass(frozen=True, slots=True)
class Bye:
    TYPE: ClassVar[int] = 15
    reason: str

    def fields(self) -> list[Any]:
        return [self.reason]

    @classmethod
    def parse(cls, f: list[Any]) -> Bye:
        _arity(f, 1, "BYE")
        return cls(_str(f[0], "BYE reason", MAX_BYE_REASON))


@dataclass(frozen=True, slots=True)
class NotFound:
    """The ids of a GET_DATA that the sender does not have (so we can ask someone else)."""

    TYPE: ClassVar[int] = 16
    kind: Kind
    ids: list[bytes]

    def fields(self) -> list[Any]:
        return [int(self.kind), self.ids]

    @classmethod
    def parse(cls, f: list[Any]) -> NotFound:
        _arity(f, 2, "NOTFOUND")
        return cls(_kind(f[0]), _ids(f[1], "NOTFOUND"))


@dataclass(frozen=True, slots=True)
class BlockRange:
    """The answer to GET_BLOCKS: a prefix (maybe empty) of the asked range, in height order.

    A distinct type from BLOCKS so that a sync answer can never be confused with gossip.
    """

    TYPE: ClassVar[int] = 17
    from_height: int
    raws: list[bytes]

    def fields(self) -> list[Any]:
        return [self.from_height, self.raws]

    @classmethod
    def parse(cls, f: list[Any]) -> BlockRange:
        _arity(f, 2, "BLOCK_RANGE")
        return cls(_int(f[0], "from_height", 0, MAX_HEIGHT),
                   _items(f[1], "BLOCK_RANGE", MAX_GET_BLOCKS, min_len=0))


# --- state sync (types 20-29; muxernode/statesync.py owns their meaning) --------------------
# The manifest and the chunks stay opaque bytes here, as blocks do: whether they prove
# anything is the node's business. A chunk is at most MAX_SNAPSHOT_CHUNK so that it and its
# header fit one frame; a manifest is at most one frame.

MAX_SNAPSHOT_CHUNK = 1024 * 1024
MAX_SNAPSHOT_MANIFEST = 4 * 1024 * 1024 - 1024
MAX_SNAPSHOT_CHUNKS = 1 << 20  # chunk indices: 1 TiB of state at MAX_SNAPSHOT_CHUNK


@dataclass(frozen=True, slots=True)
class GetSnapshot:
    """State sync: offer me your latest final snapshot (answered by SNAPSHOT)."""

    TYPE: ClassVar[int] = 20

    def fields(self) -> list[Any]:
        return []

    @classmethod
    def parse(cls, f: list[Any]) -> GetSnapshot:
        _arity(f, 0, "GET_SNAPSHOT")
        return cls()


@dataclass(frozen=True, slots=True)
class SnapshotOffer:
    """The answer to GET_SNAPSHOT: the final height and the manifest of its snapshot;
    height 0 with an empty manifest when the sender has none to offer (yet)."""

    TYPE: ClassVar[int] = 21
    height: int
    manifest: bytes

    def fields(self) -> list[Any]:
        return [self.height, self.manifest]

    @classmethod
    def parse(cls, f: list[Any]) -> SnapshotOffer:
        _arity(f, 2, "SNAPSHOT")
        height = _int(f[0], "height", 0, MAX_HEIGHT)
        manifest = _bin(f[1], "manifest")
        if len(manifest) > MAX_SNAPSHOT_MANIFEST or (height == 0) != (not manifest):
            raise MessageError("SNAPSHOT: a manifest (at most "
                               f"{MAX_SNAPSHOT_MANIFEST} bytes) iff height > 0")
        return cls(height, manifest)


@dataclass(frozen=True, slots=True)
class GetChunk:
    """State sync: chunk ``index`` of your snapshot at ``height`` (answered by CHUNK)."""

    TYPE: ClassVar[int] = 22
    height: int
    index: int

    def fields(self) -> list[Any]:
        return [self.height, self.index]

    @classmethod
    def parse(cls, f: list[Any]) -> GetChunk:
        _arity(f, 2, "GET_CHUNK")
        return cls(_int(f[0], "height", 1, MAX_HEIGHT),
                   _int(f[1], "index", 0, MAX_SNAPSHOT_CHUNKS - 1))


@dataclass(frozen=True, slots=True)
class Chunk:
    """The answer to GET_CHUNK; empty data when the sender no longer has that snapshot."""

    TYPE: ClassVar[int] = 23
    height: int
    index: int
    data: bytes

    def fields(self) -> list[Any]:
        return [self.height, self.index, self.data]

    @classmethod
    def parse(cls, f: list[Any]) -> Chunk:
        _arity(f, 3, "CHUNK")
        data = _bin(f[2], "chunk data")
        if len(data) > MAX_SNAPSHOT_CHUNK:
            raise MessageError(f"CHUNK data over {MAX_SNAPSHOT_CHUNK} bytes")
        return cls(_int(f[0], "height", 1, MAX_HEIGHT),
                   _int(f[1], "index", 0, MAX_SNAPSHOT_CHUNKS - 1), data)


STATE_SYNC_TYPES = (GetSnapshot, SnapshotOffer, GetChunk, Chunk)

# --- compact blocks (types 30-39; p2p/compact.py builds and rebuilds them) ------------------


def _increasing(xs: list[Any], what: str, n: int) -> list[int]:
    out = [_int(x, f"{what} index", 0, n - 1) for x in xs]
    if any(b <= a for a, b in pairwise(out)):
        raise MessageError(f"{what} indexes must be strictly increasing")
    return out


@dataclass(frozen=True, slots=True)
class CmpctBlock:
    """A new block as its header, signature and votes in full and its txs as short ids
    salted by (header, nonce); ``body_hash`` = H(the whole block's bytes), so a rebuild is
    checked byte for byte before it goes to the node."""

    TYPE: ClassVar[int] = 30
    header: bytes  # the header's canonical encoding: block id = H(header)
    signature: bytes
    nonce: int
    short_ids: bytes  # SHORT_ID_LEN bytes per tx, in block order
    votes: bytes  # the block's votes array, encoded
    body_hash: bytes
    # (index, tx bytes) of the txs the sender expects the peer to lack (its INV of them
    # has not even left yet), in increasing index order
    prefilled: tuple[tuple[int, bytes], ...] = ()

    def fields(self) -> list[Any]:
        return [self.header, self.signature, self.nonce, self.short_ids, self.votes,
                self.body_hash, [[i, raw] for i, raw in self.prefilled]]

    @property
    def tx_count(self) -> int:
        return len(self.short_ids) // SHORT_ID_LEN

    @classmethod
    def parse(cls, f: list[Any]) -> CmpctBlock:
        _arity(f, 7, "CMPCT_BLOCK")
        header = _bin(f[0], "header")
        if not 0 < len(header) <= MAX_HEADER_BYTES:
            raise MessageError(f"header must be 1..{MAX_HEADER_BYTES} bytes")
        short_ids = _bin(f[3], "short_ids")
        if len(short_ids) % SHORT_ID_LEN or len(short_ids) > SHORT_ID_LEN * MAX_COMPACT_TXS:
            raise MessageError(f"short_ids must be a multiple of {SHORT_ID_LEN} bytes, at "
                               f"most {MAX_COMPACT_TXS} ids")
        votes = _bin(f[4], "votes")
        if not votes:
            raise MessageError("votes must be an encoded array")
        n = len(short_ids) // SHORT_ID_LEN
        entries = [_list(e, "prefilled entry", 2, min_len=2)
                   for e in _list(f[6], "prefilled", n)]
        index = _increasing([e[0] for e in entries], "prefilled", max(n, 1))
        raws = _items([e[1] for e in entries], "prefilled", n, min_len=0)
        return cls(header, _bin(f[1], "signature", SIGNATURE_LEN), _int(f[2], "nonce"),
                   short_ids, votes, _bin(f[5], "body_hash", ID_LEN),
                   tuple(zip(index, raws, strict=True)))


@dataclass(frozen=True, slots=True)
class GetBlockTxn:
    """The txs of a compact block that the asker could not find, by index in the block."""

    TYPE: ClassVar[int] = 31
    block_id: bytes
    indexes: list[int]

    def fields(self) -> list[Any]:
        return [self.block_id, self.indexes]

    @classmethod
    def parse(cls, f: list[Any]) -> GetBlockTxn:
        _arity(f, 2, "GET_BLOCK_TXN")
        idx = _list(f[1], "GET_BLOCK_TXN", MAX_COMPACT_TXS, min_len=1)
        return cls(_bin(f[0], "block_id", ID_LEN),
                   _increasing(idx, "GET_BLOCK_TXN", MAX_COMPACT_TXS))


@dataclass(frozen=True, slots=True)
class BlockTxn:
    """The answer to GET_BLOCK_TXN: the asked txs' raw bytes, in the asked order."""

    TYPE: ClassVar[int] = 32
    block_id: bytes
    raws: list[bytes]

    def fields(self) -> list[Any]:
        return [self.block_id, self.raws]

    @classmethod
    def parse(cls, f: list[Any]) -> BlockTxn:
        _arity(f, 2, "BLOCK_TXN")
        return cls(_bin(f[0], "block_id", ID_LEN),
                   _items(f[1], "BLOCK_TXN", MAX_COMPACT_TXS, min_len=1))


@dataclass(frozen=True, slots=True)
class SendCmpct:
    """Push me new blocks as CMPCT_BLOCK (BIP 152's sendcmpct); sent once after the
    handshake. A peer that never sends it gets new blocks in full (BLOCKS)."""

    TYPE: ClassVar[int] = 33

    def fields(self) -> list[Any]:
        return []

    @classmethod
    def parse(cls, f: list[Any]) -> SendCmpct:
        _arity(f, 0, "SEND_CMPCT")
        return cls()


@dataclass(frozen=True, slots=True)
class CmpctSeen:
    """I have this block's compact form (and am taking it): do not push it to me. Sent to
    the other compact peers on a block's first CMPCT_BLOCK, before the rebuild, so that
    they, relaying the block once they have applied it, skip us."""

    TYPE: ClassVar[int] = 34
    block_id: bytes

    def fields(self) -> list[Any]:
        return [self.block_id]

    @classmethod
    def parse(cls, f: list[Any]) -> CmpctSeen:
        _arity(f, 1, "CMPCT_SEEN")
        return cls(_bin(f[0], "block_id", ID_LEN))


Message = (
    Hello | HelloAck | Ping | Pong | Inv | GetData | Txs | Blocks | Votes | GetBlocks
    | GetHeads | Heads | PeersReq | Peers | Bye | NotFound | BlockRange
    | GetSnapshot | SnapshotOffer | GetChunk | Chunk
    | CmpctBlock | GetBlockTxn | BlockTxn | SendCmpct | CmpctSeen
)

_TYPES: dict[int, Any] = {
    cls.TYPE: cls
    for cls in (Hello, HelloAck, Ping, Pong, Inv, GetData, Txs, Blocks, Votes, GetBlocks,
                GetHeads, Heads, PeersReq, Peers, Bye, NotFound, BlockRange,
                GetSnapshot, SnapshotOffer, GetChunk, Chunk,
                CmpctBlock, GetBlockTxn, BlockTxn, SendCmpct, CmpctSeen)
}


def encode_message(msg: Message) -> bytes:
    """The body of a frame: ``packb([type, *fields])``."""
    return encode([msg.TYPE, *msg.fields()])


def _no_maps(_pairs: Any) -> Any:
    raise MessageError("maps are not allowed in p2p messages")


def _no_ext(_code: int, _data: bytes) -> Any:
    raise MessageError("extension types are not allowed in p2p messages")


def decode_message(body: bytes) -> Message:
    """Decode and validate one frame body; raise MessageError for anything else."""
    try:
        obj = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True,
                              object_pairs_hook=_no_maps, ext_hook=_no_ext)
    except MessageError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for malformed input
        raise MessageError(f"malformed msgpack: {type(exc).__name__}") from None
    if type(obj) is not list or not obj:
        raise MessageError("a message is a non-empty array")
    kind = obj[0]
    if type(kind) is not int:
        raise MessageError("message type must be an integer")
    cls = _TYPES.get(kind)
    if cls is None:
        raise MessageError(f"unknown message type {kind}")
    msg: Message = cls.parse(obj[1:])
    return msg
