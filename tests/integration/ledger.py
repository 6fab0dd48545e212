"""Read the ledger a gateway wrote, through the product's own store adapters."""

from __future__ import annotations

import asyncio
import time

from costwarden.domain.record import UsageRecord
from costwarden.storage.factory import open_store


async def _records(url: str) -> list[UsageRecord]:
    """Every record, oldest first (the store pages newest first)."""
    store = open_store(url)
    await store.open()
    try:
        return list(reversed(await store.records(None, None, 1_000_000)))  # oldest first, as written
    finally:
        await store.close()


def records(url: str) -> list[UsageRecord]:
    return asyncio.run(_records(url))


def wait_for(url: str, count: int, timeout: float = 10.0) -> list[UsageRecord]:
    """The ledger's records once it holds at least `count` (the gateway flushes in batches)."""
    deadline = time.monotonic() + timeout
    found = records(url)
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        found = records(url)
    return found


def wait_for_id(url: str, request_id: str, timeout: float = 10.0) -> UsageRecord:
    """The record of one request once the gateway flushed it (a gateway that several tests share
    holds other tests' records too)."""
    deadline = time.monotonic() + timeout
    while True:
        found = by_id(records(url)).get(request_id)
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"no record of request {request_id} within {timeout} s"
        time.sleep(0.1)


def by_id(found: list[UsageRecord]) -> dict[str, UsageRecord]:
    return {r.request_id: r for r in found}
