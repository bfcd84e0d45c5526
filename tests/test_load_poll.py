"""The devnet load's poller reads each node's final blocks once (devnet/load.py
``_FinalBlocks``): the cost of measuring finality is one ``get_block`` per final block and
node, whatever the rate, and no final tx is missed, even one whose submission answer was
recorded only after its block had been read."""

from __future__ import annotations

import pytest

from devnet.load import _FinalBlocks


def test_each_final_height_is_read_once_in_order_and_bounded() -> None:
    b = _FinalBlocks(scanned=10)
    assert b.to_read(final=10, limit=200) == []
    assert b.to_read(final=13, limit=200) == [11, 12, 13]
    assert b.to_read(final=500, limit=5) == [11, 12, 13, 14, 15]  # bounded per poll
    b.add(11, ["a"], seen=1.0)
    b.add(12, [], seen=1.0)
    assert b.to_read(final=13, limit=200) == [13]
    with pytest.raises(ValueError, match="out of order"):
        b.add(14, ["x"], seen=2.0)  # 13 was skipped
    assert b.scanned == 12


def test_a_tx_is_final_from_when_its_block_was_first_seen_final() -> None:
    b = _FinalBlocks(scanned=0)
    b.add(1, ["t1", "t2"], seen=5.0)
    b.add(2, ["t3"], seen=5.25)
    assert b.seen_final("t1") == 5.0
    assert b.seen_final("t3") == 5.25
    assert b.seen_final("t4") is None  # not in a final block read so far


def test_recent_blocks_are_kept_for_late_records_then_forgotten() -> None:
    b = _FinalBlocks(scanned=0, keep=3)
    b.add(1, ["late"], seen=1.0)
    b.add(2, ["x"], seen=2.0)
    b.add(3, ["y"], seen=3.0)
    assert b.seen_final("late") == 1.0  # a tx recorded after block 1 was read is found
    b.add(4, ["z"], seen=4.0)
    assert b.seen_final("late") is None  # memory stays bounded: the oldest block is gone
    assert [b.seen_final(t) for t in ("x", "y", "z")] == [2.0, 3.0, 4.0]
