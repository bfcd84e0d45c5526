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
        self._sorted: list[bytes] | None = None

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self.iterate_from(prefix, prefix)

    def iterate_from(self, prefix: bytes, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Like ``iterate`` from the first key >= start (paging through an index)."""
        if self._sorted is None:
            self._sorted = sorted(self._data)
        keys = self._sorted
        i = bisect.bisect_left(keys, max(prefix, start))
        data = self._data
        while i < len(keys) and keys[i].startswith(prefix):
            k = keys[i]
            yield k, data[k]
            i += 1

    def write(self, changes: Mapping[bytes, bytes | None], sync: bool = False) -> None:
        for k, v in changes.items():
            if v is None:
                self._data.pop(k, None)
            else:
                self._data[k] = v
        self._sorted = None

    def snapshot(self) -> MemoryKV:
        return MemoryKV(self._data)

    def __len__(self) -> int:
        return len(self._data)
