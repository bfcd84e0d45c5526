"""``python -m devnet``: local MUXER clusters, load, faults, scenarios and reports.

    up [--nodes 4] [--witnesses N] [--block-interval 1] [--accounts 10] [--detach]
       [--topology FILE] [--loss PCT] [--netns]
    down [--clean]          status [--json] [--watch]          logs NODE [-n N] [--follow]
    add NAME [--state-sync] (a non-witness node joins the running devnet)
    load --tps R --duration S [--mix transfer,pledge,vote,give,claim]
    kill NODE [--signal KILL|TERM]    start NODE    restart NODE      (NODE: n1, n1,n2, all)
    pause NODE    resume NODE    disconnect NODE    connect NODE    clock NODE --offset S
    partition A,B/C,D [--mode drop|reset]    heal
    link A B [--delay 300ms] [--jitter 50ms] [--loss 5%] [--one-way] [--reset]
    generate --seed S --out FILE [--max-nodes N] [--duration S]
    scenario FILE [--fresh]            report [--seconds N]

Every subcommand takes --dir (default: .devnet in the repository root). The devnet drives
nodes only through the ``muxernode`` CLI and their RPC; see README.md, "The devnet".
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from devnet import cluster, control, procs
from devnet.load import Load, LoadSpec, parse_mix
from devnet.manifest import DevnetError, Manifest, default_dir, load_manifest
from devnet.ui import status_table

console = Console()


class _Group(click.Group):
    """Turns DevnetError into a clear one-line error and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DevnetError as exc:
            raise click.ClickException(str(exc)) from None


def dir_option(f: Any) -> Any:
    return click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
                         default=None, help="Devnet directory (default: .devnet in the repo "
                         "root).")(f)


def _dir(directory: Path | None) -> Path:
    return (directory or default_dir()).resolve()


def _manifest(directory: Path | None) -> Manifest:
    return load_manifest(_dir(directory))


@click.group(cls=_Group)
def main() -> None:
    """Local MUXER devnets: start clusters, drive load, inject faults, run scenarios."""


# --- up / down ----------------------------------------------------------------------------


class _Stop(Exception):
    pass


_stopping = False


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    global _stopping
    if _stopping:  # a second Ctrl-C must not abort the clean-up that the first one began
        return
    _stopping = True
    raise _Stop()


class _StopSignals:
    """SIGINT and SIGTERM raise _Stop while the block runs (even where SIGINT was ignored,
    as for a background job of a shell), so that the devnet stops its nodes itself."""

    def __enter__(self) -> None:
        self._old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


@main.command()
@click.option("--nodes", default=4, show_default=True, type=click.IntRange(1, 32))
@click.option("--witnesses", default=None, type=click.IntRange(1, 32),
              help="Witnesses, one per node on the first N nodes [default: --nodes].")
@click.option("--block-interval", default=1, show_default=True, type=click.IntRange(1, 60))
@click.option("--accounts", default=10, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--maintenance-interval", default=60, show_default=True,
              type=click.IntRange(1, 10**6))
@click.option("--base-fee", default=10, show_default=True, type=click.IntRange(0, 10**12))
@click.option("--seed", type=int, default=None, help="Deterministic keys (tests).")
@click.option("--timeout", default=90.0, show_default=True,
              help="Seconds to wait for finality to advance on every node.")
@click.option("--detach", is_flag=True, help="Return once the cluster is up.")
@click.option("--topology", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="Regions, per-link delay/jitter/loss and bandwidth "
              "(devnet/topologies/*.toml) [default: one region, no delay].")
@click.option("--loss", default=None, help="Loss on every link, like 1%, replacing the "
              "topology's.")
@click.option("--netns", "use_netns", is_flag=True,
              help="Each node in its own network namespace on a bridge, bandwidth by tc "
                   "(root).")
