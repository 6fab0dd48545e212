"""Raw-record retention (storage.retention): prune the ledger's raw records older than a number
of days, batch by batch, keeping the rollups. Used by `costwarden ledger prune`."""

from __future__ import annotations

from costwarden.ports import RetentionStore

DAY_SECONDS = 86_400


def cutoff(now: float, raw_days: float) -> float:
    """The start time (Unix seconds) before which raw records are pruned."""
    return now - raw_days * DAY_SECONDS


async def prune_ledger(store: RetentionStore, before: float, batch: int) -> int:
    """Delete every raw record started before `before`, `batch` at a time; returns how many."""
    total = 0
    while True:
        pruned = await store.prune(before, batch)
        total += pruned
        if pruned < batch:
            return total
