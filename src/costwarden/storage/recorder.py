"""The batch recorder: spool each record on the request path, write batches to the ledger off it.

`append` spools the record: at once, or (`grouped`, the gateway) in this loop turn's one write,
returning the future its request awaits before its last byte. A background task flushes every interval or when
the batch is full. A batch the database refuses as data (`RecordRejected`) is bisected: the good
records are written and each bad one is quarantined (table, metric, alert), so one poison record
never holds up the others. Any other failure (the database is down) is retried on the next
flush, with the spool segments kept. `stop` (on SIGTERM / shutdown) flushes everything first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from costwarden.aio import cancel_and_wait, wait_event
from costwarden.domain.limits import storable, violations
from costwarden.domain.quarantine import Quarantined, bad_line, quarantined
from costwarden.domain.record import UsageRecord
from costwarden.ports import LedgerStore, QuarantineStore, RecordRejected
from costwarden.storage.spool import Spool, read_folder, remove_folder

log = logging.getLogger(__name__)


class RecorderStore(LedgerStore, QuarantineStore, Protocol):
    """The ledger and its quarantine, in one database."""


@dataclass(slots=True)
class LedgerProgress:
    """What `/readyz` needs to tell a ledger that advances from one that is stuck."""

    backlog: int
    oldest_waiting_s: float  # how long the oldest unwritten record has waited (0 when none)
    consecutive_failures: int
    last_error: str | None


class Recorder:
    def __init__(
        self,
        store: RecorderStore,
        spool: Spool,
        interval_s: float,
        batch_size: int,
        on_quarantine: Callable[[Sequence[Quarantined]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        grouped: bool = False,
    ) -> None:
        self._grouped = grouped
        self._store = store
        self._spool = spool
        self._interval = interval_s
        self._batch_size = batch_size
        self._on_quarantine = on_quarantine
        self._clock = clock
        self._pending: list[UsageRecord] = []
        # ids of the records appended `fitted` (checked by `fit` already), until they are written;
        # each one is alive in `_pending` or `_unwritten` meanwhile, so no other record has its id.
        self._fitted: set[int] = set()
        self._unwritten: list[UsageRecord] = []  # sealed, not yet committed
        self._pending_since: float | None = None  # when the oldest pending record was appended
        self._unwritten_since: float | None = None  # the same, for the sealed records
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.written = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.quarantined = 0
        self.adopted = 0
        self.last_error: str | None = None

    def append(self, record: UsageRecord, fitted: bool = False) -> asyncio.Future[None] | None:
        """Spool the record; when grouped, the future that completes once it is on disk. `fitted`:
        the record came from `domain.limits.fit` (the record stage), so the batch does not check it
        again; any other is checked before it is written (e.g. quarantined if out of range)."""
        if fitted:
            self._fitted.add(id(record))
        spooled = None
        if self._grouped:
            spooled = self._spool.append_grouped(record)
        else:
            self._spool.append(record)
        self._pending.append(record)
        if self._pending_since is None:
            self._pending_since = self._clock()
        if len(self._pending) >= self._batch_size:
            self._wake.set()
        return spooled

    @property
    def backlog(self) -> int:
        return len(self._pending) + len(self._unwritten)

    def oldest_wait(self) -> float:
        """Seconds the oldest record not yet in the ledger has waited (0 when there is none)."""
        times = [t for t in (self._unwritten_since, self._pending_since) if t is not None]
        return self._clock() - min(times) if times else 0.0

    def progress(self) -> LedgerProgress:
        return LedgerProgress(self.backlog, self.oldest_wait(), self.consecutive_failures, self.last_error)

    async def recover(self) -> int:
        """Adopt the spools of dead processes sharing the spool root and replay them into the
        ledger; returns records replayed. Runs at start and then every `adopt_every_s`.

        Never raises: a spool that cannot be written now (the database is down) is left, unlocked,
        for the next attempt (by this gateway or another); bad lines and refused records are
        quarantined."""
        replayed = 0
        try:
            with self._spool.adopt() as folders:
                for folder in folders:
                    try:
                        replayed += await self._replay(folder)
                    except Exception as exc:
                        log.warning("spool %s not replayed yet: %s", folder.name, _describe(exc))
        except OSError as exc:
            log.warning("cannot scan the spool root for orphans: %s", exc)
        return replayed

    async def _replay(self, folder: Path) -> int:
        contents = await asyncio.to_thread(read_folder, folder)
        now = time.time()
        entries = [bad_line(f"{folder.name}/{where}", line, now) for where, line in contents.bad_lines]
        written = 0
        async with self._lock:  # one writer at a time: replays and flushes share the counters
            for start in range(0, len(contents.records), self._batch_size):
                count, poison = await self._write(contents.records[start : start + self._batch_size])
                written += count
                entries.extend(poison)
            await self._set_aside(entries)
        await asyncio.to_thread(remove_folder, folder)
        self.adopted += 1
        log.warning("recovered %d ledger records from the spool %s of a gateway that stopped", written, folder.name)
        return written

    def start(self, adopt_every_s: float = 0.0) -> None:
        """Flush in the background; adopt orphaned spools every `adopt_every_s` (0: only at start)."""
        self._task = asyncio.create_task(self._run(adopt_every_s), name="costwarden-recorder")

    async def _run(self, adopt_every_s: float) -> None:
        next_adoption = self._clock() + adopt_every_s if adopt_every_s > 0 else float("inf")
        while True:
            wait = min(self._interval, max(0.0, next_adoption - self._clock()))
            await wait_event(self._wake, wait)
            self._wake.clear()
            await self.flush()
            if self._clock() >= next_adoption:
                next_adoption = self._clock() + adopt_every_s
                await self.recover()

    async def flush(self) -> bool:
        """Write everything appended so far; True if the ledger (or its quarantine) has all of it."""
        async with self._lock:
            if self._pending:
                self._spool.seal()
                if not self._unwritten:
                    self._unwritten_since = self._pending_since
                self._unwritten.extend(self._pending)
                self._pending = []
                self._pending_since = None
            if not self._unwritten:
                return True
            batch = self._unwritten
            try:
                written, poison = 0, []
                for start in range(0, len(batch), self._batch_size):
                    count, bad = await self._write(batch[start : start + self._batch_size])
                    written += count
                    poison.extend(bad)
                await self._set_aside(poison)
            except Exception as exc:
                self.failures += 1
                self.consecutive_failures += 1
                self.last_error = _describe(exc)
                log.error("ledger write failed (%s); %d records kept in the spool", self.last_error, len(batch))
                return False
            self.written += len(batch) - len(poison)
            self.consecutive_failures = 0
            self.last_error = None
            self._unwritten = []
            self._unwritten_since = None
            if self._fitted:
                self._fitted.difference_update(map(id, batch))
            self._spool.commit_sealed()
            return True

    async def _write(self, records: Sequence[UsageRecord]) -> tuple[int, list[Quarantined]]:
        """Write `records`, isolating the ones the database refuses; (new records, quarantined)."""
        now = time.time()
        poison: list[Quarantined] = []
        fitting: list[UsageRecord] = []
        fitted = self._fitted
        for r in records:
            if id(r) in fitted or storable(r):
                fitting.append(r)
            else:  # e.g. replayed from an older gateway's spool: never sent, it could fail a batch
                poison.append(quarantined(r, "; ".join(violations(r)), now))
        return await self._bisect(fitting, poison, now)

    async def _bisect(
        self, records: Sequence[UsageRecord], poison: list[Quarantined], now: float
    ) -> tuple[int, list[Quarantined]]:
        if not records:
            return 0, poison
        try:
            return await self._store.write(records), poison
        except RecordRejected as exc:
            if len(records) == 1:
                poison.append(quarantined(records[0], str(exc), now))
                return 0, poison
        middle = len(records) // 2
        first, _ = await self._bisect(records[:middle], poison, now)
        second, _ = await self._bisect(records[middle:], poison, now)
        return first + second, poison

    async def _set_aside(self, entries: Sequence[Quarantined]) -> None:
        if not entries:
            return
        await self._store.quarantine(entries)
        self.quarantined += len(entries)
        log.error(
            "%d ledger records quarantined (first: %s: %s)", len(entries), entries[0].request_id, entries[0].reason
        )
        if self._on_quarantine is not None:
            try:
                self._on_quarantine(entries)
            except Exception:
                log.exception("quarantine notification failed")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        committed = await self.flush()
        self._spool.close(committed)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
