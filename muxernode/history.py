"""Account history (protocol section 12, ``get_history``): which txs touched an address.

What a tx touches is derived from its decoded op (``ops.op_to_json``): the sender, as
``"sender"``; an address in a ``to`` or ``proxy`` field, as ``"recipient"``; for a give,
the claim's claimant (read from the state), as ``"recipient"``. A standing-pledge
execution (protocol 11.3, run by the ledger before a block's txs) is an item of type
``"pledge"`` with ``tx_id`` null and ``"scheduled": true`` for the member that pledged.

The ledger reports a block's standing-pledge executions through one attribute, read right
after the block was applied or built (before its batch is written):

    ledger.last_scheduled: list[tuple[str, bytes, int]]   # (society, address, amount)

the executed ones only (a missed execution moves nothing), in execution order. A ledger
without the attribute has none (version 1).

Index keys (under ``storage.schema.PREFIX_HISTORY``), written in the block's own batch by
``HistoryIndex.commit_keys`` (the chain's indexer hook) and removed in the batch that pops
the block:

    I a + address(20) + ~height(8) + ~pos(4) + role(1)   [tx_id or b"", type, society, amount]
    I u + block_id                                       the keys the block added (its undo)

``~n`` is the bitwise complement, so ascending key order is newest first: later blocks
first, and within a block later txs first (``pos`` is 2**16 + the tx's index; a standing
pledge's execution is its execution order, below every tx: they run before the txs).
The undo record of a block goes when the block becomes final, as the chain's own does;
on a pruning node (``--keep-blocks``, ``pruning`` set) it stays until the block itself is
pruned, and then ``drop_keys`` deletes exactly the keys it lists with it. A pruned node's
history so holds the items of the blocks it holds, no older ones: get_history lists them
and ends there, and a cursor into pruned blocks is answered -32006 (muxernode/rpc.py). A
block that became final before pruning was on has no undo record left: its keys are
derived again from its txs (the few standing-pledge executions among them stay behind).

A node that turns history on over a data directory without it (a first start with this
version, or after ``--no-history``) indexes the blocks from ``from_height`` on as they
come and builds the rest in the background (``build``), final blocks only; until that is
done ``ready`` is False and get_history answers -32004. Blocks built in the background
carry no standing-pledge executions (the ledger reports them only as a block is applied).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import msgpack

from consensus.block import Block
from consensus.errors import Rejected
from consensus.tx import SignedTx
from muxernode.ops import op_of, op_to_json
from storage import schema

__all__ = [
    "MAX_LIMIT",
    "CursorError",
    "HistoryIndex",
    "Touch",
    "history_item",
    "scheduled_of",
    "touches_of_block",
]

log = logging.getLogger("muxer.history")

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
MAX_SCAN = 5000  # index entries one get_history call reads at most (filters skip entries)
TX_POS = 1 << 16  # a tx's position is TX_POS + its index; executions come before
SENDER, RECIPIENT = 0, 1
ROLES = ("sender", "recipient")
RECIPIENT_FIELDS = ("to", "proxy")
_ADDR = schema.PREFIX_HISTORY + b"a"
_UNDO = schema.PREFIX_HISTORY + b"u"
_POS_LEN = 8 + 4 + 1
_MAC_LEN = 8
BUILD_BATCH = 64  # blocks per background batch


class CursorError(ValueError):
    """A cursor this node did not hand out (or for another address)."""


@dataclass(frozen=True, slots=True)
class Touch:
    """One history item of one address: a tx (``tx`` set) or a standing-pledge execution."""

    address: bytes
    role: int
    pos: int
    type: str
    society: str | None
    tx: SignedTx | None = None
    op: dict[str, Any] | None = None
    amount: int = 0


class Entry(NamedTuple):
    """One index entry as get_history reads it."""

    height: int
    pos: int
    role: int
    tx_id: bytes | None
    type: str
    society: str | None
    amount: int


ClaimLookup = Callable[[bytes], tuple[str, bytes] | None]  # claim id -> (society, claimant)


def _touches_of_tx(tx: SignedTx, index: int, claim_of: ClaimLookup) -> list[Touch]:
    try:
        op = op_to_json(op_of(tx))
    except Rejected:  # never in a valid block; kept out of the index rather than crash
        return []
    kind = op["type"]
    society = op.get("society")
    claim_id = op.get("claim_id")
    claimant: bytes | None = None
    if type(claim_id) is str:
        found = claim_of(bytes.fromhex(claim_id))
        if found is not None:
            society = society or found[0]
            claimant = found[1] if kind == "give" else None
    pos = TX_POS + index
    out = [Touch(tx.sender, SENDER, pos, kind, society, tx, op)]
    others: list[bytes] = []
    for name in RECIPIENT_FIELDS:
        v = getattr(op_of(tx), name, None)
        if type(v) is bytes and len(v) == 20:
            others.append(v)
    if claimant is not None:
        others.append(claimant)
    seen = {tx.sender}
    for addr in others:
        if addr not in seen:
            seen.add(addr)
            out.append(Touch(addr, RECIPIENT, pos, kind, society, tx, op))
    return out


def scheduled_of(app: Any) -> list[tuple[str, bytes, int]]:
    """The standing pledges the app executed in its last block (see the module doc)."""
    items = getattr(app, "last_scheduled", None)
    return list(items) if items else []


def touches_of_block(block: Block, claim_of: ClaimLookup,
                     scheduled: Iterable[tuple[str, bytes, int]] = ()) -> list[Touch]:
    """Every history item of the block, in block order (executions first, then txs)."""
    out = [Touch(addr, SENDER, j, "pledge", society, None,
                 {"type": "pledge", "society": society, "amount": amount}, amount)
           for j, (society, addr, amount) in enumerate(scheduled)]
    for i, tx in enumerate(block.txs):
        out.extend(_touches_of_tx(tx, i, claim_of))
    return out


def history_item(t: Touch, height: int, time: int) -> dict[str, Any]:
    """The get_history / account-notification shape of one item."""
    item: dict[str, Any] = {"tx_id": None if t.tx is None else t.tx.tx_id.hex(),
                            "height": height, "time": time, "type": t.type,
                            "op": t.op, "role": ROLES[t.role]}
    if t.tx is None:
        item["scheduled"] = True
    return item


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False)


def _position(height: int, pos: int, role: int) -> bytes:
    return ((~height) & (2**64 - 1)).to_bytes(8, "big") + \
        ((~pos) & 0xFFFFFFFF).to_bytes(4, "big") + bytes([role])


class RangeStore(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def write(self, changes: Mapping[bytes, bytes | None], sync: bool = False) -> None: ...

    def iterate_from(self, prefix: bytes, start: bytes) -> Iterator[tuple[bytes, bytes]]: ...


class BlockSource(Protocol):
    """What the index reads of the chain."""

    def block_id_at(self, height: int) -> bytes | None: ...

    def get_block(self, block_id: bytes) -> Block | None: ...


class HistoryIndex:
    """The chain's indexer hook (``consensus.chain.BlockIndexer``) and get_history."""

    def __init__(self, store: RangeStore, claim_of: ClaimLookup, secret: bytes,
                 scheduled: Callable[[], list[tuple[str, bytes, int]]] = list) -> None:
        self.store = store
        self.claim_of = claim_of
        self.scheduled = scheduled
        self._secret = hashlib.sha256(b"muxer/history-cursor" + secret).digest()
        raw = store.get(schema.META_HISTORY)
        # [from_height, built_below]: complete from from_height; [1, built_below) built
        meta: list[Any] = [None, 1] if raw is None else _unpack(raw)
        self.from_height: int | None = meta[0]
        self.built_below: int = meta[1]
        self.last_touches: tuple[bytes, list[Touch]] = (b"", [])  # the last block's items
        self.pruning = False  # blocks are pruned: keep the undo records until then

    @property
    def ready(self) -> bool:
        return self.from_height is not None and self.built_below >= self.from_height

    @property
    def lag(self) -> int:
        """Blocks the background build still has to index (0 once ready)."""
        if self.from_height is None:
            return 0
        return max(0, int(self.from_height) - self.built_below)

    def start(self, head_height: int) -> None:
        """Called once the chain is open: on a directory without the index, the index is
        complete from the next block on and the rest is built by ``build``."""
        if self.from_height is None:
            self.from_height = head_height + 1
            self.built_below = 1
            self._save_meta({})
            log.info("history_build_needed", extra={"kv": {"blocks": head_height}})

    def _save_meta(self, batch: dict[bytes, bytes | None]) -> None:
        batch[schema.META_HISTORY] = _pack([self.from_height, self.built_below])
        self.store.write(batch, sync=True)

    # --- the chain's hook ----------------------------------------------------------------

    def _keys(self, block: Block, touches: list[Touch]) -> dict[bytes, bytes | None]:
        out: dict[bytes, bytes | None] = {}
        for t in touches:
            key = _ADDR + t.address + _position(block.height, t.pos, t.role)
            out[key] = _pack([b"" if t.tx is None else t.tx.tx_id, t.type, t.society,
                              t.amount])
        return out

    def commit_keys(self, block: Block, changes: Mapping[bytes, bytes | None]
                    ) -> dict[bytes, bytes | None]:
        try:
            touches = touches_of_block(block, self.claim_of, self.scheduled())
        except Exception:
            # this runs inside the chain's commit: a bug here must cost the history of a
            # block, never the block itself (the node would stop following the chain)
            log.exception("history_index_failed", extra={"kv": {"height": block.height}})
            touches = []
        self.last_touches = (block.id, touches)
        keys = self._keys(block, touches)
        keys[_UNDO + block.id] = _pack(list(keys))
        return keys

    def pop_keys(self, block: Block) -> dict[bytes, bytes | None]:
        raw = self.store.get(_UNDO + block.id)
        out: dict[bytes, bytes | None] = {} if raw is None else {k: None for k in _unpack(raw)}
        out[_UNDO + block.id] = None
        return out

    def prune_keys(self, block_id: bytes) -> list[bytes]:
        return [] if self.pruning else [_UNDO + block_id]

    def drop_keys(self, block: Block) -> list[bytes]:
        raw = self.store.get(_UNDO + block.id)
        if raw is not None:
            return [*_unpack(raw), _UNDO + block.id]
        return list(self._keys(block, touches_of_block(block, self.claim_of)))

    # --- the background build --------------------------------------------------------------

    def build_step(self, chain: BlockSource, final_height: int) -> int:
        """Index up to BUILD_BATCH final blocks below from_height (one batch); the number
        of blocks done. Rewriting a key a live commit wrote is harmless: same key, same
        value (a block is immutable)."""
        if self.from_height is None or self.ready:
            return 0
        stop = min(self.from_height, final_height + 1, self.built_below + BUILD_BATCH)
        batch: dict[bytes, bytes | None] = {}
        done = 0
        for h in range(self.built_below, stop):
            bid = chain.block_id_at(h)
            block = None if bid is None else chain.get_block(bid)
            # a final block this node does not hold (it started from a snapshot): no
            # history below the snapshot, nothing to wait for
            if block is not None:
                batch.update(self._keys(block, touches_of_block(block, self.claim_of)))
            done += 1
        if done:
            self.built_below += done
            self._save_meta(batch)
        return done

    # --- queries -----------------------------------------------------------------------

    def _mac(self, address: bytes, position: bytes) -> bytes:
        return hmac.new(self._secret, address + position, "sha256").digest()[:_MAC_LEN]

    def cursor(self, address: bytes, position: bytes) -> str:
        return (position + self._mac(address, position)).hex()

    @staticmethod
    def cursor_height(position: bytes) -> int:
        """The height of the item a cursor's position (``parse_cursor``) stands at."""
        return (~int.from_bytes(position[:8], "big")) & (2**64 - 1)

    def parse_cursor(self, address: bytes, text: str) -> bytes:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise CursorError("before must be a cursor from get_history") from None
        position, mac = raw[:_POS_LEN], raw[_POS_LEN:]
        if len(raw) != _POS_LEN + _MAC_LEN or not hmac.compare_digest(
                mac, self._mac(address, position)):
            raise CursorError("before is not a cursor this node handed out for this address")
        return position

    def query(self, address: bytes, *, types: frozenset[str] | None = None,
              society: str | None = None, before: bytes | None = None,
              limit: int = DEFAULT_LIMIT
              ) -> tuple[list[Entry], str | None]:
        """Index entries newest first, and the cursor of the next page (None at the end).
        At most MAX_SCAN entries are read; a page cut short by that still has a cursor."""
        prefix = _ADDR + address
        # positions are of one length: the first key after ``before`` itself
        start = prefix + (b"" if before is None else before + b"\x00")
        out: list[Entry] = []
        last: bytes | None = None
        scanned = 0
        for key, value in self.store.iterate_from(prefix, start):
            position = key[len(prefix):]
            scanned += 1
            if len(out) >= limit or scanned > MAX_SCAN:
                return out, self.cursor(address, last) if last is not None else None
            last = position
            tx_id, kind, soc, amount = _unpack(value)
            if types is not None and kind not in types:
                continue
            if society is not None and soc != society:
                continue
            height = self.cursor_height(position)
            pos = (~int.from_bytes(position[8:12], "big")) & 0xFFFFFFFF
            out.append(Entry(height, pos, position[12], tx_id or None, kind, soc, amount))
        return out, None

    def items(self, chain: BlockSource, entries: Iterable[Entry],
              address: bytes) -> list[dict[str, Any]]:
        """get_history items of query's entries (each tx read from its block)."""
        out: list[dict[str, Any]] = []
        for e in entries:
            bid = chain.block_id_at(e.height)
            block = None if bid is None else chain.get_block(bid)
            if block is None:
                continue
            if e.tx_id is None:
                t = Touch(address, SENDER, e.pos, e.type, e.society, None,
                          {"type": "pledge", "society": e.society, "amount": e.amount},
                          e.amount)
                out.append(history_item(t, e.height, block.timestamp))
                continue
            i = e.pos - TX_POS
            tx = block.txs[i] if 0 <= i < len(block.txs) else None
            if tx is None or tx.tx_id != e.tx_id:
                continue
            t = Touch(address, e.role, e.pos, e.type, e.society, tx, op_to_json(op_of(tx)))
            out.append(history_item(t, e.height, block.timestamp))
        return out
