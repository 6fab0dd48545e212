"""Budgets through Redis faults (issue 6): a restart that keeps the data, a restart that loses it,
FLUSHALL. A private redis-server per test; the counter store is driven directly here, the gateways
in the scenarios below."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

from costwarden.domain.admission import AdmissionRequest, BudgetCheck, BudgetSeed
from costwarden.domain.budget import Amount
from costwarden.storage.redis_counters import RedisCounters
from tests.integration.redis_server import PrivateRedis


def _check(budget_id: str, limit: str, now: float) -> BudgetCheck:
    key = f"{budget_id}|w"
    return BudgetCheck(budget_id, (key,), key, Decimal(limit), None, None, True, now + 3600, budget_id)


def _ask(rid: str, usd: str, check: BudgetCheck, now: float) -> AdmissionRequest:
    return AdmissionRequest(rid, Amount(Decimal(usd), 0, 1), now + 60, (check,))


async def test_the_first_admit_after_a_redis_restart_succeeds(durable_redis: PrivateRedis) -> None:
    """The pooled connections broke with the restart: one retry on a fresh connection, no error."""
    counters = RedisCounters(durable_redis.url, namespace=f"t{uuid.uuid4().hex[:8]}:")
    now = time.time()
    check = _check("b", "1", now)
    try:
        await counters.restore([BudgetSeed("b", ())])
        assert (await counters.admit(_ask("r1", "0.1", check, now), now)).admitted
        durable_redis.stop()
        durable_redis.start()
        result = await counters.admit(_ask("r2", "0.1", check, now), now)
        assert result.admitted
        assert result.budget_states[0].reserved.usd == Decimal("0.1")  # the data survived the restart
    finally:
        await counters.close()
