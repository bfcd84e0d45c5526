"""A real Prometheus (Debian's) scrapes a real 2-node network and loads the alert rules;
the test asks its HTTP API for both nodes' ``up`` and their final height."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx

from devnet.cluster import free_ports
from tests.conftest import require_tool
from tests.procs import Daemon, make_genesis, rpc, wait_for
from tests.witness_helpers import start_witnesses

RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "alerts.yml"


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5)
    doc = r.json()
    assert doc["status"] == "success", doc
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def test_prometheus_scrapes_a_two_node_network(tmp_path: Path) -> None:
    prometheus = require_tool("prometheus")
    gdir = tmp_path / "g"
    gpath = make_genesis(gdir, witnesses=2, accounts=1, seed=21)
    p2p = free_ports(3)
    web = p2p.pop()
    daemons: list[Daemon] = []
    prom: subprocess.Popen[bytes] | None = None
    try:
        start_witnesses(daemons, [tmp_path / "n1", tmp_path / "n2"], gdir, p2p, genesis=gpath)
        # the RPC address the node wrote: http://127.0.0.1:PORT/rpc
        targets = [d.url.removeprefix("http://").removesuffix("/rpc") for d in daemons]
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {RULES}\n"
            "scrape_configs:\n  - job_name: muxernode\n    static_configs:\n"
            f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - handed to the child
        prom = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{web}"], stdout=log, stderr=log)
        log.close()
        base = f"http://127.0.0.1:{web}"

        def ready() -> bool:
            assert prom is not None and prom.poll() is None, (
                (tmp_path / "prometheus.log").read_text()[-2000:])
            try:
                return httpx.get(f"{base}/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=30, interval=0.2)

        def up() -> list[dict[str, Any]]:
            res = _query(base, 'up{job="muxernode"}')
            return res if len(res) == 2 and all(r["value"][1] == "1" for r in res) else []

        res = wait_for(up, timeout=30, interval=0.5)
        assert {r["metric"]["instance"] for r in res} == set(targets)

        # both witnesses produce and vote: finality advances, and Prometheus sees it
        def final() -> list[dict[str, Any]]:
            res = _query(base, "muxer_final_height")
            return res if len(res) == 2 and all(float(r["value"][1]) >= 2 for r in res) else []

        res = wait_for(final, timeout=40, interval=0.5)
        for r in res:
            node = daemons[targets.index(r["metric"]["instance"])]
            # a scrape is at most a second old: the node's own figure is at or above it
            assert rpc(node.url, "chain_info")["final_height"] >= float(r["value"][1])

        rules = httpx.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
        loaded = {rule["name"]: rule["health"] for g in rules for rule in g["rules"]}
        assert len(loaded) == 9 and "MuxerNodeDown" in loaded
        # evaluated against the live series without errors ("unknown" before the first run)
        wait_for(lambda: set(httpx.get(f"{base}/api/v1/rules", timeout=5).json()["data"]
                             ["groups"][0]["rules"][i]["health"] for i in range(9)) == {"ok"},
                 timeout=10, interval=0.5)
        for d in daemons:
            assert d.stop() == 0
    finally:
        if prom is not None and prom.poll() is None:
            os.kill(prom.pid, signal.SIGTERM)
            try:
                prom.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(prom.pid, signal.SIGKILL)
                prom.wait(timeout=10)
        for d in daemons:
            d.kill()
