"""The admin API's 503 refusals for stores that cannot answer now (app/admin_refusals.py), as the
budget, scaling and cache routes give them."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from costwarden.app.admin_refusals import cache_answers, counters_answer
from costwarden.ports import CounterStoreUnavailable, CounterStoreUnseeded, ResponseCacheUnavailable


@pytest.mark.parametrize(
    ("error", "detail"),
    [
        (CounterStoreUnavailable("redis down"), "the counter store is unreachable: redis down"),
        (CounterStoreUnseeded("b1"), "the budget counters are being rebuilt from the ledger: b1"),
    ],
)
def test_a_counter_store_that_cannot_answer_is_a_503(error: Exception, detail: str) -> None:
    with pytest.raises(HTTPException) as refused, counters_answer():
        raise error
    assert (refused.value.status_code, refused.value.detail) == (503, detail)
    assert refused.value.__cause__ is error


def test_a_cache_backend_that_cannot_answer_is_a_503() -> None:
    with pytest.raises(HTTPException) as refused, cache_answers():
        raise ResponseCacheUnavailable("redis down")
    assert (refused.value.status_code, refused.value.detail) == (503, "the cache backend is unreachable: redis down")


def test_other_errors_and_refusals_pass_through() -> None:
    with pytest.raises(HTTPException) as refused, cache_answers():
        raise HTTPException(404, "no deployment caches responses")
    assert refused.value.status_code == 404
    with pytest.raises(LookupError), counters_answer():
        raise LookupError("no such deployment")
    with cache_answers(), counters_answer():
        pass
