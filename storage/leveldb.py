"""LevelDB through plyvel: the on-disk ``KVStore``.

plyvel facts this relies on (architecture "Storage"):
- ``write_batch(transaction=True)`` discards the batch if the block raises; the default
  would write the half-built batch anyway.
- ``sync=True`` is per batch: block commits ask for it, so a kill -9 or power cut after
  ``write`` returns never loses the block.
- ``key in db`` is not supported reliably in plyvel 1.5.1; use ``get(k) is not None``.
- A second open of a directory raises ``plyvel.IOError`` about the LOCK file: turn it into
  ``DataDirInUse`` with a message an operator can act on.
A failed write (e.g. a full disk) raises ``StorageError`` and the last good batch stays
intact, but the handle must not be written again: LevelDB's log writer may have left a torn
record at the end of its log and counts the bytes it meant to write, so later appends land
at offsets its recovery cannot follow, and every record after the tear is silently dropped
at the next open, even batches written with ``sync=True`` that reported success
(``tests/test_disk_full.py`` shows it). A failed fsync, or a failed background compaction,
also makes LevelDB refuse every later write until the database is reopened. So after a
failed write the store refuses writes (``failed`` says why) until ``recover()`` has checked
that the disk has room again and reopened the database, which recovers the log up to the
last whole record and starts a new one. A batch reported failed may still turn out durable
after the reopen (the fsync failed after the record was whole): callers reread their state.

LevelDB keeps deleted data on disk until a compaction rewrites the tables that hold it,
and its own compactions are driven by writes, not deletes: a pruned node whose deletes are
never compacted keeps its old blocks' bytes. ``compact_prefix`` compacts one key kind's
range (a pruning node's own call, from a worker thread: plyvel releases the GIL while
LevelDB compacts); a close or reopen waits for a compaction in progress, since LevelDB must
not be closed under it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import plyvel

from storage.kv import StorageError

__all__ = ["DataDirInUse", "LevelDBStore", "Snapshot", "StorageError", "StorageLost"]

WRITE_BUFFER = 4 * 1024 * 1024
# Room asked for before a reopen: the recovery writes the log's records (at most a write
# buffer, i.e. one memtable, and the one being flushed) to a table and a new manifest.
PROBE_BYTES = 2 * WRITE_BUFFER + 1024 * 1024
PROBE_FILE = "muxer-space-probe"  # not a LevelDB file name: LevelDB leaves it alone
REOPEN_TRIES = 3


class DataDirInUse(StorageError):
    """Another process holds the database's lock."""


class StorageLost(StorageError):
    """The database was closed to be reopened after a failed write and could not be opened
    again: nothing can be read or written through this store any more."""


def _reason(exc: BaseException) -> str:
    # plyvel passes LevelDB's status message as bytes
    arg = exc.args[0] if exc.args else exc
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)


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


def _after_prefix(prefix: bytes) -> bytes | None:
    """The first key above every key that starts with prefix (None: no bound)."""
    p = prefix.rstrip(b"\xff")
    return None if not p else p[:-1] + bytes([p[-1] + 1])


