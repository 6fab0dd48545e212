"""Money: nano-dollar quantisation, banker's rounding and the nano round trip."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.money import NANO, format_usd, from_nanos, quantize, to_nanos, usd_text

FAST = settings(max_examples=200, deadline=None, database=None)
# One billion USD either way, in nano-dollars: far beyond any single request or monthly total.
NANOS = st.integers(min_value=-(10**18), max_value=10**18)


def test_the_quantum_is_one_nano_dollar() -> None:
    assert Decimal("0.000000001") == NANO
    assert quantize(Decimal("1.23456789049")) == Decimal("1.234567890")
    assert quantize(Decimal("1.2345678905")) == Decimal("1.234567890")  # tie to even
    assert quantize(Decimal("1.2345678915")) == Decimal("1.234567892")  # tie to even
    assert quantize(Decimal(3)).as_tuple().exponent == -9


@pytest.mark.parametrize(
    ("amount", "nanos"),
    [
        ("0", 0),
        ("0.000000001", 1),
        ("0.0000000005", 0),  # half a nano rounds to the even neighbour, 0
        ("0.0000000015", 2),  # ... and here to 2
        ("0.0000000025", 2),
        ("-0.0000000015", -2),
        ("1.5", 1_500_000_000),
        ("123456.789012345", 123_456_789_012_345),
    ],
)
def test_to_nanos_rounds_half_even(amount: str, nanos: int) -> None:
    assert to_nanos(Decimal(amount)) == nanos


@FAST
@given(NANOS)
def test_nanos_round_trip(nanos: int) -> None:
    usd = from_nanos(nanos)
    assert usd == Decimal(nanos).scaleb(-9)
    assert usd.as_tuple().exponent == -9
    assert to_nanos(usd) == nanos


@FAST
@given(st.decimals(min_value=-(10**9), max_value=10**9, allow_nan=False, allow_infinity=False, places=14))
def test_to_nanos_equals_hand_rounding(amount: Decimal) -> None:
    expected = int((amount * 10**9).to_integral_value(rounding=ROUND_HALF_EVEN))
    assert to_nanos(amount) == expected
    assert from_nanos(to_nanos(amount)) == amount.quantize(NANO, rounding=ROUND_HALF_EVEN)


def test_format_usd() -> None:
    assert format_usd(Decimal("0.001234")) == "$0.001234"
    assert format_usd(Decimal("0.0000004")) == "$0.0000004"  # a small cost never reads as zero
    assert format_usd(Decimal("0.000000123")) == "$0.000000123"
    assert format_usd(Decimal("1.02E-7")) == "$0.000000102"
    assert format_usd(Decimal(0)) == "$0.000000"
    assert format_usd(Decimal("3"), places=0) == "$3"
    assert format_usd(Decimal("12.5"), places=2) == "$12.50"


# Amounts a ledger can hold: [0, 10^12) USD with nine places (one nano-dollar).
LEDGER_AMOUNTS = st.integers(min_value=0, max_value=10**21 - 1).map(lambda n: Decimal(n).scaleb(-9))
FIXED_POINT = re.compile(r"^-?\d+\.\d{9}$")


@FAST
@given(LEDGER_AMOUNTS)
def test_usd_text_is_fixed_point_and_exact(amount: Decimal) -> None:
    text = usd_text(amount)
    assert FIXED_POINT.match(text), text
    assert "E" not in text.upper()
    assert Decimal(text) == amount
    assert usd_text(Decimal(text)) == text  # a round trip through text is stable


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("1.02E-7"), "0.000000102"),
        (Decimal("2.0E-8"), "0.000000020"),
        (Decimal("0E-9"), "0.000000000"),
        (Decimal(0), "0.000000000"),
        (Decimal("-0"), "0.000000000"),  # never a signed zero
        (Decimal("-0.0000000004"), "0.000000000"),
        (Decimal("1E+3"), "1000.000000000"),
        (Decimal("0.0000000015"), "0.000000002"),  # quantised like the ledger (half even)
        (from_nanos(123_456_789_012_345), "123456.789012345"),
    ],
)
def test_usd_text_examples(amount: Decimal, text: str) -> None:
    assert usd_text(amount) == text


def test_the_text_of_an_amount_is_made_once_and_equal_amounts_share_it() -> None:
    from decimal import InvalidOperation

    text = usd_text(Decimal("0.000018000"))
    assert text == "0.000018000"
    assert usd_text(Decimal("0.000018")) is text and usd_text(Decimal("1.8E-5")) is text  # kept, not made again
    assert usd_text(Decimal("-0")) == usd_text(Decimal("0E-9")) == "0.000000000"
    for bad in (Decimal("sNaN"), Decimal("Infinity")):  # not kept: they fail as before
        with pytest.raises(InvalidOperation):
            usd_text(bad)
