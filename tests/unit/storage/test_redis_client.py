"""The back-off of the Redis-backed parts a request reads on its way (response cache, shared index)."""

from __future__ import annotations

import pytest

from costwarden.ports import ResponseCacheUnavailable
from costwarden.storage.redis_client import Backoff
from tests.unit.clock import Clock


def test_a_failure_skips_the_backend_for_retry_after_then_it_is_tried_again() -> None:
    clock = Clock()
    backoff = Backoff(2.0, ResponseCacheUnavailable, "skipped", clock)
    backoff.check()  # never failed: tried
    error = backoff.failed(ConnectionError("refused"))
    assert isinstance(error, ResponseCacheUnavailable) and str(error) == "refused"
    clock.now += 1.9
    with pytest.raises(ResponseCacheUnavailable, match="skipped"):
        backoff.check()
    clock.now += 0.1
    backoff.check()  # retry_after has passed
