"""Alerts: a firing condition is sent once, resolved when it clears, and fires anew after that."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from costwarden.domain.alert import (
    Alert,
    AlertBook,
    AlertKind,
    Condition,
    Severity,
    evaluate,
    fingerprint,
)

FAST = settings(max_examples=200, deadline=None, database=None)
T0 = 1_750_000_000.0


def threshold(budget: str, percent: int, severity: Severity = Severity.WARNING) -> Condition:
    labels = {"budget": budget, "threshold": str(percent), "window": "month@UTC|2025-06-01T00:00:00+00:00"}
    return Condition.of(AlertKind.BUDGET_THRESHOLD, labels, severity, Decimal(81), Decimal(80), f"{budget} at 81 %")


def test_the_fingerprint_is_stable_and_ignores_label_order() -> None:
    one = fingerprint(AlertKind.COST_SPIKE, {"team": "ml", "deployment": "llama"})
    assert one == fingerprint(AlertKind.COST_SPIKE, (("deployment", "llama"), ("team", "ml")))
    assert one != fingerprint(AlertKind.VOLUME_SPIKE, {"team": "ml", "deployment": "llama"})
    assert one != fingerprint(AlertKind.COST_SPIKE, {"team": "ml"})
    assert len(one) == 20 and threshold("a", 80).fingerprint == threshold("a", 80).fingerprint


def test_fire_once_stay_quiet_resolve_then_fire_again() -> None:
    book = AlertBook()
    book, first = book.evaluate([threshold("a", 80)], T0)
    assert len(first.to_fire) == 1 and not first.to_resolve
    alert = first.to_fire[0]
    assert alert.firing and alert.started_at == T0 and alert.kind is AlertKind.BUDGET_THRESHOLD
    book, second = book.evaluate([threshold("a", 80)], T0 + 60)
    assert not second.to_fire and not second.to_resolve and second.still_active == (alert,)
    book, third = book.evaluate([], T0 + 120)
    assert third.to_resolve[0].resolved_at == T0 + 120 and third.to_resolve[0].id == alert.id
    assert book.active == ()
    book, fourth = book.evaluate([threshold("a", 80)], T0 + 180)
    assert fourth.to_fire[0].id != alert.id and fourth.to_fire[0].fingerprint == alert.fingerprint


def test_an_evaluator_only_resolves_the_kinds_it_checks() -> None:
    spike = Condition.of(AlertKind.COST_SPIKE, {"team": "ml"}, Severity.WARNING, Decimal(50), Decimal(10))
    book, _ = AlertBook().evaluate([spike, threshold("a", 80)], T0)
    book, result = book.evaluate([], T0 + 60, kinds={AlertKind.BUDGET_THRESHOLD})
    assert [a.kind for a in result.to_resolve] == [AlertKind.BUDGET_THRESHOLD]
    assert [a.kind for a in result.still_active] == [AlertKind.COST_SPIKE]


def test_duplicates_keep_the_most_severe_and_updates_are_not_resent() -> None:
    result = evaluate([], [threshold("a", 80), threshold("a", 80, Severity.CRITICAL)], T0)
    assert len(result.to_fire) == 1 and result.to_fire[0].severity is Severity.CRITICAL
    moved = Condition.of(
        AlertKind.BUDGET_THRESHOLD, dict(threshold("a", 80).labels), Severity.WARNING, Decimal(95), Decimal(80)
    )
    later = evaluate(result.to_fire, [moved], T0 + 60)
    assert not later.to_fire and later.still_active[0].observed == Decimal(95)


@FAST
@given(rounds=st.lists(st.sets(st.sampled_from(["a", "b", "c", "d"])), max_size=30))
def test_each_condition_alternates_between_fire_and_resolve(rounds: list[set[str]]) -> None:
    book = AlertBook()
    firing: set[str] = set()
    sent: list[Alert] = []
    for number, holding in enumerate(rounds):
        book, result = book.evaluate([threshold(name, 80) for name in holding], T0 + number)
        fired = {dict(a.labels)["budget"] for a in result.to_fire}
        resolved = {dict(a.labels)["budget"] for a in result.to_resolve}
        assert fired == holding - firing and resolved == firing - holding
        firing = set(holding)
        assert {dict(a.labels)["budget"] for a in book.active} == firing
        sent.extend(result.to_fire)
    assert len({a.id for a in sent}) == len(sent)
