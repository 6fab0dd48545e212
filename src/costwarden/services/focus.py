"""The FOCUS export use case, shared by `costwarden export focus` and `GET /admin/v1/export/focus`.

Pages through the ledger with its keyset cursor (newest first), folds each page into hourly
charges (domain/focus.py) and yields them an hour at a time: memory holds one page and one hour.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

from costwarden.config import Config
from costwarden.domain.focus import Charge, HourFolder, Issuer, Value, focus_row
from costwarden.domain.money import ZERO
from costwarden.domain.report import QueryError, RecordCursor
from costwarden.ports import LedgerStore
from costwarden.services.reports import parse_duration, parse_time

PAGE = 5000
FORMATS = ("csv", "parquet")


@dataclass(frozen=True, slots=True)
class FocusWindow:
    """[start, end) in Unix seconds, both bounds set."""

    start: float
    end: float


def focus_window(since: str | None, until: str | None, now: float) -> FocusWindow:
    """`since`: ISO 8601 or a duration back from now (24h, 7d); `until`: ISO 8601, default now.
    Raises QueryError with a message for the user."""
    if not since:
        raise QueryError("give --since: an ISO 8601 time (2026-11-01) or a duration back from now (24h, 30d)")
    try:
        start = now - parse_duration(since)
    except QueryError:
        try:
            start = parse_time(since)
        except QueryError:
            raise QueryError(
                f"cannot read --since {since!r}: use ISO 8601 (2026-11-01, 2026-11-01T14:00Z) or a duration (24h, 30d)"
            ) from None
    end = parse_time(until) if until else now
    if end <= start:
        raise QueryError(f"the window is empty: --until ({until or 'now'}) must be after --since ({since})")
    return FocusWindow(max(start, 0.0), end)


def issuer_of(config: Config) -> Issuer:
    focus = config.observability.focus
    return Issuer(focus.provider, focus.billing_account_id, focus.billing_account_name, focus.service_name)


@dataclass(slots=True)
class ExportTally:
    """What an export covered, for the summary line (and the tests' reconciliation)."""

    records: int = 0
    rows: int = 0
    cost: Decimal = ZERO
    hours: set[float] = field(default_factory=set)


async def charges(
    store: LedgerStore, window: FocusWindow, tally: ExportTally | None = None, page: int = PAGE
) -> AsyncIterator[list[Charge]]:
    """The window's charges, an hour at a time (newest hour first)."""
    folder = HourFolder(window.start, window.end)
    cursor: RecordCursor | None = None
    while True:
        # Bound the window's end by the cursor too: the index range then holds only the records
        # left, so each page costs one page of index, not everything newer than the cursor.
        upper = window.end if cursor is None else min(window.end, math.nextafter(cursor.started_at, math.inf))
        found = await store.records(window.start, upper, page, cursor)
        if tally is not None:
            tally.records += len(found)
        for hour in folder.add(found):
            _count(tally, hour)
            yield hour
        if len(found) < page:
            break
        cursor = RecordCursor.of(found[-1])
    for hour in folder.finish():
        _count(tally, hour)
        yield hour


def _count(tally: ExportTally | None, hour: list[Charge]) -> None:
    if tally is None:
        return
    tally.rows += len(hour)
    for charge in hour:
        tally.cost += charge.totals.cost
        tally.hours.add(charge.start)


async def focus_rows(
    store: LedgerStore, window: FocusWindow, issuer: Issuer, tally: ExportTally | None = None, page: int = PAGE
) -> AsyncIterator[list[dict[str, Value]]]:
    """The FOCUS rows of the window, an hour's batch at a time."""
    async for hour in charges(store, window, tally, page):
        yield [focus_row(charge, issuer) for charge in hour]
