"""Monthly partitions of the PostgreSQL raw ledger (opt-in: `costwarden ledger partition`, or
`storage.partition: monthly` for a new, empty ledger).

A partitioned ledger is `PARTITION BY RANGE (started_at)`, one partition per UTC calendar month
(`ledger_y2026m12`) and a default partition (`ledger_default`) for any record outside them, so a
write never fails for want of a partition. Its primary key must hold the partition key, so it is
(request_id, started_at) and the write's merge conflicts on both: a replayed record carries its
started_at bit for bit (the spool keeps it), so a replay still lands on the stored row and inserts
nothing. Retention drops the partitions wholly before its cutoff (no DELETE, no dead rows) and
deletes the rest row by row; rollups are other tables and stay. Months are created ahead, by
every store's start and by the leader's retention rounds; a month whose rows already went to the
default partition is left there (correct, only not droppable whole).

Converting an existing ledger copies it under an exclusive lock in one transaction: gateways keep
serving meanwhile, their flushes wait or fail and their records wait in their spools.
"""

from __future__ import annotations

import calendar
import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the postgres extra
    import asyncpg

log = logging.getLogger(__name__)

DEFAULT = "ledger_default"
AHEAD_MONTHS = 3  # months created ahead of now
BACK_MONTHS = 240  # a conversion makes partitions for at most this many months back; older rows: default
_NAME = re.compile(r"^ledger_y(\d{4})m(\d{2})$")
_PARTITIONS = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'ledger'::regclass"
)


def month_of(at: float) -> tuple[int, int]:
    """The UTC (year, month) holding `at`, clamped to years 1..9999."""
    at = min(max(at, -62_135_596_800.0), 253_402_300_799.0)
    moment = datetime.fromtimestamp(at, UTC)
    return moment.year, moment.month


def bounds(year: int, month: int) -> tuple[int, int]:
    """[start, end) of a UTC month, Unix seconds."""
    after = (year + month // 12, month % 12 + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0)), calendar.timegm((*after, 1, 0, 0, 0))


def months(first: float, last: float) -> list[tuple[int, int]]:
    """Every month from the one holding `first` to the one holding `last`."""
    (y, m), end = month_of(first), month_of(last)
    out = []
    while (y, m) <= end:
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def name(year: int, month: int) -> str:
    return f"ledger_y{year:04d}m{month:02d}"


async def is_partitioned(conn: asyncpg.Connection) -> bool:
    kind = await conn.fetchval("SELECT relkind::text FROM pg_class WHERE oid = to_regclass('ledger')")
    return bool(kind == "p")


async def ensure_months(conn: asyncpg.Connection, first: float, last: float) -> list[str]:
    """Create the month partitions from `first` to `last` that are missing; returns their names.
    A month whose rows are already in the default partition is skipped (logged)."""
    import asyncpg

    existing = {r["relname"] for r in await conn.fetch(_PARTITIONS)}
    made = []
    for year, month in months(first, last):
        table = name(year, month)
        if table in existing:
            continue
        lo, hi = bounds(year, month)
        try:
            async with conn.transaction():  # a savepoint inside the caller's transaction
                await conn.execute(f"CREATE TABLE {table} PARTITION OF ledger FOR VALUES FROM ({lo}) TO ({hi})")
        except asyncpg.CheckViolationError:
            log.warning("%s not created: the default partition holds records of that month", table)
            continue
        made.append(table)
    return made


async def drop_before(conn: asyncpg.Connection, before: float) -> int:
    """Drop every month partition that ends at or before `before`; returns how many records went."""
    dropped = 0
    for row in await conn.fetch(_PARTITIONS):
        found = _NAME.match(row["relname"])
        if found is None or bounds(int(found[1]), int(found[2]))[1] > before:
            continue
        async with conn.transaction():
            table = row["relname"]
            await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            dropped += int(await conn.fetchval(f"SELECT COUNT(*) FROM {table}"))
            await conn.execute(f"DROP TABLE {table}")
    return dropped


async def convert(conn: asyncpg.Connection, now: float) -> int:
    """Make the (unpartitioned) ledger a monthly-partitioned one with the same rows, columns,
    defaults and indexes; the caller holds the transaction. Returns how many records moved."""
    await conn.execute("LOCK TABLE ledger IN ACCESS EXCLUSIVE MODE")
    indexes = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'ledger'"
    )
    first, last = await conn.fetchrow("SELECT MIN(started_at), MAX(started_at) FROM ledger")
    await conn.execute("ALTER TABLE ledger RENAME TO ledger_unpartitioned")
    for index in indexes:
        await conn.execute(f"ALTER INDEX {index['indexname']} RENAME TO {index['indexname']}_unpartitioned")
    await conn.execute(
        "CREATE TABLE ledger (LIKE ledger_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        "INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE (started_at)"
    )
    await conn.execute("ALTER TABLE ledger ADD CONSTRAINT ledger_pkey PRIMARY KEY (request_id, started_at)")
    for index in indexes:
        if index["indexname"] != "ledger_pkey":
            await conn.execute(index["indexdef"])  # names the new table: the old one was renamed
    await conn.execute(f"CREATE TABLE {DEFAULT} PARTITION OF ledger DEFAULT")
    floor = bounds(*months(now, now)[0])[0] - BACK_MONTHS * 31 * 86_400
    lo = max(first if first is not None else now, floor)
    hi = min(last if last is not None else now, now + 3660 * 86_400)
    await ensure_months(conn, min(lo, now), max(hi, now + AHEAD_MONTHS * 31 * 86_400))
    moved = await conn.execute("INSERT INTO ledger SELECT * FROM ledger_unpartitioned")
    await conn.execute("DROP TABLE ledger_unpartitioned")
    return int(moved.split()[-1])  # "INSERT 0 n"
