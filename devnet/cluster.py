"""Create, start, stop and observe a local devnet, only through the node CLI and RPC.

``create`` runs ``muxernode genesis new`` and ``muxernode init``, writes each node's config
(RPC and p2p ports, peers = the proxy's ports towards every other node, witness key) and
the manifest; ``start`` starts the proxy and the nodes; ``stop`` stops them by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from devnet import netns, procs, proxy
from devnet import topology as topo_mod
from devnet.manifest import MANIFEST, Account, DevnetError, Manifest, NodeEntry, load_manifest
from devnet.rpc import NodeRpc, NodeUnreachable, RpcError

__all__ = [
    "HOST",
    "add_node",
    "collect_status",
    "create",
    "free_ports",
    "refuse_existing",
    "start_all",
    "start_nodes",
    "stop_all",
    "stop_nodes",
    "wait_final",
    "wait_serving",
]

HOST = "127.0.0.1"
METRIC_MEMPOOL = "muxer_mempool_txs"
METRIC_TX_RATE = "muxer_tx_per_second"


# --- ports ----------------------------------------------------------------------------------


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 now.

    Chosen below the kernel's ephemeral range when there is room, so that no outgoing
    connection (whose source port comes from that range) can occupy a node's port while the
    node is down and keep it from restarting on the same port. Every candidate is bound
    (and the sockets held until all are chosen), so each was really free."""
    lo, _hi = _ephemeral_range()
    rng = random.Random()
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        low_room = lo - 20000
        attempts = 0
        while len(ports) < n and low_room > 4 * n and attempts < 50 * n:
            attempts += 1
            port = rng.randrange(20000, lo)
            if port in ports:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((HOST, port))
            except OSError:
                s.close()
                continue
            held.append(s)
            ports.append(port)
        while len(ports) < n:  # fall back on ports the kernel picks
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            held.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in held:
            s.close()
    return ports


# --- creation -------------------------------------------------------------------------------


def refuse_existing(directory: Path) -> None:
    """Refuse to create a devnet where one exists (running or stopped) or in a non-empty
    directory that is not a devnet."""
    if (directory / MANIFEST).exists():
        try:
            m = load_manifest(directory)
        except DevnetError:
            raise DevnetError(
                f"{directory} holds an unreadable {MANIFEST}; remove the directory or choose "
                "another --dir") from None
        running = [f"{n.name} (pid {n.pid})" for n in m.nodes if procs.node_alive(n)]
        if running:
            raise DevnetError(
                f"a devnet is running in {directory}: {', '.join(running)}. Stop it with "
                f"`python -m devnet down --dir {directory}` or use another --dir")
        raise DevnetError(
            f"{directory} holds a stopped devnet. Remove it with `python -m devnet down "
            f"--clean --dir {directory}`, restart its nodes with `python -m devnet start all "
            f"--dir {directory}`, or use another --dir")
    if directory.exists() and any(directory.iterdir()):
        raise DevnetError(f"{directory} exists and is not empty (and is not a devnet); "
                          "choose another --dir")


