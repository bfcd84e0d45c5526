"""Scenarios: a TOML list of steps run against a devnet, printing each; non-zero exit when
an assertion fails. See README.md ("The devnet") for the step reference; in short:

    [devnet]                 # what ``scenario --fresh`` starts (nodes, witnesses, accounts)
    nodes = 4

    [[step]]
    kind = "submit"          # load | wait | kill | start | restart | partition | heal
    from = "a1"              # | submit | assert | pause | resume | disconnect | connect
    op = "join"              # | link | clock
    op = "join"
    society = "aid-${run}"

Values may use ``${name}``: a value saved by an earlier step (``save_as``), an account's
address (``${a1}``), or ``${run}`` (6 random hex digits, fresh per run, so a scenario can be
run twice on one devnet). A value that is exactly ``${name}`` keeps the saved type; a
string of integers joined by + and - (after substitution) is computed, so that
``equals = "${bal0} - 40"`` works.
"""

from __future__ import annotations

import contextlib
import json
import operator
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devnet import control, procs
from devnet.load import Load, LoadSpec, parse_mix
from devnet.manifest import DevnetError, Manifest, NodeEntry, read_toml
from devnet.rpc import NodeRpc, NodeUnreachable, RpcError
from devnet.txs import TxSigner, build_op, fetch_tapos, wait_status

__all__ = ["KINDS", "Runner", "ScenarioError", "load_scenario"]

KINDS = ("load", "wait", "kill", "start", "restart", "partition", "heal", "submit", "assert",
         "pause", "resume", "disconnect", "connect", "link", "clock")
INVARIANTS = ("no_conflicting_final", "finality_resumes", "final_txs_kept")
_VAR = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")
_ARITH = re.compile(r"^\s*-?\d+(\s*[+-]\s*\d+)*\s*$")
_COMPARE: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "equals": ("==", operator.eq),
    "ne": ("!=", operator.ne),
    "gt": (">", operator.gt),
    "ge": (">=", operator.ge),
    "lt": ("<", operator.lt),
    "le": ("<=", operator.le),
    "in": ("in", lambda a, b: a in b),
    "contains": ("contains", lambda a, b: b in a),
}


class ScenarioError(DevnetError):
    """A step that failed (an assertion, a timeout, a bad step)."""


