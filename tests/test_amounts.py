"""MUX text <-> integer units (muxernode.amounts)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxernode.amounts import MAX_UNITS, UNITS_PER_MUX, format_mux, parse_mux


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("12.5", 1_250_000),
        ("0.00001", 1),
        ("100", 10_000_000),
        ("1", UNITS_PER_MUX),
        ("0", 0),
        ("0.0", 0),
        (".5", 50_000),
        ("7.", 700_000),
        ("  3.25\n", 325_000),
        ("007.10000", 710_000),
        ("92233720368547.75807", MAX_UNITS),
    ],
)
def test_parse(text: str, units: int) -> None:
    assert parse_mux(text) == units


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("-1", "negative"),
        ("-0.5", "negative"),
        ("1.000001", "at most 5"),
        ("1.000000", "at most 5"),  # trailing zeros past the 5th decimal are refused too
        ("0.123456789", "9 decimals"),
        ("abc", "not an amount"),
        ("1e5", "not an amount"),
        ("1,000", "not an amount"),
        ("1_000", "not an amount"),
        ("+1", "not an amount"),
        ("1.2.3", "not an amount"),
        (".", "not an amount"),
        ("0x10", "not an amount"),
        ("\u0661\u0662", "not an amount"),  # Arabic-Indic digits: int() takes them, we do not
        ("", "empty"),
        ("   ", "empty"),
        ("92233720368547.75808", "too large"),
        ("99999999999999999999", "too large"),
        ("1" * 100, "too long"),
    ],
)
def test_parse_refuses(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_mux(text)


def test_parse_positive() -> None:
    assert parse_mux("0.00001", positive=True) == 1
    for zero in ("0", "0.00000", ".0"):
        with pytest.raises(ValueError, match="more than zero"):
            parse_mux(zero, positive=True)


def test_parse_refuses_non_text() -> None:
    with pytest.raises(ValueError, match="must be text"):
        parse_mux(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("units", "text"),
    [
        (0, "0.00000"),
        (1, "0.00001"),
        (1_250_000, "12.50000"),
        (10_000_000, "100.00000"),
        (MAX_UNITS, "92233720368547.75807"),
        (-1, "-0.00001"),
    ],
)
def test_format(units: int, text: str) -> None:
    assert format_mux(units) == text


def test_format_refuses_non_int() -> None:
    with pytest.raises(TypeError):
        format_mux(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        format_mux(True)


@given(st.integers(min_value=0, max_value=MAX_UNITS))
def test_round_trip_units(units: int) -> None:
    text = format_mux(units)
    assert len(text.split(".")[1]) == 5
    assert parse_mux(text) == units


@given(
    st.integers(min_value=0, max_value=MAX_UNITS // UNITS_PER_MUX),
    st.text(alphabet="0123456789", max_size=5),
)
def test_round_trip_text(whole: int, frac: str) -> None:
    text = f"{whole}.{frac}" if frac else str(whole)
    units = whole * UNITS_PER_MUX + int(frac.ljust(5, "0"))
    if units > MAX_UNITS:
        with pytest.raises(ValueError, match="too large"):
            parse_mux(text)
        return
    assert parse_mux(text) == units
    assert format_mux(units) == f"{whole}.{frac.ljust(5, '0')}"


@given(st.text(max_size=40))
def test_parse_arbitrary_text(text: str) -> None:
    # Any input either parses into range or fails with ValueError, never anything else.
    try:
        units = parse_mux(text)
    except ValueError:
        return
    assert 0 <= units <= MAX_UNITS
