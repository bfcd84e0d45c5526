"""The devnet (``python -m devnet``), as a user runs it: real processes on 127.0.0.1.

- Unit tests of the pure parts: the proxy's frame rewriting, partition groups, load mix,
  percentiles, scenario values and paths.
- A 3-node devnet started with ``up --detach`` in a temporary directory: its manifest
  follows protocol section 10 field by field, ``status --json`` works, ``up`` refuses a
  directory that holds a devnet, the mutual-aid scenario passes on it, ``down`` stops every
  process and ``down --clean`` removes the directory.
- The crash and partition scenarios, each on a fresh 4-node devnet (``scenario --fresh``).

Every command runs as a subprocess with a timeout; whatever happens, every process a
devnet recorded is stopped by its pid afterwards.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consensus.crypto import PrivateKey, address_to_text
from consensus.genesis import load_genesis
from devnet import procs
from devnet.control import parse_groups
from devnet.load import parse_mix, percentile
from devnet.manifest import DevnetError, Manifest, load_manifest
from devnet.proxy import FrameRewriter, cut_pairs
from devnet.rpc import NodeRpc
from devnet.scenario import Runner, lookup
from p2p.frames import FrameDecoder, encode_frame
from p2p.messages import Blocks, Hello, Peers, Ping, decode_message

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "devnet" / "scenarios"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
ADDR = re.compile(r"^mx[0-9a-f]{40}$")


def devnet(*args: str, timeout: float = 120.0,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``python -m devnet ARGS``; on failure the assertion shows its whole output."""
    try:
        res = subprocess.run([sys.executable, "-m", "devnet", *args], cwd=REPO,
                             capture_output=True, text=True, timeout=timeout, check=False,
                             env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"})
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"devnet {' '.join(args)} did not finish in {timeout} s; "
                             f"output so far:\n{exc.stdout!r}\n{exc.stderr!r}") from None
    if check:
        assert res.returncode == 0, (f"devnet {' '.join(args)} exited {res.returncode}\n"
                                     f"--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}")
    return res


def stop_everything(directory: Path) -> None:
    """Stop, by pid, every process the devnet in ``directory`` recorded (test clean-up)."""
    try:
        m = load_manifest(directory)
    except DevnetError:
        return
    for n in m.nodes:
        procs.stop_pid(n.pid, procs.node_marks(n), timeout=10.0)
    procs.stop_pid(m.proxy_pid, procs.proxy_marks(m), timeout=5.0)


def log_tails(directory: Path) -> str:
    try:
        m = load_manifest(directory)
    except DevnetError:
        return ""
    return "\n".join(f"--- {n.name} log\n{procs.tail(n.log, 20)}" for n in m.nodes)


# --- unit tests ---------------------------------------------------------------------------


PORTS = {("n1", "n2"): 1001, ("n2", "n1"): 2001, ("n1", "n3"): 1002, ("n3", "n1"): 3001,
         ("n2", "n3"): 2003, ("n3", "n2"): 3002}


def test_rewriter_translates_hello_and_peers_in_any_chunking() -> None:
    hello = Hello(1, b"c" * 32, b"k" * 32, b"n" * 32, 5555, 7, b"h" * 32)
    peers = Peers([("127.0.0.1", 1002), ("127.0.0.1", 1001), ("127.0.0.1", 9999)])
    big = Blocks([b"x" * 100_000])
    stream = encode_frame(hello) + encode_frame(Ping(3)) + encode_frame(big) + \
        encode_frame(peers)
    rng = random.Random(5)
    for _ in range(30):
        rw = FrameRewriter(PORTS, "n1", "n2")  # bytes n1 sends to n2
        out = b""
        i = 0
        while i < len(stream):
            k = rng.randint(1, 7000)
            out += rw.feed(stream[i : i + k])
            i += k
        msgs = [decode_message(b) for b in FrameDecoder().feed(out)]
        # n2 must reach n1 through its own link n2->n1, never n1's real port
        assert msgs[0] == Hello(1, b"c" * 32, b"k" * 32, b"n" * 32, 2001, 7, b"h" * 32)
        assert msgs[1] == Ping(3)
        assert msgs[2] == big
        # n1's address for n3 (link n1->n3) becomes n2's link n2->n3; n2 itself and an
        # unknown port are dropped
        assert msgs[3] == Peers([("127.0.0.1", 2003)])


def test_rewriter_passes_a_broken_stream_through() -> None:
    rw = FrameRewriter(PORTS, "n1", "n2")
    junk = b"\x00\x00\x00\x00garbage"
    assert rw.feed(junk) == junk and rw.broken
    assert rw.feed(b"more") == b"more"


