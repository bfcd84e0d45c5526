"""The cycle collector of a node process: tuned by the daemon (muxernode/daemon.py
``GC_THRESHOLDS``), its collections and pauses counted in /metrics."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from muxernode.daemon import GC_THRESHOLDS, _tune_gc
from muxernode.metrics import NodeMetrics


def scrape(m: NodeMetrics) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in m.render().decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_collections_and_their_pauses_are_counted() -> None:
    m = NodeMetrics()
    before = scrape(m)
    gc.collect()
    gc.collect(0)
    after = scrape(m)
    full = 'muxer_gc_collections_total{generation="2"}'
    young = 'muxer_gc_collections_total{generation="0"}'
    assert after[full] >= before[full] + 1
    assert after[young] >= before[young] + 1
    pause = 'muxer_gc_pause_seconds_total{generation="2"}'
    assert after[pause] > before[pause]
    # process-wide: a second node's registry reports the same figures
    assert scrape(NodeMetrics())[full] >= after[full]


def test_the_daemon_tunes_the_collector(restore_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    _tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0  # what start-up loaded is out of every collection
    # cycles are still collected: a cyclic pair is freed by the next full collection
    a: list[object] = []
    a.append(a)
    del a
    assert gc.collect() >= 1
