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


class _Bucket:
    """The keys that share their first two bytes, sorted lazily: writes only note what they
    add and remove, and the next iteration merges that in."""

    __slots__ = ("added", "keys", "removed")

    def __init__(self, keys: list[bytes]) -> None:
        self.keys = keys  # sorted, as of the last iteration
        self.added: set[bytes] = set()  # keys not in ``keys``
        self.removed: set[bytes] = set()  # keys in ``keys`` that are gone

    def sorted(self) -> list[bytes]:
        keys = self.keys
        if self.removed:
            removed = self.removed
            keys = self.keys = [k for k in keys if k not in removed]
            self.removed = set()
        if self.added:
            # a new list (an iteration in progress keeps the one it has); the keys plus the
            # sorted new ones are two sorted runs, which Timsort merges in one pass
            keys = self.keys = sorted([*keys, *sorted(self.added)])
            self.added = set()
        return keys


class MemoryKV:
    """A dict-backed KVStore. Snapshots copy, which is fine for the sizes tests use.

    Iteration needs sorted keys. They are kept in buckets by their first two bytes (the
    state prefix and the record type: accounts, votes, due pledges, tx ids, ...), built on
    the first iteration and then kept up to date lazily: a bucket that changed is merged
    again only when something iterates it. The ledger iterates small indexes every block
    (due standing pledges, expiring tx ids); re-sorting the whole store per block, as this
    class once did, made in-memory runs of 10^5-10^6 keys (bench.ledger, the society
    simulation) spend most of their time sorting. Buckets in name order are in key order,
    because every key of a bucket starts with its name."""

    def __init__(self, data: Mapping[bytes, bytes] | None = None) -> None:
        self._data: dict[bytes, bytes] = dict(data or {})
        self._buckets: dict[bytes, _Bucket] | None = None

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self.iterate_from(prefix, prefix)

    def iterate_from(self, prefix: bytes, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Like ``iterate`` from the first key >= start (paging through an index)."""
        buckets = self._buckets
        if buckets is None:
            grouped: dict[bytes, list[bytes]] = {}
            for k in self._data:
                grouped.setdefault(k[:2], []).append(k)
            buckets = self._buckets = {n: _Bucket(sorted(ks)) for n, ks in grouped.items()}
        if len(prefix) >= 2:
            names = [prefix[:2]] if prefix[:2] in buckets else []
        else:
            names = sorted(n for n in buckets if n.startswith(prefix))
        data = self._data
        first = max(prefix, start)
        for name in names:
            keys = buckets[name].sorted()
            i = bisect.bisect_left(keys, first)
            while i < len(keys) and keys[i].startswith(prefix):
                k = keys[i]
                yield k, data[k]
                i += 1

    def write(self, changes: Mapping[bytes, bytes | None], sync: bool = False) -> None:
        data = self._data
        buckets = self._buckets
        if buckets is None:
            for k, v in changes.items():
                if v is None:
                    data.pop(k, None)
                else:
                    data[k] = v
            return
        for k, v in changes.items():
            if v is None:
                if data.pop(k, None) is not None:
                    b = buckets[k[:2]]
                    if k in b.added:
                        b.added.discard(k)
                    else:
                        b.removed.add(k)
            else:
                if k not in data:
                    b = buckets.get(k[:2]) or buckets.setdefault(k[:2], _Bucket([]))
                    if k in b.removed:
                        b.removed.discard(k)
                    else:
                        b.added.add(k)
                data[k] = v

    def snapshot(self) -> MemoryKV:
        return MemoryKV(self._data)

    def __len__(self) -> int:
        return len(self._data)
