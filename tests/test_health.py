"""GET /health (section 12) and GET /metrics against real daemons.

200 {status: "ok", height, final_height, peers} from a producing witness; 503 with a
reason in words from a node whose head is stale, and from one configured with a peer it
cannot reach; the verdict's order of reasons on the function itself. /metrics of a live
node passes ``promtool check metrics`` (Debian's prometheus package; .ci/run installs it)
and carries the WebSocket and history figures.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from muxernode.node import init_data_dir
from muxernode.service import health_reason
from tests.conftest import require_tool
from tests.procs import Daemon, make_genesis, wait_for

TIMEOUT = 20.0


@pytest.fixture(scope="module")
def genesis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_genesis(tmp_path_factory.mktemp("health") / "g", accounts=2)


@pytest.fixture(scope="module")
def witness(genesis: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = tmp_path_factory.mktemp("w") / "d"
    init_data_dir(genesis, d)
    node = Daemon(d, witness_key=genesis.parent / "w1.key")
    node.start()
    try:
        yield node
    finally:
        node.stop()


def base(node: Daemon) -> str:
    return node.url.removesuffix("/rpc")


def test_in_sync_answers_200_with_heights_and_peers(witness: Daemon) -> None:
    doc = wait_for(lambda: (r := httpx.get(base(witness) + "/health", timeout=TIMEOUT))
                   .status_code == 200 and r.json(), TIMEOUT)
    assert doc["status"] == "ok" and "reason" not in doc
    assert doc["height"] >= 0 and 0 <= doc["final_height"] <= doc["height"]
    assert doc["peers"] == 0


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("extra", "reason"), [
    ([], "slots older than the clock"),
    (["--peer", "127.0.0.1:{port}"], "no peers connected (1 configured)"),
])
def test_out_of_sync_answers_503_with_a_reason(genesis: Path, tmp_path: Path,
                                               extra: list[str], reason: str) -> None:
    # no witness key: nothing extends the chain, so the head stays at genesis while the
    # clock moves on (a stale head); with a seed that does not answer, no peers as well
    init_data_dir(genesis, tmp_path / "d")
    port = _unused_port()
    node = Daemon(tmp_path / "d", extra_args=[a.format(port=port) for a in extra])
    node.start()
    try:
        r = wait_for(lambda: (resp := httpx.get(base(node) + "/health", timeout=TIMEOUT))
                     .status_code == 503 and reason in resp.json().get("reason", "") and resp,
                     TIMEOUT)
        doc = r.json()
        assert doc["status"] == "unavailable"
        assert {"height", "final_height", "peers"} <= set(doc) and doc["peers"] == 0
    finally:
        node.stop()


def test_reasons_in_order() -> None:
    ok: dict[str, Any] = {"started": True, "storage_error": None, "configured_peers": 2, "peers": 1,
          "head_height": 10, "best_peer_height": 12, "slots_behind": 1}
    assert health_reason(**ok) is None
    cases: list[tuple[dict[str, Any], str]] = [({"started": False}, "starting"),
             ({"storage_error": "No space left"}, "No space left"),
             ({"peers": 0}, "no peers"),
             ({"best_peer_height": 14}, "syncing: at height 10, a peer is at 14"),
             ({"slots_behind": 4}, "4 slots older"),
             ({"slots_behind": 4, "best_peer_height": 20}, "syncing")]
    for change, words in cases:
        got = health_reason(**{**ok, **change})
        assert got is not None and words in got, (change, got)
    assert health_reason(**{**ok, "slots_behind": 3}) is None
    assert health_reason(**{**ok, "configured_peers": 0,
                            "peers": 0}) is None


def test_metrics_pass_promtool(witness: Daemon) -> None:
    promtool = require_tool("promtool")
    wait_for(lambda: httpx.get(witness.url.removesuffix("/rpc") + "/health",
                               timeout=TIMEOUT).status_code == 200, TIMEOUT)
    text = httpx.get(base(witness) + "/metrics", timeout=TIMEOUT).text
    done = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert not (done.stdout + done.stderr).strip(), (done.stdout + done.stderr).decode()
    for name in ("muxer_ws_connections", "muxer_ws_subscriptions",
                 "muxer_ws_slow_clients_dropped_total", "muxer_ws_notifications_total",
                 "muxer_history_index_lag_blocks", "muxer_head_height"):
        assert f"\n{name} " in text, name
