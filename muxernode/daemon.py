"""`muxernode`: make a genesis, initialise a data directory, run a node.

    muxernode genesis new --out DIR [--witnesses N] [--accounts N] [--block-interval S] ...
    muxernode init --genesis FILE --data-dir DIR
    muxernode run --data-dir DIR [--config FILE] [--rpc HOST:PORT] [--witness-key FILE]

`run` stops gracefully on SIGINT and SIGTERM: it finishes the block in hand, closes
LevelDB and exits 0. On first start it writes the admin RPC token to
``<data_dir>/rpc.token`` (mode 0600; docs/rpc.md, Access); a witness key or token file
that others may read stops it with a message and exit code 2.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TypeVar, cast

import click
import trio

from consensus.crypto import PrivateKey, address_to_text
from consensus.genesis import PARAM_NAMES, GenesisError, parse_genesis
from muxernode.config import ConfigError, check_keep_blocks, load_config, parse_hostport
from muxernode.logs import LogLevelError, setup_logging
from muxernode.node import Node, NodeError, init_data_dir, load_witness_key
from p2p.transport import ListenError
from storage.leveldb import StorageError, StorageLost

log = logging.getLogger("muxer.daemon")


def write_secret(path: Path, text: str) -> None:
    """Create a file readable by its owner only (0600 from the first byte)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


@click.group()
def main() -> None:
    """The MUXER node daemon."""


@main.group()
def genesis() -> None:
    """Genesis files."""


@genesis.command("new")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for genesis.json, witness keys and account secrets.")
@click.option("--chain-name", default="muxer-devnet", show_default=True)
@click.option("--witnesses", default=1, show_default=True, type=click.IntRange(1, 101))
@click.option("--accounts", default=10, show_default=True, type=click.IntRange(0, 100_000))
@click.option("--amount", default=100_000_000_000, show_default=True,
              type=click.IntRange(1, 2**63 - 1), help="Units per funded account.")
@click.option("--block-interval", default=1, show_default=True, type=click.IntRange(1, 3600))
@click.option("--maintenance-interval", default=60, show_default=True,
              type=click.IntRange(1, 10**9))
@click.option("--base-fee", default=10, show_default=True, type=click.IntRange(0, 2**63 - 1))
@click.option("--genesis-time", type=int, default=None,
              help="UNIX seconds (default: now, rounded down to the block interval).")
