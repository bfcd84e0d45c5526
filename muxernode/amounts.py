"""Amounts as text: integer units <-> whole units of an asset with its precision.

The chain only knows integer units (protocol section 1: at most 2**63 - 1). People think in
whole units: MUX has precision 5 (1 MUX = 100,000 units); a user-issued asset has its own
precision, 0..18 (protocol section 11.1: ``--amount 1.5`` of a precision-8 asset is
150,000,000 units). Karma is counted in the same units as the society's asset (a pledge of
10 MUX earns 5 karma), so it is shown and typed the same way.

``parse_units`` turns what a person types into units, exactly (no floats anywhere: 0.1 is
not a binary fraction), and ``format_units`` shows units with all of the precision's
decimals, so that two amounts line up and nothing is silently rounded. ``parse_mux`` and
``format_mux`` are the two for MUX. ``format_amount`` is the short form for sentences
(trailing zeros dropped, the symbol after it): "12.5 MUX".

Accepted text: ASCII digits with an optional point and at most ``precision`` decimals,
such as "100", "12.5", "0.00001", ".5" or "7."; surrounding whitespace is ignored. Refused,
each with its own message: a sign, more decimals than the precision (even trailing zeros:
"1.000000" of MUX is more precision than the chain has, so it is more likely a typo than
intent), anything else (exponents, thousands separators, non-ASCII digits) and amounts above
2**63 - 1 units.
"""

from __future__ import annotations

import re

__all__ = [
    "DECIMALS",
    "MAX_PRECISION",
    "MAX_UNITS",
    "UNITS_PER_MUX",
    "format_amount",
    "format_mux",
    "format_units",
    "parse_mux",
    "parse_units",
]

UNITS_PER_MUX = 100_000
DECIMALS = 5  # MUX's precision
MAX_PRECISION = 18  # an asset's precision is 0..18 (section 11.1)
MAX_UNITS = 2**63 - 1

# [0-9], not \d: \d also matches other scripts' digits, which int() would accept.
_AMOUNT = re.compile(r"(?P<whole>[0-9]*)(?:\.(?P<frac>[0-9]*))?")
# The longest text that can be in range: 19 digits + point + 18 decimals, plus leading
# zeros, which are harmless; the cap only keeps int() away from megabyte strings.
_MAX_TEXT = 64


def _check_precision(precision: int) -> None:
    if type(precision) is not int or not 0 <= precision <= MAX_PRECISION:
        raise ValueError(f"a precision is an integer 0..{MAX_PRECISION}, not {precision!r}")


def parse_units(
    text: str, precision: int, *, positive: bool = False, unit: str = "MUX"
) -> int:
    """Units in an amount of ``precision`` decimals written as text; ValueError with a
    readable reason if invalid. ``unit`` names the thing in the messages ("MUX", "BTC",
    "karma").

    ``positive=True`` also refuses zero (the ops of section 3 need amounts > 0)."""
    _check_precision(precision)
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
        example = "12.5 or " + format_amount(1, precision, "").strip() if precision else "12"
        raise ValueError(
            f"not an amount: {text!r} (write {unit} like {example}, digits"
            f"{' and one point' if precision else ' only'})"
        )
    frac = m["frac"] or ""
    if len(frac) > precision:
        raise ValueError(
            f"the amount has {len(frac)} decimals, at most {precision} are allowed for "
            f"{unit}: {text!r}"
        )
    units: int = int(m["whole"] or "0") * 10**precision + int(frac.ljust(precision, "0") or "0")
    if units > MAX_UNITS:
        raise ValueError(
            f"the amount is too large: {text!r} (at most "
            f"{format_units(MAX_UNITS, precision)} {unit})"
        )
    if positive and units == 0:
        raise ValueError("the amount must be more than zero")
    return units


def format_units(units: int, precision: int) -> str:
    """Units with exactly ``precision`` decimals: (1250000, 5) -> "12.50000"; (7, 0) -> "7"."""
    if type(units) is not int:
        raise TypeError(f"units must be an int, not {type(units).__name__}")
    _check_precision(precision)
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**precision)
    return f"{sign}{whole}.{frac:0{precision}d}" if precision else f"{sign}{whole}"


def format_amount(units: int, precision: int, symbol: str) -> str:
    """The short form for sentences: trailing zeros dropped, then the symbol:
    (1250000, 5, "MUX") -> "12.5 MUX"; (100000, 5, "MUX") -> "1 MUX"."""
    text = format_units(units, precision)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} {symbol}" if symbol else text


def parse_mux(text: str, *, positive: bool = False) -> int:
    """``parse_units`` for MUX (5 decimals)."""
    return parse_units(text, DECIMALS, positive=positive, unit="MUX")


def format_mux(units: int) -> str:
    """Units as MUX with exactly 5 decimals: 1250000 -> "12.50000"."""
    return format_units(units, DECIMALS)
