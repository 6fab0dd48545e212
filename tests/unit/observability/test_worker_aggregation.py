"""With `server.workers` > 1 every series has a `worker` label: each query of the bundled rules and
dashboard must aggregate a gauge the way its meaning needs. A gauge read from shared state (the
budgets) repeats once per worker: `max`. A per-process amount (in flight, spooled): `sum`. An age
(the oldest spooled record): `max`. Counters are summed or rated, which the label does not change."""

from __future__ import annotations

import re

import pytest

from costwarden.observability.grafana import build_dashboard, panel_queries
from costwarden.observability.rules import rule_groups

SHARED = re.compile(r"costwarden_(budget_\w+|batch_queue_\w+|variant_degraded|replica_hourly_cost_usd|scaling_\w+)$")
SUMMED = {"costwarden_inflight_requests", "costwarden_ledger_backlog"}
OLDEST = {"costwarden_ledger_oldest_wait_seconds"}
AGGREGATIONS = {"sum", "max", "min", "avg", "count"}
CALL = re.compile(r"(\w+)\s*(?:(?:by|without)\s*\([^()]*\)\s*)?\($")


def aggregations(expr: str) -> list[tuple[str, str | None]]:
    """(metric, the innermost aggregation around it or None) for each costwarden metric in `expr`."""
    found: list[tuple[str, str | None]] = []
    stack: list[str | None] = []
    i = 0
    while i < len(expr):
        char = expr[i]
        if char == "(":
            call = CALL.search(expr[: i + 1])
            stack.append(call[1] if call and call[1] in AGGREGATIONS else None)
        elif char == ")":
            stack.pop()
        elif char == "{":
            i = expr.index("}", i)
        else:
            metric = re.match(r"costwarden_\w+", expr[i:])
            if metric and (i == 0 or not (expr[i - 1].isalnum() or expr[i - 1] in "_:")):
                found.append((metric[0], next((a for a in reversed(stack) if a), None)))
                i += len(metric[0])
                continue
        i += 1
    return found


def queries() -> list[tuple[str, str]]:
    rules = [(r.get("record") or r["alert"], r["expr"]) for g in rule_groups()["groups"] for r in g["rules"]]
    return rules + panel_queries(build_dashboard())


def test_the_parser_finds_the_innermost_aggregation() -> None:
    expr = 'max by (budget) (clamp_min(delta(costwarden_budget_spent_usd{a="(b)"}[1h]), 0)) / sum(costwarden_x)'
    assert aggregations(expr) == [("costwarden_budget_spent_usd", "max"), ("costwarden_x", "sum")]
    assert aggregations("costwarden_inflight_requests > 1") == [("costwarden_inflight_requests", None)]


@pytest.mark.parametrize(("name", "expr"), queries())
def test_every_gauge_is_aggregated_for_its_kind(name: str, expr: str) -> None:
    for metric, aggregation in aggregations(expr):
        if SHARED.match(metric) or metric in OLDEST:
            assert aggregation in {"max", "min"}, f"{name}: {metric} repeats per worker: max, not {aggregation}"
        elif metric in SUMMED:
            assert aggregation == "sum", f"{name}: {metric} is per worker: sum, not {aggregation}"


def test_the_dashboard_shows_the_per_worker_gauges_summed() -> None:
    shown = {metric for _, expr in panel_queries(build_dashboard()) for metric, _ in aggregations(expr)}
    assert shown >= SUMMED