def create(directory: Path, *, nodes: int, witnesses: int, block_interval: int,
           accounts: int, maintenance_interval: int, base_fee: int, seed: int | None,
           topology: Path | dict[str, Any] | None = None, use_netns: bool = False,
           loss: float | None = None,
           clock_offsets: dict[str, float] | None = None,
           log: Callable[[str], None] = lambda s: None) -> Manifest:
    """Make genesis, keys, data dirs, configs, proxy routes and the manifest (nothing runs).

    ``topology``: a topology file (regions, per-link delay/jitter/loss, bandwidth), else one
    region with no delay; ``loss`` replaces every link's loss. ``use_netns``: every node in
    its own network namespace on a bridge (root; made at start, see devnet/netns.py)."""
    if nodes < 1:
        raise DevnetError("--nodes must be at least 1")
    if not 1 <= witnesses <= nodes:
        raise DevnetError(f"--witnesses must be between 1 and --nodes ({nodes}): each witness "
                          "key runs on its own node")
    if use_netns:
        netns.check_root()
    if isinstance(topology, dict):  # inline, as a generated scenario carries it
        topo = topo_mod.parse_topology(topology, nodes, name="the scenario's topology")
    elif topology is not None:
        topo = topo_mod.load_topology(topology, nodes)
    else:
        topo = topo_mod.loopback(nodes)
    if loss is not None:
        topo = topo_mod.with_loss(topo, loss)
    directory = directory.resolve()
    refuse_existing(directory)
    directory.mkdir(parents=True, exist_ok=True)
    gdir = directory / "genesis"
    args = ["genesis", "new", "--out", str(gdir), "--witnesses", str(witnesses),
            "--accounts", str(accounts), "--block-interval", str(block_interval),
            "--maintenance-interval", str(maintenance_interval), "--base-fee", str(base_fee),
            "--chain-name", "muxer-devnet"]
    if seed is not None:
        args += ["--seed", str(seed)]
    log(f"genesis: {witnesses} witness(es), {accounts} funded account(s), "
        f"{block_interval} s blocks")
    out = procs.run_cli(args)
    chain_id = next((ln.split()[1] for ln in out.splitlines() if ln.startswith("chain_id ")),
                    "")
    genesis_path = gdir / "genesis.json"
    gdoc = json.loads(genesis_path.read_text(encoding="utf-8"))
    witness_addrs = [w["address"] for w in gdoc["witnesses"]]
    accts = [Account(a["name"], a["address"], a["secret"])
             for a in json.loads((gdir / "accounts.json").read_text(encoding="utf-8"))]
    if set(witness_addrs) & {a.address for a in accts}:
        raise DevnetError("genesis made an account that is also a witness")

    names = [f"n{i + 1}" for i in range(nodes)]
    pairs = [(a, b) for a in names for b in names if a != b]
    bandwidth = {n: topo.bandwidth(n) for n in names}
    plan = netns.plan(str(directory), names, bandwidth) if use_netns else None
    if plan is not None:
        # each node has its own address: fixed ports; the proxy listens on the bridge
        ports = free_ports(len(pairs))
        rpc_ports = dict.fromkeys(names, netns.RPC_PORT)
        p2p_ports = dict.fromkeys(names, netns.P2P_PORT)
        link_ports = dict(zip(pairs, ports, strict=True))
        host_of = {n: plan["nodes"][n]["ip"] for n in names}
        proxy_host = plan["bridge_ip"]
    else:
        ports = free_ports(2 * nodes + len(pairs))
        rpc_ports = dict(zip(names, ports[:nodes], strict=True))
        p2p_ports = dict(zip(names, ports[nodes : 2 * nodes], strict=True))
        link_ports = dict(zip(pairs, ports[2 * nodes :], strict=True))
        host_of = dict.fromkeys(names, HOST)
        proxy_host = HOST
    link_seed = seed if seed is not None else random.SystemRandom().randrange(2**31)

    entries: list[NodeEntry] = []
    for i, name in enumerate(names):
        ndir = directory / "nodes" / name
        host = host_of[name]
        entries.append(NodeEntry(
            name=name,
            rpc_url=f"http://{host}:{rpc_ports[name]}/rpc",
            p2p=f"{host}:{p2p_ports[name]}",
            data_dir=str(ndir),
            pid=None,
            witness=witness_addrs[i] if i < witnesses else None,
            config=str(ndir / "config.toml"),
            log=str(ndir / "node.log"),
            witness_key=str(ndir / "witness.key") if i < witnesses else None,
            peers=[f"{proxy_host}:{link_ports[(name, other)]}" for other in names
                   if other != name],
            rpc_listen=f"{host}:{rpc_ports[name]}",
            region=topo.region_of(name),
            netns=plan["nodes"][name]["ns"] if plan is not None else "",
            clock_offset_s=float((clock_offsets or {}).get(name, 0.0)),
        ))

    log(f"init: {nodes} data dir(s) under {directory / 'nodes'}")
    with ThreadPoolExecutor(max_workers=min(4, nodes)) as pool:
        list(pool.map(lambda e: procs.run_cli(
            ["init", "--genesis", str(genesis_path), "--data-dir", e.data_dir]), entries))
    for i, e in enumerate(entries):
        if e.witness_key is not None:
            _copy_secret(gdir / f"w{i + 1}.key", Path(e.witness_key))
        _write_config(e)

    proxy.write_routes(directory / "proxy", proxy_host, [
        {"src": a, "dst": b, "listen": link_ports[(a, b)],
         "target": f"{host_of[b]}:{p2p_ports[b]}"} for a, b in pairs],
        shapes=topo.pair_shapes(), seed=link_seed,
        # with --netns the kernel shapes bandwidth (tbf); over loopback the proxy does
        bandwidth_mbit=None if plan is not None else bandwidth)

    m = Manifest(
        dir=directory, chain_id=chain_id, genesis=str(genesis_path),
        block_interval_s=block_interval, nodes=entries, accounts=accts,
        extra={
            "created": time.time(),
            "dir": str(directory),
            "params": {"nodes": nodes, "witnesses": witnesses, "accounts": accounts,
                       "block_interval_s": block_interval,
                       "maintenance_interval_s": maintenance_interval, "base_fee": base_fee,
                       "seed": seed},
            "proxy": {"pid": None, "log": str(directory / "proxy" / "proxy.log"),
                      "routes": str(directory / "proxy" / proxy.ROUTES_FILE),
                      "control": str(directory / "proxy" / proxy.CONTROL_FILE),
                      "state": str(directory / "proxy" / proxy.STATE_FILE)},
            "metrics": str(directory / "metrics.jsonl"),
            "seed": link_seed,
            "topology": {**topo.to_json(),
                         "file": str(Path(topology).resolve())
                         if isinstance(topology, Path) else None},
            **({"netns": plan} if plan is not None else {}),
        },
    )
    m.save()
    return m


