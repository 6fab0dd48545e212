"""Rollup cells and window plans: every instant of a window is read exactly once, from the
coarsest whole bucket that fits, and buckets are exact at their edges."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costwarden.domain import latency_histogram
from costwarden.domain.money import to_nanos
from costwarden.domain.record import Outcome, UsageRecord
from costwarden.domain.report import GROUP_DIMENSIONS, SpendQuery
from costwarden.domain.rollup import (
    BASE_CUBES,
    CUBES,
    DAY,
    DEPLOYMENTS,
    DERIVED,
    HOUR,
    KEY_TOTALS,
    KEYS,
    MINUTE,
    ORG,
    QUARTER_DAY,
    SUMS,
    TEAMS,
    WEEK,
    Plan,
    bucket_start,
    collect,
    cube_for,
    plan,
)

BASE = 1_800_000_000  # not a UTC day start (20,833.3 days): hour, minute and day edges all differ
EDGE = st.sampled_from(
    [0, 1, 59, 60, 61, 3599, 3600, 3601, 14_399, 14_400, 14_401, 36_000, 86_399, 86_400, 86_401, 172_800, 489_600,
     1_094_400]
)  # fmt: skip  # BASE + 14,400 is a 6-hour edge
INSTANT = st.one_of(
    st.builds(lambda e, d: float(BASE + e) + d, EDGE, st.sampled_from([0.0, -1e-6, 1e-6, 0.5, -0.5])),
    st.floats(BASE - 3 * DAY, BASE + 3 * DAY, allow_nan=False),
)
BOUND = st.one_of(st.none(), INSTANT)


def readers(p: Plan, at: float) -> int:
    """How many pieces of the plan read a record that started at `at`."""
    n = sum(1 for lo, hi in p.raw if (lo is None or lo <= at) and (hi is None or at < hi))
    for grain, first, end in p.rolled:
        b = bucket_start(at, grain)
        n += (first is None or first <= b) and (end is None or b < end)
    return n


@given(BOUND, BOUND, st.lists(INSTANT, max_size=30), st.sampled_from([ORG.grains, KEYS.grains]))
def test_a_plan_reads_every_record_of_the_window_once_and_no_other(
    start: float | None, end: float | None, instants: list[float], grains: tuple[int, ...]
) -> None:
    if start is not None and end is not None and end <= start:
        start, end = end, start + (start - end or 1.0)
    p = plan(start, end, grains)
    probes = [*instants, *(x for x in (start, end) if x is not None)]
    for at in probes:
        inside = (start is None or start <= at) and (end is None or at < end)
        assert readers(p, at) == (1 if inside else 0), (start, end, at, p)
    for grain, first, stop in p.rolled:
        assert all(x is None or x % grain == 0 for x in (first, stop))
        assert first is None or stop is None or first < stop
    for lo, hi in p.raw:  # raw reads hold no whole bucket of the finest grain
        assert lo is not None and hi is not None and lo < hi
        first_whole = bucket_start(lo, grains[0]) + (0 if bucket_start(lo, grains[0]) == lo else grains[0])
        assert first_whole + grains[0] > hi


def test_a_month_is_read_from_weeks_and_the_edges_from_finer_grains() -> None:
    start, end = BASE + 0.25, BASE + 30 * DAY + 0.75
    p = plan(start, end)
    assert p.raw == ((start, float(BASE + 60)), (float(BASE + 30 * DAY), end))
    assert [g for g, _, _ in p.rolled].count(WEEK) == 1
    assert len(p.rolled) <= 9  # minutes, hours, 6 hours, days, weeks, days, 6 hours, hours, minutes
    assert plan(None, None) == Plan(raw=(), rolled=((WEEK, None, None),))
    assert plan(BASE + 1.0, BASE + 50.0).rolled == ()  # no whole minute: all raw, percentiles exact


@given(st.floats(BASE - 30 * DAY, BASE + 30 * DAY, allow_nan=False), st.floats(60.0, 45 * DAY, allow_nan=False))
def test_each_edge_of_a_window_reads_at_most_five_hours_and_three_quarter_days(start: float, length: float) -> None:
    """The 6-hour grain (migration 0023) between hours and days: a window's edge reads at most 59
    minutes, 5 hours, three 6-hour cells and 6 days; a month ending anywhere reads at most 10 hour
    buckets (23 before it), whichever hour of the day its edges fall in."""
    p = plan(start, start + length)
    buckets: dict[int, int] = {}
    for grain, first, end in p.rolled:
        assert first is not None and end is not None
        buckets[grain] = buckets.get(grain, 0) + (end - first) // grain
    assert buckets.get(MINUTE, 0) <= 2 * 59 and buckets.get(HOUR, 0) <= 2 * 5
    assert buckets.get(QUARTER_DAY, 0) <= 2 * 3 and buckets.get(DAY, 0) <= 2 * 6
    assert ORG.grains == (MINUTE, HOUR, QUARTER_DAY, DAY, WEEK)


def test_a_month_edge_inside_a_quarter_day_reads_its_hours() -> None:
    day = bucket_start(BASE, DAY) + DAY  # a UTC midnight
    start, end = day + 7 * HOUR + 30 * MINUTE, day + 30 * DAY + 19 * HOUR
    rolled = plan(start, end).rolled
    assert rolled[:3] == ((MINUTE, start, day + 8 * HOUR), (HOUR, day + 8 * HOUR, day + 12 * HOUR),
                          (QUARTER_DAY, day + 12 * HOUR, day + DAY))  # fmt: skip
    assert rolled[-2:] == ((QUARTER_DAY, day + 30 * DAY, day + 30 * DAY + 18 * HOUR),
                           (HOUR, day + 30 * DAY + 18 * HOUR, end))  # fmt: skip


@given(INSTANT, st.sampled_from(ORG.grains))
def test_bucket_start_is_exact_at_the_edges(at: float, grain: int) -> None:
    b = bucket_start(at, grain)
    assert b % grain == 0 and b <= at < b + grain


@pytest.mark.parametrize(
    ("group_by", "where", "percentiles", "cube"),
    [
        ((), (), True, DEPLOYMENTS),
        (("deployment",), (), True, DEPLOYMENTS),  # the latency panel, top deployments
        (("outcome",), (("deployment", "chat"),), False, DEPLOYMENTS),
        (("team",), (), False, TEAMS),  # the spend panel
        (("team",), (), True, ORG),  # the narrow team cube has no histograms
        (("project",), (("team", "ads"),), False, TEAMS),
        (("outcome",), (("team", "ads"),), False, TEAMS),  # a team budget's rebuild (Governor._charged)
        (("outcome",), (("environment", "prod"), ("project", "p")), False, TEAMS),
        (("outcome",), (("deployment", "chat"), ("team", "ads")), False, ORG),
        (("key_id",), (), False, KEY_TOTALS),  # top keys
        (("key_id",), (("team", "ads"),), False, KEY_TOTALS),
        ((), (("key_id", "k1"),), False, KEY_TOTALS),  # a key-scoped budget's rebuild
        ((), (("key_id", "k1"),), True, KEYS),
        (("team", "deployment", "outcome"), (("environment", "prod"),), True, ORG),
        (("deployment",), (("team", "ads"),), True, ORG),  # a team's latency panel
        (("key_id", "outcome"), (), False, KEYS),
        (GROUP_DIMENSIONS, (), True, KEYS),
    ],
)
def test_a_query_reads_the_smallest_cube_holding_its_dimensions(
    group_by: tuple[str, ...], where: tuple[tuple[str, str], ...], percentiles: bool, cube: object
) -> None:
    assert cube_for(SpendQuery(group_by=group_by, where=where, percentiles=percentiles)) is cube
    assert "key_id" not in ORG.dimensions and set(KEYS.dimensions) == set(GROUP_DIMENSIONS)


def test_a_derived_cube_reads_pending_cells_that_nest_in_its_grains() -> None:
    """A derived cube's dimensions and grains are its source's (a fold adds the source's pending cells
    into it, a report reads them for it): each of its grains is a multiple of the source's finest."""
    for cube in DERIVED:
        source = CUBES[cube.pending]
        assert source in BASE_CUBES and set(cube.dimensions) <= set(source.dimensions)
        assert all(grain % source.grains[0] == 0 for grain in cube.grains)
    assert [c.pending for c in BASE_CUBES] == [0, 1]


