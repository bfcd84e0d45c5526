"""MUX amounts as text (protocol section 1: 1 MUX = 100,000 units, at most 2**63 - 1 units).

The chain only knows integer units; people think in MUX. ``parse_mux`` turns what a person
types into units, exactly (no floats anywhere: 0.1 is not a binary fraction), and
``format_mux`` shows units as MUX with all five decimals, so that two amounts line up and
nothing is silently rounded.

Accepted text: ASCII digits with an optional point and at most 5 decimals, such as "100",
"12.5", "0.00001", ".5" or "7."; surrounding whitespace is ignored. Refused, each with its
own message: a sign, more than 5 decimals (even trailing zeros: "1.000000" is more precision
than the chain has, so it is more likely a typo than intent), anything else (exponents,
thousands separators, non-ASCII digits) and amounts above 2**63 - 1 units.
"""

from __future__ import annotations

import re

__all__ = [
    "DECIMALS",
    "MAX_UNITS",
    "UNITS_PER_MUX",
    "format_mux",
    "parse_mux",
]

UNITS_PER_MUX = 100_000
DECIMALS = 5
MAX_UNITS = 2**63 - 1

# [0-9], not \d: \d also matches other scripts' digits, which int() would accept.
_AMOUNT = re.compile(r"(?P<whole>[0-9]*)(?:\.(?P<frac>[0-9]*))?")
# The longest text that can be in range: 14 whole digits + point + 5 decimals, plus
# leading zeros, which are harmless; the cap only keeps int() away from megabyte strings.
_MAX_TEXT = 64


def parse_mux(text: str, *, positive: bool = False) -> int:
    """Units in a MUX amount written as text; ValueError with a readable reason if invalid.

    ``positive=True`` also refuses zero (the ops of section 3 need amounts > 0)."""
    if not isinstance(text, str):
        raise ValueError(f"an amount must be text, not {type(text).__name__}")
    s = text.strip()
    if not s:
        raise ValueError("the amount is empty")
    if s.startswith("-"):
        raise ValueError(f"the amount cannot be negative: {text!r}")
    if len(s) > _MAX_TEXT:
        raise ValueError(f"the amount is too long to be valid ({len(s)} characters)")
    m = _AMOUNT.fullmatch(s)
    if m is None or (not m["whole"] and not m["frac"]):
        raise ValueError(
            f"not an amount: {text!r} (write MUX like 12.5 or 0.00001, digits and one point)"
        )
    frac = m["frac"] or ""
    if len(frac) > DECIMALS:
        raise ValueError(
            f"the amount has {len(frac)} decimals, at most {DECIMALS} are allowed: {text!r}"
        )
    units = int(m["whole"] or "0") * UNITS_PER_MUX + int(frac.ljust(DECIMALS, "0"))
    if units > MAX_UNITS:
        raise ValueError(f"the amount is too large: {text!r} (at most {format_mux(MAX_UNITS)} MUX)")
    if positive and units == 0:
        raise ValueError("the amount must be more than zero")
    return units


def format_mux(units: int) -> str:
    """Units as MUX with exactly 5 decimals: 1250000 -> "12.50000"."""
    if type(units) is not int:
        raise TypeError(f"units must be an int, not {type(units).__name__}")
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), UNITS_PER_MUX)
    return f"{sign}{whole}.{frac:0{DECIMALS}d}"
