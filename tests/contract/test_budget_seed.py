"""A budget's rebuild reads the spans of its counters (a rolling window's buckets,
`domain.budget.counter_spans`) in one statement per budget (`LedgerStore.spend_spans`), on SQLite
and PostgreSQL, and reads exactly what one report per span read before: for random records (late
ones after folds, replays) and spans across minute, hour, day and week edges, each span's report
equals the store's own report of that span and the raw ledger's totals; a rebuild of rolling
budgets seeds each counter with what admission charged in its bucket, from the raw ledger."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costwarden.chain.admit import StoreHealth
from costwarden.chain.policy import AdmissionPolicy
from costwarden.domain.budget import Amount, Budget, BudgetScope
from costwarden.domain.record import UNCHARGED, Outcome, UsageRecord
from costwarden.domain.report import SpendQuery
from costwarden.domain.rollup import bucket_start
from costwarden.domain.window import Window
from costwarden.ports import Store
from costwarden.services.governor import Governor
from costwarden.storage.memory_counters import MemoryCounters
from costwarden.storage.sqlite import SQLiteStore
from tests.contract.test_rollup_reads import report_totals
from tests.contract.test_rollups import BASE, EDGES, RECORD, assert_matches, clear, fold, usage

WHERE = [(), (("team", "ads"),), (("key_id", "k-search"),), (("deployment", "chat"), ("team", "search"))]
# Span widths: under a minute, a minute, minutes off the hour, an hour, 90 minutes, a rolling-30d
# bucket (12 h), a day, a week.
WIDTHS = [45, 60, 150, 3600, 5400, 43_200, 86_400, 7 * 86_400]


@contextlib.asynccontextmanager
async def reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[str]]:
    """The SELECT statements the store runs on its database meanwhile."""
    seen: list[str] = []
    if isinstance(store, SQLiteStore):  # its reads run on the reader's connection
        await store._read(lambda conn: conn.set_trace_callback(seen.append))
    else:
        for name in ("fetch", "fetchrow", "fetchval", "execute"):
            monkeypatch.setattr(asyncpg.connection.Connection, name, _logged(name, seen))
    try:
        yield seen
    finally:
        if isinstance(store, SQLiteStore):
            await store._read(lambda conn: conn.set_trace_callback(None))
        else:
            monkeypatch.undo()
    seen[:] = [sql for sql in seen if sql.lstrip().upper().startswith("SELECT") and " FROM " in sql.upper()]


def _logged(name: str, seen: list[str]) -> Callable[..., Awaitable[Any]]:
    original = getattr(asyncpg.connection.Connection, name)

    async def run(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(query)
        return await original(self, query, *args, **kwargs)

    return run


Fields = tuple[float, str | None, str, Outcome, float, int]


@st.composite
def span_lists(draw: st.DrawFn) -> list[tuple[float, float | None]]:
    """Consecutive spans of one width (under a minute to a week) across minute, hour, day and week
    edges; the last one open (the current bucket of a rolling window) or not."""
    width = draw(st.sampled_from(WIDTHS))
    origin = bucket_start(BASE + draw(st.sampled_from(EDGES)), width) - draw(st.integers(0, 3)) * width
    spans: list[tuple[float, float | None]] = [
        (float(origin + i * width), float(origin + (i + 1) * width)) for i in range(draw(st.integers(1, 6)))
    ]
    if draw(st.booleans()):
        spans[-1] = (spans[-1][0], None)
    return spans


async def write_ledger(store: Store, records: list[Fields], late: list[Fields], folded: int) -> list[UsageRecord]:
    """`records`, some or all of them folded (`folded` cells), then `late` ones into folded buckets,
    then `records` again (a replayed spool adds nothing): what the ledger holds."""
    await clear(store)
    first = [usage(i, *fields) for i, fields in enumerate(records)]
    assert await store.write(first) == len(first)
    if folded:
        await fold(store, folded)
    second = [usage(len(first) + i, *fields) for i, fields in enumerate(late)]
    assert await store.write(second) == len(second)
    assert await store.write(first) == 0
    return [*first, *second]


# A ledger for `write_ledger` and spans: what each span read is tried on.
LEDGER_AND_SPANS = {
    "records": st.lists(RECORD, min_size=1, max_size=40),
    "late": st.lists(RECORD, max_size=20),
    "folded": st.sampled_from([0, 7, 10_000]),
    "spans": span_lists(),
}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    **LEDGER_AND_SPANS,
    groups=st.sampled_from([("outcome",), (), ("team", "outcome")]),
    where=st.sampled_from(WHERE),
)
async def test_each_spans_report_is_the_report_of_that_span(
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    records: list[Fields],
    late: list[Fields],
    folded: int,
    spans: list[tuple[float, float | None]],
    groups: tuple[str, ...],
    where: tuple[tuple[str, str], ...],
) -> None:
    stored = await write_ledger(store, records, late, folded)
    query = SpendQuery(groups, where=where, percentiles=False)
    async with reads(store, monkeypatch) as statements:
        got = await store.spend_spans(query, spans)
    assert len(statements) == 1  # every span at once
    assert [(r.query.start, r.query.end) for r in got] == spans
    for report, (start, end) in zip(got, spans, strict=True):
        before = await store.spend(replace(query, start=start, end=end))  # one report per span: the read before
        assert report_totals(report) == report_totals(before)
        assert_matches(report, stored)  # and the raw ledger's totals


async def test_no_spans_read_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    async with reads(store, monkeypatch) as statements:
        assert await store.spend_spans(SpendQuery(("outcome",), percentiles=False), []) == []
    assert statements == []


async def test_many_spans_are_read_a_hundred_at_a_time(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite allows 500 terms in a compound SELECT (a span has up to four): 250 spans of 90 s
    (minute cells and raw edges) are read in three statements, each span its own report."""
    await clear(store)
    records = [usage(i, BASE + i * 85.0, "ads", "chat", list(Outcome)[i % 3], 5.0, i) for i in range(240)]
    assert await store.write(records) == len(records)
    await fold(store, 10_000)
    origin = bucket_start(BASE, 90)
    spans: list[tuple[float, float | None]] = [
        (float(origin + i * 90), float(origin + (i + 1) * 90)) for i in range(250)
    ]
    query = SpendQuery(("outcome",), where=(("team", "ads"),), percentiles=False)
    async with reads(store, monkeypatch) as statements:
        got = await store.spend_spans(query, spans)
    assert len(statements) == 3
    for report in got:
        assert_matches(report, records)
    assert sum(r.total.requests for r in got) == len(records)


