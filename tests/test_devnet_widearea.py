"""The wide-area devnet as a researcher runs it, over loopback (no root needed): a 4-node
devnet on global-5.toml, every perturbation from the CLI (link, disconnect/connect,
pause/resume, clock), the report's new figures; and two generated testnets run with
``scenario --fresh``, each printing held for its three invariants.

Every command is a subprocess with a timeout; whatever happens, every process a devnet
recorded is stopped by its pid afterwards (tests/test_devnet.py's helpers).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devnet import procs
from devnet.manifest import load_manifest
from devnet.proxy import read_state
from tests.test_devnet import devnet, log_tails, stop_everything

REPO = Path(__file__).resolve().parent.parent
GLOBAL5 = REPO / "devnet" / "topologies" / "global-5.toml"


@pytest.fixture(scope="module")
def wan4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("wan4") / "net"
    try:
        devnet("up", "--nodes", "4", "--topology", str(GLOBAL5), "--seed", "5", "--dir", str(d),
               "--detach", "--timeout", "60", timeout=120)
        yield d
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{log_tails(d)}") from None
    finally:
        stop_everything(d)


def _proc_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2 :][:1]


def test_manifest_has_regions_shapes_and_seed(wan4: Path) -> None:
    doc = json.loads((wan4 / "devnet.json").read_text())
    assert [n["region"] for n in doc["nodes"]] == ["us-east", "us-west", "eu", "apac"]
    assert doc["devnet"]["seed"] == 5
    assert doc["devnet"]["topology"]["name"] == "global-5"
    routes = json.loads((wan4 / "proxy" / "routes.json").read_text())
    assert routes["seed"] == 5
    assert routes["shapes"]["n3>n4"]["delay_ms"] == 118.3  # eu -> apac
    assert routes["bandwidth_mbit"]["n1"] == 100  # loopback: the proxy shapes bandwidth


def test_link_changes_apply_at_run_time(wan4: Path) -> None:
    res = devnet("link", "eu", "apac", "--delay", "300ms", "--jitter", "50ms", "--loss", "5%",
                 "--dir", str(wan4))
    assert "2 directed pair(s)" in res.stdout
    st = read_state(wan4 / "proxy")
    assert st is not None
    assert st["shaping"]["n3>n4"]["delay_ms"] == 300.0
    assert st["shaping"]["n4>n3"]["loss_pct"] == 5.0
    assert st["shaping"]["n1>n2"]["delay_ms"] == 43.5  # untouched
    devnet("link", "n1", "n2", "--delay", "5ms", "--one-way", "--dir", str(wan4))
    st = read_state(wan4 / "proxy")
    assert st is not None
    assert st["shaping"]["n1>n2"]["delay_ms"] == 5.0 and st["shaping"]["n2>n1"]["delay_ms"] == 43.5
    devnet("link", "all", "all", "--reset", "--dir", str(wan4))
    st = read_state(wan4 / "proxy")
    assert st is not None and st["overrides"] == {}
    assert st["shaping"]["n3>n4"]["delay_ms"] == 118.3
    res = devnet("link", "eu", "mars", "--delay", "1ms", "--dir", str(wan4), check=False)
    assert res.returncode != 0 and "no node 'mars'" in res.stderr


def test_disconnect_pause_and_clock(wan4: Path) -> None:
    devnet("disconnect", "n4", "--dir", str(wan4))
    st = read_state(wan4 / "proxy")
    assert st is not None and st["isolated"] == ["n4"]
    assert sorted(map(tuple, st["cut"])) == [("n1", "n4"), ("n2", "n4"), ("n3", "n4")]
    devnet("connect", "n4", "--dir", str(wan4))
    st = read_state(wan4 / "proxy")
    assert st is not None and st["cut"] == [] and st["isolated"] == []

    pid = load_manifest(wan4).node("n2").pid
    assert pid is not None
    devnet("pause", "n2", "--dir", str(wan4))
    try:
        assert _proc_state(pid) == "T"
        st = json.loads(devnet("status", "--json", "--dir", str(wan4)).stdout)
        n2 = next(n for n in st["nodes"] if n["name"] == "n2")
        assert n2["paused"] and n2["region"] == "us-west"
    finally:
        devnet("resume", "n2", "--dir", str(wan4))
    deadline = time.monotonic() + 5
    while _proc_state(pid) == "T" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _proc_state(pid) in ("S", "R")

    devnet("clock", "n3", "--offset", "0.25", "--dir", str(wan4), timeout=60)
    e = load_manifest(wan4).node("n3")
    assert e.clock_offset_s == 0.25 and procs.node_alive(e)
    cmd = Path(f"/proc/{e.pid}/cmdline").read_bytes().split(b"\0")
    assert b"--clock-offset" in cmd and b"0.25" in cmd


def test_report_has_the_widearea_figures(wan4: Path) -> None:
    devnet("report", "--seconds", "6", "--dir", str(wan4), timeout=60)
    text = (wan4 / "report.md").read_text()
    for section in ("## Topology", "## Finality latency per region",
                    "## Block propagation to each node", "## Missed slots per witness",
                    "## Reorganisations", "## Bytes per node"):
        assert section in text, section
    assert "| eu |" in text and "| n4 | apac |" in text
    for png in ("finality_regions.png", "propagation.png", "bytes.png"):
        assert (wan4 / png).stat().st_size > 1000, png
    devnet("down", "--dir", str(wan4), timeout=60)
    m = load_manifest(wan4)
    assert not any(procs.node_alive(n) for n in m.nodes) and not procs.proxy_alive(m)
