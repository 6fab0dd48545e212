"""The scaling endpoint for a deployment whose replicas Prometheus counts: the price of one replica is
the profile's, whatever the count, so the answer and its budget cap are those of a fixed deployment
(the cap formula uses the per-replica price only; no Prometheus query is made). Real SQLite ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import pytest

from costwarden.chain.policy import policy_from_config
from costwarden.config.models import Config
from costwarden.domain.admission import BudgetSeed
from costwarden.domain.budget import Budget, seed_key
from costwarden.services.budgets import BudgetView, budget_view
from costwarden.services.scaling import ScalingService, scaled_json
from costwarden.storage.memory_counters import MemoryCounters
from costwarden.storage.sqlite import SQLiteStore

HOURLY = Decimal("3.6")
LIMIT = Decimal(200)
DAY_START = 1_800_000_000.0 - 1_800_000_000.0 % 86400  # a UTC midnight


def config(replicas: object) -> Config:
    return Config.model_validate({
        "hardware": [{"name": "box", "vcpus": 4, "memory_gib": 16, "hourly_usd": str(HOURLY)}],
        "deployments": [{
            "name": "dyn", "protocol": "v2", "upstream": "http://127.0.0.1:9",
            "compute": {"profile": "box", "replicas": replicas,
                        "scaling": {"target_in_flight_per_replica": 4, "max_replicas": 10}},
        }],
        "compute": {"collectors": [{"type": "prometheus", "url": "http://127.0.0.1:9"}]},
        "governance": {"budgets": [{"id": "day", "scope": {"deployment": "dyn"}, "window": "day",
                                    "limit_usd": str(LIMIT)}]},
    })  # fmt: skip


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(str(tmp_path / "ledger.db"))
    await store.open()
    yield store
    await store.close()


@pytest.mark.parametrize("replicas", [{"prometheus": 'kube_deployment_status_replicas{deployment="dyn"}'}, 2])
async def test_a_prometheus_counted_deployment_is_scaled_at_its_price_per_replica(
    ledger: SQLiteStore, replicas: object
) -> None:
    cfg = config(replicas)
    policy = policy_from_config(cfg)
    counters = MemoryCounters()
    await counters.restore([BudgetSeed(seed_key(b), ()) for b in policy.budgets])
    now = DAY_START + 6 * 3600  # 18 h left in the day

    async def view(budget: Budget) -> BudgetView:
        return await budget_view(counters, policy.check_for(budget, now), budget, now)

    service = ScalingService(cfg, ledger, lambda _: 20)  # 20 in flight at 4 per replica: 5 wanted
    assert service.deployments == ["dyn"]
    scaled = await service.scale("dyn", policy.budgets, view, now)
    cap = int((LIMIT / (HOURLY * 18)).to_integral_value(rounding=ROUND_FLOOR))  # 200 / 64.8: 3
    assert scaled.replica_hourly_usd == HOURLY
    assert cap == 3
    assert (scaled.decision.demand, scaled.decision.budget_cap, scaled.decision.replicas) == (5, cap, cap)
    assert scaled_json(scaled)["capped"] is True and scaled_json(scaled)["budget"] == "day"