class _Alerts:
    def submit(self, alerts: object) -> None: ...

    def record(self, alerts: object) -> None: ...

    def adopt(self, active: object) -> None: ...

    def disown(self) -> None: ...


class _Lease:
    async def lead(self, now: float) -> bool:
        return True


NOW = BASE + 30 * 86_400 + 5_000.5  # 30 days of records before it; not on an edge of any bucket
BUDGETS = [
    Budget("global-30d", BudgetScope(), Window.rolling(30 * 86_400, buckets=60), Decimal(10**6)),
    Budget("team-30d", BudgetScope.of({"team": "ads"}), Window.rolling(30 * 86_400, buckets=60), Decimal(10**6)),
    Budget("key-30d", BudgetScope.of({"key_id": "k-search"}), Window.rolling(30 * 86_400, buckets=60), Decimal(10**6)),
    Budget("chat-90m", BudgetScope.of({"deployment": "chat"}), Window.rolling(5_400, buckets=60), Decimal(10**6)),
]
# Times across the 30 days: on the 12-hour buckets' edges and beside them, inside the 90-minute
# window's buckets, before every window, after now.
AT = st.builds(
    lambda bucket, delta: NOW - bucket * 43_200 - NOW % 43_200 + delta,
    st.integers(-1, 61),
    st.sampled_from([0.0, -1e-6, 0.5, -30.0, 90.0, 3_599.0, 5_000.0, 5_000.75, 43_199.0]),
)
LEDGER_RECORD = st.tuples(
    AT,
    st.sampled_from(["ads", "search", None]),
    st.sampled_from(["chat", "iris"]),
    st.sampled_from(list(Outcome)),
    st.just(5.0),
    st.integers(0, 10**6),
)


