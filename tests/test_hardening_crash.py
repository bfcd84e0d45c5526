"""Crashes under load on a 4-node devnet of real daemons (127.0.0.1, the devnet's link proxy).

Four witnesses, 1 s blocks, signed transfers submitted over RPC (devnet.load) while random
nodes are killed with SIGKILL (seeded choice), one at a time and now and then two at once
(three of four witnesses are a supermajority, so two down stalls finality for the moment
they are down, never longer), each restarted at once, 20 kills in all. Checked:

- every restart: the node's "opened" log line says it applied no block to start
  (``replayed_blocks=0``: it read its head pointer and served), at a head no lower than the
  one it reported before the kill, and it serves RPC within seconds;
- at the end, with all four up and caught up: every tx that any node reported final during
  the run (the load polls get_tx) is final on every node at one height, and so is every
  other accepted tx that some node reports final at the end;
- with the nodes stopped: each node's store replays from genesis block by block (parent,
  witness signature, state digest) to its stored state and head, and all four hold the
  same blocks, hence the same state digests, at every height final on all of them.

Every wait is bounded and says what it waited for; every process is stopped by its pid.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.chain import Chain
from consensus.genesis import Genesis, load_genesis
from devnet import cluster, control, procs
from devnet.load import Load, LoadSpec
from devnet.manifest import DevnetError, Manifest, NodeEntry
from devnet.rpc import NodeRpc, NodeUnreachable, RpcError
from muxernode.ledger import Ledger
from storage.kv import MemoryKV
from storage.leveldb import LevelDBStore

SEED = 20261127
KILLS = 20
CADENCE_S = 2.0  # one kill (or double kill) about this often
KILL_PHASE_S = 75.0  # the kills must be done within this (about 40 s when idle)
SERVE_TIMEOUT_S = 20.0
OPENED = re.compile(r"event=opened (?P<fields>.*)$")


@dataclass
class Restart:
    node: str
    together: int  # nodes killed in the same round (1 or 2)
    head_before: int
    opened: dict[str, int]
    serve_s: float


def node_rpc(e: NodeEntry, timeout: float = 3.0) -> NodeRpc:
    return NodeRpc(e.rpc_url, timeout=timeout)


def head_of(e: NodeEntry) -> int:
    """The node's head height now (0 if it does not answer: it is then no constraint)."""
    try:
        with node_rpc(e, 2.0) as r:
            return int(r.call("chain_info")["head_height"])
    except (NodeUnreachable, RpcError):
        return 0


def opened_line(log: Path, offset: int) -> dict[str, int]:
    """The fields of the first "opened" line written to ``log`` after ``offset``."""
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    for line in text.splitlines():
        found = OPENED.search(line)
        if found:
            return {k: int(v) for k, v in
                    (kv.split("=", 1) for kv in found["fields"].split())}
    raise AssertionError(f"no 'opened' line in {log} after byte {offset}:\n{text[-1500:]}")


def kill_loop(m: Manifest, rng: random.Random) -> list[Restart]:
    restarts: list[Restart] = []
    kills = 0
    deadline = time.monotonic() + KILL_PHASE_S
    for _round in range(KILLS):  # at most KILLS rounds: each kills one or two
        if kills >= KILLS:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"only {kills} kills in {KILL_PHASE_S:g} s")
        t0 = time.monotonic()
        double = kills + 2 <= KILLS and rng.random() < 0.2
        victims = rng.sample(m.nodes, 2 if double else 1)
        before = {e.name: head_of(e) for e in victims}
        offsets = {e.name: Path(e.log).stat().st_size for e in victims}
        control.kill_nodes(m, victims, "KILL")
        kills += len(victims)
        time.sleep(rng.uniform(0.1, 0.5))  # down for a moment, as after a real crash
        started = time.monotonic()
        try:
            control.start_nodes(m, victims, timeout=SERVE_TIMEOUT_S)
        except DevnetError as exc:
            raise AssertionError(f"restart of {[e.name for e in victims]} after kill "
                                 f"{kills}: {exc}") from None
        serve_s = time.monotonic() - started
        for e in victims:
            restarts.append(Restart(e.name, len(victims), before[e.name],
                                    opened_line(Path(e.log), offsets[e.name]), serve_s))
        time.sleep(max(0.0, t0 + CADENCE_S * len(victims) - time.monotonic()))
    assert kills >= KILLS
    return restarts


def wait_caught_up(m: Manifest, min_final: int, timeout: float) -> dict[str, dict[str, Any]]:
    """Until all four answer, agree on a final block, and each one's final height is at
    least ``min_final``; their chain_info."""
    deadline = time.monotonic() + timeout
    infos: dict[str, dict[str, Any]] = {}
    why = ""
    while time.monotonic() < deadline:
        ok, why = control.check_converged(m, None)
        if ok:
            infos = {}
            try:
                for e in m.nodes:
                    with node_rpc(e) as r:
                        infos[e.name] = r.call("chain_info")
            except (NodeUnreachable, RpcError) as exc:
                why = str(exc)
            else:
                if all(i["final_height"] >= min_final for i in infos.values()):
                    return infos
                why = "final heights " + ", ".join(f"{n} {i['final_height']}"
                                                     for n, i in infos.items())
        time.sleep(0.5)
    raise AssertionError(f"the four nodes did not catch up within {timeout:g} s "
                         f"(final >= {min_final} wanted): {why}")


