"""`include_compute`: a budget counts the replica cost of the deployments in its scope (replicas x
profile price x time since the window started) as spent: admission sees it (the check's USD limit is
lowered by what accrued by the end of the current second) and so does the budget's view."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from costwarden.chain.policy import policy_from_config
from costwarden.config.governance import BudgetConfig
from costwarden.config.models import Config
from costwarden.domain.admission import BudgetSeed
from costwarden.domain.budget import Budget, BudgetScope, seed_key
from costwarden.domain.money import quantize, to_nanos
from costwarden.domain.window import Unit, Window
from costwarden.services.budgets import BudgetServiceError, budget_view, set_budget, stored_budgets
from costwarden.storage.memory_counters import MemoryCounters
from costwarden.storage.sqlite import SQLiteStore

DAY_START = 1_800_000_000.0 - 1_800_000_000.0 % 86400  # a UTC midnight


def config(*budgets: dict[str, Any]) -> Config:
    return Config.model_validate({
        "hardware": [{"name": "box", "vcpus": 4, "memory_gib": 16, "hourly_usd": "3.6", "spot_hourly_usd": "1.2"}],
        "deployments": [
            {"name": "fraud", "protocol": "v2", "upstream": "http://127.0.0.1:9",
             "compute": {"profile": "box", "replicas": 3}},
            {"name": "spot", "protocol": "v2", "upstream": "http://127.0.0.1:9",
             "compute": {"profile": "box", "replicas": 2, "spot": True}},
            {"name": "dyn", "protocol": "v2", "upstream": "http://127.0.0.1:9",
             "compute": {"profile": "box", "replicas": {"prometheus": "kube_deployment_status_replicas"}}},
            {"name": "chat", "protocol": "openai", "upstream": "http://127.0.0.1:9"},
        ],
        "governance": {"budgets": list(budgets)},
    })  # fmt: skip


def test_the_rate_covers_the_deployments_in_scope_with_fixed_replicas() -> None:
    cfg = config()
    assert cfg.compute_rate({"deployment": "fraud"}) == Decimal("10.8")  # 3 x 3.6
    assert cfg.compute_rate({"deployment": "spot"}) == Decimal("2.4")  # 2 x the spot price
    assert cfg.compute_rate({}) == Decimal("13.2")  # `dyn` has no fixed count; `chat` no compute
    assert cfg.compute_rate({"deployment": "chat"}) == 0


def test_only_budgets_that_include_compute_count_it() -> None:
    cfg = config(
        {"id": "with", "scope": {"deployment": "fraud"}, "window": "day", "limit_usd": "100", "include_compute": True},
        {"id": "without", "scope": {"deployment": "fraud"}, "window": "day", "limit_usd": "100"},
    )
    with_, without = policy_from_config(cfg).budgets
    assert (with_.compute_usd_per_hour, without.compute_usd_per_hour) == (Decimal("10.8"), Decimal(0))
    assert with_.compute_usd(DAY_START + 1800) == Decimal("5.4") and without.compute_usd(DAY_START + 1800) == 0


def test_include_compute_needs_a_deployment_or_global_scope() -> None:
    with pytest.raises(ValidationError, match="include_compute counts whole replicas"):
        BudgetConfig.model_validate({"id": "t", "scope": {"team": "ads"}, "limit_usd": "1", "include_compute": True})


@given(st.floats(min_value=0, max_value=86399.999, allow_nan=False))
def test_accrual_is_the_rate_times_the_time_since_the_window_started(offset: float) -> None:
    budget = Budget("b", BudgetScope(), Window.calendar(Unit.DAY), Decimal(1000), compute_usd_per_hour=Decimal("7.2"))
    now = DAY_START + offset
    assert budget.compute_usd(now) == quantize(Decimal("7.2") * Decimal(now - DAY_START) / 3600)


def test_admission_sees_the_compute_cost_accrued_by_the_end_of_the_second() -> None:
    cfg = config({"id": "b", "scope": {"deployment": "fraud"}, "window": "day", "limit_usd": "100",
                  "include_compute": True})  # fmt: skip
    policy = policy_from_config(cfg)
    [budget] = policy.budgets
    first = policy.check_for(budget, DAY_START + 3600.25)
    assert first.limit_usd == Decimal(100) - Decimal("10.803")  # 3601 s of 10.8 $/h
    assert first.limits[0] == to_nanos(Decimal("89.197"))
    assert policy.check_for(budget, DAY_START + 3600.9) is first  # the same second: cached
    later = policy.check_for(budget, DAY_START + 3601.5)
    assert later.limit_usd == Decimal(100) - Decimal("10.806") and later.write_key == first.write_key
    spent = policy.check_for(budget, DAY_START + 9.5 * 3600)  # 10.8 x 9.5 > 100: nothing left
    assert spent.limit_usd == 0


async def test_the_view_counts_compute_as_spent() -> None:
    cfg = config({"id": "b", "scope": {}, "window": "day", "limit_usd": "100", "include_compute": True})
    policy = policy_from_config(cfg)
    [budget] = policy.budgets
    counters = MemoryCounters()
    await counters.restore([BudgetSeed(seed_key(budget), ())])
    now = DAY_START + 1800
    view = await budget_view(counters, policy.check_for(budget, now), budget, now)
    assert view.compute_usd == Decimal("6.6") and view.state.spent.usd == Decimal("6.6")  # 13.2 $/h, half an hour
    assert view.remaining_usd == Decimal("93.4") and view.utilisation == Decimal("0.066")


@pytest.mark.parametrize("scope", [{"deployment": "dyn"}, {}])
async def test_a_stored_budget_cannot_include_prometheus_counted_replicas(
    scope: dict[str, str], tmp_path: Path
) -> None:
    """`dyn`'s replicas come from Prometheus: a live count is not a function of config and clock, so a
    budget that would include them is refused (PUT /admin/v1/budgets answers 4xx) and nothing is stored."""
    store = SQLiteStore(str(tmp_path / "ledger.db"))
    await store.open()
    try:
        budget = BudgetConfig.model_validate({"id": "b", "scope": scope, "limit_usd": "5", "include_compute": True})
        with pytest.raises(BudgetServiceError, match=r"include_compute cannot count the replicas of \['dyn'\]"):
            await set_budget(store, config(), budget)
        assert await stored_budgets(store, config()) == []
        fixed = BudgetConfig.model_validate({"id": "f", "scope": {"deployment": "fraud"}, "limit_usd": "5",
                                             "include_compute": True})  # fmt: skip
        await set_budget(store, config(), fixed)
        assert [b.id for b in await stored_budgets(store, config())] == ["f"]
    finally:
        await store.close()