def charged(budget: Budget, start: float, end: float | None, stored: list[UsageRecord]) -> Amount:
    """What admission charged in [start, end) for the budget's scope, from the raw records."""
    rows = [
        r
        for r in stored
        if start <= r.started_at
        and (end is None or r.started_at < end)
        and r.outcome not in UNCHARGED
        and all(getattr(r, name) == value for name, value in budget.scope.dimensions)
    ]
    return Amount(
        sum((r.cost_usd for r in rows), Decimal(0)),
        sum(r.input_tokens + r.output_tokens for r in rows),
        len(rows),
    )


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(LEDGER_RECORD, min_size=1, max_size=60),
    late=st.lists(LEDGER_RECORD, max_size=20),
    folded=st.sampled_from([0, 10_000]),
)
async def test_a_rebuild_reads_each_budget_once_and_seeds_what_admission_charged(
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    records: list[tuple[float, str | None, str, Outcome, float, int]],
    late: list[tuple[float, str | None, str, Outcome, float, int]],
    folded: int,
) -> None:
    await clear(store)
    stored = [usage(i, *fields) for i, fields in enumerate([*records, *late])]
    assert await store.write(stored[: len(records)]) == len(records)
    if folded:
        await fold(store, folded)
    assert await store.write(stored[len(records) :]) == len(late)  # late records into folded buckets
    counters = MemoryCounters()
    policy = AdmissionPolicy(BUDGETS, (), (), 600.0, {})
    governor = Governor(policy, counters, store, StoreHealth(), _Alerts(), _Lease(), 1.0, None)
    async with reads(store, monkeypatch) as statements:
        await governor.seed(BUDGETS, NOW)
    assert len(statements) == len(BUDGETS)  # one per budget (each of a scope kind of its own), not per bucket (60 each)
    # Each bucket holds its own span: as the window slides past them (no new spend), what it holds
    # is the ledger's charge from its new start (the current bucket was read open). In time order:
    # a read at a later time lets the store drop the counters of the short window.
    checks = []
    for budget in BUDGETS:
        width = (budget.window.rolling_seconds or 0) // budget.window.buckets
        checks += [(NOW + slide * width, budget) for slide in (0, 1, 2, 30, budget.window.buckets - 1)]
    for at, budget in sorted(checks, key=lambda check: check[0]):
        state = await counters.budget_state(policy.check_for(budget, at), at)
        assert state.spent == charged(budget, budget.window.bounds(at)[0], None, stored), (budget.id, at - NOW)


async def test_a_budgets_read_is_one_statement_on_the_wire(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """No transaction around it to turn PostgreSQL's JIT off (the read pool has it off): a start
    with 500 key budgets paid a BEGIN, a SET and a COMMIT per budget besides the SELECT."""
    seen: list[str] = []
    if isinstance(store, SQLiteStore):
        await store._read(lambda conn: conn.set_trace_callback(seen.append))
    else:
        for name in ("fetch", "fetchrow", "fetchval", "execute"):
            monkeypatch.setattr(asyncpg.connection.Connection, name, _logged(name, seen))
    try:
        await store.spend_spans(SpendQuery(("outcome",), BASE, BASE + 86_400, percentiles=False), [(BASE, BASE + 3600)])
    finally:
        if isinstance(store, SQLiteStore):
            await store._read(lambda conn: conn.set_trace_callback(None))
        monkeypatch.undo()
    seen = [sql for sql in seen if "pg_advisory_unlock_all()" not in sql]  # the pool's reset of a released connection
    assert len(seen) == 1 and seen[0].lstrip().upper().startswith("SELECT"), seen