def add_node(m: Manifest, name: str, *, state_sync: bool, timeout: float = 120.0,
             log: Callable[[str], None] = lambda s: None) -> NodeEntry:
    """A non-witness node joining the running devnet: ``muxernode init`` from the devnet's
    genesis, a config whose peers are the other nodes' own p2p addresses (not the link
    proxy's: its routes are fixed when it starts), recorded in the manifest (so `down`
    stops it too), started and waited for until it serves RPC (after its state sync)."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise DevnetError(f"node name {name!r}: letters, digits, - and _ only")
    if any(e.name == name for e in m.nodes):
        raise DevnetError(f"the devnet has a node {name!r} already")
    if m.extra.get("netns"):
        raise DevnetError("devnet add does not support --netns devnets yet")
    if not any(procs.node_alive(e) for e in m.nodes):
        raise DevnetError("no node of the devnet is running: start it first (devnet up)")
    ndir = m.dir / "nodes" / name
    if ndir.exists():
        raise DevnetError(f"{ndir} exists; remove it or choose another name")
    rpc_port, p2p_port = free_ports(2)
    entry = NodeEntry(
        name=name, rpc_url=f"http://{HOST}:{rpc_port}/rpc", p2p=f"{HOST}:{p2p_port}",
        data_dir=str(ndir), pid=None, witness=None, config=str(ndir / "config.toml"),
        log=str(ndir / "node.log"), peers=[e.p2p for e in m.nodes],
        rpc_listen=f"{HOST}:{rpc_port}", region="", state_sync=state_sync)
    log(f"init: {ndir}" + (" (joins by state sync)" if state_sync else " (syncs from genesis)"))
    procs.run_cli(["init", "--genesis", m.genesis, "--data-dir", entry.data_dir])
    _write_config(entry)
    m.nodes.append(entry)
    m.save()
    start_nodes(m, [entry], timeout=timeout)
    return entry


def _copy_secret(src: Path, dst: Path) -> None:
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(src.read_text(encoding="utf-8"))
    os.chmod(dst, stat.S_IRUSR | stat.S_IWUSR)


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def _write_config(e: NodeEntry) -> None:
    peers = ", ".join(_toml_str(p) for p in e.peers)
    lines = [
        "# written by python -m devnet; peers are the devnet link proxy's ports",
        "[rpc]",
        f"listen = {_toml_str(e.rpc_listen)}",
        "",
        "[p2p]",
        f"listen = {_toml_str(e.p2p)}",
        f"peers = [{peers}]",
        "",
    ]
    if e.witness_key:
        lines += ["[witness]", f"key_file = {_toml_str(e.witness_key)}", ""]
    lines += ["[log]", 'format = "text"', 'level = "info"', "",
              "[limits]", "verify_threads = 1  # several nodes share the machine's cores", ""]
    Path(e.config).write_text("\n".join(lines), encoding="utf-8")


# --- start / stop ---------------------------------------------------------------------------


def start_nodes(m: Manifest, entries: list[NodeEntry], *, timeout: float = 30.0) -> None:
    """Start the given nodes (the proxy too, if it is not running); wait until each serves
    RPC and answers chain_info. The manifest is saved with the new pids at once. With
    --netns, the namespaces and bridge are made first if they are not there."""
    if m.extra.get("netns") and not procs.proxy_alive(m):
        netns.setup(m)
    if not procs.proxy_alive(m):
        procs.start_proxy(m)
        m.save()
    for e in entries:
        if procs.node_alive(e):
            continue
        procs.start_node(e)
    m.save()
    wait_serving(m, entries, timeout=timeout)


def start_all(m: Manifest, *, timeout: float = 30.0) -> None:
    start_nodes(m, m.nodes, timeout=timeout)


def wait_serving(m: Manifest, entries: list[NodeEntry], *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for e in entries:
        procs.wait_rpc_addr(e, timeout=max(0.5, deadline - time.monotonic()))
        with NodeRpc(e.rpc_url, timeout=2.0) as rpc:
            last: Exception | None = None
            while time.monotonic() < deadline:
                try:
                    info = rpc.call("chain_info")
                except (NodeUnreachable, RpcError) as exc:
                    last = exc
                    time.sleep(0.1)
                    continue
                if info.get("chain_id") != m.chain_id:
                    raise DevnetError(f"node {e.name} at {e.rpc_url} serves chain "
                                      f"{info.get('chain_id')}, not {m.chain_id}")
                break
            else:
                raise DevnetError(f"node {e.name} wrote rpc.addr but its RPC at {e.rpc_url} "
                                  f"does not answer ({last})")


def stop_nodes(entries: list[NodeEntry], *, sig_kill: bool = False,
               timeout: float = 15.0) -> dict[str, str]:
    """Stop nodes by pid in parallel: SIGTERM (or SIGKILL), wait, then SIGKILL. Clears pids."""
    import signal

    def one(e: NodeEntry) -> str:
        res = procs.stop_pid(e.pid, procs.node_marks(e),
                             sig=signal.SIGKILL if sig_kill else signal.SIGTERM,
                             timeout=timeout)
        e.pid = None
        return res

    if not entries:
        return {}
    with ThreadPoolExecutor(max_workers=len(entries)) as pool:
        results = list(pool.map(one, entries))
    return {e.name: r for e, r in zip(entries, results, strict=True)}


def stop_all(m: Manifest, *, timeout: float = 15.0) -> dict[str, str]:
    m.reload_pids()
    out = stop_nodes(m.nodes, timeout=timeout)
    out["proxy"] = procs.stop_pid(m.proxy_pid, procs.proxy_marks(m), timeout=5.0)
    m.proxy_pid = None
    m.save()
    if m.extra.get("netns"):
        removed = netns.teardown(m)
        out["netns"] = f"removed {len(removed)} (namespaces, links)" if removed else "none left"
    return out


def clean(m: Manifest) -> None:
    """Remove the devnet directory (only one that holds a devnet manifest)."""
    if not (m.dir / MANIFEST).exists():
        raise DevnetError(f"{m.dir} holds no {MANIFEST}; not removing it")
    shutil.rmtree(m.dir)


# --- observing ------------------------------------------------------------------------------


def node_status(e: NodeEntry, *, timeout: float = 1.5) -> dict[str, Any]:
    """One node's status from its RPC (chain_info, peers) and /metrics; never raises."""
    st: dict[str, Any] = {
        "name": e.name, "pid": e.pid, "running": procs.node_alive(e), "reachable": False,
        "witness": e.witness, "rpc_url": e.rpc_url, "p2p": e.p2p, "head_height": None,
        "head_id": None, "head_time": None, "final_height": None, "final_id": None,
        "peers": None, "mempool": None, "tx_rate": None, "participation": None, "error": None,
        "region": e.region, "paused": False,
    }
    if not st["running"]:
        st["pid"] = None
        return st
    if procs.node_paused(e):  # SIGSTOPped: its RPC would only time out
        st["paused"] = True
        return st
    with NodeRpc(e.rpc_url, timeout=timeout) as rpc:
        try:
            info, peers = rpc.batch([("chain_info", []), ("peers", [])])
            if isinstance(info, RpcError):
                raise info
            st.update(reachable=True, head_height=info.get("head_height"),
                      head_id=info.get("head_id"), head_time=info.get("head_time"),
                      final_height=info.get("final_height"), final_id=info.get("final_id"),
                      participation=info.get("participation"))
            st["peers"] = len(peers) if isinstance(peers, list) else None
            metrics = rpc.metrics()
            st["mempool"] = int(metrics.get(METRIC_MEMPOOL, 0))
            st["tx_rate"] = metrics.get(METRIC_TX_RATE, 0.0)
        except (NodeUnreachable, RpcError) as exc:
            st["error"] = str(exc)[:200]
    return st


