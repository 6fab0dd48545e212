"""`IntervalGatherer.add_rows` (a page of ledger rows, the per-row work inlined) gives exactly what
`add_request` row by row gives: the same usages, requests, tokens and counts, for any rows: NaN and
infinite times, backwards and zero-length intervals, longer than the horizon, outside the window,
deployments without `compute:`, None and "" labels, with and without a folded stretch."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.allocation_input import IntervalGatherer, Provision
from costwarden.domain.hardware import HardwareProfile

START = 1_800_000_000.0
END = START + 4 * 3600
BOX = HardwareProfile("box", Decimal("3.72"), "GPU", 1, vcpus=8)
PROVISIONS = {"a": Provision(BOX, 1), "b": Provision(BOX, 3)}
times = st.one_of(
    st.floats(START - 900, END + 900, allow_nan=False),
    st.sampled_from([START, END, START + 3600, START + 7200, float("nan"), float("inf"), -float("inf")]),
)
rows = st.tuples(
    st.sampled_from(["a", "b", "no-compute"]),
    times,  # started_at
    times,  # ended_at
    st.one_of(st.floats(0, 2_000_000, allow_nan=False), st.just(float("nan")), st.just(0.0)),  # upstream_ms
    st.integers(0, 10_000),  # tokens
    st.sampled_from(["search", "ads", "", None]),  # team
    st.sampled_from(["p1", None]),  # project
)


def _gather(folded: tuple[int, int] | None) -> IntervalGatherer:
    return IntervalGatherer(START, END, ("team", "project"), PROVISIONS, folded)


def _state(gatherer: IntervalGatherer) -> tuple[Any, ...]:
    return (gatherer.usages(), gatherer.seen, gatherer.skipped, gatherer.dropped)


@settings(max_examples=150, deadline=None)
@given(st.lists(rows, max_size=60), st.sampled_from([0.0, 600.0, 86400.0]), st.booleans())
def test_a_page_at_once_is_the_same_as_row_by_row(page: list[tuple[Any, ...]], horizon: float, fold: bool) -> None:
    folded = (int(START) + 3600, int(START) + 7200) if fold else None
    one, many = _gather(folded), _gather(folded)
    for deployment, started, ended, upstream_ms, tokens, *labels in page:
        one.add_request(deployment, started, ended, upstream_ms, horizon, tuple(labels), tokens)
    many.add_rows(page, horizon)
    assert _state(many) == _state(one)