@dir_option
def up(nodes: int, witnesses: int | None, block_interval: int, accounts: int,
       maintenance_interval: int, base_fee: int, seed: int | None, timeout: float,
       detach: bool, topology: Path | None, loss: str | None, use_netns: bool,
       directory: Path | None) -> None:
    """Create a devnet, start it, wait for finality, then show a live status table."""
    from devnet.topology import parse_pct

    d = _dir(directory)
    m = cluster.create(d, nodes=nodes, witnesses=witnesses or nodes,
                       block_interval=block_interval, accounts=accounts,
                       maintenance_interval=maintenance_interval, base_fee=base_fee, seed=seed,
                       topology=topology, use_netns=use_netns,
                       loss=parse_pct(loss) if loss is not None else None,
                       log=lambda s: console.print(f"[dim]{s}[/dim]"))
    topo = m.extra.get("topology") or {}
    placed = ", ".join(f"{r}: {len(v['nodes'])}" for r, v in topo.get("regions", {}).items())
    console.print(f"devnet in {d}: chain {m.chain_id[:16]}…, {nodes} node(s), "
                  f"{witnesses or nodes} witness(es); topology {topo.get('name')} ({placed})"
                  + ("; network namespaces" if use_netns else "; loopback"))
    with _StopSignals():
        try:
            cluster.start_all(m)
            console.print("nodes serving RPC; waiting for finality to advance on every node…")
            cluster.wait_final(m, min_final=1, timeout=timeout)
        except DevnetError as exc:
            if detach:
                raise DevnetError(f"{exc}\nThe nodes are left running for inspection; stop "
                                  f"them with: python -m devnet down --dir {d}") from None
            console.print("[red]start-up failed[/red]; stopping the nodes")
            cluster.stop_all(m)
            raise
        except (KeyboardInterrupt, _Stop):
            console.print("interrupted during start-up; stopping the nodes")
            cluster.stop_all(m)
            sys.exit(130)
        status = cluster.collect_status(m)
        # the member web app each node serves (GET / on its RPC port; docs/members.md)
        console.print("web app: " + "  ".join(
            f"{e.name} {e.rpc_url.removesuffix('rpc')}" for e in m.nodes))
        if detach:
            console.print(status_table(status))
            console.print(f"manifest: {m.path}\nstatus: python -m devnet status --dir {d}\n"
                          f"stop:   python -m devnet down --dir {d}")
            return
        _live(m)


def _live(m: Manifest, *, stop_on_exit: bool = True, source: str = "up") -> None:
    """The live table, refreshed (and sampled to metrics.jsonl) every second until Ctrl-C,
    SIGTERM, or until another command (``down``) has stopped every process."""
    try:
        with Live(status_table(cluster.collect_status(m)), console=console,
                  refresh_per_second=2) as live:
            while True:
                t0 = time.monotonic()
                status = cluster.collect_status(m)
                if not status["proxy"]["running"] and not any(
                        n["running"] for n in status["nodes"]):
                    live.update(status_table(status))
                    console.print("every devnet process has been stopped (by `down`?)")
                    return
                cluster.append_sample(m, status, source)
                live.update(status_table(status, title=f"devnet {m.dir}  chain "
                                         f"{m.chain_id[:16]}…  (Ctrl-C to "
                                         f"{'stop' if stop_on_exit else 'quit'})"))
                time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    except (KeyboardInterrupt, _Stop):
        pass
    if stop_on_exit:
        console.print("stopping the devnet…")
        res = cluster.stop_all(m)
        console.print(", ".join(f"{k}: {v}" for k, v in res.items()))
        _where(m)


def _where(m: Manifest) -> None:
    console.print(f"data and logs are kept in {m.dir}: nodes/<name>/ (node.log, config.toml, "
                  f"db/), proxy/proxy.log, metrics.jsonl.\nRemove them with: python -m devnet "
                  f"down --clean --dir {m.dir}")


@main.command()
@click.option("--clean", is_flag=True, help="Also remove the devnet directory.")
@dir_option
def down(clean: bool, directory: Path | None) -> None:
    """Stop every node (SIGTERM, then SIGKILL after 15 s) and the proxy."""
    m = _manifest(directory)
    res = cluster.stop_all(m)
    console.print(", ".join(f"{k}: {v}" for k, v in res.items()))
    if clean:
        cluster.clean(m)
        console.print(f"removed {m.dir}")
    else:
        _where(m)


