"""The queue as an operator sees it: depth and age per unfinished batch, and purging.

Used by `costwarden queue status|purge` and the gateway's queue metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

from costwarden.domain.batch import BatchDepth
from costwarden.ports import JobQueue


@dataclass(frozen=True, slots=True)
class QueueStatus:
    batches: tuple[BatchDepth, ...]
    now: float

    @property
    def depth(self) -> int:
        """Jobs waiting to run (not counting those running now)."""
        return sum(b.pending for b in self.batches)

    @property
    def running(self) -> int:
        return sum(b.leased for b in self.batches)

    @property
    def oldest_age_s(self) -> float:
        """Seconds since the oldest unfinished job was queued (0 when none)."""
        times = [b.oldest_enqueued_at for b in self.batches if b.oldest_enqueued_at is not None]
        return max(0.0, self.now - min(times)) if times else 0.0

    def to_json(self) -> dict[str, object]:
        rows = [
            {
                "batch_id": b.batch_id,
                "team": b.team,
                "status": b.status.value,
                "pending": b.pending,
                "running": b.leased,
                "done": b.done,
                "oldest_age_s": None if b.oldest_enqueued_at is None else round(self.now - b.oldest_enqueued_at, 3),
            }
            for b in self.batches
        ]
        oldest = round(self.oldest_age_s, 3)
        return {"depth": self.depth, "running": self.running, "oldest_age_s": oldest, "batches": rows}


async def queue_status(queue: JobQueue, now: float) -> QueueStatus:
    return QueueStatus(tuple(await queue.depth(now)), now)


async def purge_queue(queue: JobQueue, batch_id: str | None, now: float) -> int:
    """Drop pending jobs (of one batch, or all); they are reported in their batch's error file."""
    return await queue.purge(batch_id, now)
