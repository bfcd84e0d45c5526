"""LevelDB through plyvel: the on-disk ``KVStore``.

plyvel facts this relies on (architecture "Storage"):
- ``write_batch(transaction=True)`` discards the batch if the block raises; the default
  would write the half-built batch anyway.
- ``sync=True`` is per batch: block commits ask for it, so a kill -9 or power cut after
  ``write`` returns never loses the block.
- ``key in db`` is not supported reliably in plyvel 1.5.1; use ``get(k) is not None``.
- A second open of a directory raises ``plyvel.IOError`` about the LOCK file: turn it into
  ``DataDirInUse`` with a message an operator can act on.
A failed write (e.g. a full disk) raises ``StorageError``; LevelDB's log-structured writes
leave the last good batch intact, so the caller may retry once space returns.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import plyvel

__all__ = ["DataDirInUse", "LevelDBStore", "Snapshot", "StorageError"]


class StorageError(Exception):
    """The database could not be opened or written."""


class DataDirInUse(StorageError):
    """Another process holds the database's lock."""


class Snapshot:
    """A consistent read-only view (plyvel snapshot); later writes do not change it."""

    def __init__(self, snap: Any) -> None:
        self._snap = snap

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._snap.get(key)
        return value

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        with self._snap.iterator(prefix=prefix) as it:
            yield from it

    def close(self) -> None:
        self._snap.close()


class LevelDBStore:
    def __init__(self, path: str, *, create: bool = True, cache_mb: int = 8) -> None:
        self.path = path
        try:
            self._db = plyvel.DB(
                path,
                create_if_missing=create,
                lru_cache_size=cache_mb * 1024 * 1024,
                write_buffer_size=4 * 1024 * 1024,
                # most reads on the hot path are misses (duplicate checks of new tx ids):
                # a bloom filter answers them without touching the table files
                bloom_filter_bits=10,
            )
        except plyvel.IOError as exc:
            if "LOCK" in str(exc):
                raise DataDirInUse(
                    f"data directory {path} is already in use by another process "
                    "(stop that node first)"
                ) from None
            raise StorageError(f"cannot open database {path}: {exc}") from None
        except plyvel.Error as exc:
            raise StorageError(f"cannot open database {path}: {exc}") from None

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        with self._db.iterator(prefix=prefix) as it:
            yield from it

    def write(self, changes: Mapping[bytes, bytes | None], sync: bool = False) -> None:
        if self._db.closed:
            raise StorageError(f"write to {self.path} after close")
        try:
            with self._db.write_batch(transaction=True, sync=sync) as wb:
                for k, v in changes.items():
                    if v is None:
                        wb.delete(k)
                    else:
                        wb.put(k, v)
        except plyvel.Error as exc:
            raise StorageError(f"write to {self.path} failed: {exc}") from None

    def snapshot(self) -> Snapshot:
        return Snapshot(self._db.snapshot())

    @property
    def closed(self) -> bool:
        return bool(self._db.closed)

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()

    def __enter__(self) -> LevelDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