# --- observing ----------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--watch", is_flag=True, help="Live table (and metrics samples) until Ctrl-C.")
@dir_option
def status(as_json: bool, watch: bool, directory: Path | None) -> None:
    """The status of every node: height, final height, peers, mempool, tx/s."""
    m = _manifest(directory)
    if watch:
        with _StopSignals():
            _live(m, stop_on_exit=False, source="status")
        return
    st = cluster.collect_status(m)
    if as_json:
        click.echo(json.dumps(st, indent=2))
    else:
        console.print(status_table(st))


@main.command()
@click.argument("node")
@click.option("-n", "lines", default=50, show_default=True, type=click.IntRange(0, 100_000))
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@dir_option
def logs(node: str, lines: int, follow: bool, directory: Path | None) -> None:
    """Print the last lines of a node's log (NODE: a node name, or 'proxy')."""
    m = _manifest(directory)
    path = Path(m.proxy_dir / "proxy.log") if node == "proxy" else Path(m.node(node).log)
    if not path.exists():
        raise DevnetError(f"no log yet at {path}")
    text = procs.tail(path, lines)
    if text:
        click.echo(text)
    if not follow:
        return
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            while m.path.exists():  # ends with Ctrl-C, or when the devnet is removed
                chunk = f.read(65536)
                if chunk:
                    click.echo(chunk.decode(errors="replace"), nl=False)
                else:
                    time.sleep(0.2)
    except KeyboardInterrupt:
        pass


# --- load ---------------------------------------------------------------------------------


@main.command()
@click.option("--tps", required=True, type=click.FloatRange(0.1, 100_000))
@click.option("--duration", required=True, type=click.FloatRange(0.1, 86_400),
              help="Seconds of submission.")
@click.option("--mix", default="transfer", show_default=True,
              help="Ops to send, comma-separated, optional weights: transfer:5,vote:1. "
                   "From transfer, pledge, vote, give, claim.")
@click.option("--nodes", "node_spec", default="all", show_default=True,
              help="Nodes to submit to (n1,n2 or all).")
@click.option("--drain", default=30.0, show_default=True,
              help="Seconds to wait after submission for txs to become final.")
@click.option("--name", default="load", show_default=True, help="Name of the result file.")
@click.option("--seed", type=int, default=None, help="Seed of the op and sender choices.")
@dir_option
def load(tps: float, duration: float, mix: str, node_spec: str, drain: float, name: str,
         seed: int | None, directory: Path | None) -> None:
    """Sign and submit txs at a target rate; report tx/s and latency to final."""
    m = _manifest(directory)
    spec = LoadSpec(tps=tps, duration=duration, mix=parse_mix(mix),
                    nodes=None if node_spec == "all" else [n.name for n in
                                                           m.nodes_named(node_spec)],
                    drain=drain, name=name, seed=seed)
    ld = Load(m, spec)
    total = ld.total
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                  transient=False) as progress:
        task = progress.add_task("setup", total=total, info="")

        def tick(load: Load) -> None:
            c = load.counts()
            progress.update(task, description=load.state, completed=min(total, c["planned"]),
                            info=f"accepted {c['accepted']} final {c['final']} "
                                 f"rejected {c['rejected']} unreachable {c['unreachable']}")

        try:
            result = ld.run(progress=tick)
        except KeyboardInterrupt:
            ld.stop()
            raise
        tick(ld)
    lat = result["latency_s"]

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f} s"

    console.print(
        f"accepted {result['accepted']} of {result['planned']} planned in "
        f"{result['window_s']:.1f} s: [bold]{result['achieved_tps']:.1f} tx/s[/bold] "
        f"(target {tps:g}); final {result['final']}, not final {result['not_final']}, "
        f"rejected {sum(result['rejected'].values())}, unreachable {result['unreachable']}, "
        f"skipped {result['skipped']}")
    console.print(f"latency submission -> final: p50 {f(lat['p50'])}, p90 {f(lat['p90'])}, "
                  f"p99 {f(lat['p99'])}, max {f(lat['max'])}")
    console.print(f"load generator CPU while submitting: {result['cpu_cores']:.3f} cores "
                  f"({result['cpu_s']:.1f} s over the whole run, its own threads)")
    if result["rejected"]:
        console.print(f"rejections (op:reason): {result['rejected']}")
    console.print(f"results: {ld.result_path}")
    if result["state"] != "done":
        raise DevnetError(f"load ended in state {result['state']}: {result.get('error')}")


