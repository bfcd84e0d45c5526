"""Amounts of any precision (muxernode.amounts.parse_units / format_units / format_amount):
user-issued assets have 0..18 decimals (protocol section 11.1), karma shares its society's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxernode.amounts import (
    MAX_UNITS,
    format_amount,
    format_mux,
    format_units,
    parse_mux,
    parse_units,
)


@pytest.mark.parametrize(
    ("text", "precision", "units"),
    [
        ("1.5", 8, 150_000_000),
        ("0.00000001", 8, 1),
        ("21000000", 8, 2_100_000_000_000_000),
        ("7", 0, 7),
        ("7.", 0, 7),
        ("9223372036854775807", 0, MAX_UNITS),
        ("9.223372036854775807", 18, MAX_UNITS),
        ("2.5", 5, 250_000),
    ],
)
def test_parse_units(text: str, precision: int, units: int) -> None:
    assert parse_units(text, precision) == units


@pytest.mark.parametrize(
    ("text", "precision", "words"),
    [
        ("1.5", 0, "at most 0 are allowed for BTC"),
        ("0.000000001", 8, "9 decimals, at most 8"),
        ("9223372036854775808", 0, "too large"),
        ("10", 18, "too large"),
        ("x", 0, "write BTC like 12, digits only"),
        ("x", 8, "write BTC like 12.5 or 0.00000001"),
    ],
)
def test_parse_units_refuses(text: str, precision: int, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_units(text, precision, unit="BTC")


def test_bad_precision() -> None:
    for bad in (-1, 19, True):
        with pytest.raises(ValueError, match="precision"):
            parse_units("1", bad)
        with pytest.raises(ValueError, match="precision"):
            format_units(1, bad)


@pytest.mark.parametrize(
    ("units", "precision", "text", "short"),
    [
        (150_000_000, 8, "1.50000000", "1.5 BTC"),
        (7, 0, "7", "7 BTC"),
        (1, 18, "0.000000000000000001", "0.000000000000000001 BTC"),
        (0, 3, "0.000", "0 BTC"),
        (100_000_000, 8, "1.00000000", "1 BTC"),
    ],
)
def test_format(units: int, precision: int, text: str, short: str) -> None:
    assert format_units(units, precision) == text
    assert format_amount(units, precision, "BTC") == short


def test_mux_is_precision_5() -> None:
    assert format_mux(1_250_000) == format_units(1_250_000, 5) == "12.50000"
    assert format_amount(1_250_000, 5, "MUX") == "12.5 MUX"
    assert parse_mux("12.5") == parse_units("12.5", 5)


@given(st.integers(0, MAX_UNITS), st.integers(0, 18))
def test_round_trip(units: int, precision: int) -> None:
    assert parse_units(format_units(units, precision), precision) == units
    assert parse_units(format_amount(units, precision, ""), precision) == units