@click.option("--seed", type=int, default=None, help="Derive keys deterministically (tests).")
def genesis_new(out_dir: str, chain_name: str, witnesses: int, accounts: int, amount: int,
                block_interval: int, maintenance_interval: int, base_fee: int,
                genesis_time: int | None, seed: int | None) -> None:
    """Make a genesis with witnesses and funded accounts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "genesis.json").exists():
        raise click.ClickException(f"{out / 'genesis.json'} exists; choose another --out")

    def key(i: int) -> PrivateKey:
        if seed is None:
            return PrivateKey.generate()
        from consensus.crypto import sha256
        return PrivateKey(sha256(b"muxer-genesis" + seed.to_bytes(8, "big") + i.to_bytes(4, "big")))

    gtime = genesis_time
    if gtime is None:
        gtime = int(time.time()) // block_interval * block_interval
    wkeys = [key(i) for i in range(witnesses)]
    akeys = [key(10_000 + i) for i in range(accounts)]
    doc: dict[str, Any] = {
        "chain_name": chain_name,
        "genesis_time": gtime,
        "params": {"block_interval_s": block_interval, "active_witnesses": witnesses,
                   "maintenance_interval_s": maintenance_interval, "max_block_bytes": 2097152,
                   "max_tx_bytes": 8192, "max_tx_lifetime_s": 3600, "base_fee": base_fee},
        "witnesses": [{"name": f"w{i + 1}", "address": k.address_text,
                       "signing_key": k.public_key.hex()} for i, k in enumerate(wkeys)],
        "balances": [{"address": k.address_text, "amount": amount} for k in akeys],
    }
    try:
        g = parse_genesis(doc)
    except GenesisError as exc:
        raise click.ClickException(str(exc)) from None
    (out / "genesis.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    for i, k in enumerate(wkeys):
        write_secret(out / f"w{i + 1}.key", k.seed.hex() + "\n")
    write_secret(out / "accounts.json", json.dumps(
        [{"name": f"a{i + 1}", "address": k.address_text, "secret": k.seed.hex()}
         for i, k in enumerate(akeys)], indent=2) + "\n")
    click.echo(f"chain_id {g.chain_id.hex()}")
    click.echo(f"wrote {out / 'genesis.json'}, {witnesses} witness key(s) w*.key, "
               f"{accounts} account(s) in accounts.json")


@main.command()
@click.option("--genesis", "genesis_path", required=True, type=click.Path(dir_okay=False))
@click.option("--data-dir", required=True, type=click.Path(file_okay=False))
@click.option("--snapshot", "snapshot_path", default=None, type=click.Path(dir_okay=False),
              help="Start from this snapshot (muxernode snapshot export) instead of genesis, "
                   "after checking its votes, chunks and state against the genesis.")
def init(genesis_path: str, data_dir: str, snapshot_path: str | None) -> None:
    """Initialise a data directory from a genesis file (or a snapshot of its chain)."""
    if snapshot_path is not None:
        from muxernode.snapshot import SnapshotError, import_snapshot

        try:
            m = import_snapshot(genesis_path, data_dir, snapshot_path)
        except (SnapshotError, StorageError) as exc:
            raise click.ClickException(f"snapshot refused: {exc}") from None
        click.echo(f"initialised {data_dir} from the snapshot at final height "
                   f"{m.block.height} ({m.entries} state entries in {len(m.chunks)} chunks, "
                   f"{len(m.votes)} votes checked, digest {m.block.state_digest.hex()})")
        return
    try:
        g = init_data_dir(genesis_path, data_dir)
    except (GenesisError, NodeError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"initialised {data_dir} for chain {g.chain_id.hex()}")


@main.group("snapshot")
def snapshot_group() -> None:
    """State snapshots at a final height (docs/operator.md, State snapshots)."""


@snapshot_group.command("export")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option("--height", type=click.IntRange(0), default=None,
              help="The final height to export (default: the highest final one whose "
                   "finality votes the node's blocks hold; a lower one is rebuilt by replay).")
def snapshot_export(data_dir: str, out_path: str, height: int | None) -> None:
    """Write the state at a final height, in hashed chunks, with the proof of finality.
    The node must be stopped (its data directory is locked while it runs)."""
    from muxernode.snapshot import SnapshotError, export_snapshot

    try:
        m = export_snapshot(data_dir, out_path, height)
    except (SnapshotError, StorageError) as exc:
        raise click.ClickException(f"cannot export: {exc}") from None
    size = Path(out_path).stat().st_size
    click.echo(f"wrote {out_path}: height {m.block.height}, {m.entries} state entries in "
               f"{len(m.chunks)} chunks, {size:,} bytes, {len(m.votes)} final votes")


@main.group("config")
def config_group() -> None:
    """Node configuration files."""


@config_group.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def config_check(path: str) -> None:
    """Say whether the config FILE (with the MUXER_* environment) is usable, and what is
    wrong with it if not (exit 1). Keys: docs/operator.md, Configuration."""
    from muxernode.config_reference import check_config

    cfg, problems = check_config(path)
    if cfg is None:
        click.echo(f"{path}: {len(problems)} problem(s)", err=True)
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(1)
    witness = f"witness key {cfg.witness_key_file}" if cfg.witness_key_file else "no witness key"
    click.echo(f"{path}: ok (rpc {cfg.rpc_host}:{cfg.rpc_port}, p2p {cfg.p2p_host}:"
               f"{cfg.p2p_port}, {len(cfg.peers)} peer(s), {witness})")


@main.command()
@click.option("--data-dir", required=True, type=click.Path(file_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
@click.option("--rpc", "rpc_listen", default=None, help="HOST:PORT (overrides the config).")
@click.option("--p2p", "p2p_listen", default=None, help="HOST:PORT (overrides the config).")
@click.option("--peer", "peers", multiple=True, help="HOST:PORT of a peer (repeatable).")
@click.option("--witness-key", default=None, type=click.Path(dir_okay=False),
              help="File with the witness seed in hex, mode 0600 (overrides the config).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None)
@click.option("--log-level", default=None,
              help='A level, per module levels, or both: "info", "p2p=debug,rpc=warning" '
                   '(overrides the config; docs/rpc.md, Logs).')
@click.option("--no-history", is_flag=True, default=False,
              help="No account-history index (get_history answers -32002).")
@click.option("--verify-all-signatures", is_flag=True, default=False,
              help="Check every tx signature of synced blocks, also in those the synced "
                   "range's finality votes make final (docs/security.md).")
@click.option("--state-sync", is_flag=True, default=False,
              help="On a data directory that holds no blocks yet (init --genesis): join "
                   "by the latest final snapshot from the peers, checked against the "
                   "genesis, then follow the chain (docs/operator.md, State sync).")
@click.option("--keep-blocks", type=int, default=None, metavar="N",
              help="Prune all blocks but the last N (N >= 16; 0 keeps every block; "
                   "overrides the config's storage.keep_blocks; docs/operator.md, Pruning).")
@click.option("--clock-offset", type=float, default=0.0, hidden=True,
              help="Seconds added to the node's clock (tests and devnet research: a "
                   "witness with a skewed clock).")
def run(data_dir: str, config_path: str | None, rpc_listen: str | None,
        p2p_listen: str | None, peers: tuple[str, ...], witness_key: str | None,
        log_format: str | None, clock_offset: float, log_level: str | None,
        no_history: bool, state_sync: bool, keep_blocks: int | None,
        verify_all_signatures: bool) -> None:
    """Run a node until SIGINT or SIGTERM."""
    try:
        cfg = load_config(config_path)
        if rpc_listen:
            cfg.rpc_host, cfg.rpc_port = parse_hostport(rpc_listen, "--rpc")
        if p2p_listen:
            cfg.p2p_host, cfg.p2p_port = parse_hostport(p2p_listen, "--p2p")
        for peer in peers:
            parse_hostport(peer, "--peer")
            cfg.peers.append(peer)
        if witness_key:
            cfg.witness_key_file = witness_key
        if log_format:
            cfg.log_format = log_format
        if log_level:
            cfg.log_level = log_level
        if no_history:
            cfg.history = False
        if verify_all_signatures:
            cfg.verify_all_signatures = True
        if keep_blocks is not None:
            if keep_blocks < 0:
                raise ConfigError(f"--keep-blocks must not be negative, got {keep_blocks}")
            cfg.keep_blocks = check_keep_blocks(keep_blocks, "--keep-blocks")
        try:
            setup_logging(cfg.log_format, cfg.log_level)
        except LogLevelError as exc:
            raise ConfigError(str(exc)) from None
        key = load_witness_key(cfg.witness_key_file) if cfg.witness_key_file else None
        now = time.time if not clock_offset else (lambda: time.time() + clock_offset)
        _state_sync(Path(data_dir), cfg, state_sync)
        node = Node(data_dir, cfg, witness_key=key, now=now)
    except (ConfigError, NodeError, StorageError, GenesisError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    _tune_gc()
    try:
        try:
            trio.run(_serve, node)
        except* ListenError as group:
            # a port taken or not ours: the operator's to fix, said in one line
            click.echo(f"error: {_first(group).strerror}", err=True)
            sys.exit(2)
        except* StorageLost as group:
            # logged as storage_lost / storage_diverged already; say it once, no traceback
            click.echo(f"error: the store cannot be used any more ({_first(group)}); "
                       f"the node stopped. Free space or repair the disk, then start it "
                       f"again: it resumes from its last committed block.", err=True)
            sys.exit(1)
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        pass
    sys.exit(0)


def _state_sync(data_dir: Path, cfg: Any, wanted: bool) -> None:
    """Finish a verified state sync a crash interrupted; with --state-sync on a data
    directory without blocks, join by a snapshot first (muxernode/statesync.py)."""
    from consensus.genesis import load_genesis
    from muxernode.node import GENESIS_FILE
    from muxernode.statesync import (
        StateSyncError,
        finish_pending,
        needs_state_sync,
        state_sync,
    )

    if not (data_dir / GENESIS_FILE).exists():
        return  # Node says what is wrong
    finish_pending(data_dir)
    if not wanted:
        return
    if not needs_state_sync(data_dir):
        log.info("state_sync_skipped", extra={"kv": {
            "why": "the data directory holds blocks already: following the chain from them"}})
        return
    seeds = [parse_hostport(p, "p2p.peers") for p in cfg.peers]
    try:
        trio.run(lambda: state_sync(data_dir, load_genesis(data_dir / GENESIS_FILE), seeds))
    except StateSyncError as exc:
        raise NodeError(f"state sync failed: {exc}") from None
    except KeyboardInterrupt:
        raise NodeError("state sync interrupted; the chunks fetched are kept: run again "
                        "with --state-sync to resume") from None


# The cycle collector's thresholds for a node process (CPython's defaults: 700, 10, 10).
# A loaded node's containers (txs, blocks, state records) hold no cycles and are freed by
# reference counting, but at the defaults the collector still ran whenever 700 more were
# alive than at its last run, and a full collection walks every object the node holds:
# 18 us per final tx per node, 9 % of a node's CPU at 2,000 tx/s (bench.network,
# muxer_gc_pause_seconds); with these, under 1 us. Cycles (an exception's traceback, a
# finished trio task) are still freed, later.
GC_THRESHOLDS = (50_000, 20, 100)


def _tune_gc() -> None:
    """Set the collector for a long-running node (process-wide: the daemon's call, not
    the Node's, since simulations run many nodes in one process)."""
    gc.collect()
    gc.freeze()  # what start-up loaded (modules, genesis, config) is never scanned again
    gc.set_threshold(*GC_THRESHOLDS)


_E = TypeVar("_E", bound=BaseException)


def _first(group: BaseExceptionGroup[_E]) -> _E:
    """The first exception of a group that ``except*`` matched, however deeply the
    nurseries between the raise and here nested it."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return cast(_E, leaf)


async def _serve(node: Node) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_signals, node)
        await node.run()
        nursery.cancel_scope.cancel()


async def _signals(node: Node) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("signal", extra={"kv": {"signal": signal.Signals(signum).name}})
            node.stop()
            return


del PARAM_NAMES, address_to_text


if __name__ == "__main__":
    main()
