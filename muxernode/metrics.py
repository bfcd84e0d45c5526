"""Prometheus metrics of one node, in its own registry (several nodes may share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["NodeMetrics"]


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

    def render(self) -> bytes:
        return generate_latest(self.registry)
