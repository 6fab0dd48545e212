"""Many budgets' rebuild reads the ledger once per scope kind (issue 14): the budgets that name the
same dimensions (every key budget, every team one, every team + environment one) and cover the same
spans are read in one statement grouped by those dimensions (`LedgerStore.spend_spans`'s `within`,
`services.ledger_charges`), on SQLite and PostgreSQL; and each budget's figures are exactly those of
the read of its own scope alone (rows and order too), for random ledgers (pending and folded cells,
late records into folded buckets), scopes, values that spent nothing and windows."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costwarden.chain.admit import StoreHealth
from costwarden.chain.policy import AdmissionPolicy
from costwarden.domain.budget import Amount, Budget, BudgetScope, counter_spans
from costwarden.domain.record import Outcome
from costwarden.domain.report import SpendQuery
from costwarden.domain.window import Unit, Window
from costwarden.ports import Store
from costwarden.services.governor import Governor
from costwarden.services.ledger_charges import Span, admitted, charged, readable
from costwarden.storage.memory_counters import MemoryCounters
from tests.contract.test_budget_seed import (
    LEDGER_AND_SPANS,
    LEDGER_RECORD,
    NOW,
    Fields,
    _Alerts,
    _Lease,
    reads,
    write_ledger,
)
from tests.contract.test_budget_seed import charged as raw_charged
from tests.contract.test_rollups import clear, fold, usage

ROLLING = Window.rolling(30 * 86_400, buckets=60)
# Scope kinds and values the records have (and some no record has): record `usage` gives team
# ads / search / None, its key k-<team>, project p, environment prod / dev, deployment chat / iris.
VALUES = {
    "team": ["ads", "search", "none"],
    "key_id": ["k-ads", "k-search", "k-none"],
    "project": ["p", "q"],
    "environment": ["prod", "dev"],
    "deployment": ["chat", "iris", "embed"],
}
KINDS = [("key_id",), ("team",), ("deployment",), ("environment", "team"), ("deployment", "team"), ("project",)]


def scopes_of(names: tuple[str, ...]) -> st.SearchStrategy[list[tuple[tuple[str, str], ...]]]:
    scope = st.tuples(*(st.sampled_from(VALUES[name]) for name in names)).map(
        lambda values: tuple(zip(names, values, strict=True))
    )
    return st.lists(scope, min_size=1, max_size=6)


@st.composite
def kind_and_scopes(draw: st.DrawFn) -> tuple[tuple[str, ...], list[tuple[tuple[str, str], ...]]]:
    names = draw(st.sampled_from(KINDS))
    return names, draw(scopes_of(names))


async def one_by_one(store: Store, budget: Budget, spans: list[Span]) -> list[Amount]:
    """The read before: the budget's own scope, grouped by outcome."""
    query = SpendQuery(("outcome",), where=budget.scope.dimensions, percentiles=False)
    return [admitted(report.rows) for report in await store.spend_spans(query, spans)]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**LEDGER_AND_SPANS, kind=kind_and_scopes())
async def test_each_scopes_rows_in_a_grouped_read_are_those_of_its_own_read(
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    records: list[Fields],
    late: list[Fields],
    folded: int,
    spans: list[Span],
    kind: tuple[tuple[str, ...], list[tuple[tuple[str, str], ...]]],
) -> None:
    await write_ledger(store, records, late, folded)
    names, scopes = kind
    within = tuple((name, tuple(sorted({dict(s)[name] for s in scopes}))) for name in names)
    query = SpendQuery((*names, "outcome"), percentiles=False)
    async with reads(store, monkeypatch) as statements:
        grouped = await store.spend_spans(query, spans, within)
    assert len(statements) == 1
    assert [(r.query.start, r.query.end) for r in grouped] == spans
    for scope in scopes:
        values = tuple(value for _, value in scope)
        alone = await store.spend_spans(SpendQuery(("outcome",), where=scope, percentiles=False), spans)
        for together, own in zip(grouped, alone, strict=True):
            mine = [
                replace(row, group=row.group[len(names) :])
                for row in together.rows
                if row.group[: len(names)] == values
            ]
            assert mine == list(own.rows)
    for report in grouped:  # nothing outside the lists
        assert all(row.group[i] in dict(within)[name] for row in report.rows for i, name in enumerate(names))


WINDOWS = [
    ROLLING,
    Window.rolling(5_400, buckets=60),
    Window.calendar(Unit.DAY),
    Window.calendar(Unit.MONTH, "Asia/Tokyo"),
]