class LevelDBStore:
    def __init__(self, path: str, *, create: bool = True, cache_mb: int = 8) -> None:
        self.path = path
        self.cache_mb = cache_mb
        # why writes are refused (the first failed write's error), until recover()
        self.failed: str | None = None
        self._compacting = threading.Lock()  # held by compact_prefix; close waits for it
        self._db = self._open(create)

    def _open(self, create: bool) -> Any:
        path = self.path
        try:
            return plyvel.DB(
                path,
                create_if_missing=create,
                lru_cache_size=self.cache_mb * 1024 * 1024,
                write_buffer_size=WRITE_BUFFER,
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
            raise StorageError(f"cannot open database {path}: {_reason(exc)}") from None
        except plyvel.Error as exc:
            raise StorageError(f"cannot open database {path}: {_reason(exc)}") from None

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        with self._db.iterator(prefix=prefix) as it:
            yield from it

    def iterate_from(self, prefix: bytes, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Like ``iterate`` from the first key >= start (paging through an index)."""
        with self._db.iterator(start=max(prefix, start), stop=_after_prefix(prefix)) as it:
            yield from it

    def write(self, changes: Mapping[bytes, bytes | None], sync: bool = False) -> None:
        if self._db.closed:
            raise StorageError(f"write to {self.path} after close")
        if self.failed is not None:
            raise StorageError(f"writes to {self.path} are paused since a write failed "
                               f"({self.failed}); recover() reopens the database")
        try:
            with self._db.write_batch(transaction=True, sync=sync) as wb:
                for k, v in changes.items():
                    if v is None:
                        wb.delete(k)
                    else:
                        wb.put(k, v)
        except plyvel.Error as exc:
            self.failed = _reason(exc)
            raise StorageError(f"write to {self.path} failed: {self.failed}") from None

    def recover(self, probe_bytes: int = PROBE_BYTES) -> None:
        """Make a store whose write failed writable again (a no-op if none failed).

        First checks that the disk has room (``probe_bytes`` reserved in a scratch file,
        then freed): reopening with the disk still full would fail, and leave the store
        closed. Then closes and reopens the database. Raises ``StorageError`` if there is
        still no room (the store stays as it was: readable, refusing writes), or
        ``StorageLost`` if the database could not be opened again."""
        if self.failed is None:
            return
        self._probe_space(probe_bytes)
        with self._compacting:
            self._db.close()
        error: StorageError | None = None
        for _ in range(REOPEN_TRIES):
            try:
                self._db = self._open(create=False)
            except StorageError as exc:
                error = exc
                continue
            self.failed = None
            return
        raise StorageLost(f"{self.path} could not be reopened after a failed write: {error}")

    def _probe_space(self, nbytes: int) -> None:
        path = os.path.join(self.path, PROBE_FILE)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                if hasattr(os, "posix_fallocate"):
                    # reserves the blocks without writing them: ENOSPC if they are not there
                    os.posix_fallocate(fd, 0, nbytes)
                else:
                    chunk = bytes(1 << 20)
                    for _ in range(0, nbytes, len(chunk)):
                        os.write(fd, chunk)
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StorageError(f"still no room to reopen {self.path}: "
                               f"{exc.strerror or exc}") from None
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass

    def snapshot(self) -> Snapshot:
        return Snapshot(self._db.snapshot())

    def compact_prefix(self, prefix: bytes) -> None:
        """Compact the range of keys that start with prefix (blocking: call it from a
        worker thread). A no-op once closed."""
        with self._compacting:
            if self._db.closed:
                return
            try:
                self._db.compact_range(start=prefix, stop=_after_prefix(prefix))
            except plyvel.Error as exc:  # a failed compaction also fails later writes
                raise StorageError(f"compaction of {self.path} failed: {_reason(exc)}") from None

    def size_on_disk(self) -> int:
        """Bytes of the database's files (tables, logs, manifest)."""
        total = 0
        with os.scandir(self.path) as it:
            for entry in it:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
        return total

    def memory_stats(self) -> tuple[int, int]:
        """(LevelDB's own estimate of its memory: memtables and block cache, in bytes;
        table files open or not), from its properties; (0, 0) once closed. Table files
        are read through mmap: their pages count as the process's file RSS, not its own."""
        db = self._db
        if db.closed:
            return 0, 0
        memory = int(db.get_property(b"leveldb.approximate-memory-usage") or 0)
        files = sum(int(db.get_property(b"leveldb.num-files-at-level%d" % level) or 0)
                    for level in range(7))
        return memory, files

    @property
    def closed(self) -> bool:
        return bool(self._db.closed)

    def close(self) -> None:
        with self._compacting:
            if not self._db.closed:
                self._db.close()

    def __enter__(self) -> LevelDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
