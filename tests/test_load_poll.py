"""The devnet load's poller reads each final block once, from one node (devnet/load.py
``_FinalBlocks``), and judges every node by its final height alone: the cost of measuring
finality is one ``get_block`` per final block, whatever the rate and the node count, and
no final tx is missed, even one whose submission answer was recorded only after its block
had been read."""

from __future__ import annotations

import pytest

from devnet.load import _FinalBlocks


def test_each_final_height_is_read_once_in_order_and_bounded() -> None:
    b = _FinalBlocks(scanned=10)
    assert b.to_read(final=10, limit=200) == []
    assert b.to_read(final=13, limit=200) == [11, 12, 13]
    assert b.to_read(final=500, limit=5) == [11, 12, 13, 14, 15]  # bounded per poll
    b.add(11, ["a"])
    b.add(12, [])
    assert b.to_read(final=13, limit=200) == [13]
    with pytest.raises(ValueError, match="out of order"):
        b.add(14, ["x"])  # 13 was skipped
    assert b.scanned == 12


def test_a_tx_has_the_height_of_the_final_block_that_holds_it() -> None:
    b = _FinalBlocks(scanned=0)
    b.add(1, ["t1", "t2"])
    b.add(2, ["t3"])
    assert [b.height_of(t) for t in ("t1", "t2", "t3")] == [1, 1, 2]
    assert b.height_of("t4") is None  # not in a final block read so far


def test_recent_blocks_are_kept_for_late_records_then_forgotten() -> None:
    b = _FinalBlocks(scanned=0, keep=3)
    b.add(1, ["late"])
    b.add(2, ["x"])
    b.add(3, ["y"])
    assert b.height_of("late") == 1  # a tx recorded after block 1 was read is found
    b.add(4, ["z"])
    assert b.height_of("late") is None  # memory stays bounded: the oldest block is gone
    assert [b.height_of(t) for t in ("x", "y", "z")] == [2, 3, 4]
