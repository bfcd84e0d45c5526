"""The society model's parameters: the society's rules and the population's behaviour.

``Config`` holds everything a run depends on besides the seed; ``--rules k=v,...`` edits
the society's rules (names of protocol 4.1 and 11.2), ``--scenario FILE`` (TOML) edits the
behaviour below, and ``--sweep k=v1,v2`` runs a grid over rules. Every knob has a default
chosen so that the honest part of the society looks like a plausible mutual-aid group; the
assumptions are written out in docs/society-economics.md.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from consensus.errors import Rejected
from muxernode.ops import DEFAULT_RULES, RULE_NAMES_V2, Rules

__all__ = [
    "ATTACKER_TYPES",
    "DEFAULT_RULES",
    "RECOMMENDED_RULES",
    "Behaviour",
    "Config",
    "ConfigError",
    "load_scenario",
    "parse_rules",
    "parse_sweep",
    "rules_text",
    "with_rule",
]

MUX = 100_000  # units per MUX
ATTACKER_TYPES = ("charity", "fraudster", "opportunist", "ring", "sybil", "vote_buyer")
_DURATION_SUFFIX = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(ValueError):
    """Bad --rules, --sweep or scenario input: the message is the one-line error shown."""


@dataclass(frozen=True)
class Behaviour:
    """The population. Rates are per member per year; amounts in MUX; shares in [0, 1]."""

    # honest members
    monthly_pledge_median: float = 20.0  # MUX a month; sizes are lognormal around it
    monthly_pledge_sigma: float = 0.7
    standing_share: float = 0.7  # pledge through a standing pledge (op 13), the rest by hand
    manual_miss: float = 0.1  # a hand pledger forgets a month
    incident_rate: float = 0.10  # incidents per member per year
    loss_months: float = 20.0  # a loss is lognormal around this many monthly pledges
    loss_sigma: float = 0.8
    proxy_share: float = 0.03  # diligent members who vote on everything (low noise)
    lazy_share: float = 0.60  # delegate their vote to a proxy (op 14)
    vote_rate: float = 0.06  # an active member votes on a claim of the median size
    noise_min: float = 0.10  # per-member noise of judging evidence (a normal's sigma)
    noise_max: float = 0.30
    proxy_noise: float = 0.08
    give_share: float = 0.25  # at most this share of one's escrow to one claim
    givers_per_day: int = 30  # candidate givers drawn per claim and day, by escrow
    comment_rate: float = 0.2  # a claim gets a question and an answer (op 18)
    amend_rate: float = 0.1  # an honest claimant adds evidence before any vote (op 17)
    # evidence as members see it: legitimacy in [0, 1], judged against 0.5
    honest_evidence: float = 0.75
    fraud_evidence: float = 0.30
    preexisting_evidence: float = 0.40  # an opportunist's loss predates joining
    evidence_sigma: float = 0.12
    # attackers: share of the attackers' pledging each type gets (normalised)
    weights: dict[str, float] = field(default_factory=lambda: {t: 1.0 for t in ATTACKER_TYPES})
    attacker_means: float = 4.0  # an attacker pledges like this many median members
    ring_size: int = 8
    sybil_accounts: int = 5
    bribe_share: float = 0.3  # of the claim amount, paid off chain to bribed voters
    bribe_accept: float = 0.15  # a member approached takes the bribe
    bribe_targets: int = 40  # members approached, largest karma first
    withdraw_losing: bool = True  # attackers withdraw a losing claim to save the bond
    charity_rate: float = 2.0  # outside charity requests a month (half of them genuine)
    charity_amount: float = 200.0


@dataclass(frozen=True)
class Config:
    seed: int = 1
    members: int = 60
    months: int = 6
    attackers: float = 0.2  # share of the society's pledging (so of karma) by attackers
    rules: Rules = DEFAULT_RULES
    behaviour: Behaviour = field(default_factory=Behaviour)

    @property
    def days(self) -> int:
        return self.months * 30


def _value(name: str, text: str) -> Any:
    if name == "asset":
        return text
    t = text.strip().replace("_", "")
    mult = 1
    if name.endswith("_s") and t[-1:] in _DURATION_SUFFIX:
        mult, t = _DURATION_SUFFIX[t[-1]], t[:-1]
    elif name in ("claim_bond", "min_pledge") and t.upper().endswith("MUX"):
        mult, t = MUX, t[:-3]
    try:
        return int(t) * mult
    except ValueError:
        raise ConfigError(f"rule {name}: {text!r} is not an integer") from None


def parse_rules(text: str, base: Rules = DEFAULT_RULES) -> Rules:
    """``approval_bp=1000,observation_s=30d,claim_bond=50MUX`` over base, checked as the
    ledger checks a create_society's rules."""
    values = {n: getattr(base, n) for n in RULE_NAMES_V2}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or name not in values:
            raise ConfigError(f"--rules: {item!r} is not k=v with k one of "
                              f"{', '.join(RULE_NAMES_V2)}")
        values[name] = _value(name, raw)
    return _checked(values)


