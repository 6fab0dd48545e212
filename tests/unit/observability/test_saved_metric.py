"""`costwarden_saved_usd_total`: what each cost action saved, counted per request as the savings
report sums the records (cache first, then batch, then degrade); a request no action served adds
nothing, and a variant dearer than its original counts 0 (a counter never falls)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from costwarden.chain.exchange import Exchange
from costwarden.domain.batch import BatchRef
from costwarden.observability.metrics import GatewayMetrics, Observe
from tests.unit.observability.test_metrics import exchange, observe, route

SCOPE = {"deployment": "chat", "team": "a", "project": "a-app", "environment": "prod"}


def acted(n: int, cost: str, **fields: object) -> Exchange:
    ex = exchange(n, "a", "chat")
    ex.cost = Decimal(cost)
    for name, value in fields.items():
        setattr(ex, name, value)
    return ex


async def test_each_action_counts_what_it_saved() -> None:
    registry = CollectorRegistry()
    stage = Observe(GatewayMetrics(registry))
    job = BatchRef("batch_1", "batch_req_1", "k1", Decimal("0.5"))
    await observe(stage, [
        acted(1, "0", cache="exact", cache_avoided=Decimal("0.25")),
        acted(2, "0", cache="semantic", cache_avoided=Decimal("0.5")),
        acted(3, "0.1", batch=job, original_cost=Decimal("0.2")),
        acted(4, "0.05", original_cost=Decimal("0.3"), variant_of=route("chat")),
        acted(5, "0.3", original_cost=Decimal("0.3")),  # degraded, the variant was down: saved nothing
        acted(6, "0.4", original_cost=Decimal("0.3")),  # a variant dearer than its original
        acted(7, "0.2"),  # no action
    ])  # fmt: skip

    def saved(action: str) -> float | None:
        return registry.get_sample_value("costwarden_saved_usd_total", {**SCOPE, "action": action})

    assert saved("cache") == pytest.approx(0.75)
    assert saved("batch") == pytest.approx(0.1)
    assert saved("degrade") == pytest.approx(0.25)
