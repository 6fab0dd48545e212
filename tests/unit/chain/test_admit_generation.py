"""Budgets changed on one replica apply to the next admission of every replica (issue 6): two admit
stages (two replicas) on one counter store, each with its own policy; one announces a change, the
other's next request meets the new generation, reloads the definitions and is planned again."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from costwarden.chain.admit import Admit, StoreHealth
from costwarden.chain.policy import policy_from_config
from costwarden.config.governance import BudgetConfig
from costwarden.config.models import Config
from costwarden.domain.admission import BudgetSeed, CounterSeed
from costwarden.domain.budget import Amount, Budget, seed_key
from costwarden.protocols.errors import GatewayError
from costwarden.storage.memory_counters import MemoryCounters
from tests.unit.chain.test_admit import cfg_with, chat, exchange

NOTHING_CONFIGURED: dict[str, Any] = {}


class Replica:
    """One gateway's admit stage; its definitions are loaded from `stored` (the shared database)."""

    def __init__(self, cfg: Config, store: MemoryCounters, stored: dict[str, Budget], verify: bool = True) -> None:
        self.policy = policy_from_config(cfg)
        self.stored = stored
        self.loads = 0
        self.fail = False
        self.stage = Admit(
            self.policy, store, StoreHealth(), settle_inline=True, reload=self.reload, verify_unplanned=verify
        )

    async def reload(self, generation: int) -> None:
        if self.fail:
            raise ConnectionError("the database is down")
        self.loads += 1
        self.policy.set_budgets(list(self.stored.values()))
        self.policy.generation = generation

    async def serve(self, cfg: Config, request_id: str, cost: str = "0") -> None:
        ex = exchange(cfg, chat(10), request_id)
        await self.stage.enter(ex)
        ex.cost = Decimal(cost)
        await self.stage.settle(ex)
        await self.stage.finish(ex)  # admission settles after the last byte


def budget(limit: str, fail_mode: str = "open") -> Budget:
    config = BudgetConfig.model_validate(
        {"id": "b", "scope": {"team": "ads"}, "window": "day", "limit_usd": limit, "fail_mode": fail_mode}
    )
    return config.budget("UTC")


async def announce(store: MemoryCounters, stored: dict[str, Budget], new: Budget | None, spent: str = "0") -> None:
    """What the admin API does: store the definition, seed it and move the generation on at once."""
    seeds = []
    if new is None:
        stored.pop("b", None)
    else:
        stored["b"] = new
        now = time.time()
        key = new.window.key(now)
        part = CounterSeed(f"{seed_key(new)}|{key}", Amount(Decimal(spent), 0, 0), new.window.retain_until(now))
        seeds.append(BudgetSeed(seed_key(new), (part,)))
    await store.restore(seeds, announce_at=time.time())


async def fleet(verify: bool = True) -> tuple[MemoryCounters, dict[str, Budget], Config, Replica, Replica]:
    store, stored = MemoryCounters(), dict[str, Budget]()
    cfg = cfg_with(NOTHING_CONFIGURED)
    first, second = Replica(cfg, store, stored, verify), Replica(cfg, store, stored, verify)
    generation = await store.restore(())
    first.policy.generation = second.policy.generation = generation
    return store, stored, cfg, first, second


async def test_a_budget_created_elsewhere_applies_to_the_next_request_here() -> None:
    store, stored, cfg, _, second = await fleet()
    await second.serve(cfg, "r0")  # nothing applies yet
    await announce(store, stored, budget("0.001"), spent="0.00099")  # its scope spent almost all of it
    with pytest.raises(GatewayError) as refused:
        await second.serve(cfg, "r1")
    assert refused.value.code == "budget_exceeded" and second.loads == 1
    with pytest.raises(GatewayError):
        await second.serve(cfg, "r2")
    assert second.loads == 1  # loaded once


async def test_without_asking_the_store_an_unplanned_request_passes_a_new_budget() -> None:
    """The gap `verify_unplanned` closes: a replica that nothing applied to never asked the store."""
    store, stored, cfg, _, second = await fleet(verify=False)
    await announce(store, stored, budget("0.001"), spent="0.00099")
    await second.serve(cfg, "r1")  # admitted: this replica does not know the budget yet
    assert second.loads == 0


async def test_a_limit_lowered_elsewhere_applies_to_the_next_request_here() -> None:
    store, stored, cfg, _, second = await fleet()
    await announce(store, stored, budget("1"))
    await second.serve(cfg, "r1", "0.01")
    await announce(store, stored, budget("0.01"))  # lowered to what was spent
    with pytest.raises(GatewayError) as refused:
        await second.serve(cfg, "r2")
    assert refused.value.code == "budget_exceeded"


async def test_a_budget_deleted_elsewhere_stops_refusing_at_once() -> None:
    store, stored, cfg, first, _ = await fleet()
    await announce(store, stored, budget("0.001"), spent="0.001")
    with pytest.raises(GatewayError):
        await first.serve(cfg, "r1")
    await announce(store, stored, None)
    await first.serve(cfg, "r2")
    assert first.policy.budgets == ()


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
async def test_definitions_that_cannot_be_loaded_apply_the_fail_mode(fail_mode: str) -> None:
    store, stored, cfg, _, second = await fleet()
    await announce(store, stored, budget("1", fail_mode))
    await second.serve(cfg, "r1")
    second.fail = True
    await announce(store, stored, budget("0.5", fail_mode))
    if fail_mode == "open":
        await second.serve(cfg, "r2")  # admitted without a hold, as while the store is down
        return
    with pytest.raises(GatewayError) as refused:
        await second.serve(cfg, "r2")
    assert refused.value.status == 503
