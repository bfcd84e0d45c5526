"""The cycle collector of a node process: tuned by the daemon (muxernode/daemon.py
``GC_THRESHOLDS``), its collections and pauses counted in /metrics."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from muxernode.daemon import GC_THRESHOLDS, _tune_gc
from muxernode.metrics import NodeMetrics


class Cyclic:
    me: Any = None


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
    # cycles are still collected without being asked: once more than GC_THRESHOLDS[0]
    # containers are alive than at the last collection, the collector runs by itself
    cycle = Cyclic()
    cycle.me = cycle
    gone = weakref.ref(cycle)
    del cycle
    assert gone() is not None  # a cycle: reference counting alone never frees it
    held = [[i] for i in range(GC_THRESHOLDS[0] + 1000)]
    assert gone() is None
    del held