def test_cut_pairs_and_groups(tmp_path: Path) -> None:
    assert cut_pairs(None) == set()
    assert cut_pairs([["n1", "n2"], ["n3"]]) == {frozenset(("n1", "n3")),
                                                  frozenset(("n2", "n3"))}
    m = _fake_manifest(tmp_path, 4)
    assert parse_groups(m, "n1,n2/n3,n4") == [["n1", "n2"], ["n3", "n4"]]
    with pytest.raises(DevnetError, match="missing: n4"):
        parse_groups(m, "n1,n2/n3")
    with pytest.raises(DevnetError, match="two groups"):
        parse_groups(m, "n1,n2/n2,n3,n4")
    with pytest.raises(DevnetError, match="no node 'n9'"):
        parse_groups(m, "n1,n2/n3,n9")
    with pytest.raises(DevnetError, match="two groups"):
        parse_groups(m, "n1,n2,n3,n4/")


def test_mix_and_percentiles() -> None:
    assert parse_mix("transfer,vote:3") == {"transfer": 1.0, "vote": 3.0}
    with pytest.raises(DevnetError, match="unknown op"):
        parse_mix("transfer,fly")
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None


def test_scenario_values_and_paths(tmp_path: Path) -> None:
    m = _fake_manifest(tmp_path, 1)
    r = Runner(m, {"step": []}, lambda s: None)
    r.vars["bal"] = 1000
    assert r.sub("${bal}") == 1000
    assert r.sub("${bal} - 40 + 5") == 965
    assert r.sub("soc-${bal}") == "soc-1000"
    assert r.sub(["${a1}"]) == [m.accounts[0].address]
    with pytest.raises(DevnetError, match="unknown variable"):
        r.sub("${nope}")
    doc = {"a": [{"b": 3}]}
    assert lookup(doc, "a.0.b") == 3
    assert lookup(doc, "") == doc
    with pytest.raises(DevnetError, match="no 'c'"):
        lookup(doc, "a.0.c")


def _fake_manifest(tmp_path: Path, n: int) -> Manifest:
    from devnet.manifest import Account, NodeEntry

    key = PrivateKey(bytes(range(32)))
    return Manifest(
        dir=tmp_path, chain_id="00" * 32, genesis=str(tmp_path / "g.json"), block_interval_s=1,
        nodes=[NodeEntry(f"n{i + 1}", "http://127.0.0.1:1/rpc", "127.0.0.1:2",
                         str(tmp_path / f"n{i + 1}"), None, None) for i in range(n)],
        accounts=[Account("a1", key.address_text, key.seed.hex())])


# --- a 3-node devnet ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def devnet3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("devnet3") / "net"
    try:
        devnet("up", "--nodes", "3", "--dir", str(d), "--detach", "--timeout", "40",
               timeout=90)
        yield d
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{log_tails(d)}") from None
    finally:
        stop_everything(d)


def test_manifest_follows_section_10(devnet3: Path) -> None:
    doc: dict[str, Any] = json.loads((devnet3 / "devnet.json").read_text())
    for field in ("chain_id", "genesis", "block_interval_s", "nodes", "accounts"):
        assert field in doc, field
    assert HEX64.match(doc["chain_id"])
    gpath = Path(doc["genesis"])
    assert gpath.is_absolute() and gpath.is_file()
    genesis = load_genesis(gpath)
    assert genesis.chain_id.hex() == doc["chain_id"]
    assert doc["block_interval_s"] == 1 == genesis.params.block_interval_s
    gjson = json.loads(gpath.read_text())
    witnesses = [w["address"] for w in gjson["witnesses"]]
    balances = {b["address"]: b["amount"] for b in gjson["balances"]}

    assert [n["name"] for n in doc["nodes"]] == ["n1", "n2", "n3"]
    rpc_urls, p2ps = set(), set()
    for i, node in enumerate(doc["nodes"]):
        for field in ("name", "rpc_url", "p2p", "data_dir", "pid", "witness"):
            assert field in node, (node["name"], field)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/rpc", node["rpc_url"]), node["rpc_url"]
        assert re.fullmatch(r"127\.0\.0\.1:\d+", node["p2p"]), node["p2p"]
        rpc_urls.add(node["rpc_url"])
        p2ps.add(node["p2p"])
        data = Path(node["data_dir"])
        assert data.is_absolute() and (data / "db").is_dir()
        assert data == devnet3.resolve() / "nodes" / node["name"]
        assert type(node["pid"]) is int
        assert procs.pid_alive(node["pid"], ["muxernode.daemon", str(data)])
        assert node["witness"] == witnesses[i]  # one witness per node, in genesis order
        with NodeRpc(node["rpc_url"]) as rpc:
            info = rpc.call("chain_info")
            assert info["chain_id"] == doc["chain_id"]
            assert info["final_height"] >= 1
        assert Path(node["log"]).is_file()  # an extra key: the node's own log
    assert len(rpc_urls) == 3 and len(p2ps) == 3

    assert len(doc["accounts"]) == 10
    for acct in doc["accounts"]:
        assert set(acct) >= {"name", "address", "secret"}
        assert HEX64.match(acct["secret"]) and ADDR.match(acct["address"])
        key = PrivateKey(bytes.fromhex(acct["secret"]))
        assert address_to_text(key.address) == acct["address"]
        assert balances.get(acct["address"], 0) > 0  # funded at genesis
        assert acct["address"] not in witnesses  # and not a witness