# --- faults -------------------------------------------------------------------------------


@main.command()
@click.argument("name")
@click.option("--state-sync", is_flag=True,
              help="Join by the latest final snapshot from the peers (muxernode run "
                   "--state-sync) instead of replaying from genesis.")
@click.option("--timeout", default=120.0, show_default=True,
              help="Seconds to wait for the node to serve RPC (after its state sync).")
@dir_option
def add(name: str, state_sync: bool, timeout: float, directory: Path | None) -> None:
    """Add a non-witness node NAME to the running devnet (`down` stops it too)."""
    m = _manifest(directory)
    m.reload_pids()
    e = cluster.add_node(m, name, state_sync=state_sync, timeout=timeout,
                         log=lambda s: console.print(f"[dim]{s}[/dim]"))
    info = cluster.node_status(e)
    console.print(f"{e.name}: pid {e.pid}, head {info.get('head_height')}, final "
                  f"{info.get('final_height')}\nrpc: {e.rpc_url}\nweb app: "
                  f"{e.rpc_url.removesuffix('rpc')}\nlog: {e.log}")


@main.command()
@click.argument("node")
@click.option("--signal", "sig", type=click.Choice(["KILL", "TERM"]), default="KILL",
              show_default=True, help="KILL crashes the node; TERM stops it cleanly.")
@dir_option
def kill(node: str, sig: str, directory: Path | None) -> None:
    """Kill a node (NODE: n1, n1,n2 or all)."""
    m = _manifest(directory)
    res = control.kill_nodes(m, m.nodes_named(node), sig)
    console.print(", ".join(f"{k}: {v}" for k, v in res.items()))


@main.command()
@click.argument("node")
@dir_option
def start(node: str, directory: Path | None) -> None:
    """Start stopped node(s) (NODE: n1, n1,n2 or all); starts the proxy too if needed."""
    m = _manifest(directory)
    entries = m.nodes_named(node)
    control.start_nodes(m, entries)
    console.print(", ".join(f"{e.name}: pid {e.pid}" for e in entries))


@main.command()
@click.argument("node")
@dir_option
def restart(node: str, directory: Path | None) -> None:
    """Stop node(s) cleanly (SIGTERM) and start them again."""
    m = _manifest(directory)
    entries = m.nodes_named(node)
    control.restart_nodes(m, entries)
    console.print(", ".join(f"{e.name}: pid {e.pid}" for e in entries))


@main.command()
@click.argument("node")
@dir_option
def pause(node: str, directory: Path | None) -> None:
    """Freeze node(s) with SIGSTOP (sockets stay open, nothing is read or sent)."""
    m = _manifest(directory)
    res = control.pause_nodes(m, m.nodes_named(node))
    console.print(", ".join(f"{k}: {v}" for k, v in res.items()))


@main.command()
@click.argument("node")
@dir_option
def resume(node: str, directory: Path | None) -> None:
    """Resume paused node(s) with SIGCONT."""
    m = _manifest(directory)
    res = control.resume_nodes(m, m.nodes_named(node))
    console.print(", ".join(f"{k}: {v}" for k, v in res.items()))


@main.command()
@click.argument("node")
@click.option("--mode", type=click.Choice(["drop", "reset"]), default="drop",
              show_default=True, help="drop: links go silent (held); reset: connections close.")
@dir_option
def disconnect(node: str, mode: str, directory: Path | None) -> None:
    """Cut every p2p link of node(s), the rest of the network untouched."""
    m = _manifest(directory)
    entries = m.nodes_named(node)
    st = control.disconnect(m, entries, mode)
    console.print(f"disconnected {', '.join(e.name for e in entries)} ({mode}); isolated now: "
                  f"{', '.join(st.get('isolated') or [])}")


