"""Reservations: the overspend guarantee of reserve -> settle, checked on the reference model.

Guarantee tested: for every `block` budget and at every moment, the settled spend of its current
window is at most its limit plus the estimation error of the requests charged to that window,
where a request's error is max(0, actual - held) and `held` is 0 when its hold had expired before
it settled. Hence when every estimate bounds its actual and every request settles before its hold
expires, spend (and spend plus holds) never exceeds the limit in any unit.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.budget import (
    Action,
    Amount,
    Budget,
    BudgetScope,
    BudgetState,
    Ledgerless,
    Reservation,
    counter_key,
    request_attributes,
)
from costwarden.domain.money import ZERO, quantize
from costwarden.domain.window import Unit, Window

START = 1_761_400_000.0  # 2025-10-25, the day before Berlin leaves summer time
BUDGETS = (
    Budget("team-day", BudgetScope.of({"team": "ml"}), Window.calendar(Unit.DAY, "Europe/Berlin"), Decimal(5)),
    Budget(
        "llm-rolling", BudgetScope.of({"deployment": "llm"}), Window.rolling(3600, 6), Decimal(3), limit_tokens=40_000
    ),
    Budget(
        "ml-llm-hour",
        BudgetScope.of({"team": "ml", "deployment": "llm"}),
        Window.calendar(Unit.HOUR, "Europe/Berlin"),
        Decimal(2),
        limit_requests=12,
    ),
    Budget("everyone", BudgetScope(), Window.calendar(Unit.DAY), Decimal(1), action=Action.ALERT_ONLY),
)
BLOCKING = [b for b in BUDGETS if b.action is Action.BLOCK]


@dataclass(frozen=True)
class Step:
    wait: float  # seconds before the step
    kind: str  # reserve or settle
    team: str
    deployment: str
    cents: int  # the estimate
    share: float  # actual / estimate
    pick: int  # which open reservation a settle closes


def steps(max_share: float) -> st.SearchStrategy[list[Step]]:
    step = st.builds(
        Step,
        wait=st.sampled_from([0.0, 1.0, 30.0, 400.0, 3000.0, 40_000.0]),
        kind=st.sampled_from(["reserve", "reserve", "settle"]),
        team=st.sampled_from(["ml", "web"]),
        deployment=st.sampled_from(["llm", "emb"]),
        cents=st.integers(0, 150),
        share=st.floats(0, max_share),
        pick=st.integers(0, 1_000),
    )
    return st.lists(step, max_size=60)


def run(plan: list[Step], ttl: float, strict: bool) -> None:
    """Replay `plan` on the model, checking the guarantee after every step; `strict`: also check
    that spend plus holds stays within every limited unit (for bounded, never-expiring requests)."""
    book = Ledgerless(BUDGETS)
    now = START
    open_: list[tuple[Reservation, Amount]] = []
    errors: defaultdict[str, Decimal] = defaultdict(lambda: ZERO)
    for number, step in enumerate(plan):
        now += step.wait
        if step.kind == "reserve":
            estimate = Amount(Decimal(step.cents) / 100, step.cents * 100, 1)
            actual = Amount(quantize(estimate.usd * Decimal(repr(step.share))), int(estimate.tokens * step.share), 1)
            attributes = request_attributes("k", step.team, "p", "prod", step.deployment, {})
            book, held, decisions = book.reserve(f"r{number}", attributes, estimate, now, ttl)
            assert (held is not None) == all(d.admitted for d in decisions)
            if held is not None:
                open_.append((held, actual))
        elif open_:
            held, actual = open_.pop(step.pick % len(open_))
            live = held.expires_at > now
            error = max(ZERO, actual.usd - (held.amount.usd if live else ZERO))
            for key in held.counters:
                errors[key] += error
            book = book.settle(held, actual, now)
        for budget in BLOCKING:
            state = book.state(budget, now)
            slack = sum((errors[counter_key(budget.id, k)] for k in budget.window.bucket_keys(now)), ZERO)
            assert state.spent.usd <= budget.limit_usd + slack, (budget.id, state, slack)
            if strict:
                used = state.used
                assert used.usd <= budget.limit_usd
                assert budget.limit_tokens is None or used.tokens <= budget.limit_tokens
                assert budget.limit_requests is None or used.requests <= budget.limit_requests


@settings(max_examples=300, deadline=None, database=None)
@given(plan=steps(max_share=1.0))
def test_bounded_requests_never_overspend(plan: list[Step]) -> None:
    run(plan, ttl=10.0**9, strict=True)


@settings(max_examples=300, deadline=None, database=None)
@given(plan=steps(max_share=3.0), ttl=st.sampled_from([60.0, 900.0, 10.0**9]))
def test_overspend_is_bounded_by_the_estimation_error_of_requests_in_flight(plan: list[Step], ttl: float) -> None:
    run(plan, ttl, strict=False)


def test_a_dead_gateway_cannot_block_a_budget_with_phantom_holds() -> None:
    book = Ledgerless(BUDGETS[:1])
    ml = request_attributes("k", "ml", "p", "prod", "llm", {})
    book, held, _ = book.reserve("r1", ml, Amount(Decimal(5)), START, ttl=120)
    assert held is not None  # the replica that held this dies and never settles
    book, refused, decisions = book.reserve("r2", ml, Amount(Decimal(1)), START + 60, ttl=120)
    assert refused is None and decisions[0].reason == "usd"
    book, later, _ = book.reserve("r3", ml, Amount(Decimal(1)), START + 120, ttl=120)
    assert later is not None and book.state(BUDGETS[0], START + 120).reserved.usd == Decimal(1)


def test_a_refusal_by_one_budget_holds_nothing_on_the_others() -> None:
    book = Ledgerless(BUDGETS)
    ml_llm = request_attributes("k", "ml", "p", "prod", "llm", {})
    book, held, decisions = book.reserve("r1", ml_llm, Amount(Decimal("2.5"), 10, 1), START, ttl=60)
    assert held is None
    assert [d.budget_id for d in decisions if not d.admitted] == ["ml-llm-hour"]
    assert all(book.state(b, START).used == Amount() for b in BUDGETS)


def test_a_settle_after_midnight_charges_the_window_it_was_reserved_in() -> None:
    book = Ledgerless(BUDGETS[:1])
    ml = request_attributes("k", "ml", "p", "prod", "emb", {})
    evening = datetime.fromisoformat("2025-10-25T23:45:00+02:00").timestamp()
    book, held, _ = book.reserve("r1", ml, Amount(Decimal(2)), evening, ttl=3600)
    assert held is not None and held.window_keys == ("day@Europe/Berlin|2025-10-25T00:00:00+02:00",)
    book = book.settle(held, Amount(Decimal("1.5")), evening + 1800)  # after midnight
    assert book.state(BUDGETS[0], evening).spent.usd == Decimal("1.5")
    assert book.state(BUDGETS[0], evening + 1800).used == Amount()
    assert book.holds == {}


def test_a_settle_after_the_hold_expired_still_charges_the_actual() -> None:
    book = Ledgerless(BUDGETS[:1])
    ml = request_attributes("k", "ml", "p", "prod", "emb", {})
    book, held, _ = book.reserve("r1", ml, Amount(Decimal(2)), START, ttl=60)
    assert held is not None
    book = book.settle(held, Amount(Decimal("1.5")), START + 61)
    assert book.state(BUDGETS[0], START + 61) == BudgetState(Amount(Decimal("1.5")))