def test_key_queries_read_whole_days_and_raw_partial_days() -> None:
    start, end = BASE + 0.25, BASE + 3 * DAY
    p = plan(start, end, KEYS.grains)
    first_day = bucket_start(start, DAY) + DAY
    assert p.rolled == ((DAY, first_day, bucket_start(end, DAY)),)
    assert p.raw == ((start, float(first_day)), (float(bucket_start(end, DAY)), end))
    assert HOUR not in KEYS.grains


def _record(i: int, at: float, team: str | None, outcome: Outcome, tokens: int) -> UsageRecord:
    return UsageRecord(
        request_id=f"r{i}", started_at=at, ended_at=at, key_id=f"k{i % 3}", team=team, project=None,
        environment="prod", tags={}, deployment="chat", protocol="openai", endpoint="/v1/chat/completions",
        method="POST", model="m", stream=False, status=200, upstream_status=200, outcome=outcome, error_code=None,
        latency_ms=float(tokens), upstream_ms=None, input_tokens=tokens, output_tokens=2 * tokens,
        cached_tokens=tokens % 3, items=tokens % 2, cost_usd=Decimal(tokens) / 10**9, reasoning_tokens=tokens % 7,
        images=tokens % 4, audio_ms=tokens * 3, characters=tokens % 1000, documents=tokens % 9,
    )  # fmt: skip