def test_status_json(devnet3: Path) -> None:
    st = json.loads(devnet("status", "--json", "--dir", str(devnet3), timeout=30).stdout)
    assert st["chain_id"] == load_manifest(devnet3).chain_id
    assert st["proxy"]["running"] and st["proxy"]["cut"] == []
    assert [n["name"] for n in st["nodes"]] == ["n1", "n2", "n3"]
    for n in st["nodes"]:
        assert n["running"] and n["reachable"], n
        assert n["head_height"] >= n["final_height"] >= 1
        assert n["peers"] == 2, n  # everyone through the proxy to both others
        assert n["mempool"] >= 0 and n["tx_rate"] >= 0.0


def test_up_refuses_a_running_devnet(devnet3: Path) -> None:
    res = devnet("up", "--nodes", "1", "--dir", str(devnet3), "--detach", check=False,
                 timeout=30)
    assert res.returncode != 0
    assert "a devnet is running" in res.stderr


def test_mutual_aid_scenario(devnet3: Path) -> None:
    res = devnet("scenario", str(SCENARIOS / "mutual-aid.toml"), "--dir", str(devnet3),
                 timeout=90, check=False)
    assert res.returncode == 0 and "scenario passed" in res.stdout, \
        f"{res.stdout}\n{res.stderr}\n{log_tails(devnet3)}"


def test_load(devnet3: Path) -> None:
    out = devnet("load", "--tps", "10", "--duration", "3", "--mix",
                 "transfer,pledge,vote,give,claim", "--drain", "20", "--dir", str(devnet3),
                 timeout=90).stdout
    assert "tx/s" in out and "p99" in out
    files = sorted((devnet3 / "load").glob("load-*.json"))
    assert files
    result = json.loads(files[-1].read_text())
    assert result["state"] == "done" and result["planned"] == 30
    assert result["accepted"] == 30 and result["final"] == 30, result["rejected"]
    assert 0 < result["latency_s"]["p50"] <= result["latency_s"]["p99"] < 20


def test_logs_and_report(devnet3: Path) -> None:
    out = devnet("logs", "n1", "-n", "5", "--dir", str(devnet3), timeout=30).stdout
    assert 0 < len(out.splitlines()) <= 5
    assert "muxer" in out or "p2p" in out
    res = devnet("logs", "n9", "--dir", str(devnet3), check=False, timeout=30)
    assert res.returncode != 0 and "no node 'n9'" in res.stderr
    devnet("report", "--seconds", "2", "--dir", str(devnet3), timeout=60)
    text = (devnet3 / "report.md").read_text()
    assert "# Devnet report" in text and "| n3 |" in text
    assert "## Load `load`" in text
    for png in ("heights.png", "txrate.png", "latency.png", "load.png"):
        assert (devnet3 / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_down_stops_everything_then_clean(devnet3: Path) -> None:
    m = load_manifest(devnet3)
    pids = [(n.pid, procs.node_marks(n)) for n in m.nodes] + \
        [(m.proxy_pid, procs.proxy_marks(m))]
    devnet("down", "--dir", str(devnet3), timeout=60)
    for pid, marks in pids:
        assert not procs.pid_alive(pid, marks), pid
    after = load_manifest(devnet3)
    assert all(n.pid is None for n in after.nodes) and after.proxy_pid is None
    res = devnet("up", "--dir", str(devnet3), check=False, timeout=30)
    assert res.returncode != 0 and "stopped devnet" in res.stderr
    assert (devnet3 / "nodes" / "n1" / "node.log").is_file()  # data and logs kept
    devnet("down", "--clean", "--dir", str(devnet3), timeout=30)
    assert not devnet3.exists()


# --- fault scenarios on fresh 4-node devnets ------------------------------------------------


@pytest.mark.parametrize("name", ["crash", "partition"])
def test_fault_scenario(name: str, tmp_path: Path) -> None:
    d = tmp_path / "net"
    try:
        res = devnet("scenario", str(SCENARIOS / f"{name}.toml"), "--fresh", "--dir", str(d),
                     "--timeout", "40", timeout=150, check=False)
        assert res.returncode == 0 and "scenario passed" in res.stdout, \
            f"{res.stdout}\n{res.stderr}\n{log_tails(d)}"
        # --fresh stops the devnet at the end and keeps its data
        m = load_manifest(d)
        assert all(n.pid is None for n in m.nodes)
        assert Path(m.nodes[0].log).is_file()
    finally:
        stop_everything(d)