@st.composite
def budgets(draw: st.DrawFn) -> list[Budget]:
    chosen = []
    for i in range(draw(st.integers(1, 12))):
        names = draw(st.sampled_from([(), *KINDS, ("tag.cost_center",)]))
        values = [draw(st.sampled_from(VALUES.get(name, ["ops"]))) for name in names]
        scope = BudgetScope(tuple(zip(names, values, strict=True)))
        chosen.append(Budget(f"b{i}", scope, draw(st.sampled_from(WINDOWS)), Decimal(10**6)))
    return chosen


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(LEDGER_RECORD, min_size=1, max_size=50),
    late=st.lists(LEDGER_RECORD, max_size=20),
    folded=st.sampled_from([0, 10_000]),
    chosen=budgets(),
    at=st.sampled_from([NOW, NOW + 43_200, NOW - 86_400 * 3 + 0.25]),
)
async def test_budgets_read_together_have_the_figures_of_each_read_alone(
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    records: list[Fields],
    late: list[Fields],
    folded: int,
    chosen: list[Budget],
    at: float,
) -> None:
    await write_ledger(store, records, late, folded)
    wanted = [(b, [(start, end) for _, start, end in counter_spans(b, at)]) for b in chosen]
    async with reads(store, monkeypatch) as statements:
        together = await charged(store, wanted)
    kinds = {(tuple(n for n, _ in b.scope.dimensions), tuple(s)) for b, s in wanted if readable(b)}
    assert len(statements) == len(kinds)  # one a scope kind and window (each under 100 spans)
    for (budget, spans), amounts in zip(wanted, together, strict=True):
        expected = await one_by_one(store, budget, spans) if readable(budget) else [Amount()] * len(spans)
        assert amounts == expected, budget


TEAM_OF = ("ads", "search", None)
KEYS = [Budget(f"key-{k}", BudgetScope.of({"key_id": f"k-{k}"}), ROLLING, Decimal(10**6)) for k in range(48)]
TEAMS = [Budget(f"team-{t}", BudgetScope.of({"team": t}), ROLLING, Decimal(10**6)) for t in ("ads", "search", "x")]
TEAM_ENVS = [
    Budget(f"{t}-{e}", BudgetScope.of({"team": t, "environment": e}), ROLLING, Decimal(10**6))
    for t in ("ads", "search")
    for e in ("prod", "dev")
]
MANY = [
    *KEYS[:2],
    Budget("k-ads", BudgetScope.of({"key_id": "k-ads"}), ROLLING, Decimal(10**6)),
    Budget("k-search", BudgetScope.of({"key_id": "k-search"}), ROLLING, Decimal(10**6)),
    *KEYS[2:],
    *TEAMS,
    *TEAM_ENVS,
    Budget("global-30d", BudgetScope(), ROLLING, Decimal(10**6)),
    Budget("cost-center", BudgetScope.of({"tag.cost_center": "ops"}), ROLLING, Decimal(10**6)),
]


async def test_a_rebuild_of_many_budgets_reads_the_ledger_once_per_scope_kind(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 key budgets, 3 team budgets, 4 team + environment ones, a global one and one on a tag (not
    read): 4 statements, not 58; each counter seeded with what admission charged in its bucket."""
    await clear(store)
    stored = [
        usage(i, NOW - i * 7_919.5, TEAM_OF[i % 3], ("chat", "iris")[i % 2], list(Outcome)[i % 3], 5.0, i)
        for i in range(300)
    ]
    assert await store.write(stored[:200]) == 200
    await fold(store, 10_000)
    assert await store.write(stored[200:]) == 100  # late: into folded buckets
    counters = MemoryCounters()
    policy = AdmissionPolicy(MANY, (), (), 600.0, {})
    governor = Governor(policy, counters, store, StoreHealth(), _Alerts(), _Lease(), 1.0, None)
    async with reads(store, monkeypatch) as statements:
        await governor.seed(MANY, NOW)
    assert len(statements) == 4, len(statements)  # keys, teams, teams + environments, global
    # In time order: a read at a later time lets the store drop counters the window slid past.
    for at, budget in sorted(((NOW + slide * 43_200, b) for slide in (0, 1, 30, 59) for b in MANY[:-1]), key=at_of):
        state = await counters.budget_state(policy.check_for(budget, at), at)
        assert state.spent == raw_charged(budget, budget.window.bounds(at)[0], None, stored), (budget.id, at - NOW)


def at_of(check: tuple[float, Budget]) -> float:
    return check[0]
