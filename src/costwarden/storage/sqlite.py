"""The embedded SQLite ledger (WAL), driven from worker threads so the event loop never blocks.

Three connections, each with its own thread: one for writes, keys and alerts, one for reports
and record listings, one for readiness probes. WAL lets readers run while the writer commits, so
a long report never holds up a ledger flush, a probe or a key refresh, and a flush waiting for a
lock never holds up a probe.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from costwarden.domain.alert import Alert
from costwarden.domain.keys import KeyChanges, StoredKey
from costwarden.domain.latency_histogram import bin_of
from costwarden.domain.money import from_nanos, to_nanos
from costwarden.domain.quarantine import Quarantined
from costwarden.domain.record import LEDGER_COLUMNS, UsageRecord
from costwarden.domain.report import RecordCursor, SpendQuery, SpendReport, SpendRow, Within
from costwarden.domain.rollup import CUBES
from costwarden.ports import RecordRejected
from costwarden.storage.alerts_codec import ALERT_COLUMNS, alert_from_row, alert_row, latest_per_id
from costwarden.storage.keys_codec import KEY_COLUMNS, KEY_CURSOR_SQL, key_row, keys_from_rows
from costwarden.storage.ledger_codec import record_of, record_values
from costwarden.storage.migrations import SCHEMA_TABLE, migrations
from costwarden.storage.report_children import Encode, connect_sqlite, spend_sqlite_encoded
from costwarden.storage.report_process import ReportProcess
from costwarden.storage.retention import SQLITE_PRUNE
from costwarden.storage.rollup_fold import (
    FOLD_LIMIT,
    SQLITE_FOLD_LIMIT,
    FoldSchedule,
    add_delta_sqlite,
    collect,
    fold_sqlite,
)
from costwarden.storage.rollup_report import series_sqlite, spend_sqlite, top_sqlite
from costwarden.storage.rollup_write import (
    DERIVES,
    QUARTER_MIGRATION,
    WEEKS_MIGRATION,
    add_quarter_days_sqlite,
    add_weeks_sqlite,
    backfill_sqlite,
    derive_sqlite,
    mark_sqlite,
    stored_sqlite,
)
from costwarden.storage.rollup_write import MIGRATION as ROLLUP_MIGRATION
from costwarden.storage.span_reads import spans_sqlite
from costwarden.storage.sqlite_conn import sqlite_path

T = TypeVar("T")
# Errors that say "this data cannot be stored", as opposed to "the database cannot be reached".
_DATA_ERRORS = (
    OverflowError, ValueError, TypeError, ArithmeticError, sqlite3.IntegrityError, sqlite3.DataError,
    sqlite3.InterfaceError,
)  # fmt: skip
_COST_AT = LEDGER_COLUMNS.index("cost_usd")
_SQL_COLUMNS = tuple("cost_nanos" if c == "cost_usd" else c for c in LEDGER_COLUMNS)
# One run a row (executemany), not multi-row INSERTs (storage/sqlite_conn.insert_rows): measured
# (bench/sqlite_write.py --indexes), those cost a fleet's rows, whose team and key index entries
# land all over, 15.7 us a row against 12.6, for 6.6 against 7.9 on a gateway's one team and key.
_INSERT = (
    f"INSERT INTO ledger ({', '.join(_SQL_COLUMNS)}) VALUES ({', '.join('?' * len(_SQL_COLUMNS))}) "
    "ON CONFLICT (request_id) DO NOTHING"
)


# Planner statistics: ANALYZE samples this many rows per index (milliseconds on any ledger), at open
# and again whenever the ledger has grown by as many rows as it held at the last one (at least
# _REANALYZE_ROWS), so a short-window report picks the time index instead of walking a whole one.
_ANALYSIS_LIMIT = 1000
_REANALYZE_ROWS = 50_000


def _analyze(conn: sqlite3.Connection) -> int:
    """Refresh the planner's statistics; returns the ledger's size (its largest rowid) now."""
    conn.execute(f"PRAGMA analysis_limit={_ANALYSIS_LIMIT}")
    conn.execute("ANALYZE")
    _grain_spread(conn)
    return int(conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM ledger").fetchone()[0])


def _grain_spread(conn: sqlite3.Connection) -> None:
    """A sampled ANALYZE sees at most `_ANALYSIS_LIMIT` rows of an index, so it takes the rollups'
    leading key column, the grain (1-4 values), for as selective as a team or a key: about 1,000
    cells of millions each. The planner then reads a grain's bucket range, every team's cells, rather
    than a team's or a key's index (a team budget's rebuild read all teams' hour cells). Each rollup
    table's primary key gets its cells per grain from its row count instead; connections opened from
    now on plan with it (this one too: `ANALYZE sqlite_master` reloads the statistics)."""
    for cube in CUBES:
        where = (cube.table, cube.table)  # a WITHOUT ROWID table's primary key is named as the table
        row = conn.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = ? AND idx = ?", where).fetchone()
        if row is None:  # an empty table has no statistics
            continue
        stat = row[0].split()
        stat[1] = str(max(int(stat[1]), int(stat[0]) // len(cube.grains)))
        conn.execute("UPDATE sqlite_stat1 SET stat = ? WHERE tbl = ? AND idx = ?", (" ".join(stat), *where))
    conn.execute("ANALYZE sqlite_master")


def _row(r: UsageRecord) -> tuple[Any, ...]:
    return record_values(r, int(r.stream), to_nanos(r.cost_usd))


def _write(
    conn: sqlite3.Connection, records: Sequence[UsageRecord], rows: list[tuple[Any, ...]], bins: list[int]
) -> int:
    """Insert the rows and the pending rollup cells of those stored, in one transaction; returns
    how many were stored (a batch naming a request id twice keeps its first record)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        mark = mark_sqlite(conn)
        before = conn.total_changes
        conn.executemany(_INSERT, rows)
        inserted = conn.total_changes - before
        if inserted == len(rows):  # every row is new (so no request id came twice)
            add_delta_sqlite(conn, collect(zip(records, bins, (row[_COST_AT] for row in rows), strict=True)))
        elif inserted:
            firsts: dict[str, tuple[UsageRecord, int, int]] = {}
            for r, row, index in zip(records, rows, bins, strict=True):
                firsts.setdefault(r.request_id, (r, index, row[_COST_AT]))
            stored = list(firsts.values())
            if inserted < len(stored):  # some were stored already: exactly the rows above the mark count
                ids = stored_sqlite(conn, mark)
                stored = [x for x in stored if x[0].request_id in ids]
            add_delta_sqlite(conn, collect(stored))
        conn.execute("COMMIT")
        return inserted
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _record(row: tuple[Any, ...]) -> UsageRecord:
    values = dict(zip(LEDGER_COLUMNS, row, strict=True))
    return record_of(values, from_nanos(values["cost_usd"]))


