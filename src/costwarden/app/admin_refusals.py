"""The stores' "cannot answer now" errors, as the admin API's 503 refusals (one wording each)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from fastapi import HTTPException

from costwarden.ports import CounterStoreUnavailable, CounterStoreUnseeded, ResponseCacheUnavailable


@contextlib.contextmanager
def counters_answer() -> Iterator[None]:
    """A counter store that is unreachable, or being rebuilt from the ledger, refuses with 503."""
    try:
        yield
    except CounterStoreUnavailable as exc:
        raise HTTPException(503, f"the counter store is unreachable: {exc}") from exc
    except CounterStoreUnseeded as exc:
        raise HTTPException(503, f"the budget counters are being rebuilt from the ledger: {exc}") from exc


@contextlib.contextmanager
def cache_answers() -> Iterator[None]:
    """A response cache backend that is unreachable refuses with 503."""
    try:
        yield
    except ResponseCacheUnavailable as exc:
        raise HTTPException(503, f"the cache backend is unreachable: {exc}") from exc
