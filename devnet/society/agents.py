"""The members and the outsiders, and the days of the society's life.

``Society.run()`` drives one society on the real ledger (``driver.Driver``), one block per
virtual day. Every decision is drawn from a seeded ``random.Random`` per component (the
population, incidents, judgments, gifts, attackers, charity), so a run depends only on its
``Config``; every state it acts on (karma, escrow, tallies, approval) is read back from the
ledger, which alone decides what is valid.

Who is in it (docs/society-economics.md states the assumptions):

- honest members pledge monthly (most through a standing pledge, op 13; the rest by hand,
  sometimes forgetting), suffer incidents at ``incident_rate``, claim their loss committing
  just the karma its limit needs, judge each claim's evidence with their own noise and vote
  on some (proxies on every one, op 14 delegators never), and give from escrow to approved
  claims they believe in, up to ``give_share`` of their escrow per claim;
- opportunists join only after their loss, pledge just enough karma for its limit through
  the observation period, claim it, then stop pledging;
- fraudsters claim the largest limit their karma allows, with no incident;
- rings approve and fund each other's false claims, recycling their escrow into karma;
- vote buyers pay the heaviest voters off chain to approve their false claim;
- sybil operators split one member's means over many accounts, each with a small false
  claim that its siblings approve;
- charity requesters (op 15) come from outside: half genuine, half fake (the attackers).

Attackers withdraw a claim that is losing with nothing received (op 16), which returns the
bond: the rule of 11.6. The ledger's rejections are counted, never hidden.
"""

from __future__ import annotations

import gc
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consensus.crypto import PrivateKey
from muxernode import ledger as L
from muxernode.ledger import decay, is_approved
from storage.kv import KVStore

from .driver import DAY, GENESIS_TIME, Driver
from .model import ATTACKER_TYPES, MUX, Config

__all__ = ["Agent", "Case", "Society"]

SOC = "aid"
HONEST = "honest"
NEEDY = "needy"  # a genuine charity requester from outside (not an attacker)
COOLDOWN_DAYS = 90  # an attacker rebuilds karma this long after a claim closes before the next
OP_CREATE, OP_JOIN, OP_PLEDGE, OP_CLAIM, OP_VOTE, OP_GIVE = 2, 3, 4, 5, 6, 7
OP_STANDING, OP_PROXY, OP_CHARITY, OP_WITHDRAW, OP_AMEND, OP_COMMENT = 13, 14, 15, 16, 17, 18


@dataclass
class Agent:
    idx: int
    kind: str  # HONEST, NEEDY or one of ATTACKER_TYPES
    key: PrivateKey
    monthly: int  # units pledged a month (0: none)
    funds: int  # genesis balance
    join_day: int  # -1: never joins (charity requesters)
    role: str = "active"  # honest: proxy, lazy or active
    noise: float = 0.2
    standing: bool = True
    group: int = -1  # ring or sybil operator
    proxy: int = -1
    joined: bool = False
    next_pledge_day: int = 0
    next_incident: float = math.inf
    next_attack_day: int = 0
    loss: int = 0  # opportunist's loss, charity request amount
    open_case: Case | None = None
    bribes_paid: int = 0
    bribes_received: int = 0

    @property
    def address(self) -> bytes:
        return self.key.address


@dataclass
class Case:
    """A claim or charity request as the simulation knows it (the ledger holds the truth)."""

    claim_id: bytes
    claimant: Agent
    charity: bool
    legit: bool
    evidence: float
    amount: int
    limit: int
    karma: int
    opened_day: int
    closes_at: int
    gives_from: int
    votes: dict[int, list[tuple[Agent, int]]] = field(default_factory=dict)
    opinions: dict[int, int] = field(default_factory=dict)  # agent idx -> +1 / -1
    received: int = 0
    from_honest: int = 0
    first_gift_day: int = -1
    outcome: str = "open"
    bond_back: bool = False  # the ledger returned the bond at closing or withdrawal

    @property
    def kind(self) -> str:
        return self.claimant.kind


