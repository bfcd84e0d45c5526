"""Network namespaces, the bridge and tc for ``devnet up --netns`` (root only).

Every node runs in its own namespace ``mx-<id>-<node>`` with one interface, ``eth0``, the
inside end of a veth pair whose outside end (``mx<id>h<k>``) is a port of the devnet's
bridge ``mxb-<id>``. The bridge holds the gateway address ``<subnet>.1``, where the link
proxy listens (so every p2p byte still goes through the proxy, which applies delay, jitter
and loss); node k has ``<subnet>.<10+k>``, where its RPC and p2p listen, and which the
manifest's ``rpc_url`` and ``p2p`` name. Addresses come from 198.18.0.0/15, the range
RFC 2544 reserves for network benchmarks: never routed, not a private LAN range, and here
they exist only on the devnet's own bridge and namespaces.

Bandwidth: a ``tbf`` qdisc on both ends of each veth (the outside end shapes what the node
receives, ``eth0`` what it sends) at the node's region's ``bandwidth_mbit``. This kernel has
no netem, which is why delay is the proxy's job.

Everything made is named in the manifest (``devnet.netns``) BEFORE it is made, so
``down`` removes it all from the manifest alone, also after the devnet command itself
crashed half-way: namespaces (which takes their veth ends and qdiscs with them; processes
still inside one are stopped by the pids ``ip netns pids`` gives), the outside veth ends
and the bridge. Each removal ignores what is already gone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from typing import Any

from devnet.manifest import DevnetError, Manifest

__all__ = ["check_root", "exists", "plan", "present", "setup", "teardown"]

BASE = (198, 18)  # 198.18.0.0/15, RFC 2544
NODE_BASE = 10
RPC_PORT = 8545
P2P_PORT = 9000


def check_root() -> None:
    """A clear one-line error when --netns cannot work here."""
    if os.geteuid() != 0:
        raise DevnetError("--netns needs root (it makes network namespaces, a bridge and tc "
                          "qdiscs); run as root, or leave out --netns to run the same links "
                          "over loopback")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise DevnetError(f"--netns needs the `{tool}` command (Debian: apt-get install "
                              "iproute2)")


def _run(args: list[str], *, ok_errors: tuple[str, ...] = ()) -> str:
    res = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)
    if res.returncode != 0:
        err = (res.stderr or res.stdout).strip()
        if any(e in err for e in ok_errors):
            return ""
        raise DevnetError(f"`{' '.join(args)}` failed: {err}")
    return res.stdout


def _used_subnets() -> set[str]:
    out = _run(["ip", "-o", "-4", "addr", "show"])
    used = set()
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            addr = parts[parts.index("inet") + 1]
            used.add(".".join(addr.split(".")[:3]))
    return used


def plan(directory: str, nodes: list[str], bandwidth: dict[str, float]) -> dict[str, Any]:
    """Names and addresses for a devnet in ``directory`` (nothing is made). The id comes
    from the directory, the subnet is the first of 198.18.0.0/15's /24s from there that no
    interface of this machine uses."""
    if len(nodes) > 240:
        raise DevnetError("--netns supports at most 240 nodes (one /24)")
    ident = hashlib.sha256(directory.encode()).hexdigest()[:6]
    used = _used_subnets()
    start = int(ident, 16) % 512
    for k in range(512):
        i = (start + k) % 512
        prefix = f"{BASE[0]}.{BASE[1] + i // 256}.{i % 256}"
        if prefix not in used:
            break
    else:
        raise DevnetError("every /24 of 198.18.0.0/15 is in use on this machine")
    return {
        "id": ident, "bridge": f"mxb-{ident}", "subnet": f"{prefix}.0/24",
        "bridge_ip": f"{prefix}.1",
        "nodes": {n: {"ns": f"mx-{ident}-{n}", "veth": f"mx{ident}h{k + 1}",
                      "ip": f"{prefix}.{NODE_BASE + k + 1}",
                      "bandwidth_mbit": float(bandwidth.get(n, 0) or 0)}
                  for k, n in enumerate(nodes)},
    }


def _namespaces() -> set[str]:
    out = _run(["ip", "netns", "list"])
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _link_exists(name: str, ns: str | None = None) -> bool:
    args = ["ip"] + (["-n", ns] if ns else []) + ["link", "show", name]
    return subprocess.run(args, capture_output=True, timeout=10, check=False).returncode == 0


def _tbf(mbit: float) -> list[str]:
    rate_bytes = mbit * 125_000
    burst = max(32_000, int(rate_bytes / 100))  # >= rate / HZ, at least a few packets
    return ["tbf", "rate", f"{mbit:g}mbit", "burst", str(burst), "latency", "100ms"]


def present(p: dict[str, Any]) -> dict[str, list[str]]:
    """What of a plan exists now: {"namespaces", "links"} (the bridge counts as a link)."""
    nss = _namespaces()
    links = [p["bridge"]] if _link_exists(p["bridge"]) else []
    links += [n["veth"] for n in p["nodes"].values() if _link_exists(n["veth"])]
    return {"namespaces": sorted(n["ns"] for n in p["nodes"].values() if n["ns"] in nss),
            "links": links}


def exists(m: Manifest) -> bool:
    p = m.extra.get("netns")
    if not p:
        return False
    return len(present(p)["namespaces"]) == len(p["nodes"])


def setup(m: Manifest) -> None:
    """Make the bridge, namespaces, veths, addresses and qdiscs of the manifest's plan
    (idempotent: what exists is kept)."""
    p = m.extra.get("netns")
    if not p:
        return
    check_root()
    br = p["bridge"]
    if not _link_exists(br):
        _run(["ip", "link", "add", br, "type", "bridge"])
    _run(["ip", "addr", "add", f"{p['bridge_ip']}/24", "dev", br], ok_errors=("exists",))
    _run(["ip", "link", "set", br, "up"])
    nss = _namespaces()
    for n in p["nodes"].values():
        ns, veth = n["ns"], n["veth"]
        if ns not in nss:
            _run(["ip", "netns", "add", ns])
        if not _link_exists("eth0", ns):
            if _link_exists(veth):
                _run(["ip", "link", "del", veth])
            peer = f"{veth}p"
            _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer])
            _run(["ip", "link", "set", peer, "netns", ns])
            _run(["ip", "-n", ns, "link", "set", peer, "name", "eth0"])
        _run(["ip", "-n", ns, "addr", "add", f"{n['ip']}/24", "dev", "eth0"],
             ok_errors=("exists",))
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _run(["ip", "link", "set", veth, "master", br])
        _run(["ip", "link", "set", veth, "up"])
        mbit = float(n.get("bandwidth_mbit") or 0)
        if mbit > 0:
            _run(["tc", "qdisc", "replace", "dev", veth, "root", *_tbf(mbit)])
            _run(["ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", "eth0", "root",
                  *_tbf(mbit)])
    _wait_reachable(p)


def _wait_reachable(p: dict[str, Any], timeout: float = 5.0) -> None:
    """The bridge ports take a moment to forward (STP is off, but the link comes up
    asynchronously): wait until the bridge and every port are up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = _run(["ip", "-o", "link", "show", "master", p["bridge"]])
        up = sum(1 for line in out.splitlines() if "state UP" in line or "LOWER_UP" in line)
        if up >= len(p["nodes"]):
            return
        time.sleep(0.05)


def _stop_ns_pids(ns: str) -> int:
    """Stop what still runs inside one of the devnet's own namespaces (by pid)."""
    out = _run(["ip", "netns", "pids", ns], ok_errors=("No such file", "Invalid"))
    pids = [int(x) for x in out.split() if x.isdigit()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


def teardown(m: Manifest) -> list[str]:
    """Remove everything of the manifest's plan that exists; returns what was removed."""
    p = m.extra.get("netns")
    if not p:
        return []
    removed: list[str] = []
    nss = _namespaces()
    gone = ("Cannot find", "No such file", "does not exist")
    for n in p["nodes"].values():
        if n["ns"] in nss:
            _stop_ns_pids(n["ns"])
            _run(["ip", "netns", "del", n["ns"]], ok_errors=gone)
            removed.append(n["ns"])
        if _link_exists(n["veth"]):  # normally gone with its peer inside the namespace
            _run(["ip", "link", "del", n["veth"]], ok_errors=gone)
            removed.append(n["veth"])
    if _link_exists(p["bridge"]):
        _run(["ip", "link", "del", p["bridge"]], ok_errors=gone)
        removed.append(p["bridge"])
    return removed