def _checked(values: dict[str, Any]) -> Rules:
    try:
        return Rules.from_obj([values[n] for n in RULE_NAMES_V2])
    except Rejected as exc:
        raise ConfigError(f"rules: {exc.message}") from None


def parse_sweep(items: tuple[str, ...]) -> list[tuple[str, list[Any]]]:
    """``--sweep approval_bp=100,300,1000`` (repeatable) -> [(name, [values])]."""
    out: list[tuple[str, list[Any]]] = []
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or name not in RULE_NAMES_V2 or name == "asset":
            raise ConfigError(f"--sweep: {item!r} is not k=v1,v2,... with k a rule name")
        values = [_value(name, v) for v in raw.split(",") if v.strip()]
        if not values:
            raise ConfigError(f"--sweep: {item!r} has no values")
        if any(n == name for n, _ in out):
            raise ConfigError(f"--sweep: {name} given twice")
        out.append((name, values))
    return out


def with_rule(rules: Rules, name: str, value: Any) -> Rules:
    values = {n: getattr(rules, n) for n in RULE_NAMES_V2}
    values[name] = value
    return _checked(values)


def rules_text(rules: Rules, base: Rules = DEFAULT_RULES) -> str:
    """The --rules argument that turns base into rules ("" when equal)."""
    return ",".join(f"{n}={getattr(rules, n)}" for n in RULE_NAMES_V2
                    if getattr(rules, n) != getattr(base, n))


def load_scenario(path: Path, base: Behaviour | None = None) -> Behaviour:
    """A TOML file of Behaviour fields; ``[weights]`` gives the attacker mix."""
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"--scenario {path.name}: {exc}") from None
    b = base or Behaviour()
    known = {f.name: f for f in fields(Behaviour)}
    changes: dict[str, Any] = {}
    for k, v in doc.items():
        if k not in known:
            raise ConfigError(f"--scenario {path.name}: unknown key {k!r}")
        cur = getattr(b, k)
        if k == "weights":
            if not isinstance(v, dict) or any(t not in ATTACKER_TYPES for t in v):
                raise ConfigError(f"--scenario {path.name}: weights are a table of "
                                  f"{', '.join(ATTACKER_TYPES)}")
            w = {t: 0.0 for t in ATTACKER_TYPES}
            w.update({t: float(x) for t, x in v.items()})
            changes[k] = w
        elif type(cur) is type(v) and type(v) in (bool, int):
            changes[k] = v
        elif isinstance(cur, float) and type(v) in (int, float):
            changes[k] = float(v)
        else:
            raise ConfigError(f"--scenario {path.name}: {k} must be like {cur!r}")
    return replace(b, **changes)


# The rules that met the targets in the runs of docs/society-economics.md (what
# report.md names when a run misses them): with a benefit ratio of 10 an opportunist buys
# the karma for a loss's limit with a fifth of the loss; at 5 it costs two fifths, more
# than the approvals it gets bring in.
RECOMMENDED_RULES = "benefit_ratio=5"
