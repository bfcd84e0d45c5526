"""The ledger's state overlay: decoded records cached over a KVReader, with the digest.

Records are msgpack arrays kept decoded (mutable lists or ints) in a cache, next to the
encoding last committed to the store. The ledger mutates records in place after calling
``touch`` (first touch in a block remembers the committed encoding). ``end_block`` encodes
each touched record once, returns the changes and the undo record, and updates the state
digest incrementally:

    digest_sum = sum over every state entry (k, v) of int(H(u32(len(k)) + k + v)) mod 2**256
    state_digest = H(b"MUXER/state/v1" + digest_sum as 32 bytes big-endian)

Being a sum over entries, it depends only on the state, not on the order it was reached in,
and a change costs two hashes per changed key. The sum is stored under DIGEST_KEY, which is
itself outside the sum. Keys in the store carry the ledger's one-byte prefix.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from consensus.codec import decode_trusted, encode
from storage.kv import KVReader

__all__ = ["DIGEST_KEY", "STATE_PREFIX", "State"]

STATE_PREFIX = b"S"
DIGEST_KEY = b"#"
_MOD = 1 << 256
_MISSING = object()


def entry_hash(key: bytes, value: bytes) -> int:
    return int.from_bytes(
        hashlib.sha256(len(key).to_bytes(4, "big") + key + value).digest(), "big"
    )


def digest_bytes(digest_sum: int) -> bytes:
    return hashlib.sha256(b"MUXER/state/v1" + digest_sum.to_bytes(32, "big")).digest()


class State:
    __slots__ = ("_cache", "_digest_sum", "_kv", "_prefix", "_undo")

    def __init__(self, kv: KVReader, prefix: bytes = STATE_PREFIX) -> None:
        self._kv = kv
        self._prefix = prefix
        # key -> [decoded value or None, committed encoding or None, entry_hash of the
        # committed entry or None (not computed yet, or no entry)]: an account changes in
        # most blocks, and its old entry's hash is then the one its last commit computed
        self._cache: dict[bytes, list[Any]] = {}
        # keys touched since the block began -> committed encoding before the block
        self._undo: dict[bytes, bytes | None] = {}
        self._digest_sum = _load_sum(kv, prefix)

    # --- reads --------------------------------------------------------------------------

    def _entry(self, key: bytes) -> list[Any]:
        entry = self._cache.get(key)
        if entry is None:
            raw = self._kv.get(self._prefix + key)
            entry = [None if raw is None else decode_trusted(raw), raw, None]
            self._cache[key] = entry
        return entry

    def get(self, key: bytes) -> Any:
        """The decoded record (a list or int), or None. Mutate only after ``touch``."""
        entry = self._cache.get(key)
        if entry is None:
            entry = self._entry(key)
        return entry[0]

    def iterate_committed(self, prefix: bytes) -> Iterator[tuple[bytes, Any]]:
        """Committed records under prefix (for read-only views; ignores the overlay)."""
        n = len(self._prefix)
        for k, v in self._kv.iterate(self._prefix + prefix):
            yield k[n:], decode_trusted(v)

    # --- writes -------------------------------------------------------------------------

    def touch(self, key: bytes) -> Any:
        """Mark key as changing in this block and return its current (mutable) record."""
        entry = self._cache.get(key)
        if entry is None:
            entry = self._entry(key)
        if key not in self._undo:
            self._undo[key] = entry[1]
        return entry[0]

    def put(self, key: bytes, value: Any) -> None:
        entry = self._cache.get(key)
        if entry is None:
            entry = self._entry(key)
        if key not in self._undo:
            self._undo[key] = entry[1]
        entry[0] = value

    def delete(self, key: bytes) -> None:
        self.put(key, None)

    # --- block boundaries ---------------------------------------------------------------

    def commit(self) -> tuple[bytes, dict[bytes, bytes | None], dict[bytes, bytes | None]]:
        """Close the block: (state_digest, changes, undo), keys carrying the store prefix."""
        changes: dict[bytes, bytes | None] = {}
        undo: dict[bytes, bytes | None] = {}
        digest_sum = self._digest_sum
        prefix = self._prefix
        cache = self._cache
        for key, old in self._undo.items():
            entry = cache[key]
            value = entry[0]
            new = None if value is None else encode(value)
            if new == old:
                continue
            if old is not None:
                old_hash = entry[2]
                digest_sum -= entry_hash(key, old) if old_hash is None else old_hash
            new_hash = None
            if new is not None:
                new_hash = entry_hash(key, new)
                digest_sum += new_hash
            entry[1] = new
            entry[2] = new_hash
            changes[prefix + key] = new
            undo[prefix + key] = old
        self._undo = {}
        digest_sum %= _MOD
        dkey = prefix + DIGEST_KEY
        if digest_sum != self._digest_sum:
            undo[dkey] = self._digest_sum.to_bytes(32, "big")
            changes[dkey] = digest_sum.to_bytes(32, "big")
            self._digest_sum = digest_sum
        return digest_bytes(digest_sum), changes, undo

    def rollback(self) -> None:
        """Forget everything since the block began (the store was not written)."""
        for key in self._undo:
            self._cache.pop(key, None)
        self._undo = {}

    def reset(self) -> None:
        """Drop the whole cache: the store changed under us (block popped, write failed)."""
        self._cache.clear()
        self._undo = {}
        self._digest_sum = _load_sum(self._kv, self._prefix)

    def forget(self, store_keys: Iterable[bytes]) -> None:
        """The store committed changes to these keys (store prefix included) under us.

        Cheaper than ``reset`` for a view that follows the chain (the mempool's): only the
        changed records are dropped from the cache, the rest stay warm."""
        self.rollback()
        n = len(self._prefix)
        cache = self._cache
        for k in store_keys:
            if k.startswith(self._prefix):
                cache.pop(k[n:], None)
        self._digest_sum = _load_sum(self._kv, self._prefix)

    def absorb(self, changes: Mapping[bytes, bytes | None]) -> None:
        """Like ``forget``, but take the committed values from ``changes`` (store keys and
        their new encodings) for the records already cached, instead of re-reading them."""
        self.rollback()
        n = len(self._prefix)
        cache = self._cache
        prefix = self._prefix
        for k, raw in changes.items():
            if k.startswith(prefix):
                key = k[n:]
                if key in cache:
                    cache[key] = [None if raw is None else decode_trusted(raw), raw, None]
        self._digest_sum = _load_sum(self._kv, self._prefix)

    def digest(self) -> bytes:
        return digest_bytes(self._digest_sum)

    @property
    def in_block(self) -> bool:
        return bool(self._undo)

    def cache_size(self) -> int:
        return len(self._cache)

    def trim_cache(self, max_entries: int) -> None:
        """Bound memory: drop committed records when the cache grows past max_entries."""
        cache = self._cache
        if len(cache) <= max_entries or self._undo:
            return
        # oldest-loaded first (dict order): hot records are re-read from the store cheaply,
        # and trimming to 80 % keeps this from running on every block
        drop = len(cache) - max_entries * 4 // 5
        for key in list(itertools.islice(cache, drop)):
            del cache[key]


def _load_sum(kv: KVReader, prefix: bytes) -> int:
    raw = kv.get(prefix + DIGEST_KEY)
    return 0 if raw is None else int.from_bytes(raw, "big")


def recompute_digest(kv: KVReader, prefix: bytes = STATE_PREFIX) -> bytes:
    """The digest from scratch over every stored state entry (for checks and tests)."""
    total = 0
    n = len(prefix)
    for k, v in kv.iterate(prefix):
        key = k[n:]
        if key != DIGEST_KEY:
            total += entry_hash(key, v)
    return digest_bytes(total % _MOD)
