"""The CounterStore port where budgets must hold through lost state (issue 6): seeding, rebuilds
that never lower a counter, and rate-limit headers at real Unix times. Both adapters."""

from __future__ import annotations

import pytest

from costwarden.domain.admission import RateCheck
from costwarden.domain.budget import NOTHING
from costwarden.ports import CounterStore
from tests.contract.test_counters import ask, store

__all__ = ["store"]


@pytest.mark.parametrize("now", [1_764_631_234.567891, 1_700_000_000.1, 4_102_444_799.999])
async def test_a_fresh_bucket_counts_down_by_one(store: CounterStore, now: float) -> None:
    """x-ratelimit-remaining-requests: 299 after the first request of a fresh 300 bucket, not 298."""
    for i in range(1, 6):
        result = await store.admit(ask(f"r{i}", NOTHING, rates=(RateCheck(f"rpm|key|{now}", 300, 60.0, 1),)), now)
        assert result.admitted and result.rates[0].remaining == 300 - i
