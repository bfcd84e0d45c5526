"""The devnet load's poller asks a node about a tx only when its status can have changed
(devnet/load.py ``_may_have_changed``): the cost of measuring finality stays ~3 get_tx a
tx, and no change of status is missed."""

from __future__ import annotations

from devnet.load import _may_have_changed, _Sent


def test_a_pending_tx_is_asked_once_per_new_block() -> None:
    s = _Sent(t=0.0, node="n1")
    assert _may_have_changed(s, head=5, final=3)  # never asked
    s.asked_at_head = 5
    assert not _may_have_changed(s, head=5, final=3)  # no block since: still pending
    assert _may_have_changed(s, head=6, final=3)


def test_an_included_tx_is_asked_once_its_block_is_final() -> None:
    s = _Sent(t=0.0, node="n1", height=7, asked_at_head=7)
    assert not _may_have_changed(s, head=9, final=6)
    assert _may_have_changed(s, head=9, final=7)
    # reorganised out (the node said pending again): back to asking on new blocks
    s.height = None
    s.asked_at_head = 9
    assert not _may_have_changed(s, head=9, final=7)
    assert _may_have_changed(s, head=10, final=7)
