"""The store's top groups (`LedgerStore.top`: ranked in SQL over rollup cells, pending cells and the
raw records of partial buckets), on SQLite and PostgreSQL: for random records, batches, folds and
windows across minute, hour, day and week edges, exactly the first `n` rows of the same report, in
its order, with the same totals."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costwarden.domain.record import UsageRecord
from costwarden.domain.report import GROUP_DIMENSIONS, SpendQuery, SpendRow
from costwarden.ports import Store
from tests.contract.test_rollups import BOUND, RECORD, clear, fold, query_of, usage

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