def _clamp(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo if x < lo else hi if x > hi else x


class Society:
    def __init__(self, config: Config, kv: KVStore | None = None) -> None:
        self.cfg = config
        self.b = config.behaviour
        self.rules = config.rules
        seed = config.seed
        # one stream per component, so that changing one behaviour does not reshuffle others
        self.rng_pop = random.Random(f"{seed}/population")
        self.rng_inc = random.Random(f"{seed}/incidents")
        self.rng_vote = random.Random(f"{seed}/judgment")
        self.rng_give = random.Random(f"{seed}/gifts")
        self.rng_att = random.Random(f"{seed}/attackers")
        self.rng_char = random.Random(f"{seed}/charity")
        self.agents: list[Agent] = []
        self.cases: list[Case] = []
        self.open_cases: list[Case] = []
        self.samples: list[dict[str, Any]] = []
        self.incidents: dict[str, int] = {"total": 0, "in_observation": 0, "no_karma": 0,
                                          "while_open": 0, "claimed": 0}
        self.bribed_votes = 0
        self.charity_arrivals: dict[int, list[Agent]] = {}
        self.ring_turns: dict[int, int] = {}
        self._build_population()
        self.groups: dict[tuple[str, int], list[Agent]] = {}
        for a in self.agents:
            if a.group >= 0:
                self.groups.setdefault((a.kind, a.group), []).append(a)
        self.witness = PrivateKey(self.rng_pop.randbytes(32))
        founder = PrivateKey(self.rng_pop.randbytes(32))
        self.founder = founder
        balances = [(founder.address, 10 * MUX)] + [(a.address, a.funds) for a in self.agents]
        self.driver = Driver(balances, self.witness, kv)

    # --- population ---------------------------------------------------------------------

    def _key(self) -> PrivateKey:
        return PrivateKey(self.rng_pop.randbytes(32))

    def _monthly(self) -> int:
        b = self.b
        m = b.monthly_pledge_median * math.exp(self.rng_pop.gauss(0.0, b.monthly_pledge_sigma))
        return max(self.rules.min_pledge, int(m * MUX))

    def _funds(self, monthly: int) -> int:
        # enough for every pledge of the run, several bonds and the fees
        return monthly * (self.cfg.months + 2) + 20 * self.rules.claim_bond + 20 * MUX

    def _add(self, kind: str, monthly: int, join_day: int, **kw: Any) -> Agent:
        a = Agent(len(self.agents), kind, self._key(), monthly, self._funds(monthly), join_day,
                  **kw)
        self.agents.append(a)
        return a

    def _attacker_accounts(self) -> dict[str, tuple[int, float]]:
        """Per attacker type: (accounts, its share of the attackers' pledging). An attacker
        has the means of ``attacker_means`` median members; a sybil operator splits its
        means over ``sybil_accounts`` accounts; rings have ``ring_size`` members."""
        b, n = self.b, self.cfg.members
        share = self.cfg.attackers
        weights = {t: max(0.0, b.weights.get(t, 0.0)) for t in ATTACKER_TYPES if t != "charity"}
        total_w = sum(weights.values())
        if share <= 0 or total_w <= 0:
            return {t: (0, 0.0) for t in weights}
        out: dict[str, tuple[int, float]] = {}
        for t, w in sorted(weights.items()):
            # how many attackers of this type the share buys, in members' means
            parties = n * share * w / total_w / max(b.attacker_means, 1e-9)
            if w <= 0:
                out[t] = (0, 0.0)
            elif t == "ring":
                out[t] = (b.ring_size * max(1, round(parties / b.ring_size)), w / total_w)
            elif t == "sybil":
                out[t] = (b.sybil_accounts * max(1, round(parties)), w / total_w)
            else:
                out[t] = (max(1, round(parties)), w / total_w)
        return out

    def _build_population(self) -> None:
        b, cfg, rng = self.b, self.cfg, self.rng_pop
        plan = self._attacker_accounts()
        n_honest = max(4, cfg.members - sum(n for n, _ in plan.values()))
        join_window = min(30, max(1, cfg.days // 4))
        n_proxies = max(1, round(n_honest * b.proxy_share))
        proxies: list[Agent] = []
        for i in range(n_honest):
            role = ("proxy" if i < n_proxies
                    else "lazy" if rng.random() < b.lazy_share else "active")
            noise = (b.proxy_noise if role == "proxy"
                     else rng.uniform(b.noise_min, b.noise_max))
            a = self._add(HONEST, self._monthly(), 1 if role == "proxy" else
                          rng.randint(1, join_window), role=role, noise=noise,
                          standing=rng.random() < b.standing_share)
            if role == "proxy":
                proxies.append(a)
            elif role == "lazy":
                a.proxy = rng.choice(proxies).idx if proxies else -1
            a.next_incident = a.join_day + rng.expovariate(b.incident_rate / 365.0)
        honest_total = sum(a.monthly for a in self.agents)
        share = cfg.attackers
        attacker_total = honest_total * share / (1 - share) if share < 1 else 0.0
        obs_days = self.rules.observation_s // DAY
        for t in sorted(plan):
            n, part = plan[t]
            if not n:
                continue
            per = max(self.rules.min_pledge, int(attacker_total * part / n))
            group_size = b.ring_size if t == "ring" else b.sybil_accounts if t == "sybil" else 1
            for i in range(n):
                if t == "opportunist":
                    # arrives after its loss, late enough to claim before the run ends
                    last = max(2, cfg.days - obs_days - 20)
                    day = rng.randint(min(join_window, last - 1), last)
                    a = self._add(t, per, day)
                    a.loss = int(per * b.loss_months * math.exp(rng.gauss(0.0, b.loss_sigma)))
                    a.monthly = self._opportunist_pledge(a.loss)
                    a.funds = self._funds(a.monthly)
                else:
                    a = self._add(t, per, rng.randint(1, join_window), group=i // group_size)
        # charity requests from outside: Poisson arrivals, half genuine
        rate = b.charity_rate / 30.0
        when = 0.0
        for _ in range(100_000):
            when += self.rng_char.expovariate(rate) if rate > 0 else math.inf
            if when >= cfg.days - 1:
                break
            kind = NEEDY if self.rng_char.random() < 0.5 else "charity"
            amount = int(b.charity_amount * MUX * math.exp(self.rng_char.gauss(0.0, 0.5)))
            a = Agent(len(self.agents), kind, self._key(), 0,
                      self.rules.claim_bond + 10 * MUX, -1, loss=max(1, amount))
            self.agents.append(a)
            self.charity_arrivals.setdefault(int(when) + 1, []).append(a)

    def _opportunist_pledge(self, loss: int) -> int:
        """Monthly pledge that buys karma for the loss's limit by the end of observation:
        karma = pledge / 2, with a margin for decay; all at once without an observation."""
        need = 2 * loss // self.rules.benefit_ratio * 5 // 4
        months = self.rules.observation_s // (30 * DAY)
        return max(self.rules.min_pledge, need // (months + 1))

    # --- reads from the ledger ----------------------------------------------------------

    def _member(self, a: Agent) -> list[Any] | None:
        rec: list[Any] | None = self.driver.get(L.member_key(SOC, a.address))
        return rec

    def karma(self, a: Agent, t: int) -> int:
        m = self._member(a)
        if m is None:
            return 0
        return decay(m[L.M_KARMA], m[L.M_KARMA_AT], t, self.rules.decay_period_s,
                     self.rules.decay_ppm)

    def escrow(self, a: Agent, charity: bool = False) -> int:
        m = self._member(a)
        return 0 if m is None else int(m[L.M_CHARITY if charity else L.M_ESCROW])

    def society(self) -> list[Any]:
        rec: list[Any] = self.driver.get(L.society_key(SOC))
        return rec

    def balance(self, a: Agent) -> int:
        acct = self.driver.get(L.account_key(a.address))
        return 0 if acct is None else int(acct[L.BAL])

    # --- the run ------------------------------------------------------------------------

    def run(self, progress: Callable[[int], None] | None = None) -> None:
        """The whole run; progress(month) is called after each simulated month."""
        # The run holds millions of live objects (decoded records, cases, opinions) and
        # makes few cycles: at the default thresholds the collector walks all of them every
        # few thousand allocations, a cost that grows with the run (the daemon tunes it the
        # same way, muxernode/daemon.py). Restored afterwards: the process is not ours.
        old = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        try:
            self._run(progress)
        finally:
            gc.set_threshold(*old)
            gc.unfreeze()

    def _run(self, progress: Callable[[int], None] | None) -> None:
        d = self.driver
        d.begin(GENESIS_TIME + DAY // 2)
        tx = d.submit(self.founder, [OP_CREATE, SOC, "Mutual aid", "A simulated society",
                                     self.rules.as_list()])
        assert tx is not None, "the society's rules were refused"
        d.commit()
        for day in range(1, self.cfg.days + 1):
            t = GENESIS_TIME + day * DAY
            d.begin(t)  # closings and standing pledges run here
            self._closings(t)
            self._joins_and_pledges(day, t)
            self._incidents(day, t)
            self._attacks(day, t)
            self._charity(day)
            self._votes(day)
            self._gifts(day, t)
            self._withdrawals(day, t)
            if day % 30 == 0 or day == self.cfg.days:
                self._sample(day, t)
            d.commit()
            if progress is not None and day % 30 == 0:
                progress(day // 30)
        # cases still open at the end are reported as open (their tallies as they stand)

    # --- membership and pledges ---------------------------------------------------------

    def _joins_and_pledges(self, day: int, t: int) -> None:
        d = self.driver
        for a in self.agents:
            if a.join_day == day and not a.joined:
                if d.submit(a.key, [OP_JOIN, SOC, f"member-{a.idx}"]) is None:
                    continue
                a.joined = True
                d.submit(a.key, [OP_PLEDGE, SOC, a.monthly])
                a.next_pledge_day = day + 30
                if a.standing:
                    d.submit(a.key, [OP_STANDING, SOC, a.monthly, 30 * DAY])
                if a.proxy >= 0:
                    d.submit(a.key, [OP_PROXY, SOC, self.agents[a.proxy].address])
            elif (a.joined and not a.standing and a.monthly and a.next_pledge_day == day):
                a.next_pledge_day = day + 30
                if self.rng_inc.random() >= self.b.manual_miss:
                    d.submit(a.key, [OP_PLEDGE, SOC, a.monthly])

    # --- honest incidents ---------------------------------------------------------------

    def _incidents(self, day: int, t: int) -> None:
        b = self.b
        for a in self.agents:
            if a.kind != HONEST or a.next_incident > day:
                continue
            a.next_incident = day + self.rng_inc.expovariate(b.incident_rate / 365.0)
            self.incidents["total"] += 1
            if day * DAY < a.join_day * DAY + self.rules.observation_s:
                self.incidents["in_observation"] += 1
                continue
            if a.open_case is not None:
                self.incidents["while_open"] += 1
                continue
            karma = self.karma(a, t)
            if karma <= 0:
                self.incidents["no_karma"] += 1
                continue
            loss = int(a.monthly * b.loss_months * math.exp(self.rng_inc.gauss(0.0, b.loss_sigma)))
            loss = max(1, loss)
            commit = min(karma, -(-loss // self.rules.benefit_ratio))
            evidence = _clamp(self.rng_inc.gauss(b.honest_evidence, b.evidence_sigma))
            case = self._file(a, day, loss, commit, evidence, legit=True)
            if case is None:
                continue
            self.incidents["claimed"] += 1
            # more evidence before anyone voted (op 17): the amount stays fixed
            if self.rng_inc.random() < b.amend_rate and self.driver.submit(
                    a.key, [OP_AMEND, case.claim_id, "receipts attached",
                            self.rng_inc.randbytes(32)]) is not None:
                case.evidence = _clamp(case.evidence + 0.1)

    def _file(self, a: Agent, day: int, amount: int, karma: int, evidence: float,
              legit: bool) -> Case | None:
        tx = self.driver.submit(a.key, [OP_CLAIM, SOC, amount, karma, "loss",
                                        f"claim of member {a.idx}", self.rng_inc.randbytes(32)])
        if tx is None:
            return None
        return self._open_case(a, tx.tx_id, day, evidence, legit, charity=False)

    def _open_case(self, a: Agent, claim_id: bytes, day: int, evidence: float, legit: bool,
                   charity: bool) -> Case:
        c = self.driver.get(L.claim_key(claim_id))
        case = Case(claim_id, a, charity, legit, evidence, c[L.C_AMOUNT], c[L.C_LIMIT],
                    c[L.C_KARMA], day, c[L.C_CLOSES], c[L.C_GIVES_FROM])
        a.open_case = case
        self.cases.append(case)
        self.open_cases.append(case)
        self._plan_votes(case, day)
        if self.rng_vote.random() < self.b.comment_rate:
            self._discussion(case)
        return case

    def _discussion(self, case: Case) -> None:
        """A member asks about the evidence and the claimant answers (op 18)."""
        asker = self.agents[self.rng_vote.randrange(len(self.agents))]
        if asker.joined and asker is not case.claimant:
            self.driver.submit(asker.key, [OP_COMMENT, case.claim_id, "what happened?"])
            self.driver.submit(case.claimant.key, [OP_COMMENT, case.claim_id, "see evidence"])

    # --- judgment and votes -------------------------------------------------------------

    def opinion(self, case: Case, a: Agent) -> int:
        """a's judgment of case's evidence (drawn once, then remembered)."""
        op = case.opinions.get(a.idx)
        if op is None:
            perceived = case.evidence + self.rng_vote.gauss(0.0, a.noise)
            op = 1 if perceived >= 0.5 else -1
            case.opinions[a.idx] = op
        return op

    def _plan_votes(self, case: Case, day: int) -> None:
        b = self.b
        last = day + max(0, (case.closes_at - (GENESIS_TIME + day * DAY)) // DAY - 1)
        ref = b.monthly_pledge_median * b.loss_months * MUX
        # bigger claims draw more scrutiny, up to twice the median claim's
        p_vote = _clamp(b.vote_rate * min(2.0, math.sqrt(max(case.amount, 1) / ref)))
        rng = self.rng_vote
        for a in self.agents:
            if a is case.claimant or not a.joined:
                continue
            if a.kind == HONEST:
                if a.role == "proxy":
                    when = day + rng.randint(0, 2)
                elif a.role == "active" and rng.random() < p_vote:
                    when = day + rng.randint(0, 9)
                else:
                    continue
                case.votes.setdefault(min(when, last), []).append((a, self.opinion(case, a)))
            elif a.group >= 0 and a.group == case.claimant.group and a.kind == case.kind:
                case.votes.setdefault(day, []).append((a, 1))  # ring and sybil siblings
        if case.kind == "vote_buyer":
            self._bribe(case, day)

    def _bribe(self, case: Case, day: int) -> None:
        """Approach the heaviest voters (own karma and their delegators'), pay those who
        accept off chain to approve (their planned vote, if any, is replaced)."""
        b, t = self.b, GENESIS_TIME + day * DAY
        weight: dict[int, int] = {}
        for a in self.agents:
            if a.kind == HONEST and a.joined:
                k = self.karma(a, t)
                weight[a.idx] = weight.get(a.idx, 0) + k
                if a.proxy >= 0:
                    weight[a.proxy] = weight.get(a.proxy, 0) + k
        ranked = sorted(weight, key=lambda i: (-weight[i], i))[: b.bribe_targets]
        takers = [self.agents[i] for i in ranked if self.rng_att.random() < b.bribe_accept]
        if not takers:
            return
        each = int(case.amount * b.bribe_share) // len(takers)
        for a in takers:
            a.bribes_received += each
            case.claimant.bribes_paid += each
            case.opinions[a.idx] = 1
            for votes in case.votes.values():
                votes[:] = [(v, s) for v, s in votes if v is not a]
            case.votes.setdefault(day + 1, []).append((a, 1))
            self.bribed_votes += 1

    def _votes(self, day: int) -> None:
        d = self.driver
        for case in self.open_cases:
            for a, stance in case.votes.pop(day, ()):
                d.submit(a.key, [OP_VOTE, case.claim_id, stance])

    # --- gifts --------------------------------------------------------------------------

    def _gifts(self, day: int, t: int) -> None:
        due = [c for c in self.open_cases if c.gives_from <= t and c.received < c.limit]
        if not due:
            return
        society = self.society()
        approved = [c for c in due if is_approved(self.driver.get(L.claim_key(c.claim_id)),
                                                  society, t)]
        if not approved:
            return
        honest = [a for a in self.agents if a.kind == HONEST and a.joined]
        for charity in (False, True):
            cases = [c for c in approved if c.charity == charity]
            if not cases:
                continue
            if charity:
                ranking = L.charity_ranking(self.driver.ledger.state, SOC, society, t)
                slots = set(ranking[: self.rules.charity_slots])
                cases = [c for c in cases if c.claim_id in slots]
            weights = [self.escrow(a, charity) for a in honest]
            if sum(weights) <= 0:
                continue
            cum: list[int] = []
            acc = 0
            for w in weights:
                acc += w
                cum.append(acc)
            for case in cases:
                self._fund(case, day, honest, cum)
        for case in approved:
            if not case.charity:
                self._fund_from_group(case, day)

    def _fund(self, case: Case, day: int, honest: list[Agent], cum: list[int]) -> None:
        """Givers drawn by escrow (their means) give to a claim they believe in."""
        rng, b = self.rng_give, self.b
        drawn = rng.choices(range(len(honest)), cum_weights=cum, k=b.givers_per_day)
        seen: set[int] = set()
        for i in drawn:
            if i in seen or case.received >= case.limit:
                continue
            seen.add(i)
            a = honest[i]
            if a is case.claimant:
                continue
            # a lazy member follows its proxy's judgment when the proxy has one
            judge = self.agents[a.proxy] if a.proxy >= 0 and self.agents[a.proxy].idx in \
                case.opinions else a
            if self.opinion(case, judge) < 0:
                continue
            escrow = self.escrow(a, case.charity)
            amount = min(int(escrow * b.give_share), case.limit - case.received)
            if amount >= max(1, self.rules.min_pledge // 10):
                self._give(a, case, amount, day, honest=True)

    def _fund_from_group(self, case: Case, day: int) -> None:
        """Ring members and sybil siblings pour their escrow into their group's claims."""
        c = case.claimant
        if c.group < 0 or c.kind not in ("ring", "sybil"):
            return
        for a in self.groups[(c.kind, c.group)]:
            if case.received >= case.limit:
                break
            if a is not c and a.joined:
                amount = min(self.escrow(a), case.limit - case.received)
                if amount > 0:
                    self._give(a, case, amount, day, honest=False)

    def _give(self, a: Agent, case: Case, amount: int, day: int, honest: bool) -> None:
        if self.driver.submit(a.key, [OP_GIVE, case.claim_id, amount]) is None:
            return
        case.received += amount
        if honest:
            case.from_honest += amount
        if case.first_gift_day < 0:
            case.first_gift_day = day

    # --- attackers ----------------------------------------------------------------------

    def _attacks(self, day: int, t: int) -> None:
        b, rules = self.b, self.rules
        for a in self.agents:
            if a.kind in (HONEST, NEEDY, "charity") or not a.joined or a.open_case is not None:
                continue
            if day < a.next_attack_day or t < GENESIS_TIME + a.join_day * DAY + rules.observation_s:
                continue
            karma = self.karma(a, t)
            if karma <= 0:
                continue
            if a.kind == "opportunist":
                if a.next_attack_day < 0:
                    continue  # claimed once, gone
                commit = min(karma, -(-a.loss // rules.benefit_ratio))
                ev = _clamp(self.rng_att.gauss(b.preexisting_evidence, b.evidence_sigma))
                case = self._file(a, day, a.loss, commit, ev, legit=False)
                if case is not None:
                    a.next_attack_day = -1
                    if a.standing:
                        self.driver.submit(a.key, [OP_STANDING, SOC, 0, 0])
                continue
            if a.kind == "ring" and not self._ring_turn(a):
                continue
            # sybils keep half their karma to approve their siblings' claims
            commit = karma // 2 if a.kind == "sybil" else karma
            if commit <= 0:
                continue
            # the largest limit the karma allows, with no incident behind it
            ev = _clamp(self.rng_att.gauss(b.fraud_evidence, b.evidence_sigma))
            self._file(a, day, commit * rules.benefit_ratio, commit, ev, legit=False)

    def _ring_turn(self, a: Agent) -> bool:
        """A ring files one claim at a time, in turn, so the others keep their karma to
        approve it; the turn passes when the claim closes."""
        ring = self.groups[("ring", a.group)]
        if any(m.open_case is not None for m in ring):
            return False
        turn = self.ring_turns.get(a.group, 0)
        if ring[turn % len(ring)] is a:
            self.ring_turns[a.group] = turn + 1
            return True
        return False

    def _withdrawals(self, day: int, t: int) -> None:
        """An attacker withdraws a claim that is losing with nothing received on its last
        day: 11.6 returns the bond then (the committed karma is spent either way)."""
        if not self.b.withdraw_losing:
            return
        society = self.society()
        for case in list(self.open_cases):
            if case.legit or case.kind == NEEDY or case.received:
                continue
            if case.closes_at - t > DAY:
                continue
            if is_approved(self.driver.get(L.claim_key(case.claim_id)), society, t):
                continue
            if self.driver.submit(case.claimant.key, [OP_WITHDRAW, case.claim_id]) is not None:
                self._finish(case, "withdrawn", day)

    # --- charity ------------------------------------------------------------------------

    def _charity(self, day: int) -> None:
        b = self.b
        for a in self.charity_arrivals.get(day, ()):
            tx = self.driver.submit(a.key, [OP_CHARITY, SOC, a.loss, "help", "from outside",
                                            self.rng_char.randbytes(32)])
            if tx is None:
                continue
            legit = a.kind == NEEDY
            ev = _clamp(self.rng_char.gauss(b.honest_evidence if legit else b.fraud_evidence,
                                            b.evidence_sigma))
            self._open_case(a, tx.tx_id, day, ev, legit, charity=True)

    # --- closings and samples -----------------------------------------------------------

    def _closings(self, t: int) -> None:
        day = (t - GENESIS_TIME) // DAY
        for case in [c for c in self.open_cases if c.closes_at <= t]:
            status = self.driver.get(L.claim_key(case.claim_id))[L.C_STATUS]
            self._finish(case, {L.CLAIM_APPROVED: "approved", L.CLAIM_REJECTED: "rejected",
                                L.CLAIM_WITHDRAWN: "withdrawn"}.get(status, "open"), day)

    def _finish(self, case: Case, outcome: str, day: int) -> None:
        case.outcome = outcome
        # the ledger's rule (docs/protocol.md 11.6): an approved claim's bond returns, a
        # withdrawn one's only with nothing received and no vote recorded
        rec = self.driver.get(L.claim_key(case.claim_id))
        case.bond_back = outcome == "approved" or (
            outcome == "withdrawn" and not rec[L.C_RECEIVED] and not rec[L.C_VOTERS])
        case.votes.clear()
        self.open_cases.remove(case)
        a = case.claimant
        a.open_case = None
        a.next_attack_day = day + COOLDOWN_DAYS if a.next_attack_day >= 0 else -1

    def _sample(self, day: int, t: int) -> None:
        s = self.society()
        rules = self.rules
        karma = {a.idx: self.karma(a, t) for a in self.agents if a.joined}
        attackers = sum(k for i, k in karma.items() if self.agents[i].kind in ATTACKER_TYPES)
        total = sum(karma.values())
        total_karma = decay(s[L.S_KARMA], s[L.S_KARMA_AT], t, rules.decay_period_s,
                            rules.decay_ppm)
        pledged = sum(int(m[L.M_PLEDGED]) for m in
                      (self._member(a) for a in self.agents if a.joined) if m is not None)
        closed = [c for c in self.cases if c.kind == HONEST and c.outcome != "open"]
        self.samples.append({
            "month": day // 30 if day % 30 == 0 else round(day / 30, 2),
            "members": int(s[L.S_MEMBERS]),
            "total_karma": total_karma,
            "attacker_karma_share": attackers / total if total else 0.0,
            "escrow_total": int(s[L.S_ESCROW]),
            "charity_escrow_total": int(s[L.S_CHARITY]),
            "pledged_total": pledged,
            "escrow_idle_share": int(s[L.S_ESCROW]) / pledged if pledged else 0.0,
            "coverage_ratio": (int(s[L.S_ESCROW]) / (rules.benefit_ratio * total_karma)
                               if total_karma else 0.0),
            "honest_closed": len(closed),
            "honest_approved_share": (sum(c.outcome == "approved" for c in closed) / len(closed)
                                      if closed else 1.0),
            "honest_funded_share": (sum(c.received for c in closed)
                                    / max(1, sum(c.limit for c in closed)) if closed else 1.0),
            "karma": sorted(karma.values()),
        })