def load_scenario(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    doc = read_toml(p, "scenario")
    steps = doc.get("step")
    if not isinstance(steps, list) or not steps:
        raise DevnetError(f"scenario {p} has no [[step]]")
    for i, s in enumerate(steps, 1):
        if s.get("kind") not in KINDS:
            raise DevnetError(f"scenario {p} step {i}: kind must be one of {', '.join(KINDS)}, "
                              f"got {s.get('kind')!r}")
    return doc


def _arith(text: str) -> int:
    total = 0
    for sign, num in re.findall(r"([+-]?)\s*(\d+)", text.replace(" ", "")):
        total += -int(num) if sign == "-" else int(num)
    return total


def lookup(doc: Any, path: str) -> Any:
    """'a.b.0.c' through dicts and lists; '' is the whole answer."""
    cur = doc
    if not path:
        return cur
    for part in path.split("."):
        if isinstance(cur, dict):
            if part not in cur:
                raise ScenarioError(f"no {part!r} in the answer at {path!r} (keys: "
                                    f"{', '.join(map(str, cur))})")
            cur = cur[part]
        elif isinstance(cur, list):
            try:
                cur = cur[int(part)]
            except (ValueError, IndexError):
                raise ScenarioError(f"no item {part!r} in a list of {len(cur)} at {path!r}") \
                    from None
        else:
            raise ScenarioError(f"cannot take {part!r} of {cur!r} at {path!r}")
    return cur


class Runner:
    def __init__(self, m: Manifest, doc: dict[str, Any], echo: Callable[[str], None]) -> None:
        self.m = m
        self.doc = doc
        self.echo = echo
        self.vars: dict[str, Any] = {"run": secrets.token_hex(3)}
        self.loads: dict[str, Load] = {}
        self.baseline: int | None = None
        self.signer = TxSigner(m)
        # invariant -> [(held, detail, value)], printed as held / broken at the end and
        # saved to <dir>/invariants.json (value: slots to resume, conflicts, lost txs)
        self.invariants: dict[str, list[tuple[bool, str, float | None]]] = {}
        self.final_seen: dict[int, tuple[str, str]] = {}  # height -> (block id, node)
        self.ended_at: tuple[float, int, str] | None = None  # a perturbation's end

    # --- values -------------------------------------------------------------------------------

    def var(self, name: str) -> Any:
        if name in self.vars:
            return self.vars[name]
        acct = name.removesuffix(".address")
        try:
            return self.m.account(acct).address
        except DevnetError:
            raise ScenarioError(f"unknown variable ${{{name}}} (saved so far: "
                                f"{', '.join(self.vars)}; accounts a1..a{len(self.m.accounts)})"
                                ) from None

    def sub(self, value: Any) -> Any:
        if isinstance(value, str):
            whole = _VAR.fullmatch(value)
            if whole:
                return self.var(whole.group(1))
            out = _VAR.sub(lambda mt: str(self.var(mt.group(1))), value)
            return _arith(out) if _VAR.search(value) and _ARITH.match(out) else out
        if isinstance(value, list):
            return [self.sub(v) for v in value]
        if isinstance(value, dict):
            return {k: self.sub(v) for k, v in value.items()}
        return value

    def _running(self) -> list[NodeEntry]:
        self.m.reload_pids()
        return [e for e in self.m.nodes if procs.node_alive(e)]

    def _nodes(self, spec: Any, default: str = "first") -> list[NodeEntry]:
        if spec is None or spec == "":
            spec = default
        if not spec:
            raise ScenarioError("this step needs node = \"n1\" (or \"n1,n2\", \"all\")")
        running = self._running()
        if spec == "first":
            if not running:
                raise ScenarioError("no node is running")
            return running[:1]
        if spec == "all":
            if not running:
                raise ScenarioError("no node is running")
            return running
        return self.m.nodes_named(spec if isinstance(spec, list) else str(spec))

    # --- the run ---------------------------------------------------------------------------

    def run(self) -> bool:
        steps = self.doc["step"]
        total = len(steps)
        t_start = time.monotonic()
        ok = False
        try:
            for i, raw in enumerate(steps, 1):
                step = dict(raw)
                kind = step.pop("kind")
                label = step.pop("label", None)
                t0 = time.monotonic()
                head = f"[{i}/{total}] {kind}" + (f" ({label})" if label else "")
                try:
                    detail = getattr(self, f"step_{kind}")(step)
                except DevnetError as exc:
                    self.echo(f"{head} ... FAILED after {time.monotonic() - t0:.1f} s\n    {exc}")
                    return False
                self.echo(f"{head} ... ok ({time.monotonic() - t0:.1f} s)"
                          + (f"\n    {detail}" if detail else ""))
            ok = True
        finally:
            for ld in self.loads.values():
                ld.stop()
            for ld in self.loads.values():
                if not ld.done.is_set():
                    ld.done.wait(15.0)
            held = self._print_invariants()
        if not held:
            self.echo(f"scenario FAILED: an invariant is broken ({total} step(s) in "
                      f"{time.monotonic() - t_start:.1f} s)")
            return False
        self.echo(f"scenario passed: {total} step(s) in {time.monotonic() - t_start:.1f} s")
        return ok

    def _print_invariants(self) -> bool:
        """One line per invariant the scenario names (or checked): held / broken."""
        names = list(self.doc.get("invariants") or [])
        names += [n for n in self.invariants if n not in names]
        all_held = True
        for name in names:
            results = self.invariants.get(name)
            if not results:
                self.echo(f"invariant {name}: not checked")
                continue
            bad = [d for ok, d, _v in results if not ok]
            if bad:
                all_held = False
                self.echo(f"invariant {name}: broken ({len(bad)} of {len(results)}: "
                          f"{'; '.join(bad[:3])})")
            else:
                self.echo(f"invariant {name}: held ({len(results)} check(s); "
                          f"{results[-1][1]})")
        summary = {name: {"held": all(ok for ok, _d, _v in self.invariants.get(name, []))
                          if self.invariants.get(name) else None,
                          "checks": [{"held": ok, "detail": d, "value": v}
                                     for ok, d, v in self.invariants.get(name, [])]}
                   for name in names}
        if names:
            with contextlib.suppress(OSError):
                (self.m.dir / "invariants.json").write_text(
                    json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        return all_held

    def record(self, name: str, held: bool, detail: str, value: float | None = None) -> None:
        self.invariants.setdefault(name, []).append((held, detail, value))

    # --- steps ------------------------------------------------------------------------------

    def step_load(self, s: dict[str, Any]) -> str:
        s = self.sub(s)
        mix = s.get("mix", "transfer")
        spec = LoadSpec(
            tps=float(s.get("tps", 10)), duration=float(s.get("duration", 10)),
            mix=parse_mix(mix) if isinstance(mix, str) else {str(k): float(v)
                                                              for k, v in mix.items()},
            nodes=s.get("nodes"), drain=float(s.get("drain", 30)),
            name=str(s.get("name", "load")), seed=s.get("seed"))
        if spec.name in self.loads:
            raise ScenarioError(f"a load named {spec.name!r} ran already; name it differently")
        ld = Load(self.m, spec)
        self.loads[spec.name] = ld
        if s.get("background", False):
            ld.start()
            if not ld.running.wait(spec.setup_timeout + 10.0):
                raise ScenarioError(f"load {spec.name!r} did not finish its setup")
            if ld.error:
                raise ScenarioError(f"load {spec.name!r} failed: {ld.error}")
            return f"load {spec.name!r} running in the background: {spec.tps:g} tx/s for " \
                   f"{spec.duration:g} s"
        result = ld.run()
        return _load_line(result)

    def step_wait(self, s: dict[str, Any]) -> str:
        s = self.sub(s)
        timeout = float(s.get("timeout", 60))
        if "seconds" in s:
            time.sleep(float(s["seconds"]))
            return ""
        if "load" in s:
            ld = self.loads.get(s["load"])
            if ld is None:
                raise ScenarioError(f"no load named {s['load']!r}")
            if s.get("state", "done") == "running":
                if not ld.running.wait(timeout):
                    raise ScenarioError(f"load {s['load']!r} not running after {timeout:g} s")
                return ""
            budget = ld.spec.setup_timeout + ld.spec.duration + ld.spec.drain + 30
            return _load_line(ld.join(max(timeout, budget)))
        until = s.get("until")
        if until == "final_advance":
            now = control.wait_final_advance(self.m, int(s.get("by", 1)), timeout)
            return "final heights " + ", ".join(f"{k} {v}" for k, v in now.items())
        if until == "converged":
            return control.wait_converged(self.m, self.baseline, timeout)
        if until == "rpc" or "method" in s:
            return self._assert_rpc(s, retry_for=timeout)
        raise ScenarioError("wait needs seconds, load, or until = final_advance | converged | rpc")

    def step_kill(self, s: dict[str, Any]) -> str:
        s = self.sub(s)
        entries = self._nodes(s.get("node"), default="")
        sig = str(s.get("signal", "KILL")).upper()
        res = control.kill_nodes(self.m, entries, sig)
        return ", ".join(f"{k}: {v} (SIG{sig})" for k, v in res.items())

    def step_start(self, s: dict[str, Any]) -> str:
        s = self.sub(s)
        entries = self._nodes(s.get("node"), default="")
        control.start_nodes(self.m, entries, timeout=float(s.get("timeout", 30)))
        self._mark_end(f"start {s.get('node')}")
        return ", ".join(f"{e.name}: pid {e.pid}" for e in entries)

    def step_restart(self, s: dict[str, Any]) -> str:
        s = self.sub(s)
        entries = self._nodes(s.get("node"), default="")
        control.restart_nodes(self.m, entries, timeout=float(s.get("timeout", 30)))
        self._mark_end(f"restart {s.get('node')}")
        return ", ".join(f"{e.name}: pid {e.pid}" for e in entries)

    def _max_final(self) -> int:
        f = control.finals(self.m)
        return max(f.values()) if f else 0

    def step_partition(self, s: dict[str, Any]) -> str:
        s = self.sub(s)
        groups = control.parse_groups(self.m, s.get("groups", ""))
        self.baseline = max(self.baseline or 0, self._max_final())
        st = control.partition(self.m, groups, str(s.get("mode", "drop")))
        return f"groups {' | '.join(','.join(g) for g in groups)}; cut {len(st.get('cut', []))}" \
               f" link pair(s); highest final height {self.baseline}"

    def step_heal(self, s: dict[str, Any]) -> str:
        control.heal(self.m)
        self._mark_end("heal")
        self.baseline = max(self.baseline or 0, self._max_final())
        return f"all links open; highest final height at heal {self.baseline}"

    # --- perturbations (wide-area research) -------------------------------------------------

    def _mark_end(self, what: str) -> None:
        """A perturbation ended now: finality_resumes measures from here."""
        self.ended_at = (time.monotonic(), self._max_final(), what)

    def step_pause(self, s: dict[str, Any]) -> str:
        s = self.sub(s)
        res = control.pause_nodes(self.m, self._nodes(s.get("node"), default=""))
        return ", ".join(f"{k}: {v}" for k, v in res.items())

    def step_resume(self, s: dict[str, Any]) -> str:
        s = self.sub(s)
        res = control.resume_nodes(self.m, self._nodes(s.get("node"), default=""))
        self._mark_end(f"resume {s.get('node')}")
        return ", ".join(f"{k}: {v}" for k, v in res.items())

    def step_disconnect(self, s: dict[str, Any]) -> str:
        s = self.sub(s)
        entries = self._nodes(s.get("node"), default="")
        st = control.disconnect(self.m, entries, str(s.get("mode", "drop")))
        return f"isolated: {', '.join(st.get('isolated') or [])}"

    def step_connect(self, s: dict[str, Any]) -> str:
        s = self.sub(s)
        st = control.connect(self.m, self._nodes(s.get("node"), default=""))
        self._mark_end(f"connect {s.get('node')}")
        return f"isolated: {', '.join(st.get('isolated') or []) or 'none'}"

    def step_link(self, s: dict[str, Any]) -> str:
        s = self.sub(s)
        if "a" not in s or "b" not in s:
            raise ScenarioError("link needs a and b (nodes, regions or all)")
        st = control.set_link(self.m, str(s["a"]), str(s["b"]), delay=s.get("delay"),
                              jitter=s.get("jitter"), loss=s.get("loss"),
                              one_way=bool(s.get("one_way", False)),
                              reset=bool(s.get("reset", False)))
        if s.get("reset"):
            self._mark_end(f"link {s['a']} {s['b']} reset")
        return f"{st['changed']} directed pair(s) changed"

    def step_clock(self, s: dict[str, Any]) -> str:
        s = self.sub(s)
        offset = float(s.get("offset", 0))
        res = control.clock_offset(self.m, self._nodes(s.get("node"), default=""), offset,
                                   timeout=float(s.get("timeout", 30)))
        if offset == 0:
            self._mark_end(f"clock {s.get('node')} back")
        return ", ".join(f"{k}: {v}" for k, v in res.items())

    # --- invariants ---------------------------------------------------------------------------

    def check_finality_resumes(self, s: dict[str, Any]) -> str:
        """Every running node's final height passes the highest final height at the end of
        the last perturbation within ``within_slots`` slots of that end. Recorded, never
        raised: the scenario goes on to its next perturbation."""
        within = float(s.get("within_slots", 10))
        interval = self.m.block_interval_s
        if self.ended_at is None:
            self._mark_end("(no perturbation ended; measured from now)")
        assert self.ended_at is not None
        t_end, f_end, what = self.ended_at
        deadline = t_end + within * interval + 2.0  # +2 s: the devnet's polling, not the chain
        now: dict[str, int] = {}
        while True:
            now = control.finals(self.m)
            if now and all(h > f_end for h in now.values()):
                slots = (time.monotonic() - t_end) / interval
                held = slots <= within + 2.0 / interval
                detail = f"after {what}: final {f_end} -> {min(now.values())} in {slots:.1f} slots"
                self.record("finality_resumes", held, detail, round(slots, 2))
                self.ended_at = None
                self._note_finals()
                return detail
            if time.monotonic() >= deadline:
                detail = (f"after {what}: final height stayed at or below {f_end} for "
                          f"{within:g} slots (now {now})")
                self.record("finality_resumes", False, detail, None)
                self.ended_at = None
                return detail
            time.sleep(0.25)

    def _note_finals(self) -> None:
        """Record each node's final block (height, id); a second id at a height is a
        conflict between final blocks."""
        for e in self._running():
            try:
                with NodeRpc(e.rpc_url, timeout=3.0) as rpc:
                    info = rpc.call("chain_info")
            except (NodeUnreachable, RpcError):
                continue
            h, bid = info.get("final_height"), info.get("final_id")
            if not isinstance(h, int) or not isinstance(bid, str) or h <= 0:
                continue
            seen = self.final_seen.get(h)
            if seen is None:
                self.final_seen[h] = (bid, e.name)
            elif seen[0] != bid:
                self.record("no_conflicting_final", False,
                            f"height {h}: {seen[1]} final {seen[0][:12]}, {e.name} final "
                            f"{bid[:12]}")

    def check_no_conflicting_final(self, s: dict[str, Any]) -> str:
        """Every running node's block at every height up to its final height agrees with
        every other node's (one batch of get_block per node)."""
        self._note_finals()
        by_node: dict[str, dict[int, str]] = {}
        for e in self._running():
            try:
                with NodeRpc(e.rpc_url, timeout=20.0) as rpc:
                    fh = int(rpc.call("chain_info").get("final_height") or 0)
                    if fh <= 0:
                        continue
                    answers = rpc.batch([("get_block", [h]) for h in range(1, fh + 1)])
            except (NodeUnreachable, RpcError) as exc:
                raise ScenarioError(f"{e.name}: cannot read its final blocks: {exc}") from None
            by_node[e.name] = {h: a["id"] for h, a in enumerate(answers, 1)
                               if isinstance(a, dict) and "id" in a}
        conflicts = []
        top = max((max(v) for v in by_node.values() if v), default=0)
        for h in range(1, top + 1):
            ids = {n: v[h] for n, v in by_node.items() if h in v}
            if len(set(ids.values())) > 1:
                conflicts.append(f"height {h}: " + ", ".join(f"{n} {i[:10]}"
                                                              for n, i in ids.items()))
        held = not conflicts and not any(not ok for ok, _d, _v in
                                         self.invariants.get("no_conflicting_final", []))
        detail = (f"{len(by_node)} node(s) agree on every final block up to {top}" if held
                  else "; ".join(conflicts[:3]) or "a conflict was seen during the run")
        self.record("no_conflicting_final", held, detail, float(len(conflicts)))
        return detail

    def check_final_txs_kept(self, s: dict[str, Any]) -> str:
        name = str(s.get("load", "load"))
        ld = self.loads.get(name)
        if ld is None:
            raise ScenarioError(f"no load named {name!r}")
        ld.join(ld.spec.setup_timeout + ld.spec.duration + ld.spec.drain + 30)
        if not ld.final_ids():
            self.record("final_txs_kept", False, f"load {name!r} saw no final tx", None)
            return "no final tx"
        try:
            detail = self._survive(ld, float(s.get("timeout", 30)))
            self.record("final_txs_kept", True, detail, 0.0)
        except ScenarioError as exc:
            detail = str(exc)
            lost = [int(x) for x in re.findall(r": (\d+) not final", detail)]
            self.record("final_txs_kept", False, detail, float(max(lost, default=0)))
        return detail

    def step_submit(self, s: dict[str, Any]) -> str:
        s = self.sub(s)
        items = s.get("txs")
        if items is None:
            items = [{k: v for k, v in s.items() if k not in ("node", "wait", "timeout")}]
        if not isinstance(items, list) or not items:
            raise ScenarioError("submit needs from + op, or txs = [{from, op, ...}, ...]")
        entry = self._nodes(s.get("node"))[0]
        wait = str(s.get("wait", "final"))
        timeout = float(s.get("timeout", 30))
        with NodeRpc(entry.rpc_url) as rpc:
            tapos = fetch_tapos(rpc)
            txs = []
            for it in items:
                fields = {k: v for k, v in it.items()
                          if k not in ("from", "op", "save_as", "expect_error", "fee")}
                if "from" not in it or "op" not in it:
                    raise ScenarioError(f"a tx needs from and op: {it}")
                op = build_op(str(it["op"]), fields, self.m)
                txs.append(self.signer.sign(str(it["from"]), op, tapos, fee=it.get("fee")))
            answers = rpc.call("submit_txs", [t.raw.hex() for t in txs])
            accepted: list[str] = []
            lines = []
            for it, tx, a in zip(items, txs, answers, strict=True):
                what = f"{it['op']} from {it['from']}"
                err: dict[str, Any] | None = (a.get("error") if isinstance(a, dict)
                                              else {"message": repr(a)})
                expect = it.get("expect_error")
                if err is not None:
                    reason = (err.get("data") or {}).get("reason")
                    if expect is not None and reason == expect:
                        lines.append(f"{what}: rejected with {reason}, as expected")
                        continue
                    raise ScenarioError(f"{what} rejected by {entry.name}: {reason} "
                                        f"({err.get('message')})")
                if expect is not None:
                    raise ScenarioError(f"{what} was accepted, expected rejection {expect!r}")
                tx_id = tx.tx_id.hex()
                accepted.append(tx_id)
                if "save_as" in it:
                    self.vars[str(it["save_as"])] = tx_id
                lines.append(f"{what}: {tx_id[:16]}…")
            if accepted and wait != "none":
                wait_status(rpc, accepted, wait, timeout)
                lines.append(f"{len(accepted)} tx(s) {wait} on {entry.name}")
        return "\n    ".join(lines)

    def step_assert(self, s: dict[str, Any]) -> str:
        check = s.get("check")
        if check is None:
            return self._assert_rpc(self.sub(s), retry_for=float(s.get("retry_for", 0)))
        s = self.sub(s)
        if check == "final_stalled":
            return control.watch_final_stalled(self.m, float(s.get("seconds", 5)),
                                               heads_advance=bool(s.get("heads_advance", True)))
        if check == "converged":
            return control.wait_converged(self.m, self.baseline, float(s.get("timeout", 0.5)))
        if check == "load":
            return self._assert_load(s)
        if check in INVARIANTS:
            return str(getattr(self, f"check_{check}")(s))
        raise ScenarioError(f"unknown check {check!r}: final_stalled, converged, load, "
                            f"{', '.join(INVARIANTS)}")

    # --- assertions -----------------------------------------------------------------------

    def _assert_rpc(self, s: dict[str, Any], *, retry_for: float) -> str:
        method = s.get("method")
        if not isinstance(method, str):
            raise ScenarioError("an RPC assertion needs method (and params, path, a comparison)")
        params = s.get("params", [])
        if not isinstance(params, list):
            params = [params]
        path = str(s.get("path", ""))
        comps = [(k, s[k]) for k in _COMPARE if k in s]
        deadline = time.monotonic() + retry_for
        while True:
            try:
                return self._assert_rpc_once(s, method, params, path, comps)
            except (ScenarioError, NodeUnreachable, RpcError) as exc:
                if time.monotonic() >= deadline:
                    raise ScenarioError(str(exc)) from None
            time.sleep(0.3)

    def _assert_rpc_once(self, s: dict[str, Any], method: str, params: list[Any], path: str,
                         comps: list[tuple[str, Any]]) -> str:
        out = []
        for e in self._nodes(s.get("node"), default="first"):
            with NodeRpc(e.rpc_url, timeout=3.0) as rpc:
                try:
                    answer = rpc.call(method, *params)
                except RpcError as exc:
                    answer = {"error": {"code": exc.code, "message": exc.message,
                                        "reason": exc.reason}}
            value = lookup(answer, path)
            if s.get("length"):
                value = len(value)
            for key, expected in comps:
                sym, fn = _COMPARE[key]
                try:
                    ok = bool(fn(value, expected))
                except TypeError:
                    ok = False
                if not ok:
                    raise ScenarioError(f"{e.name} {method}{params} {path or '(answer)'} = "
                                        f"{value!r}, expected {sym} {expected!r}")
            if "save_as" in s:
                self.vars[str(s["save_as"])] = value
            out.append(f"{e.name} {path or method} = {value!r}")
        return "; ".join(out)

    def _assert_load(self, s: dict[str, Any]) -> str:
        name = str(s.get("load", "load"))
        ld = self.loads.get(name)
        if ld is None:
            raise ScenarioError(f"no load named {name!r}")
        result = ld.join(ld.spec.setup_timeout + ld.spec.duration + ld.spec.drain + 30)
        lines = [_load_line(result)]
        ratio = float(s.get("min_final_ratio", 0.0))
        got = result["final"] / result["accepted"] if result["accepted"] else 0.0
        if result["accepted"] == 0:
            raise ScenarioError(f"load {name!r} had no accepted tx")
        if got < ratio:
            raise ScenarioError(f"load {name!r}: {result['final']}/{result['accepted']} accepted "
                                f"txs final ({got:.1%}), expected at least {ratio:.1%}")
        p99 = result["latency_s"]["p99"]
        if "max_p99_s" in s and (p99 is None or p99 > float(s["max_p99_s"])):
            raise ScenarioError(f"load {name!r}: p99 latency {p99} s above {s['max_p99_s']} s")
        if s.get("survive", False):
            lines.append(self._survive(ld, float(s.get("timeout", 30))))
        return "\n    ".join(lines)

    def _survive(self, ld: Load, timeout: float) -> str:
        """Every tx the load saw final is final on every running node (bounded retry, so a
        restarted node may finish syncing)."""
        ids = ld.final_ids()
        if not ids:
            raise ScenarioError(f"load {ld.spec.name!r} saw no final tx")
        deadline = time.monotonic() + timeout
        while True:
            missing: dict[str, list[str]] = {}
            for e in self._running():
                with NodeRpc(e.rpc_url, timeout=10.0) as rpc:
                    try:
                        answers = rpc.batch([("get_tx", [t]) for t in ids])
                    except (NodeUnreachable, RpcError) as exc:
                        missing[e.name] = [f"unreachable: {exc}"]
                        continue
                bad = [f"{t[:12]}… {a.get('status') if isinstance(a, dict) else a}"
                       for t, a in zip(ids, answers, strict=True)
                       if not (isinstance(a, dict) and a.get("status") == "final")]
                if bad:
                    missing[e.name] = bad
            if not missing:
                return f"all {len(ids)} txs seen final are final on every running node"
            if time.monotonic() >= deadline:
                raise ScenarioError("final txs lost: " + "; ".join(
                    f"{n}: {len(v)} not final (e.g. {', '.join(v[:3])})"
                    for n, v in missing.items()))
            time.sleep(1.0)


def _load_line(r: dict[str, Any]) -> str:
    lat = r["latency_s"]

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    rej = sum(r["rejected"].values())
    return (f"load {r['name']!r}: {r['accepted']} accepted ({r['achieved_tps']:.1f} tx/s), "
            f"{r['final']} final, {rej} rejected, {r['unreachable']} unreachable, "
            f"{r['skipped']} skipped; latency p50 {fmt(lat['p50'])} s p99 {fmt(lat['p99'])} s")
