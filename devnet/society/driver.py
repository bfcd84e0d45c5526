"""The block driver: the real MUXER ledger in process, one block per virtual day.

It runs blocks exactly the way ``consensus.chain`` does (and tests/ledger_helpers.Chain
imitates): ``begin_block`` with a ``BlockContext`` (strictly increasing timestamps, the
producer, a TaPoS function over the chain's block ids), ``apply_tx`` for each signed tx,
``end_block``, then the block's changes are written to the store. There is no network and
no sleeping: a block's timestamp is the virtual time.

Txs are real ``SignedTx`` objects signed by ``build_tx`` (about 60 us each on this machine:
a 2000-member, 36-month run signs ~10^5 of them, a few seconds; see bench/society.py), each
referencing the head block (TaPoS) and expiring ``EXPIRY_S`` after the block that includes
it. The ledger never verifies signatures (the node does that before), so nothing here does
either.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from consensus.app import BlockContext
from consensus.crypto import PrivateKey, sha256
from consensus.errors import Rejected
from consensus.genesis import Genesis, parse_genesis
from consensus.tx import SignedTx, build_tx
from muxernode.ledger import Ledger
from storage.kv import KVStore, MemoryKV

__all__ = ["BASE_FEE", "DAY", "GENESIS_TIME", "Driver"]

DAY = 86_400
GENESIS_TIME = 1_767_225_600  # 2026-01-01 00:00 UTC, a multiple of the day
BASE_FEE = 10  # units (0.0001 MUX): the devnet's fee
# max_tx_lifetime_s: the ledger forgets expired tx ids by scanning every second since the
# last block up to the lifetime (a state lookup each), which is 3,601 lookups per daily
# block at the devnet's 3600 s; every tx here is built for its block, so 120 s is enough
LIFETIME = 120
EXPIRY_S = 120  # a tx expires this long after its block's timestamp
CACHE_ENTRIES = 300_000  # the ledger's decoded-record cache, trimmed after each block


class Driver:
    """A one-producer chain over the real ledger; blocks at whatever times the caller asks."""

    def __init__(self, balances: list[tuple[bytes, int]], witness: PrivateKey,
                 kv: KVStore | None = None) -> None:
        self.witness = witness
        self.genesis: Genesis = parse_genesis({
            "chain_name": "society-sim",
            "genesis_time": GENESIS_TIME,
            "params": {"block_interval_s": DAY, "active_witnesses": 1,
                       "maintenance_interval_s": DAY, "max_tx_lifetime_s": LIFETIME,
                       "base_fee": BASE_FEE},
            "witnesses": [{"name": "w1", "address": witness.address_text,
                           "signing_key": witness.public_key.hex()}],
            "balances": [{"address": "mx" + a.hex(), "amount": n} for a, n in balances],
        })
        self.kv: KVStore = kv if kv is not None else MemoryKV()
        self.ledger = Ledger(self.kv, self.genesis.params, self.genesis.genesis_time)
        self.kv.write(self.ledger.init_genesis(self.genesis).changes)
        self.chain_id = self.genesis.chain_id
        self.height = 0
        self.time = GENESIS_TIME
        self.ids: list[bytes] = [self.chain_id]
        self._ctx: BlockContext | None = None
        self.txs = 0  # accepted
        self.rejected: Counter[str] = Counter()
        self.by_op: Counter[int] = Counter()
        self.scheduled = 0  # standing-pledge executions
        # wall seconds spent signing and applying txs (bench/society.py prints them; never
        # part of a report, which must not depend on the machine)
        self.sign_s = 0.0
        self.apply_s = 0.0
        self.commit_s = 0.0  # begin_block (closings, standing pledges), end_block, store

    def tapos(self, ref_block_num: int) -> int | None:
        """consensus.chain's rule: the most recent block at or below the head with those
        low 16 bits (the block being built is not yet a reference)."""
        h = self.height - ((self.height - ref_block_num) & 0xFFFF)
        return None if h < 0 else int.from_bytes(self.ids[h][:4], "big")

    def begin(self, t: int) -> None:
        """Open the block at t: claim closings and due standing pledges run here (4.6, 11.3)."""
        assert self._ctx is None and t > self.time, "blocks are opened in time order"
        self._ctx = BlockContext(self.height + 1, t, self.witness.address, self.tapos)
        t0 = time.perf_counter()
        self.ledger.begin_block(self._ctx)
        self.commit_s += time.perf_counter() - t0
        self.scheduled += len(self.ledger.last_scheduled)

    @property
    def now(self) -> int:
        """The open block's timestamp."""
        assert self._ctx is not None
        return self._ctx.timestamp

    def sign(self, key: PrivateKey, op: list[Any]) -> SignedTx:
        """A real signed tx for the open block: TaPoS on the head, expiring after it."""
        ctx = self._ctx
        assert ctx is not None
        return build_tx(key, self.chain_id, op, ref_block_num=self.height & 0xFFFF,
                        ref_block_prefix=int.from_bytes(self.ids[self.height][:4], "big"),
                        expiration=ctx.timestamp + EXPIRY_S, fee=BASE_FEE)

    def submit(self, key: PrivateKey, op: list[Any]) -> SignedTx | None:
        """Sign and apply op in the open block; the tx if accepted, None (reason counted)."""
        t0 = time.perf_counter()
        tx = self.sign(key, op)
        t1 = time.perf_counter()
        try:
            self.ledger.apply_tx(tx)
        except Rejected as exc:
            self.rejected[f"{op[0]}:{exc.reason}"] += 1
            return None
        finally:
            self.apply_s += time.perf_counter() - t1
            self.sign_s += t1 - t0
        self.txs += 1
        self.by_op[op[0]] += 1
        return tx

    def commit(self) -> None:
        ctx = self._ctx
        assert ctx is not None
        t0 = time.perf_counter()
        result = self.ledger.end_block()
        self.kv.write(result.changes)
        self.ledger.state.trim_cache(CACHE_ENTRIES)
        self.commit_s += time.perf_counter() - t0
        self._ctx = None
        self.height = ctx.height
        self.time = ctx.timestamp
        # a block id stands for the block's header hash: distinct per height, and it commits
        # to the state digest as a real header does
        self.ids.append(sha256(b"society-sim" + ctx.height.to_bytes(8, "big")
                               + result.state_digest))

    def get(self, state_key: bytes) -> Any:
        """A state record as the open block sees it (the ledger's overlay)."""
        return self.ledger.state.get(state_key)