@main.command()
@click.argument("node")
@dir_option
def connect(node: str, directory: Path | None) -> None:
    """Restore the links of disconnected node(s)."""
    m = _manifest(directory)
    entries = m.nodes_named(node)
    st = control.connect(m, entries)
    console.print(f"connected {', '.join(e.name for e in entries)}; isolated now: "
                  f"{', '.join(st.get('isolated') or []) or 'none'}")


@main.command()
@click.argument("a")
@click.argument("b")
@click.option("--delay", default=None, help="One-way delay, like 300ms.")
@click.option("--jitter", default=None, help="Jitter (+-, uniform), like 50ms.")
@click.option("--loss", default=None, help="Loss, like 5% (costs a retransmission).")
@click.option("--one-way", is_flag=True, help="Only A -> B (default: both directions).")
@click.option("--reset", is_flag=True, help="Back to the topology's shapes.")
@dir_option
def link(a: str, b: str, delay: str | None, jitter: str | None, loss: str | None,
         one_way: bool, reset: bool, directory: Path | None) -> None:
    """Change the links between A and B at run time (A, B: a node, nodes n1,n2, a region,
    or all)."""
    m = _manifest(directory)
    if not reset and delay is None and jitter is None and loss is None:
        raise DevnetError("link needs --delay, --jitter, --loss or --reset")
    st = control.set_link(m, a, b, delay=delay, jitter=jitter, loss=loss, one_way=one_way,
                          reset=reset)
    what = "reset to the topology" if reset else ", ".join(
        f"{k} {v}" for k, v in (("delay", delay), ("jitter", jitter), ("loss", loss)) if v)
    console.print(f"link {a} {'->' if one_way else '<->'} {b}: {what} "
                  f"({st['changed']} directed pair(s))")


@main.command()
@click.argument("node")
@click.option("--offset", required=True, type=float,
              help="Seconds added to the node's clock (negative: behind); 0 removes it.")
@dir_option
def clock(node: str, offset: float, directory: Path | None) -> None:
    """Skew node(s)' clock (the daemon's --clock-offset); a running node is restarted."""
    m = _manifest(directory)
    res = control.clock_offset(m, m.nodes_named(node), offset)
    console.print(", ".join(f"{k}: {v}" for k, v in res.items()))


@main.command()
@click.option("--seed", required=True, type=int)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--max-nodes", default=21, show_default=True, type=click.IntRange(2, 21))
@click.option("--duration", default=120.0, show_default=True,
              type=click.FloatRange(10, 86_400), help="Seconds of perturbation schedule.")
def generate(seed: int, out: Path, max_nodes: int, duration: float) -> None:
    """Write a random testnet (topology, witnesses, load, perturbations) as a scenario;
    the same seed and options write the same bytes."""
    from devnet.generate import generate_scenario

    text = generate_scenario(seed, max_nodes=max_nodes, duration=duration)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(text.encode())
    console.print(f"wrote {out}: run it with python -m devnet scenario {out} --fresh")


@main.command()
@click.argument("groups")
@click.option("--mode", type=click.Choice(["drop", "reset"]), default="drop",
              show_default=True, help="drop: links go silent (held); reset: connections close.")
@dir_option
def partition(groups: str, mode: str, directory: Path | None) -> None:
    """Cut every p2p link between groups, e.g. n1,n2/n3,n4 (through the link proxy)."""
    m = _manifest(directory)
    parsed = control.parse_groups(m, groups)
    st = control.partition(m, parsed, mode)
    console.print(f"partitioned {' | '.join(','.join(g) for g in parsed)} ({mode}); "
                  f"{len(st.get('cut', []))} node pair(s) cut")


@main.command()
@dir_option
def heal(directory: Path | None) -> None:
    """Restore every p2p link."""
    m = _manifest(directory)
    control.heal(m)
    console.print("all links restored")


# --- scenario / report ----------------------------------------------------------------------


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--fresh", is_flag=True,
              help="Start a new devnet in --dir with the file's [devnet] settings, run, stop it.")
@click.option("--nodes", type=click.IntRange(1, 32), default=None,
              help="With --fresh: nodes to start [default: the file's devnet.nodes].")
