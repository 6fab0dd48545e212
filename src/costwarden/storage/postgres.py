"""The shared PostgreSQL ledger (asyncpg pools). Several gateways may write to it at once.

Two pools: one for writes, pings, keys, alerts and budgets, one for reports and record listings,
so no number of long reports can take every connection a ledger flush or a readiness probe needs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from costwarden.domain.alert import Alert
from costwarden.domain.keys import KeyChanges, StoredKey
from costwarden.domain.latency_histogram import bin_of
from costwarden.domain.money import quantize, to_nanos
from costwarden.domain.quarantine import Quarantined
from costwarden.domain.record import LEDGER_COLUMNS, UsageRecord
from costwarden.domain.report import RecordCursor, SpendQuery, SpendReport, SpendRow, Within
from costwarden.domain.rollup import BASE_CUBES
from costwarden.ports import RecordRejected
from costwarden.storage import partitions
from costwarden.storage.alerts_codec import ALERT_COLUMNS, alert_from_row, alert_row, latest_per_id
from costwarden.storage.keys_codec import KEY_COLUMNS, KEY_CURSOR_SQL, key_row, keys_from_rows
from costwarden.storage.ledger_codec import record_of, record_values
from costwarden.storage.migrations import SCHEMA_TABLE, migrations, statements
from costwarden.storage.report_children import spend_postgres_encoded
from costwarden.storage.report_process import ReportProcess
from costwarden.storage.retention import POSTGRES_PRUNE, POSTGRES_PRUNE_PARTITIONED
from costwarden.storage.rollup_fold import FOLD_LIMIT, FoldSchedule, add_delta_postgres, collect, fold_postgres
from costwarden.storage.rollup_report import series_postgres, spend_postgres, top_postgres
from costwarden.storage.rollup_write import (
    DERIVES,
    QUARTER_MIGRATION,
    STAGE,
    WEEKS_MIGRATION,
    add_quarter_days_postgres,
    add_weeks_postgres,
    backfill_postgres,
    derive_postgres,
    merge_postgres,
    stage_postgres,
)
from costwarden.storage.rollup_write import MIGRATION as ROLLUP_MIGRATION
from costwarden.storage.span_reads import spans_postgres

log = logging.getLogger(__name__)
_COLUMNS = ", ".join(LEDGER_COLUMNS)
# The staging table's PostgreSQL type of each ledger column, by name: a column added to LEDGER_COLUMNS without
# its type here fails at import, never as a silently shifted COPY.
_TYPES: dict[str, str] = {
    "request_id": "text",
    "started_at": "float8",
    "ended_at": "float8",
    "key_id": "text",
    "team": "text",
    "project": "text",
    "environment": "text",
    "tags": "jsonb",
    "deployment": "text",
    "protocol": "text",
    "endpoint": "text",
    "method": "text",
    "model": "text",
    "stream": "bool",
    "status": "int4",
    "upstream_status": "int4",
    "outcome": "text",
    "error_code": "text",
    "latency_ms": "float8",
    "upstream_ms": "float8",
    "input_tokens": "int8",
    "output_tokens": "int8",
    "cached_tokens": "int8",
    "items": "int8",
    "request_bytes": "int8",
    "response_bytes": "int8",
    "cost_usd": "numeric",
    "pricing_basis": "text",
    "client_request_id": "text",
    "variant": "text",
    "original_cost_usd": "text",
    "batch_id": "text",
    "job_id": "text",
    "cache": "text",
    "cache_avoided_usd": "text",
    "reasoning_tokens": "int8",
    "images": "int8",
    "audio_ms": "int8",
    "characters": "int8",
    "documents": "int8",
}
_STAGE = stage_postgres(tuple((column, _TYPES[column]) for column in LEDGER_COLUMNS))
_MERGE = merge_postgres(LEDGER_COLUMNS)  # one statement: the insert, and which rows it stored
_MERGE_PARTITIONED = merge_postgres(LEDGER_COLUMNS, conflict="request_id, started_at")  # storage/partitions.py
_QUARANTINE_SELECT = (
    "SELECT request_id, quarantined_at, reason, record FROM ledger_quarantine ORDER BY quarantined_at DESC"
)
_MIGRATION_LOCK = 7_314_211  # advisory lock id: one process migrates at a time
# The database (or asyncpg encoding the batch) refused the data itself: retrying cannot help.
_DATA_ERRORS = (
    asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, OverflowError, ValueError, TypeError,
    ArithmeticError,
)  # fmt: skip
_KEY_CHANGE_LOCK = 7_314_212  # advisory lock id: key writers number their changes one at a time
_NEXT_KEY_CHANGE = "nextval('api_keys_change_seq')"


def _staged(records: Sequence[UsageRecord]) -> tuple[list[tuple[Any, ...]], list[tuple[UsageRecord, int, int]]]:
    """The rows to COPY (the first record of each request id) and, for each, (record, latency
    bin, cost in nano-dollars), the input of its pending rollup cells."""
    rows: dict[str, tuple[Any, ...]] = {}
    cells: list[tuple[UsageRecord, int, int]] = []
    for r in records:
        if r.request_id not in rows:
            rows[r.request_id] = record_values(r, r.stream, quantize(r.cost_usd))
            cells.append((r, bin_of(r.latency_ms), to_nanos(r.cost_usd)))
    return list(rows.values()), cells


def _record(row: asyncpg.Record) -> UsageRecord:
    values = dict(row.items())
    return record_of(values, quantize(values["cost_usd"]))


class PostgresStore:
    """Ledger and keys in PostgreSQL; `write` is one transaction per batch (COPY, then one merge)."""

    def __init__(
        self,
        dsn: str,
        min_size: int = 1,
        max_size: int = 4,
        read_size: int = 2,
        background_fold: bool = True,
        partition: str = "none",
    ) -> None:
        """`background_fold=False`: pending rollup cells wait for `fold` (benches, tools).
        `partition="monthly"`: an empty, unpartitioned ledger is partitioned by month at open."""
        self.dsn = dsn
        self._min, self._max, self._read_size = min_size, max_size, read_size
        self._pool: asyncpg.Pool | None = None
        self._reads: asyncpg.Pool | None = None
        self._fold = FoldSchedule(self.fold, rows=FOLD_LIMIT if background_fold else None)
        self._partitioned = False  # monthly partitions (storage/partitions.py), found at open
        self._partition = partition
        self._reports = ReportProcess()  # started on the first encoded report

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        return cls(url)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("PostgresStore.open() was not called")
        return self._pool

    @property
    def reads(self) -> asyncpg.Pool:
        """The reports' own pool: a slow report waits here, never on the write pool."""
        if self._reads is None:
            raise RuntimeError("PostgresStore.open() was not called")
        return self._reads

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self.dsn, min_size=self._min, max_size=self._max)
        # Reads plan scans of many rollup cells: past `jit_above_cost`, PostgreSQL would compile each
        # statement for no faster run (a team's 60 budget spans: 0.2 -> 7 s at 1M records; a month's
        # report: 88-131 ms of a 0.5 s read). Off for the whole pool, so that a budget's read is one
        # round trip, not a transaction that sets it (500 key budgets' start: see docs/benchmarks.md).
        self._reads = await asyncpg.create_pool(
            self.dsn, min_size=0, max_size=self._read_size, server_settings={"jit": "off"}
        )
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} "
                "(version INTEGER PRIMARY KEY, name TEXT, applied_at TIMESTAMPTZ DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch(f"SELECT version FROM {SCHEMA_TABLE}")}
            for migration in migrations("postgres"):
                if migration.version in done:
                    continue
                for statement in statements(migration.sql):
                    await conn.execute(statement)
                if migration.version == ROLLUP_MIGRATION:
                    await backfill_postgres(conn)
                if migration.version == WEEKS_MIGRATION and ROLLUP_MIGRATION in done:
                    await add_weeks_postgres(conn)  # rolled up before weeks (a backfill now makes them itself)
                if migration.version in DERIVES:
                    await derive_postgres(conn, cubes=DERIVES[migration.version])  # narrow cubes from the folded cells
                if migration.version == QUARTER_MIGRATION:
                    await add_quarter_days_postgres(conn)  # 6-hour cells from the hour cells already folded
                await conn.execute(
                    f"INSERT INTO {SCHEMA_TABLE} (version, name) VALUES ($1, $2)", migration.version, migration.name
                )
            await self._find_partitions(conn)

    async def _find_partitions(self, conn: asyncpg.Connection) -> None:
        """Whether the ledger is partitioned by month; if so, create the months ahead of now. With
        `partition="monthly"` an empty ledger is partitioned here; a filled one is left as it is."""
        self._partitioned = await partitions.is_partitioned(conn)
        if self._partition == "monthly" and not self._partitioned:
            if await conn.fetchval("SELECT NOT EXISTS (SELECT 1 FROM ledger)"):
                await partitions.convert(conn, time.time())
                self._partitioned = True
            else:
                log.warning(
                    "storage.partition is monthly but the ledger holds records and is not partitioned: "
                    "run `costwarden ledger partition` to convert it (docs/scale.md)"
                )
        if self._partitioned:
            now = time.time()
            await partitions.ensure_months(conn, now, now + partitions.AHEAD_MONTHS * 31 * 86_400)

    async def partition(self) -> int:
        """Convert the ledger to monthly partitions (`costwarden ledger partition`); returns how
        many records moved, or -1 when it was partitioned already."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            if await partitions.is_partitioned(conn):
                self._partitioned = True
                return -1
            moved = await partitions.convert(conn, time.time())
        self._partitioned = True
        return moved

    async def close(self) -> None:
        await self._reports.close()
        await self._fold.close()
        if self._reads is not None:
            await self._reads.close()
            self._reads = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def write(self, records: Sequence[UsageRecord]) -> int:
        """Store the new records and their rollups in one transaction (COPY into a staging table,
        then one merge); returns how many were new. `RecordRejected` when a value cannot be stored."""
        if not records:
            return 0
        try:
            rows, cells = _staged(records)
            try:
                stored = await self._write(rows, cells)
            except asyncpg.InvalidColumnReferenceError:  # another process partitioned the ledger
                async with self.pool.acquire() as conn:
                    self._partitioned = await partitions.is_partitioned(conn)
                stored = await self._write(rows, cells)
        except _DATA_ERRORS as exc:
            raise RecordRejected(f"{type(exc).__name__}: {exc}") from exc
        self._fold.added(stored)
        return stored

    async def _write(self, rows: list[tuple[Any, ...]], cells: list[tuple[UsageRecord, int, int]]) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_STAGE)
            await conn.copy_records_to_table(STAGE, records=rows, columns=LEDGER_COLUMNS)
            stored, ids = await conn.fetchrow(_MERGE_PARTITIONED if self._partitioned else _MERGE, len(rows))
            if ids is not None:  # some were stored already: only the rows stored now count
                new = set(ids)
                cells = [c for c in cells if c[0].request_id in new]
            if cells:
                await add_delta_postgres(conn, collect(cells))
        return int(stored)

    async def fold(self, limit: int) -> int:
        """Fold up to `limit` pending rollup cells of each base cube (of any writer) into the rollups,
        the cubes at once on their own connections; returns how many."""

        async def one(cube: int) -> int:
            async with self.pool.acquire() as conn:
                return await fold_postgres(conn, limit, cube)

        return sum(await asyncio.gather(*(one(c) for c in range(len(BASE_CUBES)))))

    async def prune(self, before: float, limit: int) -> int:
        """Partitioned: whole months before the cutoff are dropped (and months ahead created)
        first; then one batch of the rest is deleted."""
        dropped = 0
        if self._partitioned:
            async with self.pool.acquire() as conn:
                now = time.time()
                await partitions.ensure_months(conn, now, now + partitions.AHEAD_MONTHS * 31 * 86_400)
                dropped = await partitions.drop_before(conn, before)
        sql = POSTGRES_PRUNE_PARTITIONED if self._partitioned else POSTGRES_PRUNE
        status = await self.pool.execute(sql, before, limit)
        return dropped + int(status.split()[-1])  # "DELETE n"

    async def quarantine(self, entries: Sequence[Quarantined]) -> None:
        rows = [(e.request_id, e.quarantined_at, e.reason, e.record) for e in entries]
        sql = "INSERT INTO ledger_quarantine (request_id, quarantined_at, reason, record) VALUES ($1, $2, $3, $4)"
        if rows:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.executemany(sql, rows)

    async def list_quarantine(self, limit: int) -> list[Quarantined]:
        sql = f"{_QUARANTINE_SELECT} LIMIT $1"
        return [Quarantined(*r) for r in await self.reads.fetch(sql, limit)]

    async def spend(self, query: SpendQuery) -> SpendReport:
        async with self.reads.acquire() as conn:
            return await spend_postgres(conn, query)

    async def spend_encoded(self, query: SpendQuery, encode: Callable[[SpendReport], bytes]) -> bytes:
        """In the report process (storage/report_process.py) on a connection of its own; here, the
        statements on the read pool and the Python in a worker thread, when it cannot."""
        body = await self._reports.run(spend_postgres_encoded, self.dsn, query, encode)
        if body is not None:
            return body
        report = await self.spend(query)
        return await asyncio.to_thread(encode, report)

    async def top(self, query: SpendQuery, n: int) -> list[SpendRow]:
        async with self.reads.acquire() as conn:
            return await top_postgres(conn, query, n)

    async def spend_series(self, query: SpendQuery, step_s: int) -> dict[int, SpendReport] | None:
        async with self.reads.acquire() as conn:
            return await series_postgres(conn, query, step_s)

    async def spend_spans(
        self, query: SpendQuery, spans: Sequence[tuple[float, float | None]], within: Within = ()
    ) -> list[SpendReport]:
        async with self.reads.acquire() as conn:
            return await spans_postgres(conn, query, spans, within)

    async def records(
        self, start: float | None, end: float | None, limit: int, before: RecordCursor | None = None
    ) -> list[UsageRecord]:
        params: list[object] = [start if start is not None else float("-inf"), end if end is not None else float("inf")]
        after = ""
        if before is not None:
            after = "AND (started_at, request_id) < ($3, $4) "
            params += [before.started_at, before.request_id]
        sql = (
            f"SELECT {_COLUMNS} FROM ledger WHERE started_at >= $1 AND started_at < $2 {after}"
            f"ORDER BY started_at DESC, request_id DESC LIMIT ${len(params) + 1}"
        )
        rows = await self.reads.fetch(sql, *params, limit)
        return [_record(r) for r in rows]

    async def ping(self) -> bool:
        try:
            return bool(await self.pool.fetchval("SELECT 1"))
        except (asyncpg.PostgresError, OSError, RuntimeError):
            return False

    async def add_key(self, key: StoredKey) -> None:
        placeholders = ", ".join(f"${i}" for i in range(1, 13))
        sql = f"INSERT INTO api_keys ({KEY_COLUMNS}, change_seq) VALUES ({placeholders}, {_NEXT_KEY_CHANGE})"
        await self._key_change(sql, *key_row(key))

    async def list_keys(self) -> list[StoredKey]:
        rows = await self.pool.fetch(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at")
        return list(await asyncio.to_thread(keys_from_rows, rows))

    async def revoke_key(self, key_id: str, at: float) -> bool:
        change = f"revoked_at = $1, change_seq = {_NEXT_KEY_CHANGE}"
        sql = f"UPDATE api_keys SET {change} WHERE key_id = $2 AND revoked_at IS NULL"
        return (await self._key_change(sql, at, key_id)).endswith(" 1")

    async def _key_change(self, sql: str, *args: Any) -> str:
        # Writers take the next change number under one lock, so numbers commit in order and a
        # reader's cursor (the newest committed number) never passes a change not yet visible.
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _KEY_CHANGE_LOCK)
            return str(await conn.execute(sql, *args))

    async def key_changes(self, since: int) -> KeyChanges:
        sql = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE change_seq > $1 AND change_seq <= $2 ORDER BY change_seq"
        async with self.pool.acquire() as conn:
            cursor = int(await conn.fetchval(KEY_CURSOR_SQL))
            rows = await conn.fetch(sql, since, cursor)
        return KeyChanges(await asyncio.to_thread(keys_from_rows, rows), cursor)

    async def save_alerts(self, alerts: Sequence[Alert]) -> None:
        sql = (
            f"INSERT INTO alerts ({ALERT_COLUMNS}) "
            "VALUES ($1, $2, $3, $4::jsonb, $5, $6::numeric, $7::numeric, $8, $9, $10) "
            "ON CONFLICT (id) DO UPDATE SET resolved_at = COALESCE(EXCLUDED.resolved_at, alerts.resolved_at)"
        )
        rows = [alert_row(a, decimals_as_text=False) for a in latest_per_id(alerts)]
        if rows:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.executemany(sql, rows)

    async def list_alerts(self, active_only: bool, limit: int) -> list[Alert]:
        where = "WHERE resolved_at IS NULL " if active_only else ""
        sql = f"SELECT {ALERT_COLUMNS} FROM alerts {where}ORDER BY started_at DESC, id DESC LIMIT $1"
        return [alert_from_row(r) for r in await self.pool.fetch(sql, limit)]

    async def list_budgets(self) -> list[tuple[str, str]]:
        rows = await self.pool.fetch("SELECT id, definition FROM budgets ORDER BY id")
        return [(r["id"], r["definition"]) for r in rows]

    async def put_budget(self, budget_id: str, definition: str, at: float) -> None:
        await self.pool.execute(
            "INSERT INTO budgets (id, definition, updated_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (id) DO UPDATE SET definition = EXCLUDED.definition, updated_at = EXCLUDED.updated_at",
            budget_id,
            definition,
            at,
        )

    async def delete_budget(self, budget_id: str) -> bool:
        status = await self.pool.execute("DELETE FROM budgets WHERE id = $1", budget_id)
        return bool(status.endswith(" 1"))
