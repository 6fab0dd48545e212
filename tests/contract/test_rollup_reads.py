"""The dashboard's rollup reads, on SQLite and PostgreSQL, against the store's own spend reports
(themselves checked against the raw ledger in test_rollups.py), for random records, folds and windows
across minute, hour, day and week edges: the top groups (`LedgerStore.top`, ranked in SQL over rollup
cells, pending cells and raw records of partial buckets) are exactly the report's first `n` rows in
its order; the spend series (`LedgerStore.spend_series`, every whole hour or day bucket in one
statement) has each bucket's report, rows and total, exactly."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costwarden.domain.record import Outcome, UsageRecord
from costwarden.domain.report import GROUP_DIMENSIONS, SpendQuery, SpendReport, SpendRow
from costwarden.ports import Store
from tests.contract.test_rollups import BASE, BOUND, RECORD, clear, fold, query_of, usage

GROUPED = st.tuples(
    BOUND,
    BOUND,
    st.just(False),
    st.lists(st.sampled_from(GROUP_DIMENSIONS), min_size=1, max_size=2, unique=True),
    st.sampled_from([(), (("team", "ads"),), (("outcome", "served"),), (("key_id", "k-search"),)]),
)


def totals(rows: list[SpendRow] | tuple[SpendRow, ...]) -> list[tuple[object, ...]]:
    return [
        (r.group, r.requests, r.errors, r.input_tokens, r.output_tokens, r.cached_tokens, r.items, r.cost_usd)
        for r in rows
    ]


async def assert_top(store: Store, query: SpendQuery, n: int) -> None:
    report = await store.spend(query)
    assert totals(await store.top(query, n)) == totals(report.rows[:n])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(RECORD, min_size=1, max_size=40),
    queries=st.lists(GROUPED, min_size=1, max_size=4),
    n=st.integers(1, 5),
    folded=st.sampled_from([0, 7, 10_000]),
)
async def test_top_groups_are_the_reports_first_rows(
    store: Store,
    records: list[tuple[float, str | None, str, object, float, int]],
    queries: list[tuple[float | None, float | None, bool, list[str], tuple[tuple[str, str], ...]]],
    n: int,
    folded: int,
) -> None:
    await clear(store)
    pool: list[UsageRecord] = [usage(i, *fields) for i, fields in enumerate(records)]  # type: ignore[arg-type]
    assert await store.write(pool) == len(pool)
    if folded:  # some or all pending cells folded: the ranking reads both
        await fold(store, folded)
    for q in queries:
        await assert_top(store, query_of(*q), n)


async def test_an_empty_window_has_no_top_groups(store: Store) -> None:
    await clear(store)
    assert await store.top(SpendQuery(group_by=("key_id",), start=0.0, end=1.0, percentiles=False), 10) == []


def report_totals(report: SpendReport) -> tuple[object, ...]:
    return tuple(totals(report.rows)), tuple(totals((report.total,)))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(RECORD, min_size=1, max_size=40),
    step=st.sampled_from([3600, 86400]),
    first=st.integers(-2, 1),
    count=st.integers(1, 9),
    groups=st.lists(st.sampled_from(GROUP_DIMENSIONS), max_size=2, unique=True),
    where=st.sampled_from([(), (("team", "ads"),), (("outcome", "served"), ("deployment", "chat"))]),
    folded=st.sampled_from([0, 7, 10_000]),
)
async def test_a_spend_series_has_each_buckets_report(
    store: Store,
    records: list[tuple[float, str | None, str, object, float, int]],
    step: int,
    first: int,
    count: int,
    groups: list[str],
    where: tuple[tuple[str, str], ...],
    folded: int,
) -> None:
    await clear(store)
    pool: list[UsageRecord] = [usage(i, *fields) for i, fields in enumerate(records)]  # type: ignore[arg-type]
    assert await store.write(pool) == len(pool)
    if folded:
        await fold(store, folded)
    start = (int(BASE) // step + first) * step
    query = SpendQuery(tuple(groups), float(start), float(start + count * step), where, percentiles=False)
    series = await store.spend_series(query, step)
    if "key_id" in groups and step == 3600:  # keys are rolled up per day only
        assert series is None
        return
    assert series is not None and sorted(series) == list(range(start, start + count * step, step))
    for bucket, report in series.items():
        expected = await store.spend(
            SpendQuery(tuple(groups), float(bucket), float(bucket + step), where, percentiles=False)
        )
        assert report_totals(report) == report_totals(expected)
        assert (report.query.start, report.query.end) == (bucket, bucket + step)


async def test_no_series_where_the_cube_has_not_the_grain(store: Store) -> None:
    """Keys are rolled up per day only: an hourly series by key is read bucket by bucket; the narrow
    cubes start at hours."""
    query = SpendQuery(("key_id",), 0.0, 7200.0, percentiles=False)
    assert await store.spend_series(query, 3600) is None
    assert await store.spend_series(SpendQuery(("team",), 0.0, 7200.0, percentiles=False), 60) is None
    assert await store.spend_series(SpendQuery(("team",), 0.0, 7200.0, percentiles=False), 3600) is not None
    assert await store.spend_series(SpendQuery(("protocol",), 0.0, 7200.0, percentiles=False), 60) is not None


async def test_a_series_reads_costs_with_trailing_zeros(store: Store) -> None:
    """PostgreSQL hands a NUMERIC sum like 191,940,000 nano-dollars back as Decimal('1.9194E+8'):
    the series converts it as a number, not through its text (a 500 on the spend panel before)."""
    await clear(store)
    records = [replace(usage(i, BASE + 3600 + i, "ads", "chat", Outcome.SERVED, 5.0, i), cost_usd=Decimal("0.09597"))
               for i in range(2)]  # fmt: skip
    assert await store.write(records) == 2
    await fold(store, 10_000)
    day = int(BASE) // 86400 * 86400
    query = SpendQuery(("team",), float(day), float(day + 2 * 86400), percentiles=False)
    for step in (3600, 86400):
        series = await store.spend_series(query, step)
        assert series is not None
        assert sum((r.total.cost_usd for r in series.values()), Decimal(0)) == Decimal("0.19194")