@click.option("--timeout", default=90.0, show_default=True,
              help="With --fresh: seconds to wait for finality at start.")
@click.option("--netns", "netns_flag", is_flag=True,
              help="With --fresh: run the nodes in network namespaces (root).")
@dir_option
def scenario(file: Path, fresh: bool, nodes: int | None, timeout: float, netns_flag: bool,
             directory: Path | None) -> None:
    """Run a TOML scenario of steps; exit 1 when a step fails."""
    from devnet.scenario import Runner, load_scenario

    doc = load_scenario(file)
    d = _dir(directory)
    m: Manifest | None = None
    ok = False
    with _StopSignals():
        try:
            if fresh:
                cfg = doc.get("devnet", {})
                n = nodes or int(cfg.get("nodes", 4))
                topo_file = _scenario_topology(file, cfg, d)
                m = cluster.create(d, nodes=n, witnesses=int(cfg.get("witnesses", n)),
                                   block_interval=int(cfg.get("block_interval", 1)),
                                   accounts=int(cfg.get("accounts", 10)),
                                   maintenance_interval=int(cfg.get("maintenance_interval", 60)),
                                   base_fee=int(cfg.get("base_fee", 10)), seed=cfg.get("seed"),
                                   topology=topo_file, use_netns=netns_flag or
                                   bool(cfg.get("netns", False)),
                                   loss=float(cfg["loss_pct"]) if "loss_pct" in cfg else None,
                                   clock_offsets={str(k): float(v) for k, v in
                                                  (cfg.get("clock_offset_s") or {}).items()})
                topo_name = (m.extra.get("topology") or {}).get("name")
                console.print(f"fresh devnet in {d}: {n} node(s), topology {topo_name}")
                cluster.start_all(m)
                cluster.wait_final(m, min_final=1, timeout=timeout)
            else:
                m = load_manifest(d)
            need = int(doc.get("devnet", {}).get("min_nodes", 1))
            if len(m.nodes) < need:
                raise DevnetError(f"{file.name} needs {need} nodes; this devnet has "
                                  f"{len(m.nodes)}")
            click.echo(f"scenario {file.name}: {doc.get('description', '').strip()}")
            ok = Runner(m, doc, click.echo).run()
        except (KeyboardInterrupt, _Stop):
            console.print("interrupted")
        finally:
            if fresh and m is not None:
                res = cluster.stop_all(m)
                console.print("stopped: " + ", ".join(f"{k}: {v}" for k, v in res.items()))
                _where(m)
    if not ok:
        sys.exit(1)


def _scenario_topology(file: Path, cfg: dict[str, Any],
                       d: Path) -> Path | dict[str, Any] | None:
    """The [devnet] table's topology: a file (relative to the scenario, or the repo's
    devnet/topologies/), or an inline [devnet.topology] table (generated scenarios carry
    theirs inline, so the file alone reproduces the run)."""
    t = cfg.get("topology")
    if t is None or isinstance(t, dict):
        return t
    for cand in (file.parent / str(t), Path(__file__).parent / "topologies" / str(t),
                 Path(__file__).parent / "topologies" / f"{t}.toml"):
        if cand.is_file():
            return cand
    raise DevnetError(f"{file.name}: topology {t!r} not found (relative to the scenario or "
                      "in devnet/topologies/)")


@main.command()
@click.option("--seconds", default=0.0, show_default=True,
              help="First sample the devnet once a second for this long.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Report file [default: DIR/report.md]; PNGs go next to it.")
@dir_option
def report(seconds: float, out: Path | None, directory: Path | None) -> None:
    """Write report.md with PNG plots (heights, tx/s, latency) from the samples and loads."""
    from devnet.report import sample_for, write_report

    m = _manifest(directory)
    if seconds > 0:
        console.print(f"sampling for {seconds:g} s…")
        sample_for(m, seconds)
    path = write_report(m, out)
    console.print(f"wrote {path}")


from devnet.society.cli import society  # noqa: E402  (issue 17: society simulation)

main.add_command(society)

if __name__ == "__main__":
    main()
