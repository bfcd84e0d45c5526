"""Load: signed transactions from the funded accounts at a target rate, across the nodes.

Phases:

1. setup (only when the mix needs it): a society ``ld-XXXXXX`` with short periods and no
   decay (observation 0, waiting 0, claims open an hour, approval at 0.01 %, benefit ratio
   1000, no bond, minimum pledge 1 unit); every account joins and pledges; the first account
   files a claim and the others approve it, so that ``vote`` and ``give`` have a target. For
   ``claim`` a second society ``ld-XXXXXX-c`` with 2-second claims lets each account file a
   new claim every few seconds (one open claim per member, section 4.3); ``charity_request``
   files charity requests there the same way (one open request per sender). Version 2 ops
   (protocol section 11): ``create_asset`` makes a new asset per tx; ``issue_asset`` and
   ``transfer_asset`` use an asset ``LD...`` the first account creates in setup and issues
   to every account; ``standing_pledge`` sets or replaces the sender's standing pledge in
   the load society (one period a day, so it only executes on a long run); ``set_proxy``
   makes the first account the sender's proxy or clears it, in turn; ``comment`` comments
   on the setup claim; ``amend_claim`` and ``withdraw_claim`` act on claims each account
   files in a third society ``ld-XXXXXX-w`` (claims open an hour): setup files one per
   account; once withdrawn, the account files a new one (counted as ``claim``) and acts on
   it when it is final. Each phase is one ordered ``submit_txs`` batch to one node, and the
   next phase starts once it is included.
2. submission: every 100 ms, the txs due by the target rate are signed and sent with
   ``submit_txs`` to the healthy nodes in turn (``GET /health`` is polled every second; a node
   that does not answer is skipped and its batch goes to the next one).
3. drain: submission stops; ``get_tx`` is polled in batches until every accepted tx is final
   or the drain time is up.

Latency is from the moment a tx was sent to the moment a poll (every 250 ms: each node's
``chain_info``, then ``get_tx`` for the txs whose status can have changed) first saw it
final. The submission loop only signs and queues: each node's own sender thread sends what
is queued for it as one ``submit_txs``, so a slow node gets bigger batches, not the whole
load held up; past one second of queued txs, what is due is skipped (counted).
Results go to ``<dir>/load/<name>-<time>.json``; ``report`` plots them.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensus.tx import SignedTx
from devnet import cluster, procs
from devnet.manifest import DevnetError, Manifest, NodeEntry
from devnet.rpc import NodeRpc, NodeUnreachable, RpcError
from devnet.txs import Tapos, TxSigner, build_op, fetch_tapos, wait_status

__all__ = ["MIX_OPS", "Load", "LoadSpec", "parse_mix", "percentile"]

MIX_OPS = ("transfer", "pledge", "vote", "give", "claim", "create_asset", "issue_asset",
           "transfer_asset", "standing_pledge", "set_proxy", "charity_request",
           "withdraw_claim", "amend_claim", "comment")
# ops that need the load society (everyone joined and pledged)
_SOCIETY_OPS = {"pledge", "vote", "give", "claim", "standing_pledge", "set_proxy",
                "charity_request", "withdraw_claim", "amend_claim", "comment"}
_CLAIM_OPS = {"vote", "give", "comment"}  # ops on the setup claim
_ASSET_OPS = {"issue_asset", "transfer_asset"}
_OWN_CLAIM_OPS = {"withdraw_claim", "amend_claim"}  # ops on the sender's own claim
ASSET_ISSUE = 10**15  # units of the load asset issued to each account in setup
TICK = 0.1
POLL = 0.25
CLAIM_TTL = 2
CLAIM_COOLDOWN = CLAIM_TTL + 3.0
SETUP_PLEDGE = 100_000_000
CLAIM_SOC_PLEDGE = 10_000_000


def parse_mix(text: str) -> dict[str, float]:
    """'transfer,pledge' or 'transfer:5,vote:1' -> weights."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, w = part.partition(":")
        if name not in MIX_OPS:
            raise DevnetError(f"unknown op {name!r} in --mix; choose from {', '.join(MIX_OPS)}")
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            raise DevnetError(f"bad weight {w!r} for {name} in --mix") from None
        if weight < 0:
            raise DevnetError(f"negative weight for {name} in --mix")
        mix[name] = mix.get(name, 0.0) + weight
    if not mix or sum(mix.values()) <= 0:
        raise DevnetError("--mix names no op")
    return mix


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(-(-q * len(sorted_values) // 1)) - 1))
    return sorted_values[k]


@dataclass
class LoadSpec:
    tps: float
    duration: float
    mix: dict[str, float] = field(default_factory=lambda: {"transfer": 1.0})
    nodes: list[str] | None = None
    drain: float = 30.0
    name: str = "load"
    setup_timeout: float = 60.0
    seed: int | None = None


@dataclass
class _Sent:
    t: float  # time.monotonic() when sent
    node: str
    final_t: float | None = None
    height: int | None = None  # its final block's, once read


class _FinalBlocks:
    """The final blocks as the poller reads them, once, from one node: the highest final
    height whose tx ids were read (``scanned``) and the height of each tx of the last
    ``keep`` blocks. A tx sent to node X is final at X once X's final height reaches its
    block (final blocks are the same on every node). Reading each final block once
    replaces asking ``get_tx`` per tx (~3 each, every one reading its block) and reading
    it on every node (a block of 500 txs decoded 21 times). The last blocks are kept so
    that a tx whose answer was recorded only after its block had been read is found."""

    def __init__(self, scanned: int, keep: int = 8) -> None:
        self.scanned = scanned
        self.keep = keep
        self._blocks: deque[list[str]] = deque()
        self._height: dict[str, int] = {}

    def to_read(self, final: int, limit: int) -> list[int]:
        """The final heights not read yet, oldest first, at most ``limit``."""
        return list(range(self.scanned + 1, min(final, self.scanned + limit) + 1))

    def add(self, height: int, tx_ids: list[str]) -> None:
        """The tx ids of final block ``height`` (the next one: ``scanned + 1``)."""
        if height != self.scanned + 1:
            raise ValueError(f"final block {height} read out of order (next is "
                             f"{self.scanned + 1})")
        self.scanned = height
        self._blocks.append(tx_ids)
        for t in tx_ids:
            self._height.setdefault(t, height)
        while len(self._blocks) > self.keep:
            for t in self._blocks.popleft():
                self._height.pop(t, None)

    def height_of(self, tx_id: str) -> int | None:
        return self._height.get(tx_id)


class Load:
    """Runs one load. ``run()`` blocks; ``start()`` runs it on a thread (``join()`` waits).
    Thread-safe counters; ``state`` is setup -> running -> draining -> done (or failed)."""

    def __init__(self, m: Manifest, spec: LoadSpec, *, sample_metrics: bool = True) -> None:
        if spec.tps <= 0 or spec.duration <= 0:
            raise DevnetError("--tps and --duration must be positive")
        self.m = m
        self.spec = spec
        self.entries = m.nodes_named(spec.nodes) if spec.nodes else list(m.nodes)
        if len(m.accounts) < 2 and set(spec.mix) & (_CLAIM_OPS | {"set_proxy"}):
            raise DevnetError("vote, give, comment and set_proxy need at least 2 funded "
                              "accounts")
        if not m.accounts:
            raise DevnetError("the devnet has no funded accounts")
        self.signer = TxSigner(m)
        self.rng = random.Random(spec.seed)
        self.sample_metrics = sample_metrics
        self.lock = threading.Lock()
        self.state = "new"
        self.error: str | None = None
        self.running = threading.Event()
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent: dict[str, _Sent] = {}
        self.rejected: Counter[str] = Counter()
        self.op_counts: Counter[str] = Counter()
        self.unreachable = 0
        self.skipped = 0
        self.planned = 0
        self.total = max(1, round(spec.tps * spec.duration))
        self._progress: Any = None
        self.healthy: dict[str, bool] = {e.name: True for e in self.entries}
        self.t0 = 0.0
        self.t_end = 0.0
        self.result: dict[str, Any] | None = None
        self.result_path: Path | None = None
        self._tapos: Tapos | None = None
        self._tapos_at = 0.0
        self._rr = 0
        # per node: txs signed for it and not yet sent, and whether its sender runs; the
        # submission loop never waits for a node: a slow one gets bigger batches
        self._outbox: dict[str, list[tuple[str, SignedTx]]] = {e.name: [] for e in self.entries}
        self._sending: dict[str, bool] = {e.name: False for e in self.entries}
        self.society = f"ld-{self.rng.randbytes(3).hex()}"
        self.claim_society = self.society + "-c"
        self.own_claim_society = self.society + "-w"
        self.asset = f"LD{self.society[3:].upper()}"
        self.claim_id: str | None = None
        self._claim_ready: dict[str, float] = {}
        self._charity_ready: dict[str, float] = {}
        # account -> (tx id, what it is) in the -w society: "filed" (its claim, sent by the
        # load: usable once final), "open" (its claim, usable), "withdrawing" (the
        # withdrawal: once final the account files a new claim); absent: none yet
        self._own_claim: dict[str, tuple[str, str]] = {}
        self._proxy_set: dict[str, bool] = {}
        self._sender_rr = 0
        self._final_blocks = _FinalBlocks(0)  # replaced when submission begins
        self.cpu_s = 0.0  # CPU time of the load's own threads (thread_time), all of them
        self._window_cpu_s = 0.0  # of that, while submitting (the rate's own cost)

    # --- public ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_safe, name=f"load-{self.spec.name}",
                                        daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> dict[str, Any]:
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.stop()
                self._thread.join(10.0)
                raise DevnetError(f"load {self.spec.name!r} did not finish within {timeout:g} s")
        if self.error is not None:
            raise DevnetError(f"load {self.spec.name!r} failed: {self.error}")
        assert self.result is not None
        return self.result

    def stop(self) -> None:
        self._stop.set()

    def run(self, progress: Any = None) -> dict[str, Any]:
        """Blocking run; ``progress`` is an optional callback(self) called every tick."""
        self._progress = progress
        self._run()
        assert self.result is not None
        return self.result

    def final_ids(self) -> list[str]:
        with self.lock:
            return [t for t, s in self.sent.items() if s.final_t is not None]

    def counts(self) -> dict[str, int]:
        with self.lock:
            final = sum(1 for s in self.sent.values() if s.final_t is not None)
            return {"planned": self.planned, "accepted": len(self.sent), "final": final,
                    "rejected": sum(self.rejected.values()), "unreachable": self.unreachable,
                    "skipped": self.skipped}

    # --- the run -------------------------------------------------------------------------------

    def _run_safe(self) -> None:
        self._progress = None
        try:
            self._run()
        except Exception as exc:  # reported by join(); the thread must not die silently
            self.error = f"{type(exc).__name__}: {exc}"
            self.state = "failed"
            self.running.set()
            self.done.set()

    def _add_cpu(self, seconds: float) -> None:
        with self.lock:
            self.cpu_s += seconds

    def _run(self) -> None:
        cpu0 = time.thread_time()
        # one client per node and per thread that uses it, made once: a new NodeRpc each
        # second per node (health, TaPoS) was most of the load process's CPU (an httpx
        # client builds an SSL context), with 21 nodes more than its sending
        self._rpcs = {e.name: NodeRpc(e.rpc_url, timeout=5.0) for e in self.entries}
        self._tapos_rpcs = {e.name: NodeRpc(e.rpc_url, timeout=2.0) for e in self.entries}
        health = {e.name: NodeRpc(e.rpc_url, timeout=1.0) for e in self.entries}
        self._pools = {e.name: ThreadPoolExecutor(max_workers=1) for e in self.entries}
        poller = threading.Thread(target=self._poll_loop, name="load-poll", daemon=True)
        try:
            self.state = "setup"
            self._refresh_health(health)
            self._setup()
            self.state = "running"
            self._final_blocks = _FinalBlocks(self._lowest_final())
            self._add_cpu(time.thread_time() - cpu0)
            cpu0 = time.thread_time()
            with self.lock:
                cpu_at_start = self.cpu_s
            self.running.set()
            poller.start()
            self._submit_phase()
            self._add_cpu(time.thread_time() - cpu0)
            cpu0 = time.thread_time()
            with self.lock:
                self._window_cpu_s = self.cpu_s - cpu_at_start
            self.state = "draining"
            self._drain()
            self.state = "done"
        finally:
            self._stop.set()
            if poller.is_alive():
                poller.join(5.0)
            for pool in self._pools.values():
                pool.shutdown(wait=True)
            for r in [*self._rpcs.values(), *self._tapos_rpcs.values(), *health.values()]:
                r.close()
            if self.state != "done":
                self.state = "failed"
            self._add_cpu(time.thread_time() - cpu0)
            self.result = self._summary()
            self._save()
            self.running.set()
            self.done.set()

    def _lowest_final(self) -> int:
        """The lowest final height among the nodes that answer (before any load tx is sent:
        none of them can be final below it)."""
        finals = []
        for e in self._healthy_entries() or self.entries:
            try:
                finals.append(int(self._tapos_rpcs[e.name].call("chain_info")["final_height"]))
            except (NodeUnreachable, RpcError, KeyError, TypeError, ValueError):
                continue
        return min(finals, default=0)

    def _healthy_entries(self) -> list[NodeEntry]:
        return [e for e in self.entries if self.healthy.get(e.name)]

    def _refresh_health(self, clients: dict[str, NodeRpc]) -> None:
        """``clients``: the calling thread's own, one per node (NodeRpc is not shared)."""
        for e in self.entries:
            ok = procs.node_alive(e)
            if ok:
                ok = clients[e.name].health()
            self.healthy[e.name] = ok

    def _tapos_now(self, force: bool = False) -> Tapos:
        now = time.monotonic()
        if self._tapos is None or force or now - self._tapos_at >= 1.0:
            last: Exception | None = None
            for e in self._healthy_entries() or self.entries:
                try:
                    self._tapos = fetch_tapos(self._tapos_rpcs[e.name])
                    self._tapos_at = now
                    break
                except (NodeUnreachable, RpcError) as exc:
                    last = exc
            if self._tapos is None:
                raise DevnetError(f"no node answers chain_info ({last})")
        return self._tapos

    # --- setup -----------------------------------------------------------------------------

    def _setup(self) -> None:
        mix = set(self.spec.mix)
        names = [a.name for a in self.m.accounts]
        claimant = names[0]
        phases: list[list[tuple[str, str, dict[str, Any]]]] = []
        if mix & _ASSET_OPS:
            phases.append([(claimant, "create_asset", {
                "symbol": self.asset, "precision": 8, "max_supply": 2**62,
                "description": "devnet load"})])
            phases.append([(claimant, "issue_asset", {"symbol": self.asset, "to": n,
                                                      "amount": ASSET_ISSUE, "memo": ""})
                           for n in names])
        if not mix & _SOCIETY_OPS:
            for i, phase in enumerate(phases):
                self._submit_setup(phase, f"setup phase {i + 1}/{len(phases)}")
            return
        rules = {"decay_period_s": 86400, "decay_ppm": 0, "approval_bp": 1, "observation_s": 0,
                 "waiting_s": 0, "claim_ttl_s": 3600, "benefit_ratio": 1000, "claim_bond": 0,
                 "min_pledge": 1}
        creates = [(claimant, "create_society", {"society": self.society, "name": "devnet load",
                                                 "purpose": "load", "rules": rules})]
        joins = [(n, "join", {"society": self.society, "identity": n}) for n in names]
        pledges = [(n, "pledge", {"society": self.society, "amount": SETUP_PLEDGE})
                   for n in names]
        if mix & _OWN_CLAIM_OPS:
            creates.append((claimant, "create_society", {
                "society": self.own_claim_society, "name": "devnet load own claims",
                "purpose": "load", "rules": rules}))
            joins += [(n, "join", {"society": self.own_claim_society, "identity": n})
                      for n in names]
            pledges += [(n, "pledge", {"society": self.own_claim_society,
                                       "amount": CLAIM_SOC_PLEDGE}) for n in names]
        if mix & {"claim", "charity_request"}:
            crules = dict(rules, claim_ttl_s=CLAIM_TTL, approval_bp=10000, benefit_ratio=1)
            creates.append((claimant, "create_society", {
                "society": self.claim_society, "name": "devnet load claims", "purpose": "load",
                "rules": crules}))
            joins += [(n, "join", {"society": self.claim_society, "identity": n})
                      for n in names]
            pledges += [(n, "pledge", {"society": self.claim_society,
                                       "amount": CLAIM_SOC_PLEDGE}) for n in names]
        phases += [creates, joins, pledges]
        need_claim = bool(mix & _CLAIM_OPS)
        if need_claim:
            phases.append([(claimant, "claim", {
                "society": self.society, "amount": 10**11, "karma": 10**7,
                "subject": "devnet load", "details": "", "evidence": "load"})])
        if mix & _OWN_CLAIM_OPS:
            phases.append([(n, "claim", self._own_claim_fields(n)) for n in names])
        total = len(phases) + (1 if need_claim else 0)
        for i, phase in enumerate(phases):
            ids = self._submit_setup(phase, f"setup phase {i + 1}/{total}")
            if phase[0][1] == "claim" and phase[0][2]["society"] == self.society:
                self.claim_id = ids[0]
            elif phase[0][1] == "claim":
                self._own_claim.update({n: (t, "open") for n, t in zip(names, ids, strict=True)})
        if need_claim:
            assert self.claim_id is not None
            votes = [(n, "vote", {"claim": self.claim_id, "stance": "approve"})
                     for n in names[1:]]
            self._submit_setup(votes, f"setup phase {total}/{total}")

    def _submit_setup(self, phase: list[tuple[str, str, dict[str, Any]]], what: str) -> list[str]:
        tapos = self._tapos_now(force=True)
        txs = [self.signer.sign(s, build_op(op, f, self.m), tapos) for s, op, f in phase]
        entries = self._healthy_entries()
        if not entries:
            raise DevnetError(f"{what}: no healthy node to submit to")
        e = entries[0]
        r = self._rpcs[e.name]
        answers = r.call("submit_txs", [t.raw.hex() for t in txs])
        for (s, op, _f), a in zip(phase, answers, strict=True):
            if not isinstance(a, dict) or "tx_id" not in a:
                raise DevnetError(f"{what}: {op} from {s} rejected by {e.name}: {a}")
        ids = [t.tx_id.hex() for t in txs]
        wait_status(r, ids, "included", self.spec.setup_timeout)
        return ids

    # --- submission ------------------------------------------------------------------------

    def _pick_op(self) -> str:
        names = list(self.spec.mix)
        weights = [self.spec.mix[n] for n in names]
        return self.rng.choices(names, weights)[0]

    def _next_sender(self, exclude_first: bool = False) -> str:
        names = [a.name for a in self.m.accounts]
        if exclude_first and len(names) > 1:
            names = names[1:]
        self._sender_rr += 1
        return names[self._sender_rr % len(names)]

    def _own_claim_fields(self, sender: str) -> dict[str, Any]:
        return {"society": self.own_claim_society, "amount": 1, "karma": 1,
                "subject": f"load {sender} {self.planned}", "details": "",
                "evidence": f"{sender}{self.planned}"}

    def _is_final(self, tx_id: str) -> bool:
        with self.lock:
            s = self.sent.get(tx_id)
            return s is not None and s.final_t is not None

    def _make_v2_tx(self, kind: str, tapos: Tapos, now: float) -> tuple[str, SignedTx] | None:
        """A tx of a version-2 op, or None when none can be made now (the caller sends a
        transfer instead)."""
        names = [a.name for a in self.m.accounts]
        seq = self.planned
        if kind == "create_asset":
            sender = self._next_sender()
            op = build_op("create_asset", {"symbol": f"{self.asset}X{seq}", "precision": 2,
                                           "max_supply": 10**12, "description": ""}, self.m)
        elif kind == "issue_asset":
            sender = names[0]  # the issuer
            op = build_op("issue_asset", {"symbol": self.asset, "to": self._random_account(),
                                          "amount": 1, "memo": f"load {seq}"}, self.m)
        elif kind == "transfer_asset":
            sender = self._next_sender()
            op = build_op("transfer_asset", {"symbol": self.asset, "to": self._random_account(),
                                             "amount": 1, "memo": f"load {seq}"}, self.m)
        elif kind == "standing_pledge":
            sender = self._next_sender()
            # a day (the society's decay period) plus a little: each tx a distinct op
            op = build_op("standing_pledge", {"society": self.society, "amount": 1,
                                              "interval_s": 86_400 + seq % 1000}, self.m)
        elif kind == "set_proxy":
            # The first account is everyone's proxy and has none itself: no chains.
            sender = self._next_sender(exclude_first=True)
            on = not self._proxy_set.get(sender, False)
            self._proxy_set[sender] = on
            op = build_op("set_proxy", {"society": self.society,
                                        "proxy": names[0] if on else ""}, self.m)
        elif kind == "charity_request":
            ready = [n for n in names if self._charity_ready.get(n, 0.0) <= now]
            if not ready:
                return None
            sender = ready[self.rng.randrange(len(ready))]
            self._charity_ready[sender] = now + CLAIM_COOLDOWN
            op = build_op("charity_request", {"society": self.claim_society, "amount": 1,
                                              "subject": f"load {seq}", "details": "",
                                              "evidence": f"c{seq}"}, self.m)
        elif kind == "comment":
            sender = self._next_sender()
            op = build_op("comment", {"claim": self.claim_id, "text": f"load {seq}"}, self.m)
        else:  # withdraw_claim / amend_claim on the sender's own claim, once it is final
            return self._own_claim_tx(kind, tapos)
        return kind, self.signer.sign(sender, op, tapos)

    def _own_claim_tx(self, kind: str, tapos: Tapos) -> tuple[str, SignedTx] | None:
        names = [a.name for a in self.m.accounts]
        # With both ops in the mix, the accounts are split between them: withdrawals (which
        # take a claim away until its refiling is final) would otherwise leave amendments
        # with no open claim for long stretches of a short run.
        split = set(self.spec.mix) >= _OWN_CLAIM_OPS and len(names) > 1
        for _ in range(len(names)):
            sender = self._next_sender()
            state = self._own_claim.get(sender)
            if state is None:
                continue  # setup filed none for it (not expected)
            if split and (names.index(sender) % 2 == 0) != (kind == "amend_claim"):
                continue  # the other op's account
            tx_id, what = state
            if what == "withdrawing" and self._is_final(tx_id):  # file the next claim
                op = build_op("claim", self._own_claim_fields(sender), self.m)
                tx = self.signer.sign(sender, op, tapos)
                self._own_claim[sender] = (tx.tx_id.hex(), "filed")
                return "claim", tx
            if what == "filed" and self._is_final(tx_id):
                what = "open"
                self._own_claim[sender] = (tx_id, what)
            if what != "open":
                continue  # still on its way to final
            claim_id = tx_id
            if kind == "withdraw_claim":
                op = build_op("withdraw_claim", {"claim": claim_id}, self.m)
                tx = self.signer.sign(sender, op, tapos)
                self._own_claim[sender] = (tx.tx_id.hex(), "withdrawing")
            else:
                op = build_op("amend_claim", {"claim": claim_id,
                                              "details": f"amended {self.planned}",
                                              "evidence": f"a{self.planned}"}, self.m)
                tx = self.signer.sign(sender, op, tapos)
            return kind, tx
        return None

    def _random_account(self) -> str:
        return self.m.accounts[self.rng.randrange(len(self.m.accounts))].name

    def _make_tx(self, tapos: Tapos, now: float) -> tuple[str, SignedTx]:
        kind = self._pick_op()
        if kind not in ("transfer", "pledge", "vote", "give", "claim"):
            made = self._make_v2_tx(kind, tapos, now)
            if made is not None:
                return made
            kind = "transfer"  # nothing of that op can go now: send a transfer instead
        if kind == "claim":
            ready = [a.name for a in self.m.accounts if self._claim_ready.get(a.name, 0.0) <= now]
            if ready:
                sender = ready[self.rng.randrange(len(ready))]
                self._claim_ready[sender] = now + CLAIM_COOLDOWN
                seq = self.planned
                op = build_op("claim", {"society": self.claim_society, "amount": 1, "karma": 1,
                                        "subject": f"load {seq}", "details": "",
                                        "evidence": f"{seq}"}, self.m)
                return kind, self.signer.sign(sender, op, tapos)
            kind = "transfer"  # every account has an open claim: send a transfer instead
        if kind == "transfer":
            sender = self._next_sender()
            to = self._random_account()
            op = build_op("transfer", {"to": to, "amount": 1, "memo": f"load {self.planned}"},
                          self.m)
        elif kind == "pledge":
            sender = self._next_sender()
            op = build_op("pledge", {"society": self.society, "amount": 1}, self.m)
        elif kind == "vote":
            sender = self._next_sender(exclude_first=True)
            op = build_op("vote", {"claim": self.claim_id, "stance": "approve"}, self.m)
        else:  # give
            sender = self._next_sender(exclude_first=True)
            op = build_op("give", {"claim": self.claim_id, "amount": 1}, self.m)
        return kind, self.signer.sign(sender, op, tapos)

    def _submit_phase(self) -> None:
        spec = self.spec
        self.t0 = time.monotonic()
        max_burst = max(1, int(spec.tps))  # at most one second of backlog at once
        total = self.total
        while not self._stop.is_set() and self.planned < total:
            now = time.monotonic()
            elapsed = now - self.t0
            last = elapsed >= spec.duration
            due = (total if last else min(total, int(elapsed * spec.tps) + 1)) - self.planned
            if due > max_burst:
                with self.lock:
                    self.skipped += due - max_burst
                    self.planned += due - max_burst
                due = max_burst
            healthy = self._healthy_entries()
            backlog = self._backlog()
            if due > 0 and backlog >= max_burst:
                # the nodes take less than the rate: as many as are due wait unsigned,
                # within one second of backlog, as above
                due = 0
            elif due > 0 and backlog + due > max_burst:
                with self.lock:
                    self.skipped += backlog + due - max_burst
                    self.planned += backlog + due - max_burst
                due = max_burst - backlog
            if due > 0 and not healthy:
                with self.lock:
                    self.skipped += due
                    self.planned += due
            elif due > 0:
                try:
                    tapos = self._tapos_now()
                except DevnetError:
                    tapos = None
                if tapos is None:
                    with self.lock:
                        self.skipped += due
                        self.planned += due
                else:
                    # a tick's txs go to one node, the nodes in turn tick by tick: one
                    # submit_txs of ~20 txs at 200 tx/s instead of one of ~1 tx per node
                    # (with 21 nodes the HTTP calls were most of the sending's CPU)
                    e = healthy[self._rr % len(healthy)]
                    self._rr += 1
                    items = []
                    for _ in range(due):
                        items.append(self._make_tx(tapos, now))
                        with self.lock:
                            self.planned += 1
                    self._enqueue(e.name, items)
            if self._progress is not None:
                self._progress(self)
            if last:
                break
            next_tick = now + TICK
            time.sleep(max(0.0, next_tick - time.monotonic()))
        self._flush_outboxes(15.0)
        self.t_end = time.monotonic()

    def _backlog(self) -> int:
        with self.lock:
            return sum(map(len, self._outbox.values()))

    def _enqueue(self, name: str, items: list[tuple[str, SignedTx]]) -> None:
        with self.lock:
            self._outbox[name] += items
            if self._sending[name]:
                return  # its sender takes these with what it already holds
            self._sending[name] = True
        self._pools[name].submit(self._deliver, name)

    def _deliver(self, name: str) -> None:
        cpu0 = time.thread_time()
        try:
            self._deliver_all(name)
        finally:
            self._add_cpu(time.thread_time() - cpu0)

    def _deliver_all(self, name: str) -> None:
        """The node's sender (its one pool thread): everything in its outbox as one
        submit_txs, again until the outbox is empty. A node that does not answer is
        marked unhealthy and what it held goes to the next healthy node."""
        for _ in range(1_000_000):  # bounded; the outbox is empty long before
            with self.lock:
                items = self._outbox[name]
                self._outbox[name] = []
                if not items:
                    self._sending[name] = False
                    return
            sent_at = time.monotonic()
            try:
                answers = self._rpcs[name].call("submit_txs", [tx.raw.hex() for _, tx in items])
            except (NodeUnreachable, RpcError):
                self.healthy[name] = False
                others = [e.name for e in self._healthy_entries() if e.name != name]
                if others and not self._stop.is_set():
                    self._enqueue(others[0], items)
                else:
                    with self.lock:
                        self.unreachable += len(items)
                continue
            self._record(name, items, answers, sent_at)
        with self.lock:
            self._sending[name] = False

    def _flush_outboxes(self, timeout: float) -> None:
        """Wait (bounded) until every signed tx has been sent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not any(self._outbox.values()) and not any(self._sending.values()):
                    return
            time.sleep(0.02)

    def _record(self, node: str, items: list[tuple[str, SignedTx]], answers: Any,
                sent_at: float) -> None:
        if not isinstance(answers, list) or len(answers) != len(items):
            with self.lock:
                self.rejected["bad_answer"] += len(items)
            return
        with self.lock:
            for (kind, tx), a in zip(items, answers, strict=True):
                if isinstance(a, dict) and a.get("tx_id") == tx.tx_id.hex():
                    self.sent.setdefault(a["tx_id"], _Sent(sent_at, node))
                    self.op_counts[kind] += 1
                else:
                    err = a.get("error") if isinstance(a, dict) else None
                    reason = (err.get("data") or {}).get("reason") if isinstance(err, dict) \
                        else None
                    self.rejected[f"{kind}:{reason or 'error'}"] += 1

    # --- polling and drain ------------------------------------------------------------------

    def _poll_loop(self) -> None:
        rpcs = {e.name: NodeRpc(e.rpc_url, timeout=3.0) for e in self.entries}
        health = {e.name: NodeRpc(e.rpc_url, timeout=1.0) for e in self.entries}
        pool = ThreadPoolExecutor(max_workers=max(1, len(self.entries)),
                                  thread_name_prefix="load-poll")
        last_health = 0.0
        try:
            while not self._stop.is_set():
                cpu0 = time.thread_time()
                now = time.monotonic()
                if now - last_health >= 1.0:
                    last_health = now
                    self._refresh_health(health)
                    if self.sample_metrics:
                        try:
                            cluster.append_sample(self.m, cluster.collect_status(self.m), "load")
                        except OSError:
                            pass
                self._poll_once(rpcs, pool)
                self._add_cpu(time.thread_time() - cpu0)
                self._stop.wait(POLL)
        finally:
            pool.shutdown(wait=True)
            for r in [*rpcs.values(), *health.values()]:
                r.close()

    def _poll_once(self, rpcs: dict[str, NodeRpc], pool: ThreadPoolExecutor) -> int:
        """One poll: each node's final height (chain_info, the nodes at once: one after
        another, a poll of 21 busy nodes took seconds and the seen-final times lagged by as
        much), then the tx ids of the new final blocks (``get_block``, one batch, from the
        node furthest ahead). A pending tx is final, seen at its node's answer, once that
        node's final height reaches its block. Returns how many are left."""
        with self.lock:
            pending: dict[str, list[str]] = {}
            for tx_id, s in self.sent.items():
                if s.final_t is None:
                    pending.setdefault(s.node, []).append(tx_id)
        healthy = [e.name for e in self._healthy_entries()]
        by_ask: dict[str, list[str]] = {}
        left = 0
        for node, ids in pending.items():
            ask = node if self.healthy.get(node) else (healthy[0] if healthy else None)
            if ask is None:
                left += len(ids)
            else:
                by_ask.setdefault(ask, []).extend(ids)
        finals = dict(zip(by_ask, pool.map(lambda a: self._final_of(a, rpcs[a]), by_ask),
                          strict=True))
        known = {a: f for a, f in finals.items() if f is not None}
        if known:
            ahead = max(known, key=lambda a: known[a][0])
            self._read_final_blocks(rpcs[ahead], known[ahead][0])
        with self.lock:
            for ask, ids in by_ask.items():
                if ask not in known:
                    left += len(ids)
                    continue
                final, seen = known[ask]
                for t in ids:
                    s = self.sent[t]
                    if s.height is None:
                        s.height = self._final_blocks.height_of(t)
                    if s.height is not None and s.height <= final:
                        s.final_t = seen
                    else:
                        left += 1
        return left

    def _final_of(self, ask: str, rpc: NodeRpc) -> tuple[int, float] | None:
        """A node's final height and when it answered, or None (then marked unhealthy)."""
        cpu0 = time.thread_time()
        try:
            final = int(rpc.call("chain_info")["final_height"])
            return final, time.monotonic()
        except (NodeUnreachable, RpcError, KeyError, TypeError, ValueError):
            self.healthy[ask] = False
            return None
        finally:
            self._add_cpu(time.thread_time() - cpu0)

    def _read_final_blocks(self, rpc: NodeRpc, final: int) -> None:
        heights = self._final_blocks.to_read(final, 200)  # bounded work per poll
        if not heights:
            return
        try:
            answers = rpc.batch([("get_block", [h]) for h in heights])
        except (NodeUnreachable, RpcError):
            return  # again next poll
        for h, a in zip(heights, answers, strict=True):
            tx_ids = a.get("tx_ids") if isinstance(a, dict) else None
            if not isinstance(tx_ids, list):
                break  # not readable now (an error in its slot): again next poll
            self._final_blocks.add(h, [t for t in tx_ids if isinstance(t, str)])

    def _drain(self) -> None:
        deadline = time.monotonic() + self.spec.drain
        while time.monotonic() < deadline and not self._stop.is_set():
            c = self.counts()
            if c["final"] >= c["accepted"]:
                return
            if self._progress is not None:
                self._progress(self)
            time.sleep(POLL)

    # --- results --------------------------------------------------------------------------

    def _summary(self) -> dict[str, Any]:
        with self.lock:
            sent = list(self.sent.values())
            rejected = dict(self.rejected)
            ops_ = dict(self.op_counts)
        window = max(1e-9, (self.t_end or time.monotonic()) - self.t0) if self.t0 else 0.0
        lat = sorted(s.final_t - s.t for s in sent if s.final_t is not None)
        final = len(lat)
        per_second: dict[int, list[int]] = {}
        for s in sent:
            per_second.setdefault(int(s.t - self.t0), [0, 0])[0] += 1
            if s.final_t is not None:
                per_second.setdefault(int(s.final_t - self.t0), [0, 0])[1] += 1
        last_final = max((s.final_t for s in sent if s.final_t is not None), default=None)
        return {
            "name": self.spec.name,
            "state": self.state,
            "error": self.error,
            "time": time.time(),
            "target_tps": self.spec.tps,
            "duration_s": self.spec.duration,
            "window_s": round(window, 3),
            "mix": self.spec.mix,
            "nodes": [e.name for e in self.entries],
            "society": self.society if set(self.spec.mix) & _SOCIETY_OPS else None,
            "asset": self.asset if set(self.spec.mix) & _ASSET_OPS else None,
            "claim_id": self.claim_id,
            "planned": self.planned,
            "accepted": len(sent),
            "rejected": rejected,
            "unreachable": self.unreachable,
            "skipped": self.skipped,
            "final": final,
            "not_final": len(sent) - final,
            "ops": ops_,
            "achieved_tps": round(len(sent) / window, 3) if window else 0.0,
            "cpu_s": round(self.cpu_s, 3),
            "cpu_cores": round(self._window_cpu_s / window, 4) if window else 0.0,
            "final_tps": round(final / (last_final - self.t0), 3)
            if last_final is not None and last_final > self.t0 else 0.0,
            "latency_s": {"p50": percentile(lat, 0.50), "p90": percentile(lat, 0.90),
                          "p99": percentile(lat, 0.99), "max": lat[-1] if lat else None},
            "latencies_s": [round(x, 4) for x in lat],
            "per_second": [[k, v[0], v[1]] for k, v in sorted(per_second.items())],
        }

    def _save(self) -> None:
        assert self.result is not None
        d = self.m.dir / "load"
        d.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = d / f"{self.spec.name}-{stamp}-{os.getpid()}.json"
        path.write_text(json.dumps(self.result, indent=1) + "\n", encoding="utf-8")
        self.result_path = path
