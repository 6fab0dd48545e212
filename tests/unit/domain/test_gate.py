"""The gate: cost compared exactly, latency by a bootstrap interval of the ratio of medians."""

from __future__ import annotations

import random
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain.gate import Verdict, bootstrap_ratio, cost_check, error_rate_check, latency_check, overall

TEN = Decimal("0.10")
RUNS = st.lists(st.floats(1.0, 1000.0), min_size=1, max_size=12)


@given(RUNS, st.integers(0, 2**32))
def test_identical_runs_always_pass(runs: list[float], seed: int) -> None:
    finding = latency_check("p99", runs, list(runs), TEN, random.Random(seed))
    assert finding.verdict is Verdict.PASS


@given(
    st.floats(1.0, 1000.0),
    st.lists(st.floats(-0.05, 0.05), min_size=1, max_size=12),
    st.floats(1.25, 10.0),
    st.integers(0, 2**32),
)
def test_runs_slower_by_more_than_the_threshold_and_the_noise_fail(
    level: float, noise: list[float], factor: float, seed: int
) -> None:
    base = [level * (1 + e) for e in noise]
    slower = [level * factor * (1 - e) for e in noise]
    assert latency_check("p99", base, slower, TEN, random.Random(seed)).verdict is Verdict.FAIL


@given(RUNS, RUNS, st.integers(0, 2**32))
def test_the_interval_holds_the_point_ratio(base: list[float], cur: list[float], seed: int) -> None:
    interval = bootstrap_ratio(base, cur, random.Random(seed), resamples=200)
    assert interval.low <= interval.point * (1 + 1e-12) and interval.point <= interval.high * (1 + 1e-12)


def test_noise_within_the_threshold_passes_and_one_outlier_does_not_fail() -> None:
    base = [100.0, 104.0, 98.0, 101.0, 99.0]
    cur = [103.0, 97.0, 180.0, 102.0, 100.0]  # one noisy run: the median ignores it
    assert latency_check("p99", base, cur, TEN, random.Random(0)).verdict is Verdict.PASS


@given(st.decimals(Decimal("0.000001"), Decimal(100), places=6), st.decimals(Decimal(0), Decimal("0.2"), places=4))
def test_cost_fails_exactly_above_the_threshold(base: Decimal, increase: Decimal) -> None:
    at_limit = base * (1 + increase)
    assert cost_check("cost", base, at_limit, increase).verdict is Verdict.PASS
    assert cost_check("cost", base, at_limit + Decimal("0.000000001"), increase).verdict is Verdict.FAIL


def test_cost_from_zero_fails_and_unpriced_is_skipped() -> None:
    assert cost_check("cost", Decimal(0), Decimal("0.000000001"), TEN).verdict is Verdict.FAIL
    assert cost_check("cost", None, Decimal(1), TEN).verdict is Verdict.SKIP


def test_error_rate_and_the_overall_verdict() -> None:
    ok = error_rate_check(5, 1000, Decimal("0.005"))
    bad = error_rate_check(6, 1000, Decimal("0.005"))
    assert ok.verdict is Verdict.PASS and bad.verdict is Verdict.FAIL
    assert error_rate_check(0, 0, Decimal("0.005")).verdict is Verdict.FAIL  # nothing was served
    assert overall([ok]) is Verdict.PASS and overall([ok, bad]) is Verdict.FAIL


def test_a_zero_baseline_is_skipped_not_divided_by() -> None:
    finding = latency_check("p99", [0.0, 1.0], [1.0, 1.0], TEN, random.Random(0))
    assert finding.verdict is Verdict.SKIP