def _key_change(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
    """One key insert or revocation, numbered with the next key change (the last parameter).

    SQLite serialises writers, so change numbers commit in order and a reader's cursor never
    passes a change that is not yet visible."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("UPDATE api_key_changes SET last_seq = last_seq + 1")
        seq = conn.execute("SELECT last_seq FROM api_key_changes").fetchone()[0]
        count = int(conn.execute(sql, (*params, seq)).rowcount)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT" if count else "ROLLBACK")
    return count


class SQLiteStore:
    """Ledger and keys in one SQLite file. Safe for a gateway and CLI commands at the same time."""

    def __init__(self, path: str, background_fold: bool = True) -> None:
        """`background_fold=False`: pending rollup cells wait for `fold` (benches, tools)."""
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="costwarden-sqlite")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="costwarden-sqlite-read")
        self._prober = ThreadPoolExecutor(max_workers=1, thread_name_prefix="costwarden-sqlite-probe")
        self._conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._probe_conn: sqlite3.Connection | None = None
        self._reports = ReportProcess()  # started on the first encoded report
        self._analyzed_rows = 0  # the ledger's size at the last ANALYZE
        self._rows_since = 0  # rows stored since then
        self._fold = FoldSchedule(self.fold, rows=FOLD_LIMIT if background_fold else None, limit=SQLITE_FOLD_LIMIT)

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        return cls(sqlite_path(url))

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only query on the reader's own connection and thread."""
        if self.path == ":memory:":  # a second connection would see another database
            return await self._run(fn)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._call_reader, fn)

    def _connect(self) -> sqlite3.Connection:
        return connect_sqlite(self.path)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = self._connect()
        return fn(self._conn)

    def _call_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._read_conn is None:
            self._read_conn = self._connect()
        return fn(self._read_conn)

    def _probe(self) -> bool:
        if self._probe_conn is None:
            self._probe_conn = self._connect()
        return bool(self._probe_conn.execute("SELECT 1").fetchone())

    async def open(self) -> None:
        await self._run(self._migrate)
        self._analyzed_rows = await self._run(_analyze)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version INTEGER PRIMARY KEY, name TEXT, applied_at REAL)"
        )
        done = {row[0] for row in conn.execute(f"SELECT version FROM {SCHEMA_TABLE}")}
        for migration in migrations("sqlite"):
            if migration.version in done:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute(f"SELECT 1 FROM {SCHEMA_TABLE} WHERE version = ?", (migration.version,)).fetchone():
                    conn.execute("ROLLBACK")  # another process applied it meanwhile
                    continue
                for statement in migration.sql.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                if migration.version == ROLLUP_MIGRATION:
                    backfill_sqlite(conn)
                if migration.version == WEEKS_MIGRATION and ROLLUP_MIGRATION in done:
                    add_weeks_sqlite(conn)  # rolled up before weeks (a backfill now makes them itself)
                if migration.version in DERIVES:
                    derive_sqlite(conn, cubes=DERIVES[migration.version])  # narrow cubes from the folded cells
                if migration.version == QUARTER_MIGRATION:
                    add_quarter_days_sqlite(conn)  # 6-hour cells from the hour cells already folded
                conn.execute(
                    f"INSERT INTO {SCHEMA_TABLE} VALUES (?, ?, strftime('%s','now'))",
                    (migration.version, migration.name),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        await self._reports.close()
        await self._fold.close()

        def _close(conn: sqlite3.Connection) -> None:
            conn.close()
            self._conn = None

        def _close_reader(conn: sqlite3.Connection) -> None:
            conn.close()
            self._read_conn = None

        loop = asyncio.get_running_loop()
        if self._read_conn is not None:
            await loop.run_in_executor(self._reader, self._call_reader, _close_reader)
        self._reader.shutdown(wait=True)
        if self._probe_conn is not None:
            await loop.run_in_executor(self._prober, self._probe_conn.close)
            self._probe_conn = None
        self._prober.shutdown(wait=True)
        if self._conn is not None:
            await self._run(_close)
        self._executor.shutdown(wait=True)

    async def write(self, records: Sequence[UsageRecord]) -> int:
        """Insert new records in one transaction; `RecordRejected` when a value cannot be stored."""
        try:  # a latency the rollups cannot bin is refused here, as data, not mid-write
            rows = [_row(r) for r in records]
            bins = [bin_of(r.latency_ms) for r in records]
        except _DATA_ERRORS as exc:
            raise RecordRejected(f"{type(exc).__name__}: {exc}") from exc
        if not rows:
            return 0
        try:
            inserted = await self._run(lambda conn: _write(conn, records, rows, bins))
        except _DATA_ERRORS as exc:
            raise RecordRejected(f"{type(exc).__name__}: {exc}") from exc
        self._fold.added(inserted)
        self._rows_since += inserted
        if self._rows_since >= max(_REANALYZE_ROWS, self._analyzed_rows):
            self._rows_since = 0
            self._analyzed_rows = await self._run(_analyze)
        return inserted

    async def fold(self, limit: int) -> int:
        """Fold up to `limit` pending rollup cells into the rollups; returns how many."""
        return await self._run(lambda conn: fold_sqlite(conn, limit))

    async def prune(self, before: float, limit: int) -> int:
        return await self._run(lambda conn: conn.execute(SQLITE_PRUNE, (before, limit)).rowcount)

    async def quarantine(self, entries: Sequence[Quarantined]) -> None:
        rows = [(e.request_id, e.quarantined_at, e.reason, e.record) for e in entries]
        sql = "INSERT INTO ledger_quarantine (request_id, quarantined_at, reason, record) VALUES (?, ?, ?, ?)"
        if rows:
            await self._run(lambda conn: conn.executemany(sql, rows))

    async def list_quarantine(self, limit: int) -> list[Quarantined]:
        sql = (
            "SELECT request_id, quarantined_at, reason, record FROM ledger_quarantine "
            "ORDER BY quarantined_at DESC LIMIT ?"
        )
        rows = await self._read(lambda conn: conn.execute(sql, (limit,)).fetchall())
        return [Quarantined(*r) for r in rows]

    async def spend(self, query: SpendQuery) -> SpendReport:
        return await self._read(lambda conn: spend_sqlite(conn, query))

    async def spend_encoded(self, query: SpendQuery, encode: Encode) -> bytes:
        """In the report process (storage/report_process.py); on the reader's thread when it cannot."""
        if self.path != ":memory:":
            body = await self._reports.run(spend_sqlite_encoded, self.path, query, encode)
            if body is not None:
                return body
        return await self._read(lambda conn: encode(spend_sqlite(conn, query)))

    async def top(self, query: SpendQuery, n: int) -> list[SpendRow]:
        return await self._read(lambda conn: top_sqlite(conn, query, n))

    async def spend_series(self, query: SpendQuery, step_s: int) -> dict[int, SpendReport] | None:
        return await self._read(lambda conn: series_sqlite(conn, query, step_s))

    async def spend_spans(
        self, query: SpendQuery, spans: Sequence[tuple[float, float | None]], within: Within = ()
    ) -> list[SpendReport]:
        return await self._read(lambda conn: spans_sqlite(conn, query, spans, within))

    async def records(
        self, start: float | None, end: float | None, limit: int, before: RecordCursor | None = None
    ) -> list[UsageRecord]:
        params: list[object] = [start if start is not None else float("-inf"), end if end is not None else float("inf")]
        after = ""
        if before is not None:
            after = "AND (started_at < ? OR (started_at = ? AND request_id < ?)) "
            params += [before.started_at, before.started_at, before.request_id]
        sql = (
            f"SELECT {', '.join(_SQL_COLUMNS)} FROM ledger WHERE started_at >= ? AND started_at < ? {after}"
            "ORDER BY started_at DESC, request_id DESC LIMIT ?"
        )
        rows = await self._read(lambda conn: conn.execute(sql, (*params, limit)).fetchall())
        return [_record(tuple(r)) for r in rows]

    async def ping(self) -> bool:
        try:
            if self.path == ":memory:":
                return bool(await self._run(lambda conn: conn.execute("SELECT 1").fetchone()))
            return await asyncio.get_running_loop().run_in_executor(self._prober, self._probe)
        except sqlite3.Error:
            return False

    async def add_key(self, key: StoredKey) -> None:
        sql = f"INSERT INTO api_keys ({KEY_COLUMNS}, change_seq) VALUES ({', '.join('?' * 13)})"
        await self._run(lambda conn: _key_change(conn, sql, key_row(key)))

    async def list_keys(self) -> list[StoredKey]:
        sql = f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at"
        return list(await self._run(lambda conn: keys_from_rows(conn.execute(sql))))

    async def revoke_key(self, key_id: str, at: float) -> bool:
        sql = "UPDATE api_keys SET revoked_at = ?1, change_seq = ?3 WHERE key_id = ?2 AND revoked_at IS NULL"
        return bool(await self._run(lambda conn: _key_change(conn, sql, (at, key_id))))

    async def key_changes(self, since: int) -> KeyChanges:
        sql = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE change_seq > ? AND change_seq <= ? ORDER BY change_seq"

        def _changes(conn: sqlite3.Connection) -> KeyChanges:
            cursor = int(conn.execute(KEY_CURSOR_SQL).fetchone()[0])
            return KeyChanges(keys_from_rows(conn.execute(sql, (since, cursor))), cursor)

        return await self._run(_changes)

    async def save_alerts(self, alerts: Sequence[Alert]) -> None:
        sql = (
            f"INSERT INTO alerts ({ALERT_COLUMNS}) VALUES ({', '.join('?' * 10)}) "
            "ON CONFLICT (id) DO UPDATE SET resolved_at = COALESCE(excluded.resolved_at, alerts.resolved_at)"
        )
        rows = [alert_row(a, decimals_as_text=True) for a in latest_per_id(alerts)]

        def _save(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        if rows:
            await self._run(_save)

    async def list_alerts(self, active_only: bool, limit: int) -> list[Alert]:
        where = "WHERE resolved_at IS NULL " if active_only else ""
        sql = f"SELECT {ALERT_COLUMNS} FROM alerts {where}ORDER BY started_at DESC, id DESC LIMIT ?"
        rows = await self._run(lambda conn: conn.execute(sql, (limit,)).fetchall())
        return [alert_from_row(r) for r in rows]

    async def list_budgets(self) -> list[tuple[str, str]]:
        rows = await self._run(lambda conn: conn.execute("SELECT id, definition FROM budgets ORDER BY id").fetchall())
        return [(r[0], r[1]) for r in rows]

    async def put_budget(self, budget_id: str, definition: str, at: float) -> None:
        sql = (
            "INSERT INTO budgets (id, definition, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at"
        )
        await self._run(lambda conn: conn.execute(sql, (budget_id, definition, at)))

    async def delete_budget(self, budget_id: str) -> bool:
        cursor = await self._run(lambda conn: conn.execute("DELETE FROM budgets WHERE id = ?", (budget_id,)))
        return cursor.rowcount > 0
