"""storage/: real LevelDB in temp dirs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import schema
from storage.kv import MemoryKV
from storage.leveldb import DataDirInUse, LevelDBStore, StorageError


@pytest.fixture
def db(tmp_path: Path) -> Iterator[LevelDBStore]:
    store = LevelDBStore(str(tmp_path / "db"))
    yield store
    store.close()


def test_write_get_delete_and_prefix_iteration(db: LevelDBStore) -> None:
    db.write({b"Sa1": b"x", b"Sa2": b"y", b"Sb1": b"z", b"B1": b"blk"}, sync=True)
    assert db.get(b"Sa1") == b"x"
    assert list(db.iterate(b"Sa")) == [(b"Sa1", b"x"), (b"Sa2", b"y")]
    db.write({b"Sa1": None, b"Sa3": b"w"})
    assert db.get(b"Sa1") is None
    assert [k for k, _ in db.iterate(b"S")] == [b"Sa2", b"Sa3", b"Sb1"]


def test_same_answers_as_memory_kv(db: LevelDBStore) -> None:
    mem = MemoryKV()
    ops: list[dict[bytes, bytes | None]] = [
        {b"k1": b"a", b"k2": b"b", b"j": b"c"},
        {b"k1": None, b"k3": b"d"},
        {b"k20": b"e", b"k2": None},
    ]
    for changes in ops:
        db.write(changes)
        mem.write(changes)
        for prefix in (b"", b"k", b"k2", b"j", b"z"):
            assert list(db.iterate(prefix)) == list(mem.iterate(prefix))


def test_snapshot_does_not_see_later_writes(db: LevelDBStore) -> None:
    db.write({b"a": b"1", b"b": b"2"})
    snap = db.snapshot()
    db.write({b"a": b"changed", b"b": None, b"c": b"3"})
    assert snap.get(b"a") == b"1"
    assert snap.get(b"c") is None
    assert list(snap.iterate(b"")) == [(b"a", b"1"), (b"b", b"2")]
    snap.close()
    assert db.get(b"a") == b"changed"


def test_writes_survive_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    with LevelDBStore(path) as store:
        store.write({b"Mhead": b"h"}, sync=True)
    with LevelDBStore(path) as store:
        assert store.get(b"Mhead") == b"h"


def test_second_open_is_a_clear_error(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    with LevelDBStore(path), pytest.raises(DataDirInUse, match="already in use"):
        LevelDBStore(path)


def test_open_of_a_file_is_a_storage_error(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("not a db")
    with pytest.raises(StorageError):
        LevelDBStore(str(f / "db"))


def test_write_to_closed_store_is_a_storage_error_and_changes_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    store = LevelDBStore(path)
    store.write({b"a": b"1"}, sync=True)
    store.close()
    with pytest.raises(StorageError, match="after close"):
        store.write({b"a": b"2", b"b": b"3"})
    with LevelDBStore(path) as again:
        assert again.get(b"a") == b"1" and again.get(b"b") is None


def test_schema_stamp_and_refusal(db: LevelDBStore) -> None:
    schema.check_schema(db)
    assert schema.from_u64(db.get(schema.META_SCHEMA) or b"") == schema.SCHEMA_VERSION
    schema.check_schema(db)  # idempotent
    db.write({schema.META_SCHEMA: schema.u64(schema.SCHEMA_VERSION + 1)})
    with pytest.raises(schema.SchemaError, match="schema version"):
        schema.check_schema(db)


def test_height_keys_sort_by_height() -> None:
    keys = [schema.height_key(h) for h in (0, 1, 255, 256, 65536, 2**40)]
    assert keys == sorted(keys)
    assert schema.from_u64(schema.u64(2**40 + 7)) == 2**40 + 7


def test_memory_stats_follow_the_memtable_and_the_table_files(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    store = LevelDBStore(path)
    memory0, files0 = store.memory_stats()
    assert files0 == 0
    for i in range(4):  # 2.4 MB: in the memtable (4 MiB write buffer), no table yet
        store.write({b"S%03d-%03d" % (i, j): bytes(1024) for j in range(600)})
    memory, files = store.memory_stats()
    assert memory > memory0 + 2_000_000 and files == 0
    store.close()
    assert store.memory_stats() == (0, 0)
    with LevelDBStore(path) as store:  # the reopen writes the recovered log as a table
        memory, files = store.memory_stats()
        assert files >= 1 and memory < 2_000_000


def test_memory_kv_iteration_follows_interleaved_writes() -> None:
    """MemoryKV keeps its sorted key list across writes (merging added keys, filtering
    removed ones): every iteration must still equal a sort of the live keys."""
    import random

    from storage.kv import MemoryKV

    rng = random.Random(3)
    kv = MemoryKV()
    ref: dict[bytes, bytes] = {}
    for _ in range(300):
        changes: dict[bytes, bytes | None] = {}
        for _ in range(rng.randrange(1, 30)):
            k = bytes([rng.randrange(4)]) + rng.randbytes(rng.randrange(0, 3))
            changes[k] = None if rng.random() < 0.4 else rng.randbytes(2)
        kv.write(changes)
        for k, v in changes.items():
            if v is None:
                ref.pop(k, None)
            else:
                ref[k] = v
        if rng.random() < 0.5:
            p = bytes([rng.randrange(4)])
            assert list(kv.iterate(p)) == sorted((k, v) for k, v in ref.items()
                                                 if k.startswith(p))
            assert list(kv.iterate(b"")) == sorted(ref.items())