def collect_status(m: Manifest) -> dict[str, Any]:
    """The whole devnet's status: every node (polled in parallel) and the proxy."""
    with contextlib.suppress(DevnetError):
        m.reload_pids()
    with ThreadPoolExecutor(max_workers=max(1, len(m.nodes))) as pool:
        nodes = list(pool.map(node_status, m.nodes))
    pstate = proxy.read_state(m.proxy_dir) or {}
    running = procs.proxy_alive(m)
    return {
        "dir": str(m.dir), "chain_id": m.chain_id, "time": time.time(),
        "block_interval_s": m.block_interval_s,
        "proxy": {"pid": m.proxy_pid if running else None, "running": running,
                  "mode": pstate.get("mode"), "groups": pstate.get("groups"),
                  "isolated": pstate.get("isolated", []) if running else [],
                  "cut": pstate.get("cut", []) if running else []},
        "nodes": nodes,
    }


def append_sample(m: Manifest, status: dict[str, Any], source: str) -> None:
    """One line of metrics.jsonl: {"t", "source", "nodes": {name: {...}}}."""
    sample = {"t": status["time"], "source": source, "cut": status["proxy"]["cut"],
              "nodes": {n["name"]: {k: n[k] for k in (
                  "running", "head_height", "final_height", "peers", "mempool", "tx_rate")}
                  for n in status["nodes"]}}
    line = json.dumps(sample, separators=(",", ":")) + "\n"
    fd = os.open(m.dir / "metrics.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def wait_final(m: Manifest, *, min_final: int = 1, timeout: float = 60.0,
               entries: list[NodeEntry] | None = None,
               on_poll: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Wait until every given (running) node reports final_height >= min_final."""
    entries = entries if entries is not None else m.nodes
    names = {e.name for e in entries}
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = collect_status(m)
        if on_poll is not None:
            on_poll(status)
        rows = [n for n in status["nodes"] if n["name"] in names]
        for n in rows:
            if not n["running"]:
                raise DevnetError(f"node {n['name']} is not running; last lines of its log:\n"
                                  f"{procs.tail(m.node(n['name']).log, 15)}")
        if all((n["final_height"] or 0) >= min_final for n in rows):
            return status
        time.sleep(0.5)
    summary = ", ".join(f"{n['name']}: head {n['head_height']} final {n['final_height']} "
                        f"peers {n['peers']}" for n in status.get("nodes", [])
                        if n["name"] in names)
    raise DevnetError(
        f"finality did not reach height {min_final} on every node within {timeout:g} s "
        f"({summary}). With several witnesses, blocks and votes must travel over p2p: check "
        f"the peers column and the node logs (python -m devnet logs NODE --dir {m.dir})")
