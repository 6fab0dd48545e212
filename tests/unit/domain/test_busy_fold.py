"""The exact busy-time sweep and its hourly folds (property tests): the sweep equals a brute-force
split by elementary segments, does not depend on record order, and the folded hours of any window
add up to a single sweep over it, integer for integer."""

from __future__ import annotations

import random
from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.busy import NS, IntervalSet, add_profile, busy_time, profile, request_interval, to_ns
from costwarden.domain.busy_fold import ALL_TEAMS, HOUR, fold_hours

BASE = 1_800_000_000

intervals_st = st.lists(
    st.tuples(st.floats(-50, 150), st.floats(0, 80), st.integers(0, 2)),
    max_size=30,
)


def _brute(items: list[tuple[float, float, int]], lo: float, hi: float, replicas: int) -> dict[int, float]:
    points = sorted({min(max(t, lo), hi) for s, length, _ in items for t in (s, s + length)} | {lo, hi})
    shares: dict[int, float] = {g: 0.0 for _, _, g in items}
    for a, b in pairwise(points):
        mid = (a + b) / 2
        live = [g for s, length, g in items if s < mid < s + length]
        for g in live:
            shares[g] += (b - a) * min(len(live), replicas) / len(live)
    return shares


@given(items=intervals_st, replicas=st.integers(1, 4))
def test_the_exact_sweep_is_the_brute_force_split(items: list[tuple[float, float, int]], replicas: int) -> None:
    ints = IntervalSet(0.0, 100.0)
    for start, length, group in items:
        ints.add(start, start + length, group)
    busy = busy_time(ints, replicas)
    expected = _brute([i for i in items if i[0] + i[1] > 0 and i[0] < 100], 0.0, 100.0, replicas)
    for group, seconds in expected.items():
        assert busy.by_group.get(group, 0.0) == pytest.approx(seconds, abs=1e-6)
    assert busy.total == pytest.approx(sum(expected.values()), abs=1e-6)


@given(items=intervals_st, replicas=st.integers(1, 4), seed=st.integers(0, 99))
def test_the_sweep_does_not_depend_on_record_order(
    items: list[tuple[float, float, int]], replicas: int, seed: int
) -> None:
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    results = []
    for order in (items, shuffled):
        ints = IntervalSet(0.0, 100.0)
        for start, length, group in order:
            ints.add(start, start + length, group)
        results.append(busy_time(ints, replicas))
    assert results[0] == results[1]  # floats rounded once from the same exact rationals


rows_st = st.lists(
    st.tuples(
        st.floats(0, 4 * HOUR),  # started, seconds after BASE
        st.floats(0, 2),  # gateway time before the upstream call
        st.one_of(st.just(0.0), st.floats(0, 1500), st.just(-3.0)),  # upstream seconds
        st.sampled_from(["a", "b", None]),
        st.sampled_from(["d1", "d2"]),
    ),
    max_size=40,
)


@settings(max_examples=200)
@given(rows=rows_st)
def test_folded_hours_add_up_to_one_sweep_over_the_window(
    rows: list[tuple[float, float, float, str | None, str]],
) -> None:
    horizon = 600.0
    ledger = [
        (dep, BASE + began, BASE + began + before + max(up, 0.0), up * 1000, 7, team)
        for began, before, up, team, dep in rows
    ]
    cells = fold_hours(ledger, BASE, BASE + 5 * HOUR, horizon)
    for dep in ("d1", "d2"):
        for team in ("a", "b", "(none)"):
            whole = IntervalSet(BASE, BASE + 5 * HOUR)
            owned = 0
            for d, began, ended, up, _, t in ledger:
                span = request_interval(began, ended, up, horizon)
                if d == dep and (t or "(none)") == team and span is not None:
                    whole.add_ns(*span, 0)
                    owned += span[1] >= span[0] and BASE * NS <= span[0] < (BASE + 5 * HOUR) * NS
            folded: dict[tuple[int, int], int] = {}
            requests = 0
            for (_, d, t), cell in cells.items():
                if d == dep and t == team:
                    add_profile(folded, {(0, k): ns for k, ns in cell.busy.items()})
                    requests += cell.requests
            assert requests == owned
            # a team's own profile is part of the deployment's (k counts every team): check the sums
            assert sum(folded.values()) == sum(e - s for s, e in zip(whole.starts, whole.ends, strict=True))
        every: dict[tuple[int, int], int] = {}
        for (_, d, t), cell in cells.items():
            if d == dep and t == ALL_TEAMS:
                add_profile(every, {(0, k): ns for k, ns in cell.busy.items()})
        ints = IntervalSet(BASE, BASE + 5 * HOUR)
        for d, began, ended, up, _, _ in ledger:
            span = request_interval(began, ended, up, horizon)
            if d == dep and span is not None:
                ints.add_ns(*span, 0)
        [single] = profile(ints.starts, ints.ends, ints.groups, [BASE * NS, (BASE + 5 * HOUR) * NS])
        assert every == single


def test_a_request_counts_within_the_horizon_of_its_start_and_nan_is_dropped() -> None:
    assert request_interval(BASE, BASE + 1000, 1_000_000, 600) == (BASE * NS, (BASE + 600) * NS)
    assert request_interval(BASE, BASE + 10, 20_000, 600) == (BASE * NS, (BASE + 10) * NS)  # not before its start
    assert request_interval(BASE, BASE + 10, 4_000, 600) == ((BASE + 6) * NS, (BASE + 10) * NS)
    assert request_interval(BASE, float("nan"), 4_000, 600) is None


def test_epoch_times_become_nanoseconds_exactly() -> None:
    for t in (1795874279.080824, 1800000000.1, 0.3, 1e-9):
        assert to_ns(t) == round(Fraction(t) * NS)
