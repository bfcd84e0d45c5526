"""Prometheus metrics of one node, in its own registry (several nodes may share a process)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["NodeMetrics"]

# Time the interpreter's cycle collector stopped the process, by generation: a full
# collection walks every tracked object the node holds (caches, the mempool) and pauses
# the event loop meanwhile (muxernode/daemon.py GC_THRESHOLDS).
_gc_pause = [0.0, 0.0, 0.0]
_gc_count = [0, 0, 0]
_gc_started = 0.0


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
    else:
        g = info["generation"]
        _gc_pause[g] += time.perf_counter() - _gc_started
        _gc_count[g] += 1


def _count_gc() -> None:
    """Start counting the collector's runs in this process (once, however many nodes)."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


class _GcCollector(Collector):
    """Process-wide figures (several nodes may share a process): read when scraped."""

    def collect(self) -> Iterator[Metric]:
        pause = CounterMetricFamily("muxer_gc_pause_seconds",
                                    "Seconds the cycle collector ran, by generation",
                                    labels=["generation"])
        count = CounterMetricFamily("muxer_gc_collections",
                                    "Cycle collections, by generation", labels=["generation"])
        for g in range(3):
            pause.add_metric([str(g)], _gc_pause[g])
            count.add_metric([str(g)], _gc_count[g])
        yield pause
        yield count


# (kind, name, help, key in the figures): the application side's metrics
_APP_METRICS: tuple[tuple[type[GaugeMetricFamily] | type[CounterMetricFamily], str, str, str],
                    ...] = (
    (GaugeMetricFamily, "muxer_ws_connections", "Open WebSocket connections",
     "ws_connections"),
    (GaugeMetricFamily, "muxer_ws_subscriptions", "Subscriptions held by WebSocket connections",
     "ws_subscriptions"),
    (CounterMetricFamily, "muxer_ws_slow_clients_dropped",
     "WebSocket connections closed (1008) for passing the unread notification limit",
     "ws_dropped"),
    (CounterMetricFamily, "muxer_ws_notifications",
     "Subscription notifications queued for WebSocket clients", "ws_notifications"),
    (GaugeMetricFamily, "muxer_history_index_lag_blocks",
     "Blocks the background build of the history index has still to index", "history_lag"),
)


class _AppCollector(Collector):
    """The application side (WebSocket hub, history index): figures its owner keeps as
    plain numbers, read when scraped (``NodeMetrics.app_figures``)."""

    def __init__(self, figures: Callable[[], dict[str, float]]) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        f = self.figures()
        for kind, name, text, key in _APP_METRICS:
            yield kind(name, text, value=f.get(key, 0))


class _P2PCollector(Collector):
    """The p2p layer's counters (``Network.counters``, docs/p2p.md: bytes and messages in
    by type, compact-block rebuilds, fetches, bans, ...), read when scraped."""

    def __init__(self, counters: Callable[[], Mapping[str, int]]) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("muxer_p2p", "The p2p layer's counters, by name",
                                     labels=["counter"])
        for name, value in sorted(self.counters().items()):
            family.add_metric([name], value)
        yield family


class NodeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.head_height = Gauge("muxer_head_height", "Height of the head block", registry=r)
        self.final_height = Gauge("muxer_final_height", "Height of the last final block",
                                  registry=r)
        self.mempool_size = Gauge("muxer_mempool_txs", "Transactions in the mempool",
                                  registry=r)
        self.mempool_bytes = Gauge("muxer_mempool_bytes", "Bytes in the mempool", registry=r)
        self.tx_rate = Gauge("muxer_tx_per_second", "Included tx/s over the last 10 s",
                             registry=r)
        self.peers = Gauge("muxer_peers", "Connected peers", registry=r)
        self.peers_banned = Gauge("muxer_peers_banned", "Node keys banned now", registry=r)
        self.txs_admitted = Counter("muxer_txs_admitted", "Transactions admitted to the mempool",
                                    registry=r)
        self.txs_included = Counter("muxer_txs_included", "Transactions included in blocks",
                                    registry=r)
        self.gossip_dropped = Counter("muxer_gossip_txs_dropped",
                                      "Gossiped txs dropped because the check queue was full",
                                      registry=r)
        self.txs_shed = Counter("muxer_txs_shed", "Submitted txs refused while overloaded",
                                registry=r)
        self.intake = Gauge(
            "muxer_rpc_intake_share",
            "Share of the mempool's room open to RPC txs (cut when peers' blocks arrive late)",
            registry=r)
        self.intake.set(1.0)
        self.loop_lag = Gauge("muxer_event_loop_lag_seconds",
                              "How late the event loop runs (load shedding above 0.5 s)",
                              registry=r)
        self.storage_failing = Gauge(
            "muxer_storage_failing",
            "1 while the store refuses writes after a failed write (e.g. a full disk)",
            registry=r)
        self.storage_write_failures = Counter(
            "muxer_storage_write_failures", "Writes to the store that failed", registry=r)
        self.signature_checks = Counter(
            "muxer_tx_signature_checks",
            "Tx signatures checked: path=tx (submitted and gossiped txs), path=block (txs of "
            "a peer's block not already checked in the mempool)", ["path"], registry=r)
        self.leveldb_memory = Gauge(
            "muxer_leveldb_memory_bytes",
            "LevelDB's estimate of its own memory (memtables and block cache)", registry=r)
        self.leveldb_table_files = Gauge(
            "muxer_leveldb_table_files", "Table files in the database (all levels)",
            registry=r)
        self.block_apply_seconds = Histogram(
            "muxer_block_apply_seconds", "Time to build or apply and commit one block",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=r,
        )

        _count_gc()
        r.register(_GcCollector())
        # set by the node: its application side's figures (muxernode/service.py)
        self.app_figures: Callable[[], dict[str, float]] = dict
        r.register(_AppCollector(lambda: self.app_figures()))
        # set by the node once its network exists
        self.p2p_counters: Callable[[], Mapping[str, int]] = dict
        r.register(_P2PCollector(lambda: self.p2p_counters()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
