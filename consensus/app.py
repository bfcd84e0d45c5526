"""The Application interface: how the chain drives the MUXER ledger without importing it.

Like CometBFT's ABCI, the chain knows blocks, slots and votes; the application knows what
a transaction means. The chain calls, for each block:

    begin_block(ctx) -> apply_tx(tx) for each tx -> end_block() -> BlockResult

and on success commits ``result.changes`` (and keeps ``result.undo``) in the same storage
batch as the block itself; on failure it calls ``abort_block()`` and nothing changed.
``check_tx`` runs a tx against a pending view (the mempool's) without touching committed
state. All calls are synchronous and read no clock: time comes in ``BlockContext``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from consensus.tx import SignedTx

__all__ = ["Application", "BlockContext", "BlockResult"]


@dataclass(frozen=True, slots=True)
class BlockContext:
    height: int
    timestamp: int
    producer: bytes  # address of the block's witness; fees go to it
    # TaPoS: ref_block_num -> id prefix (first 4 bytes, big-endian int) of the most recent
    # block with those low 16 bits at or below the parent, or None if there is none.
    tapos: Callable[[int], int | None]


@dataclass(frozen=True, slots=True)
class BlockResult:
    state_digest: bytes
    changes: Mapping[bytes, bytes | None]  # state key -> new value (None: delete)
    undo: Mapping[bytes, bytes | None]  # state key -> value before the block (None: absent)


class Application(Protocol):
    def begin_block(self, ctx: BlockContext) -> None: ...

    def apply_tx(self, tx: SignedTx) -> None:
        """Apply one verified tx atomically; raise consensus.errors.Rejected to refuse it."""
        ...

    def end_block(self) -> BlockResult: ...

    def abort_block(self) -> None: ...

    def state_digest(self) -> bytes: ...

    def elected_witnesses(self) -> tuple[int, list[bytes]] | None:
        """(height of the maintenance block that elected it, addresses) or None."""
        ...

    def witness_signing_key(self, address: bytes) -> bytes | None: ...
