"""Faults and checks shared by the CLI and scenarios: kill, start, restart, partition, heal,
and the cluster-wide conditions scenarios wait for (finality advancing, stalling, converging).
"""

from __future__ import annotations

import signal
import time
from typing import Any

from devnet import cluster, procs, proxy
from devnet.manifest import DevnetError, Manifest, NodeEntry
from devnet.rpc import NodeRpc, NodeUnreachable, RpcError

__all__ = [
    "check_converged",
    "heal",
    "kill_nodes",
    "parse_groups",
    "partition",
    "restart_nodes",
    "start_nodes",
    "wait_converged",
    "wait_final_advance",
    "watch_final_stalled",
]

SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}


def kill_nodes(m: Manifest, entries: list[NodeEntry], sig: str = "KILL") -> dict[str, str]:
    """SIGKILL (a crash) or SIGTERM (a clean stop) the nodes; the manifest forgets their pids."""
    if sig not in SIGNALS:
        raise DevnetError(f"signal must be one of {', '.join(SIGNALS)}")
    m.reload_pids()
    out: dict[str, str] = {}
    for e in entries:
        out[e.name] = procs.stop_pid(e.pid, procs.node_marks(e), sig=SIGNALS[sig])
        e.pid = None
    m.save()
    return out


def start_nodes(m: Manifest, entries: list[NodeEntry], *, timeout: float = 30.0) -> None:
    m.reload_pids()
    cluster.start_nodes(m, entries, timeout=timeout)


def restart_nodes(m: Manifest, entries: list[NodeEntry], *, timeout: float = 30.0) -> None:
    kill_nodes(m, entries, "TERM")
    cluster.start_nodes(m, entries, timeout=timeout)


def parse_groups(m: Manifest, spec: str | list[list[str]]) -> list[list[str]]:
    """'n1,n2/n3,n4' (or a list of lists) -> groups; every node must be in exactly one."""
    if isinstance(spec, str):
        groups = [[n.strip() for n in g.split(",") if n.strip()] for g in spec.split("/")]
    else:
        groups = [list(g) for g in spec]
    groups = [g for g in groups if g]
    if len(groups) < 2:
        raise DevnetError("a partition needs at least two groups, like n1,n2/n3,n4")
    seen: list[str] = []
    for g in groups:
        for n in g:
            m.node(n)  # raises on an unknown name
            if n in seen:
                raise DevnetError(f"node {n} is in two groups")
            seen.append(n)
    missing = [n.name for n in m.nodes if n.name not in seen]
    if missing:
        raise DevnetError(f"a partition must place every node; missing: {', '.join(missing)} "
                          "(a node alone is a group of its own: n1/n2,n3)")
    return groups


def _ensure_proxy(m: Manifest) -> None:
    if not procs.proxy_alive(m):
        raise DevnetError("the link proxy is not running (is the devnet up? `python -m devnet "
                          f"start all --dir {m.dir}` starts it with the nodes)")


def partition(m: Manifest, groups: list[list[str]], mode: str = "drop") -> dict[str, Any]:
    m.reload_pids()
    _ensure_proxy(m)
    try:
        return proxy.set_partition(m.proxy_dir, groups, mode)
    except TimeoutError as exc:
        raise DevnetError(str(exc)) from None


def heal(m: Manifest) -> dict[str, Any]:
    m.reload_pids()
    _ensure_proxy(m)
    try:
        return proxy.set_partition(m.proxy_dir, None)
    except TimeoutError as exc:
        raise DevnetError(str(exc)) from None


# --- cluster-wide conditions --------------------------------------------------------------


def _live_rows(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in status["nodes"] if n["running"] and n["reachable"]]


def finals(m: Manifest) -> dict[str, int]:
    return {n["name"]: int(n["final_height"] or 0)
            for n in _live_rows(cluster.collect_status(m))}


def wait_final_advance(m: Manifest, by: int, timeout: float) -> dict[str, int]:
    """Wait until every running node's final height grew by ``by`` from now."""
    start = finals(m)
    if not start:
        raise DevnetError("no running node answers")
    deadline = time.monotonic() + timeout
    now = start
    while time.monotonic() < deadline:
        now = finals(m)
        if all(now.get(n, 0) >= h + by for n, h in start.items()):
            return now
        time.sleep(0.3)
    raise DevnetError(f"finality did not advance by {by} on every node within {timeout:g} s "
                      f"(final heights then {start}, now {now})")


def watch_final_stalled(m: Manifest, seconds: float, *, heads_advance: bool = True) -> str:
    """Over ``seconds``, no running node's final height may grow (and, if asked, every
    head must grow: the chain stays live, only finality stops). Returns a summary."""
    st0 = {n["name"]: n for n in _live_rows(cluster.collect_status(m))}
    time.sleep(seconds)
    st1 = {n["name"]: n for n in _live_rows(cluster.collect_status(m))}
    problems = []
    for name, a in st0.items():
        b = st1.get(name)
        if b is None:
            problems.append(f"{name} stopped answering")
            continue
        if (b["final_height"] or 0) > (a["final_height"] or 0):
            problems.append(f"{name} finalized {a['final_height']} -> {b['final_height']}")
        if heads_advance and (b["head_height"] or 0) <= (a["head_height"] or 0):
            problems.append(f"{name} head did not advance ({a['head_height']})")
    if problems:
        raise DevnetError("; ".join(problems))
    return ", ".join(f"{n}: final {a['final_height']} head {a['head_height']}->"
                     f"{st1[n]['head_height']}" for n, a in st0.items())


CONVERGED_SPREAD = 3  # blocks between the highest and lowest final height


def check_converged(m: Manifest, baseline: int | None) -> tuple[bool, str]:
    """Every running node answers, their final heights are within CONVERGED_SPREAD of each
    other (a node that restarted has caught up), the lowest is above ``baseline`` (if
    given), and all agree on the block at that height. Stopped nodes are left out."""
    status = cluster.collect_status(m)
    rows = _live_rows(status)
    mute = [n["name"] for n in status["nodes"] if n["running"] and not n["reachable"]]
    if mute:
        return False, f"running but not answering: {', '.join(mute)}"
    if not rows:
        return False, "no running node"
    h = min(int(n["final_height"] or 0) for n in rows)
    top = max(int(n["final_height"] or 0) for n in rows)
    if top - h > CONVERGED_SPREAD:
        return False, "final heights apart: " + ", ".join(
            f"{n['name']} {n['final_height']}" for n in rows)
    if baseline is not None and h <= baseline:
        return False, f"lowest final height {h} is not above {baseline}"
    ids: dict[str, str] = {}
    for n in rows:
        try:
            with NodeRpc(n["rpc_url"], timeout=2.0) as r:
                blk = r.call("get_block", h)
        except (NodeUnreachable, RpcError) as exc:
            return False, f"{n['name']}: get_block {h}: {exc}"
        ids[n["name"]] = blk.get("id", "") if isinstance(blk, dict) else ""
    if len(set(ids.values())) != 1:
        return False, f"nodes disagree at height {h}: " + ", ".join(
            f"{k} {v[:12]}" for k, v in ids.items())
    return True, f"{len(rows)} node(s) agree on final block {h} {next(iter(ids.values()))[:16]}"


def wait_converged(m: Manifest, baseline: int | None, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    why = ""
    while time.monotonic() < deadline:
        ok, why = check_converged(m, baseline)
        if ok:
            return why
        time.sleep(0.5)
    raise DevnetError(f"the nodes did not converge within {timeout:g} s: {why}")
