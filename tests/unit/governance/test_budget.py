"""Budgets: scopes, admission at the limit, thresholds, fail modes and the maximum-cost estimate."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.budget import (
    NOTHING,
    Action,
    Amount,
    Budget,
    BudgetError,
    BudgetScope,
    BudgetState,
    FailMode,
    admit,
    crossed_thresholds,
    estimate_max_cost,
    first_refusal,
    remaining_usd,
    request_attributes,
    unreachable,
    utilisation,
)
from costwarden.domain.money import quantize
from costwarden.domain.pricing import ComputePrice, PriceSheet, price
from costwarden.domain.usage import Usage
from costwarden.domain.window import Unit, Window

FAST = settings(max_examples=200, deadline=None, database=None)
JUNE_15 = 1_749_988_800.0  # 2025-06-15T12:00:00Z
MONTH = Window.calendar(Unit.MONTH, "Europe/Berlin")
ML = BudgetScope.of({"team": "ml", "deployment": "llama"})
CENTS = st.integers(min_value=0, max_value=20_000).map(lambda c: Decimal(c) / 100)


def budget(**overrides: object) -> Budget:
    fields: dict[str, object] = {"id": "ml-llama", "scope": ML, "window": MONTH, "limit_usd": Decimal(100)}
    fields.update(overrides)
    return Budget(**fields)  # type: ignore[arg-type]


def spent(usd: str, reserved: str = "0", tokens: int = 0, requests: int = 0) -> BudgetState:
    return BudgetState(Amount(Decimal(usd), tokens, requests), Amount(Decimal(reserved)))


def test_a_scope_matches_requests_with_all_its_attributes() -> None:
    attributes = request_attributes("k1", "ml", "chat", "prod", "llama", {"cost_center": "42"})
    assert ML.matches(attributes)
    assert BudgetScope().matches(attributes)
    assert BudgetScope.of({"tag.cost_center": "42", "environment": "prod"}).matches(attributes)
    assert not BudgetScope.of({"team": "ml", "deployment": "mistral"}).matches(attributes)
    assert not BudgetScope.of({"key_id": "k2"}).matches(attributes)
    assert str(ML) == "deployment=llama,team=ml"
    assert str(BudgetScope()) == "*"


def test_scopes_and_budgets_that_cannot_be_enforced_are_refused() -> None:
    with pytest.raises(BudgetError, match="unknown scope dimension 'colour'"):
        BudgetScope.of({"colour": "red"})
    with pytest.raises(BudgetError, match=r"unknown scope dimension 'tag\.'"):
        BudgetScope.of({"tag.": "x"})
    with pytest.raises(BudgetError, match="each dimension once"):
        BudgetScope((("team", "a"), ("team", "b")))
    with pytest.raises(BudgetError, match="limit_usd must be positive"):
        budget(limit_usd=Decimal(0))
    with pytest.raises(BudgetError, match="limit_tokens must be positive"):
        budget(limit_tokens=0)
    with pytest.raises(BudgetError, match="distinct positive percentages"):
        budget(thresholds=(50, 50))
    assert budget(thresholds=(100, 50)).thresholds == (50, 100)


def test_a_request_that_fits_is_admitted() -> None:
    decision = admit(budget(), spent("60", reserved="30"), Amount(Decimal(10), requests=1), JUNE_15)
    assert decision.admitted and decision.action is None and decision.retry_after == 0


def test_a_request_that_would_pass_the_limit_is_refused_naming_budget_window_and_reset() -> None:
    decision = admit(budget(), spent("60", reserved="30"), Amount(Decimal("10.01")), JUNE_15)
    assert not decision.admitted
    assert decision.action is Action.BLOCK and decision.reason == "usd"
    assert decision.reset_at == MONTH.reset_at(JUNE_15)
    assert decision.retry_after == int(decision.reset_at - JUNE_15)  # the instant is a whole second
    assert "budget 'ml-llama' (deployment=llama,team=ml; month, Europe/Berlin) is exhausted" in decision.message
    assert "$60.000000 spent, $30.000000 in flight, of $100.000000" in decision.message
    assert "resets at 2025-07-01T00:00:00+02:00" in decision.message


def test_an_exhausted_budget_refuses_even_free_requests() -> None:
    assert not admit(budget(), spent("100"), NOTHING, JUNE_15).admitted
    assert admit(budget(), spent("99.99"), NOTHING, JUNE_15).admitted


def test_alert_only_admits_but_reports_the_action() -> None:
    decision = admit(budget(action=Action.ALERT_ONLY), spent("100"), Amount(Decimal(1)), JUNE_15)
    assert decision.admitted and decision.action is Action.ALERT_ONLY and decision.reason == "usd"
    assert "is exhausted" in decision.message


def test_token_and_request_limits() -> None:
    limited = budget(limit_tokens=1000, limit_requests=10)
    assert admit(limited, spent("1", tokens=900, requests=5), Amount(Decimal(1), 100, 1), JUNE_15).admitted
    by_tokens = admit(limited, spent("1", tokens=900), Amount(Decimal(1), 101, 1), JUNE_15)
    assert by_tokens.reason == "tokens" and "900 tokens used, 0 in flight, of 1000" in by_tokens.message
    assert admit(limited, spent("1", requests=10), Amount(Decimal(0), 0, 1), JUNE_15).reason == "requests"


def test_the_fail_mode_decides_when_the_store_is_unreachable() -> None:
    open_ = unreachable(budget(), JUNE_15)
    assert open_.admitted and open_.reason == "state_store_unreachable"
    closed = unreachable(budget(fail_mode=FailMode.CLOSED), JUNE_15)
    assert not closed.admitted and "unreachable" in closed.message


def test_the_refusal_reported_is_the_one_that_resets_last() -> None:
    day = budget(id="daily", window=Window.calendar(Unit.DAY))
    decisions = [
        admit(budget(), spent("100"), NOTHING, JUNE_15),
        admit(day, spent("100"), NOTHING, JUNE_15),
        admit(budget(id="fine"), spent("1"), NOTHING, JUNE_15),
    ]
    refusal = first_refusal(decisions)
    assert refusal is not None and refusal.budget_id == "ml-llama"
    assert first_refusal(decisions[2:]) is None


@FAST
@given(steps=st.lists(CENTS, max_size=40))
def test_each_threshold_is_crossed_exactly_once_as_spend_grows(steps: list[Decimal]) -> None:
    limited = budget(thresholds=(50, 80, 100, 150))
    state = BudgetState()
    crossed: list[int] = []
    for usd in steps:
        after = BudgetState(state.spent + Amount(usd), state.reserved)
        crossed.extend(crossed_thresholds(limited, state, after))
        state = after
    assert crossed == sorted(crossed)
    assert crossed == [t for t in limited.thresholds if state.spent.usd * 100 >= limited.limit_usd * t]


def test_thresholds_count_any_limited_unit_and_utilisation_is_the_highest() -> None:
    limited = budget(limit_requests=10)
    assert crossed_thresholds(limited, spent("1", requests=4), spent("1", requests=5)) == (50,)
    assert utilisation(limited, spent("10", requests=8)) == Decimal("0.8")
    assert utilisation(budget(), spent("25")) == Decimal("0.25")
    assert remaining_usd(budget(), spent("60", reserved="30")) == Decimal(10)
    assert remaining_usd(budget(), spent("160")) == 0


def test_settle_replaces_the_hold_by_the_actual_and_releases_never_go_negative() -> None:
    held = Amount(Decimal(5), 500, 1)
    state = BudgetState().reserve(held).reserve(held)
    state = state.settle(held, Amount(Decimal(3), 300, 1))
    assert state == BudgetState(Amount(Decimal(3), 300, 1), held)
    assert state.release(held).release(held).reserved == NOTHING
    assert (Amount(Decimal(1)) - Amount(Decimal(2), 3, 4)) == NOTHING


SHEETS = st.builds(
    PriceSheet,
    input_per_1m=st.none() | CENTS,
    output_per_1m=st.none() | CENTS,
    cached_input_per_1m=st.none() | CENTS,
    per_request=st.none() | CENTS,
    per_item=st.none() | CENTS,
)


@FAST
@given(
    sheet=SHEETS,
    input_tokens=st.integers(0, 100_000),
    cached=st.integers(0, 100_000),
    max_output=st.integers(0, 10_000),
    output_share=st.floats(0, 1),
    items=st.integers(0, 50),
)
def test_a_bounded_estimate_is_never_below_the_actual_price(
    sheet: PriceSheet, input_tokens: int, cached: int, max_output: int, output_share: float, items: int
) -> None:
    estimate = estimate_max_cost(sheet, input_tokens, max_output, items)
    assert estimate.bounded and estimate.tokens == input_tokens + max_output
    usage = Usage(input_tokens, int(max_output * output_share), min(cached, input_tokens), items)
    assert price(sheet, usage) <= estimate.usd


def test_estimates_without_an_output_bound_or_with_compute_fall_back_to_the_cap() -> None:
    tokens = PriceSheet(input_per_1m=Decimal(2), output_per_1m=Decimal(8))
    exact = estimate_max_cost(tokens, 1000, 500)
    assert exact.usd == quantize(Decimal(1000 * 2 + 500 * 8) / 1_000_000) and exact.bounded
    unbounded = estimate_max_cost(tokens, 1000, None, cap=Decimal("0.05"))
    assert unbounded.usd == Decimal("0.05") and not unbounded.bounded
    free_output = estimate_max_cost(PriceSheet(input_per_1m=Decimal(2), per_request=Decimal("0.01")), 1000, None)
    assert free_output.bounded and free_output.usd == Decimal("0.012")
    compute = PriceSheet(compute=ComputePrice(Decimal(36), concurrency=2))
    p99 = estimate_max_cost(compute, 0, None, p99_seconds=2.0, cap=Decimal("0.001"))
    assert p99.usd == Decimal("0.01") and not p99.bounded  # 2 s of $36/h shared by 2
    assert estimate_max_cost(compute, 0, None, cap=Decimal("0.5")).usd == Decimal("0.5")
