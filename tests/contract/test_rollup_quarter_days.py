"""The org cube's 6-hour cells (migration 0023) against the raw ledger, on SQLite and PostgreSQL:
windows starting and ending inside 6-hour cells, with late and replayed records written after the
cells were folded; and a ledger from before 0023 (PostgreSQL: histograms as `jsonb`) gets its 6-hour
cells from its hour cells and its histograms packed when opened."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costwarden.domain.record import Outcome
from costwarden.domain.report import SpendQuery
from costwarden.domain.rollup import QUARTER_DAY
from costwarden.ports import Store
from costwarden.storage.postgres import PostgresStore
from tests.contract.test_rollups import (
    BASE,
    QUARTER_EDGE,
    assert_matches,
    clear,
    count,
    execute,
    fold,
    json_histograms,
    second,
    usage,
)

EDGE = BASE + QUARTER_EDGE  # a 6-hour edge; the cells around it: [EDGE - 6 h, EDGE + 12 h)
INSIDE = st.builds(lambda h, s: EDGE + h * 3600 + s, st.integers(-7, 13), st.sampled_from([0.0, 0.5, 59.75, 1800.0]))
LATE = st.tuples(
    INSIDE,
    st.sampled_from(["ads", "search", None]),
    st.sampled_from(["chat", "iris"]),
    st.sampled_from(list(Outcome)),
    st.floats(0.0, 50_000.0, allow_nan=False),
    st.integers(0, 10**6),
)
WINDOW = st.tuples(INSIDE, st.floats(60.0, 2 * QUARTER_DAY + 7_200.0), st.booleans(), st.sampled_from([(), ("team",)]))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    early=st.lists(LATE, min_size=1, max_size=25),
    late=st.lists(LATE, max_size=15),
    replay=st.lists(st.integers(0, 39), max_size=10),
    windows=st.lists(WINDOW, min_size=1, max_size=5),
    folded=st.sampled_from([0, 3, 10_000]),
)
async def test_windows_inside_quarter_days_equal_the_raw_ledger_after_late_records(
    store: Store,
    early: list[tuple[float, str | None, str, Outcome, float, int]],
    late: list[tuple[float, str | None, str, Outcome, float, int]],
    replay: list[int],
    windows: list[tuple[float, float, bool, tuple[str, ...]]],
    folded: int,
) -> None:
    await clear(store)
    first = [usage(i, *fields) for i, fields in enumerate(early)]
    assert await store.write(first) == len(first)
    await fold(store, 10_000)  # the 6-hour cells hold the early records
    later = [usage(len(first) + i, *fields) for i, fields in enumerate(late)]  # into the same cells, after
    stored = first + later
    assert await store.write([*later, *(stored[i % len(stored)] for i in replay)]) == len(later)
    if folded:
        await fold(store, folded)  # some or all of the late cells folded into the 6-hour cells
    for start, length, percentiles, groups in windows:
        assert_matches(await store.spend(SpendQuery(groups, start, start + length, percentiles=percentiles)), stored)


async def test_a_ledger_from_before_quarter_days_gets_them_from_its_hour_cells(store: Store) -> None:
    records = [
        usage(i, BASE + i * 97.3, ("ads", "search")[i % 2], "chat", list(Outcome)[i % 3], 0.5 + i % 700, i)
        for i in range(900)  # a day, across 6-hour edges
    ]
    assert await store.write(records[:700]) == 700
    while await fold(store, 10_000):
        pass
    assert await store.write(records[700:800]) == 100  # pending when the gateway is upgraded
    drop = [f"DELETE FROM rollup WHERE grain = {QUARTER_DAY}", "DELETE FROM costwarden_schema WHERE version = 23"]
    if isinstance(store, PostgresStore):
        drop += [*json_histograms("rollup", "rollup_key", "rollup_team", "rollup_deployment", "rollup_key_total")]
        drop.append("DROP FUNCTION costwarden_hist_pack(jsonb)")
    await execute(store, drop)
    reopened = await second(store)
    try:
        assert await count(store, f"SELECT COUNT(*) FROM rollup WHERE grain = {QUARTER_DAY}") > 0
        windows = [(BASE + 0.5, BASE + 86_400.0), (EDGE - 3_600.25, EDGE + QUARTER_DAY + 60.0), (EDGE, EDGE + 86_400)]
        for start, end in windows:
            for groups in ((), ("team", "outcome"), ("deployment",)):
                assert_matches(await reopened.spend(SpendQuery(groups, start, end)), records[:800])
        assert await reopened.write(records) == 100  # after the upgrade: new ones once, replays not
        await fold(reopened, 10_000)
        for start, end in windows:
            assert_matches(await reopened.spend(SpendQuery(("team",), start, end)), records)
    finally:
        await reopened.close()