def statuses(m: Manifest, tx_ids: list[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for e in m.nodes:
        with node_rpc(e, 10.0) as r:
            out[e.name] = r.batch([("get_tx", [t]) for t in tx_ids])
    return out


def replay_store(data_dir: Path, genesis: Genesis) -> tuple[int, int, list[tuple[bytes, bytes]]]:
    """Replay a stopped node's main chain from genesis into a fresh state (each block's
    parent, witness signature and state digest are checked) and compare the result with the
    stored state. Returns (head, final, [(block id, state digest)] by height from 1)."""
    with LevelDBStore(str(data_dir / "db"), create=False) as store:
        by_slot: dict[int, bytes] = {}
        chain = Chain(store, Ledger(store, genesis.params, genesis.genesis_time), genesis,
                      lambda slot: by_slot[slot])
        mem = MemoryKV()
        fresh = Ledger(mem, genesis.params, genesis.genesis_time)
        Chain.initialize(mem, fresh, genesis)
        replay = Chain(mem, fresh, genesis, lambda slot: by_slot[slot])
        blocks: list[tuple[bytes, bytes]] = []
        for h in range(1, chain.head.height + 1):
            bid = chain.block_id_at(h)
            block = chain.get_block(bid) if bid is not None else None
            assert block is not None, f"{data_dir.name}: no block stored at height {h}"
            by_slot[chain.slot_of(block.timestamp)] = block.witness
            replay.apply_block(block)
            blocks.append((block.id, block.state_digest))
        assert replay.head == chain.head, f"{data_dir.name}: the head is not where its " \
            "blocks lead"
        stored_state = list(store.iterate(b"S"))
        assert stored_state == list(mem.iterate(b"S")), \
            f"{data_dir.name}: the stored state differs from the replayed one"
        assert chain.block_id_at(chain.final.height) == chain.final.id
        return chain.head.height, chain.final.height, blocks


def test_sigkill_random_nodes_under_load(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    m = cluster.create(tmp_path / "net", nodes=4, witnesses=4, block_interval=1,
                       accounts=10, maintenance_interval=60, base_fee=10, seed=SEED % 1000)
    load: Load | None = None
    try:
        cluster.start_all(m, timeout=40)
        cluster.wait_final(m, min_final=1, timeout=40)
        load = Load(m, LoadSpec(tps=20, duration=3600, mix={"transfer": 1.0}, drain=0,
                                name="crash", seed=SEED), sample_metrics=False)
        load.start()
        assert load.running.wait(30) and load.state == "running", load.error
        restarts = kill_loop(m, rng)
        load.stop()  # submission and the final polling end with the kills
        load.join(30)

        assert len(restarts) == KILLS
        assert any(r.together == 2 for r in restarts), "the seed chose no double kill"
        for r in restarts:
            assert r.opened["replayed_blocks"] == 0, r
            assert r.opened["head"] >= r.head_before, f"{r.node} lost blocks: {r}"
            assert r.opened["open_ms"] < 5000 and r.serve_s < SERVE_TIMEOUT_S, r
        final_seen = load.final_ids()
        accepted = list(load.sent)
        assert len(final_seen) >= 100, f"only {len(final_seen)} txs seen final"

        # all four up and final past every block made during the load; then every tx
        # final anywhere must be final everywhere, at one height
        wait_caught_up(m, max(head_of(e) for e in m.nodes), timeout=30)
        answers = statuses(m, accepted)
        final_at: dict[str, int] = {}
        for n in answers:
            for t, a in zip(accepted, answers[n], strict=True):
                if isinstance(a, dict) and a.get("status") == "final":
                    final_at[t] = int(a["height"])
        missing = set(final_seen) - set(final_at)
        assert not missing, f"{len(missing)} txs seen final are final nowhere now"
        top = max(final_at.values())
        wait_caught_up(m, top, timeout=30)
        ids = sorted(final_at)
        answers = statuses(m, ids)
        for i, t in enumerate(ids):
            got = {n: (a[i].get("status"), a[i].get("height")) if isinstance(a[i], dict)
                   else str(a[i]) for n, a in answers.items()}
            assert set(got.values()) == {("final", final_at[t])}, f"tx {t}: {got}"
    finally:
        if load is not None:
            load.stop()
        cluster.stop_all(m, timeout=10)

    # with every node stopped: each store replays, and all agree where all are final
    assert not any(procs.node_alive(e) for e in m.nodes)
    genesis = load_genesis(m.genesis)
    stores = {e.name: replay_store(Path(e.data_dir), genesis) for e in m.nodes}
    common = min(final for _head, final, _blocks in stores.values())
    assert common >= top
    for h in range(common):
        assert len({blocks[h] for _head, _final, blocks in stores.values()}) == 1, \
            f"the nodes differ at final height {h + 1}"
    doubles = sum(1 for r in restarts if r.together == 2) // 2
    slowest = max(r.serve_s for r in restarts)
    print(f"{len(restarts)} restarts, {doubles} double kills, serving after {slowest:.1f} s "
          f"at most; {len(final_seen)} txs seen final of {len(accepted)} accepted, "
          f"{len(final_at)} final at the end, common final height {common}")
