"""The batch recorder: spool each record on the request path, write batches to the ledger off it.

`append` is synchronous and durable (spool). A background task flushes every interval or when
the batch is full; a failed write is retried on the next flush, with its spool segments kept.
`stop` (on SIGTERM / shutdown) flushes everything before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from costwarden.domain.record import UsageRecord
from costwarden.ports import LedgerStore
from costwarden.storage.spool import Spool, read_folder, remove_folder

log = logging.getLogger(__name__)


class Recorder:
    def __init__(self, store: LedgerStore, spool: Spool, interval_s: float, batch_size: int) -> None:
        self._store = store
        self._spool = spool
        self._interval = interval_s
        self._batch_size = batch_size
        self._pending: list[UsageRecord] = []
        self._unwritten: list[UsageRecord] = []  # sealed, not yet committed
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.failures = 0

    def append(self, record: UsageRecord) -> None:
        self._spool.append(record)
        self._pending.append(record)
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._pending) + len(self._unwritten)

    async def recover(self) -> int:
        """Replay the spools of dead processes into the ledger; returns records replayed."""
        replayed = 0
        for folder in list(self._spool.orphans()):
            records = read_folder(folder)
            for start in range(0, len(records), self._batch_size):
                replayed += await self._store.write(records[start : start + self._batch_size])
            remove_folder(folder)
            log.info("replayed %d records from spool %s", len(records), folder.name)
        return replayed

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="costwarden-recorder")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> bool:
        """Write everything appended so far; True if the ledger has all of it."""
        if self._pending:
            self._spool.seal()
            self._unwritten.extend(self._pending)
            self._pending = []
        if not self._unwritten:
            return True
        batch = self._unwritten
        try:
            for start in range(0, len(batch), self._batch_size):
                await self._store.write(batch[start : start + self._batch_size])
        except Exception:
            self.failures += 1
            log.exception("ledger write failed; %d records kept in the spool for retry", len(batch))
            return False
        self.written += len(batch)
        self._unwritten = []
        self._spool.commit_sealed()
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        committed = await self.flush()
        self._spool.close(committed)
