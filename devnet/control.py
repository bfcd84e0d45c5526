"""Faults and checks shared by the CLI and scenarios: kill, start, restart, pause/resume
(SIGSTOP/SIGCONT), partition/heal, disconnect/connect one node, link changes at run time,
clock offsets, and the cluster-wide conditions scenarios wait for (finality advancing,
stalling, converging).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from devnet import cluster, procs, proxy
from devnet.manifest import DevnetError, Manifest, NodeEntry
from devnet.rpc import NodeRpc, NodeUnreachable, RpcError
from devnet.topology import parse_duration_ms, parse_pct

__all__ = [
    "check_converged",
    "clock_offset",
    "connect",
    "disconnect",
    "heal",
    "kill_nodes",
    "parse_groups",
    "partition",
    "pause_nodes",
    "restart_nodes",
    "resume_nodes",
    "set_link",
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


def pause_nodes(m: Manifest, entries: list[NodeEntry], *, resume: bool = False) -> dict[str, str]:
    """SIGSTOP (a frozen process: no reads, no timers, its sockets stay open) or SIGCONT."""
    m.reload_pids()
    out: dict[str, str] = {}
    for e in entries:
        if not procs.node_alive(e) or e.pid is None:
            out[e.name] = "not running"
            continue
        os.kill(e.pid, signal.SIGCONT if resume else signal.SIGSTOP)
        out[e.name] = "resumed" if resume else "paused"
    return out


def resume_nodes(m: Manifest, entries: list[NodeEntry]) -> dict[str, str]:
    return pause_nodes(m, entries, resume=True)


def clock_offset(m: Manifest, entries: list[NodeEntry], seconds: float, *,
                 timeout: float = 30.0) -> dict[str, str]:
    """Give nodes a clock offset (the daemon's --clock-offset): recorded in the manifest;
    a running node is restarted (SIGTERM) to take it, a stopped one takes it at start."""
    m.reload_pids()
    running = [e for e in entries if procs.node_alive(e)]
    for e in entries:
        e.clock_offset_s = float(seconds)
    m.save()
    if running:
        restart_nodes(m, running, timeout=timeout)  # started with the saved offset
    return {e.name: f"clock {seconds:+g} s" + (" (restarted)" if e in running else "")
            for e in entries}


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
    """Restore every link: the partition's groups and the disconnected nodes (link shapes
    changed with ``link`` stay; ``link ... --reset`` undoes them)."""
    m.reload_pids()
    _ensure_proxy(m)
    try:
        return proxy.set_partition(m.proxy_dir, None)
    except TimeoutError as exc:
        raise DevnetError(str(exc)) from None


def _control(m: Manifest, **changes: Any) -> dict[str, Any]:
    m.reload_pids()
    _ensure_proxy(m)
    try:
        return proxy.update_control(m.proxy_dir, **changes)
    except TimeoutError as exc:
        raise DevnetError(str(exc)) from None


def _isolated(m: Manifest) -> list[str]:
    doc = proxy.read_control(m.proxy_dir)
    iso = doc.get("isolated")
    return [n for n in iso if isinstance(n, str)] if isinstance(iso, list) else []


def disconnect(m: Manifest, entries: list[NodeEntry], mode: str = "drop") -> dict[str, Any]:
    """Cut every link of the nodes (the rest of the network stays as it is)."""
    iso = _isolated(m)
    iso += [e.name for e in entries if e.name not in iso]
    return _control(m, isolated=iso, mode=mode)


def connect(m: Manifest, entries: list[NodeEntry]) -> dict[str, Any]:
    names = {e.name for e in entries}
    return _control(m, isolated=[n for n in _isolated(m) if n not in names])


def _ends(m: Manifest, spec: str) -> list[str]:
    """A link end: a node (n1), nodes (n1,n2), a region of the topology (eu), or all."""
    regions = (m.extra.get("topology") or {}).get("regions") or {}
    out: list[str] = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        if part in ("all", "*"):
            out += [n.name for n in m.nodes]
        elif part in regions:
            out += list(regions[part]["nodes"])
        else:
            out.append(m.node(part).name)
    if not out:
        raise DevnetError(f"no node in link end {spec!r}")
    return list(dict.fromkeys(out))


def set_link(m: Manifest, a: str, b: str, *, delay: str | float | None = None,
             jitter: str | float | None = None, loss: str | float | None = None,
             one_way: bool = False, reset: bool = False) -> dict[str, Any]:
    """Change the shape of the links between A and B (nodes, regions or all) at run time:
    delay/jitter like '300ms', loss like '5%'; what is not given keeps its current value.
    Both directions unless ``one_way``; ``reset`` returns them to the topology's shapes."""
    src, dst = _ends(m, a), _ends(m, b)
    doc = proxy.read_control(m.proxy_dir)
    links: dict[str, dict[str, float]] = dict(doc.get("links") or {})
    routes = proxy.read_routes_shapes(m.proxy_dir)
    keys = [f"{x}>{y}" for x in src for y in dst if x != y]
    if not one_way:
        keys += [f"{y}>{x}" for x in src for y in dst if x != y]
    if not keys:
        raise DevnetError(f"link {a} {b}: no pair of different nodes")
    for k in dict.fromkeys(keys):
        if reset:
            links.pop(k, None)
            continue
        cur = dict(links.get(k) or routes.get(k) or {})
        if delay is not None:
            cur["delay_ms"] = parse_duration_ms(delay)
        if jitter is not None:
            cur["jitter_ms"] = parse_duration_ms(jitter)
        if loss is not None:
            cur["loss_pct"] = parse_pct(loss)
        links[k] = cur
    st = _control(m, links=links)
    st["changed"] = len(set(keys))
    return st


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
