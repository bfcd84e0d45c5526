"""The history index (muxernode/history.py) on a real Chain, Ledger and LevelDB.

Its keys go into each block's own batch and leave with the batch that pops the block; a
kill -9 at any instant leaves index and chain at the same block (a child process producing
blocks is killed mid-run); a directory without the index builds it in the background, and
until then get_history says "not ready"; cursors are this node's own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from consensus.chain import Chain
from consensus.mempool import Mempool
from muxernode.history import CursorError, HistoryIndex
from muxernode.ledger import Ledger
from muxernode.service import AppService, HistoryUnavailable
from storage import schema
from storage.leveldb import LevelDBStore
from tests.chain_helpers import GENESIS, fresh_chain, open_chain, produce, tx_on
from tests.ledger_helpers import ALICE, BOB, CAROL
from tests.procs import REPO

SECRET = b"s" * 32


def claim_of(_cid: bytes) -> tuple[str, bytes] | None:
    return None


def transfer(chain: Chain, to: bytes, memo: str) -> Any:
    return tx_on(chain, ALICE, [1, to, 5, memo])


def history(index: HistoryIndex, chain: Chain, address: bytes, **kw: Any
            ) -> tuple[list[dict[str, Any]], str | None]:
    entries, nxt = index.query(address, **kw)
    return index.items(chain, entries, address), nxt


def index_keys(store: LevelDBStore) -> list[bytes]:
    return [k for k, _ in store.iterate(schema.PREFIX_HISTORY)]


def test_index_written_and_undone_with_its_block(tmp_path: Path) -> None:
    store = LevelDBStore(str(tmp_path / "db"))
    chain = fresh_chain(store)
    index = HistoryIndex(store, claim_of, SECRET)
    index.start(chain.head.height)
    assert index.ready  # a new chain: complete from block 1 on
    chain.indexers.append(index)
    b1 = produce(chain, [transfer(chain, BOB.address, "one")])
    t2 = [transfer(chain, BOB.address, "two"), transfer(chain, CAROL.address, "three")]
    b2 = produce(chain, t2)
    items, nxt = history(index, chain, ALICE.address)
    assert [i["tx_id"] for i in items] == [t2[1].tx_id.hex(), t2[0].tx_id.hex(),
                                            b1.txs[0].tx_id.hex()]  # newest first
    assert nxt is None and {i["role"] for i in items} == {"sender"}
    assert items[0]["height"] == b2.height and items[0]["time"] == b2.timestamp
    assert items[0]["op"]["type"] == "transfer" and items[0]["type"] == "transfer"
    bob, _ = history(index, chain, BOB.address)
    assert [(i["tx_id"], i["role"]) for i in bob] == [(t2[0].tx_id.hex(), "recipient"),
                                                      (b1.txs[0].tx_id.hex(), "recipient")]
    before = index_keys(store)
    chain.pop_block()  # the pop's batch takes the block's entries and its undo record
    after = index_keys(store)
    assert len(before) - len(after) == 4 + 1  # 2 senders, 2 recipients, the undo
    assert [i["tx_id"] for i in history(index, chain, ALICE.address)[0]] == [
        b1.txs[0].tx_id.hex()]
    assert history(index, chain, CAROL.address)[0] == []
    store.close()


def test_paging_filters_and_cursors(tmp_path: Path) -> None:
    store = LevelDBStore(str(tmp_path / "db"))
    chain = fresh_chain(store)
    index = HistoryIndex(store, claim_of, SECRET,
                         scheduled=lambda: [("soc", ALICE.address, 700)])
    index.start(chain.head.height)
    chain.indexers.append(index)
    txs = [transfer(chain, BOB.address, f"m{i}") for i in range(5)]
    produce(chain, txs)
    everything, _ = history(index, chain, ALICE.address, limit=100)
    # the block's standing-pledge execution runs before its txs: it comes last
    assert [i["tx_id"] for i in everything[:5]] == [t.tx_id.hex() for t in reversed(txs)]
    assert everything[5] == {"tx_id": None, "height": 1, "time": chain.head.timestamp,
                             "type": "pledge", "role": "sender", "scheduled": True,
                             "op": {"type": "pledge", "society": "soc", "amount": 700}}
    pages: list[str | None] = []
    cursor = None
    for _ in range(10):
        entries, cursor = index.query(ALICE.address, limit=2,
                                      before=None if cursor is None else
                                      index.parse_cursor(ALICE.address, cursor))
        pages += [e.tx_id.hex() if e.tx_id else None for e in entries]
        if cursor is None:
            break
    assert pages == [i["tx_id"] for i in everything]
    only, _ = history(index, chain, ALICE.address, types=frozenset({"pledge"}))
    assert [i["type"] for i in only] == ["pledge"]
    assert history(index, chain, ALICE.address, society="other")[0] == []
    _, nxt = index.query(ALICE.address, limit=1)
    assert nxt is not None
    with pytest.raises(CursorError):
        index.parse_cursor(BOB.address, nxt)  # another address's cursor
    with pytest.raises(CursorError):
        index.parse_cursor(ALICE.address, nxt[:-2] + ("00" if nxt[-2:] != "00" else "11"))
    with pytest.raises(CursorError):
        index.parse_cursor(ALICE.address, "zz")
    other = HistoryIndex(store, claim_of, b"another node's secret")
    with pytest.raises(CursorError):
        other.parse_cursor(ALICE.address, nxt)
    store.close()


def _service(chain: Chain, store: LevelDBStore, history_on: bool) -> AppService:
    pending = Ledger(store, GENESIS.params, GENESIS.genesis_time)
    mempool = Mempool(pending, lambda: chain.context_for(chain.head.timestamp + 1, bytes(20)),
                      lambda: None)
    assert isinstance(chain.app, Ledger)
    return AppService(chain, chain.app, mempool, store, history=history_on, secret=SECRET)


async def test_background_build_then_ready(tmp_path: Path) -> None:
    store = LevelDBStore(str(tmp_path / "db"))
    chain = fresh_chain(store)
    old = [produce(chain, [transfer(chain, BOB.address, f"old{i}")]) for i in range(3)]
    chain.set_final(old[-1].id)
    store.close()
    # reopened with history on: a directory without the index
    store = LevelDBStore(str(tmp_path / "db"))
    chain = open_chain(store)
    service = _service(chain, store, True)
    index = service.history
    assert index is not None and not index.ready and index.lag == 3
    with pytest.raises(HistoryUnavailable) as not_ready:
        service.get_history(ALICE.address, None, None, None, 20)
    assert not_ready.value.progress == {"done": 0, "of": 3}
    new = produce(chain, [transfer(chain, BOB.address, "new")])  # indexed as it comes
    await service._build()
    assert index.ready and index.lag == 0
    got = service.get_history(ALICE.address, None, None, None, 20)
    assert [i["tx_id"] for i in got["items"]] == [
        b.txs[0].tx_id.hex() for b in (new, *reversed(old))]
    store.close()
    # switched off: the marker goes, so that the next start with it on builds again
    store = LevelDBStore(str(tmp_path / "db"))
    chain = open_chain(store)
    off = _service(chain, store, False)
    with pytest.raises(HistoryUnavailable) as switched_off:
        off.get_history(ALICE.address, None, None, None, 20)
    assert switched_off.value.progress is None
    assert store.get(schema.META_HISTORY) is None
    popped = chain.pop_block()  # leaves the chain while the index is off
    store.close()
    store = LevelDBStore(str(tmp_path / "db"))
    chain = open_chain(store)
    again = _service(chain, store, True)
    await again._build()  # purges what the old index held below its start, rebuilds
    got = again.get_history(ALICE.address, None, None, None, 20)
    assert popped.txs[0].tx_id.hex() not in [i["tx_id"] for i in got["items"]]
    assert [i["tx_id"] for i in got["items"]] == [b.txs[0].tx_id.hex() for b in reversed(old)]
    store.close()


CHILD = r"""
import sys
from storage.leveldb import LevelDBStore
from muxernode.history import HistoryIndex
from tests.chain_helpers import fresh_chain, produce, tx_on
from tests.ledger_helpers import ALICE, BOB
store = LevelDBStore(sys.argv[1])
chain = fresh_chain(store)
index = HistoryIndex(store, lambda c: None, b"s" * 32)
index.start(0)
chain.indexers.append(index)
for i in range(100000):
    produce(chain, [tx_on(chain, ALICE, [1, BOB.address, 1, f"k{i}"])])
    print(chain.head.height, flush=True)
"""


def test_kill_9_leaves_index_and_chain_at_the_same_block(tmp_path: Path) -> None:
    db = tmp_path / "db"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], cwd=REPO,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        line = b""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line and int(line) >= 15:
                break
        assert line and int(line) >= 15, "the child did not produce blocks"
        os.kill(proc.pid, signal.SIGKILL)  # mid-run: likely inside a block's work
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    store = LevelDBStore(str(db))
    chain = open_chain(store)
    index = HistoryIndex(store, claim_of, SECRET)
    heights = [e.height for e in index.query(ALICE.address, limit=100)[0]]
    assert heights == list(range(chain.head.height, max(0, chain.head.height - 100), -1))
    assert [e.height for e in index.query(BOB.address, limit=1)[0]] == [chain.head.height]
    store.close()