CELL_RECORDS = st.lists(
    st.tuples(
        st.floats(1_700_000_000, 1_700_400_000, allow_nan=False),
        st.sampled_from(["a", "b", None]),
        st.sampled_from(list(Outcome)),
        st.integers(0, 10**6),
    ),
    max_size=60,
)


@given(CELL_RECORDS, st.integers(0, 60))
def test_pending_cells_folded_into_each_grain_equal_the_records_summed_one_by_one(
    fields: list[Any], split: int
) -> None:
    records = [_record(i, *f) for i, f in enumerate(fields)]
    stored = [(r, latency_histogram.bin_of(r.latency_ms), to_nanos(r.cost_usd)) for r in records]
    # The cells of two writes, folded as the SQL fold does (a coarser bucket is the finest one
    # floored to the grain), against every record added at every grain.
    folded: dict[tuple[int, int, int, tuple[str | None, ...], int], list[int]] = {}
    for part in (stored[:split], stored[split:]):
        for (c, bucket, dims, index), sums in collect(part).items():
            for grain in CUBES[c].grains:
                into = folded.setdefault((c, grain, bucket - bucket % grain, dims, index), [0] * len(SUMS))
                into[:] = [a + b for a, b in zip(into, sums, strict=True)]
    expected: dict[tuple[int, int, int, tuple[str | None, ...], int], list[int]] = {}
    for r, index, cost in stored:
        error = int(r.outcome not in (Outcome.SERVED, Outcome.QUEUED))  # a 202 is not an error
        units = [r.reasoning_tokens, r.images, r.audio_ms, r.characters, r.documents]
        sums = [1, error, r.input_tokens, r.output_tokens, r.cached_tokens, r.items, *units, cost]
        for c, cube in enumerate(BASE_CUBES):
            dims = tuple(None if getattr(r, d) is None else str(getattr(r, d)) for d in cube.dimensions)
            for grain in cube.grains:
                into = expected.setdefault((c, grain, bucket_start(r.started_at, grain), dims, index), [0] * len(SUMS))
                into[:] = [a + b for a, b in zip(into, sums, strict=True)]
    assert folded == expected


def test_collect_takes_each_records_bucket_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A write's pending cells cost one bucket a record (issue 11: the SQLite writer shares the
    event loop's core): records are grouped at the grain nesting in every base cube's finest, then
    each group goes into one cell of each base cube. Before, each record was bucketed per cube."""
    from costwarden.domain import rollup

    calls = 0
    exact = rollup.bucket_start

    def counted(at: float, grain: int) -> int:
        nonlocal calls
        calls += 1
        return exact(at, grain)

    monkeypatch.setattr(rollup, "bucket_start", counted)
    records = [_record(i, BASE + i * 0.25, "a", Outcome.SERVED, 7) for i in range(200)]  # 50 s: one minute
    stored = [(r, latency_histogram.bin_of(r.latency_ms), to_nanos(r.cost_usd)) for r in records]
    cells = collect(stored)
    groups = 3  # one a key (k0, k1, k2): same minute, team, outcome and bin
    assert calls == len(records) + groups * len(BASE_CUBES)
    assert sum(sums[0] for (c, *_), sums in cells.items() if c == 0) == 200
    assert len(cells) == 1 + groups  # the org cube's one cell, the key cube's three
