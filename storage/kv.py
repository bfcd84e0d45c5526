"""The key-value interface that state lives behind.

The ledger reads through ``KVReader`` and hands its changes back as a mapping
``key -> bytes | None`` (None deletes); whoever owns the store writes those changes, together
with everything else a block commits, in one atomic batch. ``MemoryKV`` is the in-memory
implementation used by tests, simulations and benchmarks; ``storage.leveldb.LevelDBStore``
is the on-disk one. Both give the same answers for the same operations.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from typing import Protocol

__all__ = ["KVReader", "KVStore", "MemoryKV", "StorageError"]


class StorageError(Exception):
    """The database could not be opened or written (a ``KVStore.write`` may raise it)."""


class KVReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) whose key starts with prefix, in ascending key order."""
        ...


class KVStore(KVReader, Protocol):
    def write(self, changes: Mapping[bytes, bytes | None], sync: bool = False) -> None:
        """Apply all changes atomically (all or nothing); None deletes the key."""
        ...

    def snapshot(self) -> KVReader:
        """A consistent read-only view that later writes do not change."""
        ...


class MemoryKV:
    """A dict-backed KVStore. Snapshots copy, which is fine for the sizes tests use."""

    def __init__(self, data: Mapping[bytes, bytes] | None = None) -> None:
        self._data: dict[bytes, bytes] = dict(data or {})
        # the sorted key list for iteration, built on first use and then kept up to date
        # lazily: writes only note the keys they add and remove, and the next iteration
        # merges them in (a linear pass) instead of sorting every key again; a ledger that
        # iterates a small index every block (standing pledges) would otherwise re-sort
        # the whole store per block
        self._sorted: list[bytes] | None = None
        self._added: set[bytes] = set()  # keys not in _sorted
        self._removed: set[bytes] = set()  # keys in _sorted that are gone

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self.iterate_from(prefix, prefix)

    def iterate_from(self, prefix: bytes, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Like ``iterate`` from the first key >= start (paging through an index)."""
        keys = self._sorted_keys()
        i = bisect.bisect_left(keys, max(prefix, start))
        data = self._data
        while i < len(keys) and keys[i].startswith(prefix):
            k = keys[i]
            yield k, data[k]
            i += 1

    def _sorted_keys(self) -> list[bytes]:
        keys = self._sorted
        if keys is None:
            keys = self._sorted = sorted(self._data)
        else:
            if self._removed:
                removed = self._removed
                keys = self._sorted = [k for k in keys if k not in removed]
                self._removed = set()
            if self._added:
                # a new list (an iteration in progress keeps the one it has); the keys plus
                # the sorted new ones are two sorted runs, which Timsort merges in one pass
                keys = self._sorted = sorted([*keys, *sorted(self._added)])
                self._added = set()
        return keys

    def write(self, changes: Mapping[bytes, bytes | None], sync: bool = False) -> None:
        data = self._data
        if self._sorted is None:
            for k, v in changes.items():
                if v is None:
                    data.pop(k, None)
                else:
                    data[k] = v
            return
        added, removed = self._added, self._removed
        for k, v in changes.items():
            if v is None:
                if data.pop(k, None) is not None:
                    if k in added:
                        added.discard(k)
                    else:
                        removed.add(k)
            else:
                if k not in data:
                    if k in removed:
                        removed.discard(k)
                    else:
                        added.add(k)
                data[k] = v

    def snapshot(self) -> MemoryKV:
        return MemoryKV(self._data)

    def __len__(self) -> int:
        return len(self._data)
