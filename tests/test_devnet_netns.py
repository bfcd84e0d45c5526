"""``devnet up --netns`` (root): every node in its own network namespace on a bridge the
devnet makes, bandwidth by tbf, RPC and p2p on the node's own address; ``down`` removes
every namespace, link and qdisc, also after the devnet's own processes died (it finds them
in the manifest). Without root the same command fails with one clear line.

These tests make and remove their own namespaces; whatever happens, the finally blocks
stop the devnet's processes by pid and remove what its manifest names. Not root: skipped,
loudly (CI runs as root, so they run there).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from devnet import netns
from devnet.manifest import DevnetError, load_manifest
from tests.test_devnet import devnet, log_tails, stop_everything

REPO = Path(__file__).resolve().parent.parent
LAN = REPO / "devnet" / "topologies" / "lan.toml"
ROOT = os.geteuid() == 0
need_root = pytest.mark.skipif(
    not ROOT, reason="NOT ROOT: the --netns tests need root to make network namespaces, a "
                     "bridge and tc qdiscs; they run in CI (root) -- run as root to cover them")


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _links() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                          timeout=10, check=True).stdout


def _cleanup(d: Path) -> None:
    stop_everything(d)
    try:
        netns.teardown(load_manifest(d))
    except DevnetError:
        pass


def test_netns_without_root_is_one_clear_line(tmp_path: Path) -> None:
    """As root, the command runs as nobody (setpriv): the non-root path runs everywhere."""
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)  # nobody may write the devnet dir (it must not get that far)
    cmd = [sys.executable, "-m", "devnet", "up", "--netns", "--nodes", "2", "--dir",
           str(d / "net"), "--detach"]
    if ROOT:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("setpriv (util-linux) is needed to run a command as nobody")
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 1, res
    assert res.stderr.strip().splitlines() == [
        "Error: --netns needs root (it makes network namespaces, a bridge and tc qdiscs); run "
        "as root, or leave out --netns to run the same links over loopback"]
    assert not (d / "net").exists()  # refused before anything was made


@need_root
def test_netns_devnet_up_shaped_and_down_after_a_crash(tmp_path: Path) -> None:
    d = tmp_path / "net"
    try:
        devnet("up", "--netns", "--nodes", "3", "--topology", str(LAN), "--dir", str(d),
               "--detach", "--timeout", "60", timeout=120)
        doc = json.loads((d / "devnet.json").read_text())
        plan = doc["devnet"]["netns"]
        assert plan["subnet"].startswith("198.1")  # RFC 2544 benchmark range
        names = {n["ns"] for n in plan["nodes"].values()}
        assert names <= _namespaces()
        for n in doc["nodes"]:
            ip = plan["nodes"][n["name"]]["ip"]
            assert n["rpc_url"] == f"http://{ip}:{netns.RPC_PORT}/rpc"
            assert n["p2p"] == f"{ip}:{netns.P2P_PORT}"
            assert n["netns"] == plan["nodes"][n["name"]]["ns"]
            # the node really runs inside its namespace: its net namespace is not ours
            assert os.readlink(f"/proc/{n['pid']}/ns/net") != os.readlink("/proc/self/ns/net")
            # both ends of its veth are shaped at the region's bandwidth (1 Gbit/s)
            inside = subprocess.run(["ip", "netns", "exec", n["netns"], "tc", "qdisc", "show",
                                     "dev", "eth0"], capture_output=True, text=True,
                                    timeout=10, check=True).stdout
            assert "tbf" in inside and "1Gbit" in inside
        veth = plan["nodes"]["n1"]["veth"]
        outside = subprocess.run(["tc", "qdisc", "show", "dev", veth], capture_output=True,
                                 text=True, timeout=10, check=True).stdout
        assert "tbf" in outside
        st = devnet("status", "--json", "--dir", str(d))
        assert all(n["peers"] == 2 for n in json.loads(st.stdout)["nodes"])

        # a crash of the devnet's own processes: SIGKILL the proxy and a node, then `down`
        # must still find and remove everything from the manifest
        m = load_manifest(d)
        for pid in (m.proxy_pid, m.node("n2").pid):
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        devnet("down", "--dir", str(d), timeout=60)
        assert not names & _namespaces()
        links = _links()
        assert plan["bridge"] not in links and veth not in links
        # and up again on the same devnet (start all) makes them anew
        devnet("start", "all", "--dir", str(d), timeout=90)
        assert names <= _namespaces()
        devnet("down", "--clean", "--dir", str(d), timeout=60)
        assert not names & _namespaces() and plan["bridge"] not in _links()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{log_tails(d)}") from None
    finally:
        if d.exists():
            _cleanup(d)


@need_root
def test_teardown_removes_a_half_made_plan(tmp_path: Path) -> None:
    """What a crash half-way through setup leaves (a namespace, no bridge): teardown from
    the plan alone removes it, and ignores what was never made."""
    from devnet.manifest import Manifest

    m = Manifest(dir=tmp_path, chain_id="00" * 32, genesis="", block_interval_s=1, nodes=[],
                 accounts=[])
    m.extra["netns"] = netns.plan(str(tmp_path), ["n1", "n2"], {"n1": 10})
    ns1 = m.extra["netns"]["nodes"]["n1"]["ns"]
    try:
        subprocess.run(["ip", "netns", "add", ns1], check=True, timeout=10)
        assert ns1 in _namespaces()
        removed = netns.teardown(m)
        assert removed == [ns1]
        assert ns1 not in _namespaces()
        assert netns.teardown(m) == []  # nothing left: idempotent
    finally:
        subprocess.run(["ip", "netns", "del", ns1], capture_output=True, timeout=10,
                       check=False)
