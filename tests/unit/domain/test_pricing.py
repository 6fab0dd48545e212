"""Pricing: every cost equals the hand-computed Decimal, to the nano-dollar.

The expected values are computed here independently, in a 100-digit Decimal context, from the
definitions: tokens x price / 1M per token kind, + per request, + per item x items,
+ seconds x hourly / 3600 / concurrency, quantised once to 1e-9 USD with ROUND_HALF_EVEN.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.money import NANO, ZERO
from costwarden.domain.pricing import FREE, ComputePrice, PriceSheet, price
from costwarden.domain.usage import Usage

FAST = settings(max_examples=120, deadline=None, database=None)

TOKENS = st.integers(min_value=0, max_value=10_000_000)
# Prices up to $1000 with up to 6 decimals, e.g. 0.15 or 2.500001 (never via float).
PRICES = st.integers(min_value=0, max_value=1_000_000_000).map(lambda n: Decimal(n).scaleb(-6))
OPTIONAL_PRICES = st.none() | PRICES
MICROSECONDS = st.integers(min_value=0, max_value=3_600_000_000)  # up to one hour, to the microsecond
HOURLY = st.integers(min_value=0, max_value=1_000_000).map(lambda n: Decimal(n).scaleb(-4))  # <= $100/h
CONCURRENCY = st.integers(min_value=1, max_value=64)


def exact(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("1e-9"), rounding=ROUND_HALF_EVEN)


def expected_cost(
    sheet: PriceSheet, input_tokens: int, output_tokens: int, cached_tokens: int, items: int, micros: int
) -> Decimal:
    """The cost from the definitions, in a context wide enough that nothing rounds before the end."""
    with localcontext() as ctx:
        ctx.prec = 100
        cached = min(cached_tokens, input_tokens)
        input_price = sheet.input_per_1m if sheet.input_per_1m is not None else ZERO
        cached_price = sheet.cached_input_per_1m if sheet.cached_input_per_1m is not None else input_price
        output_price = sheet.output_per_1m if sheet.output_per_1m is not None else ZERO
        total = (
            Decimal(input_tokens - cached) * input_price / Decimal(1_000_000)
            + Decimal(cached) * cached_price / Decimal(1_000_000)
            + Decimal(output_tokens) * output_price / Decimal(1_000_000)
        )
        if sheet.per_request is not None:
            total += sheet.per_request
        if sheet.per_item is not None:
            total += sheet.per_item * items
        if sheet.compute is not None:
            seconds = Decimal(micros) / Decimal(1_000_000)
            total += seconds * sheet.compute.hourly_usd / Decimal(3600) / Decimal(sheet.compute.concurrency)
        return exact(total)


@dataclass(frozen=True)
class Case:
    sheet: PriceSheet
    usage: Usage
    micros: int


@st.composite
def cases(draw: st.DrawFn) -> Case:
    compute = draw(st.none() | st.builds(ComputePrice, HOURLY, CONCURRENCY))
    sheet = PriceSheet(
        input_per_1m=draw(OPTIONAL_PRICES),
        output_per_1m=draw(OPTIONAL_PRICES),
        cached_input_per_1m=draw(OPTIONAL_PRICES),
        per_request=draw(OPTIONAL_PRICES),
        per_item=draw(OPTIONAL_PRICES),
        compute=compute,
    )
    micros = draw(MICROSECONDS)
    usage = Usage(
        input_tokens=draw(TOKENS),
        output_tokens=draw(TOKENS),
        cached_tokens=draw(TOKENS),
        items=draw(st.integers(min_value=0, max_value=100_000)),
        upstream_seconds=micros / 1_000_000,
    )
    return Case(sheet, usage, micros)


def cost_of(case: Case) -> Decimal:
    u = case.usage
    return expected_cost(case.sheet, u.input_tokens, u.output_tokens, u.cached_tokens, u.items, case.micros)


@FAST
@given(cases())
def test_cost_is_the_hand_computed_decimal(case: Case) -> None:
    got = price(case.sheet, case.usage)
    assert isinstance(got, Decimal)
    assert got == cost_of(case)
    assert got.as_tuple().exponent == -9  # quantised to the ledger's quantum


@FAST
@given(TOKENS, TOKENS, TOKENS, PRICES, PRICES, PRICES)
def test_tokens_only(
    input_tokens: int, output_tokens: int, cached_tokens: int, p_in: Decimal, p_out: Decimal, p_cached: Decimal
) -> None:
    sheet = PriceSheet(input_per_1m=p_in, output_per_1m=p_out, cached_input_per_1m=p_cached)
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens, cached_tokens=cached_tokens)
    cached = min(cached_tokens, input_tokens)
    hand = exact((Decimal(input_tokens - cached) * p_in + cached * p_cached + output_tokens * p_out) / 10**6)
    assert price(sheet, usage) == hand


@FAST
@given(TOKENS, TOKENS, PRICES, PRICES)
def test_cached_tokens_are_billed_at_the_cached_price(
    input_tokens: int, cached_tokens: int, p_in: Decimal, p_cached: Decimal
) -> None:
    sheet = PriceSheet(input_per_1m=p_in, cached_input_per_1m=p_cached)
    usage = Usage(input_tokens=input_tokens, cached_tokens=cached_tokens)
    billed_cached = min(input_tokens, cached_tokens)  # never more cached than input
    expected = exact((Decimal(input_tokens - billed_cached) * p_in + billed_cached * p_cached) / 10**6)
    assert price(sheet, usage) == expected
    # Reporting more cached tokens than input tokens never costs more than "all input was cached".
    all_cached = Usage(input_tokens=input_tokens, cached_tokens=input_tokens)
    assert price(sheet, Usage(input_tokens=input_tokens, cached_tokens=input_tokens + 5)) == price(sheet, all_cached)


def test_cached_price_defaults_to_the_input_price() -> None:
    sheet = PriceSheet(input_per_1m=Decimal("2.50"))
    usage = Usage(input_tokens=1000, cached_tokens=400)
    assert price(sheet, usage) == Decimal("0.002500000")


def test_cached_tokens_are_free_when_the_cached_price_is_zero() -> None:
    sheet = PriceSheet(input_per_1m=Decimal("3"), cached_input_per_1m=Decimal(0))
    assert price(sheet, Usage(input_tokens=1000, cached_tokens=1000)) == ZERO
    assert price(sheet, Usage(input_tokens=1000, cached_tokens=250)) == Decimal("0.002250000")


def test_a_worked_example() -> None:
    # 1234 input (200 cached) + 567 output on $0.15 / $0.075 / $0.60 per 1M, + $0.0001 per request.
    sheet = PriceSheet(
        input_per_1m=Decimal("0.15"),
        cached_input_per_1m=Decimal("0.075"),
        output_per_1m=Decimal("0.60"),
        per_request=Decimal("0.0001"),
    )
    usage = Usage(input_tokens=1234, output_tokens=567, cached_tokens=200)
    # 1034*0.15 + 200*0.075 + 567*0.60 = 155.1 + 15 + 340.2 = 510.3 -> /1M = 0.0005103
    assert price(sheet, usage) == Decimal("0.000610300")


@FAST
@given(PRICES, PRICES, st.integers(min_value=0, max_value=100_000))
def test_per_request_and_per_item(per_request: Decimal, per_item: Decimal, items: int) -> None:
    sheet = PriceSheet(per_request=per_request, per_item=per_item)
    assert price(sheet, Usage(items=items)) == exact(per_request + per_item * items)


@FAST
@given(MICROSECONDS, HOURLY, CONCURRENCY)
def test_compute_seconds(micros: int, hourly: Decimal, concurrency: int) -> None:
    sheet = PriceSheet(compute=ComputePrice(hourly, concurrency))
    usage = Usage(upstream_seconds=micros / 1_000_000)
    with localcontext() as ctx:
        ctx.prec = 100
        hand = Decimal(micros) / 10**6 * hourly / 3600 / concurrency
    assert price(sheet, usage) == exact(hand)


def test_compute_worked_example() -> None:
    # 1.5 s on a $3.60/h replica shared by 4 requests: 1.5 * 3.6 / 3600 / 4 = 0.000375
    sheet = PriceSheet(compute=ComputePrice(Decimal("3.60"), concurrency=4))
    assert price(sheet, Usage(upstream_seconds=1.5)) == Decimal("0.000375000")


@settings(FAST, max_examples=30)
@given(cases())
def test_a_request_not_served_costs_nothing(case: Case) -> None:
    assert price(case.sheet, case.usage, served=False) == ZERO


def test_the_free_sheet_costs_nothing() -> None:
    usage = Usage(input_tokens=10**6, output_tokens=10**6, items=9, upstream_seconds=12.0)
    assert price(FREE, usage) == ZERO
    assert FREE.basis == "free"


def _restricted(sheet: PriceSheet, bases: set[str]) -> PriceSheet:
    """The part of `sheet` priced on the given bases only."""
    tokens = "tokens" in bases
    return PriceSheet(
        input_per_1m=sheet.input_per_1m if tokens else None,
        output_per_1m=sheet.output_per_1m if tokens else None,
        cached_input_per_1m=sheet.cached_input_per_1m if tokens else None,
        per_request=sheet.per_request if "request" in bases else None,
        per_item=sheet.per_item if "item" in bases else None,
        compute=sheet.compute if "compute" in bases else None,
    )


BASES = ("tokens", "request", "item", "compute")


@FAST
@given(cases(), st.lists(st.sampled_from(BASES), min_size=2, max_size=2, unique=True))
def test_cost_is_additive_over_bases(case: Case, pair: list[str]) -> None:
    """A sheet of two bases costs the sum of its two single-basis sheets, within one quantum each."""
    both = _restricted(case.sheet, set(pair))
    together = price(both, case.usage)
    apart = price(_restricted(case.sheet, {pair[0]}), case.usage) + price(
        _restricted(case.sheet, {pair[1]}), case.usage
    )
    assert abs(together - apart) <= NANO  # each single-basis cost is off by at most half a quantum


@FAST
@given(cases())
def test_cost_of_all_bases_is_the_sum_of_the_parts(case: Case) -> None:
    apart = sum((price(_restricted(case.sheet, {b}), case.usage) for b in BASES), ZERO)
    assert abs(price(case.sheet, case.usage) - apart) <= 2 * NANO  # four halves of a quantum


@pytest.mark.parametrize(
    ("sheet", "basis"),
    [
        (PriceSheet(), "free"),
        (PriceSheet(input_per_1m=Decimal(1)), "tokens"),
        (PriceSheet(output_per_1m=Decimal(0)), "tokens"),  # a zero price is still a basis
        (PriceSheet(cached_input_per_1m=Decimal("0.5")), "tokens"),
        (PriceSheet(per_request=Decimal("0.01")), "request"),
        (PriceSheet(per_item=Decimal("0.001")), "item"),
        (PriceSheet(compute=ComputePrice(Decimal("2.0"))), "compute"),
        (PriceSheet(input_per_1m=Decimal(1), per_request=Decimal(1)), "tokens+request"),
        (
            PriceSheet(
                input_per_1m=Decimal(1),
                per_request=Decimal(1),
                per_item=Decimal(1),
                compute=ComputePrice(Decimal(1), 2),
            ),
            "tokens+request+item+compute",
        ),
        (PriceSheet(per_item=Decimal(1), compute=ComputePrice(Decimal(1))), "item+compute"),
    ],
)
def test_basis(sheet: PriceSheet, basis: str) -> None:
    assert sheet.basis == basis
