"""Hourly folds of request intervals for allocation (tables of migration 0021), SQLite or PostgreSQL,
on a connection of their own per call (the folder runs every few minutes, a report reads once).

`fold` re-reads the ledger rows that can count in the hours (started from the horizon before them),
folds them (domain/busy_fold.py) and replaces the hours' rows and marks in one transaction, so a
fold again (a restart, another gateway, a late record) changes nothing but what changed."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from costwarden.domain.busy_fold import ALL_TEAMS, HOUR, FoldKey, HourCell, fold_hours
from costwarden.storage.busy_check import counted, counts_sql, run_async, run_sync
from costwarden.storage.sqlite_conn import sqlite_call, sqlite_path

T = TypeVar("T")
BusyRow = tuple[str, str, int, int, int, int]  # deployment, team, concurrency, request_ns, requests, tokens
_LEDGER = (
    "SELECT deployment, started_at, ended_at, upstream_ms, input_tokens + output_tokens, team FROM ledger "
    "WHERE started_at >= {0} AND started_at < {1} AND upstream_ms IS NOT NULL AND deployment IN ({2})"
)
_COLUMNS = "hour, deployment, team, concurrency, request_ns, requests, tokens"
_MARKS = "hour, deployment, horizon_s, folded_at, records"
FOLD_LOCK = 0x63775F62757379  # PostgreSQL advisory lock held while a fold replaces hours


def _marks(mark: str, first: int, count: int) -> str:
    return ", ".join(mark.format(first + i) for i in range(count))


def cell_rows(cells: dict[FoldKey, HourCell]) -> list[tuple[int, str, str, int, int, int, int]]:
    rows = []
    for (hour, deployment, team), cell in cells.items():
        rows.append((hour, deployment, team, 0, 0, cell.requests, cell.tokens))
        rows.extend((hour, deployment, team, k, ns, 0, 0) for k, ns in cell.busy.items())
    return rows


def _read_sql(mark: str, deployments: int, all_teams: bool) -> str:
    team = "team = ''" if all_teams else "team <> ''"
    return (
        "SELECT deployment, team, concurrency, SUM(request_ns), SUM(requests), SUM(tokens) FROM compute_busy "
        f"WHERE hour >= {mark.format(1)} AND hour < {mark.format(2)} "
        f"AND deployment IN ({_marks(mark, 3, deployments)}) AND {team} "
        "GROUP BY deployment, team, concurrency, hour / 86400"  # a day's sum fits a BIGINT; the caller adds days
    )


def _hours_sql(mark: str, deployments: int) -> str:
    return (
        f"SELECT deployment, hour, horizon_s FROM compute_busy_hours WHERE hour >= {mark.format(1)} "
        f"AND hour < {mark.format(2)} AND deployment IN ({_marks(mark, 3, deployments)})"
    )


class BusyFolds:
    """The folds of one ledger (`sqlite:///path` or `postgresql://...`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite:///")
        self.path = sqlite_path(url)

    async def _sqlite(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await sqlite_call(self.path, fn)

    async def _pg(self, fn: Callable[[Any], Any]) -> Any:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            return await fn(conn)
        finally:
            await conn.close()

    async def folded_hours(self, first: int, end: int, deployments: Sequence[str]) -> dict[str, dict[int, float]]:
        """deployment -> {hour: horizon it was folded with}, for the hours in [first, end)."""
        args = (first, end, *deployments)
        if not deployments:
            return {}
        if self.sqlite:
            rows = await self._sqlite(lambda c: c.execute(_hours_sql("?", len(deployments)), args).fetchall())
        else:
            rows = await self._pg(lambda c: c.fetch(_hours_sql("${}", len(deployments)), *args))
        out: dict[str, dict[int, float]] = {}
        for deployment, hour, horizon in rows:
            out.setdefault(deployment, {})[int(hour)] = float(horizon)
        return out

    async def read(self, first: int, end: int, deployments: Sequence[str], all_teams: bool) -> list[BusyRow]:
        """Sums per day over the hours [first, end): (deployment, team, concurrency, request_ns,
        requests, tokens), per team or (`all_teams`) the rows that count every team; a key may come
        once a day (a year at high concurrency would overflow a BIGINT sum)."""
        if not deployments or end <= first:
            return []
        args = (first, end, *deployments)
        if self.sqlite:
            rows = await self._sqlite(lambda c: c.execute(_read_sql("?", len(deployments), all_teams), args).fetchall())
        else:
            rows = await self._pg(lambda c: c.fetch(_read_sql("${}", len(deployments), all_teams), *args))
        return [(d, t, int(k), int(ns), int(n), int(tok)) for d, t, k, ns, n, tok in rows]

    async def last_folded(self, deployments: Sequence[str], horizon_s: float) -> int | None:
        """The start of the latest hour folded for every one of `deployments` with this horizon (the
        least of their latest), or None when one has none."""
        if not deployments:
            return None
        sql = "SELECT MAX(hour) FROM compute_busy_hours WHERE deployment = {0} AND horizon_s = {1}"
        found: list[Any] = []
        for dep in deployments:
            if self.sqlite:

                def latest(conn: sqlite3.Connection, d: str = dep) -> Any:
                    return conn.execute(sql.format("?", "?"), (d, horizon_s)).fetchone()[0]

                found.append(await self._sqlite(latest))
            else:

                async def latest_pg(conn: Any, d: str = dep) -> Any:
                    return await conn.fetchval(sql.format("$1", "$2"), d, horizon_s)

                found.append(await self._pg(latest_pg))
        return None if any(f is None for f in found) else min(int(f) for f in found if f is not None)

    async def oldest_record(self) -> float | None:
        sql = "SELECT MIN(started_at) FROM ledger"
        if self.sqlite:
            row = await self._sqlite(lambda c: c.execute(sql).fetchone())
            return None if row[0] is None else float(row[0])
        value = await self._pg(lambda c: c.fetchval(sql))
        return None if value is None else float(value)

    async def fold(self, first: int, end: int, deployments: Sequence[str], horizon_s: float) -> int:
        """Fold the hours [first, end) of `deployments` from the ledger; the rows written.

        The rollups' record counts of the hours are read before the ledger, each in one statement: a
        record stored in between is folded but not counted, so the next check refolds its hour again
        (harmless); a record stored after the ledger read is counted in neither, so the check finds it."""
        if not deployments or end <= first:
            return 0
        now = time.time()
        args = (first - horizon_s, end, *deployments)
        hours = range(first, end, HOUR)
        clear = "hour >= {0} AND hour < {1} AND deployment IN ({2})"
        n = len(deployments)

        def marks(seen: dict[tuple[str, int], int]) -> list[tuple[int, str, float, float, int]]:
            return [(h, d, horizon_s, now, seen.get((d, h), 0)) for h in hours for d in deployments]

        if self.sqlite:

            def work(conn: sqlite3.Connection) -> int:
                seen = counted(conn.execute(counts_sql("?{}", n, HOUR), (first, end, *deployments)).fetchall())
                ledger = conn.execute(_LEDGER.format("?", "?", _marks("?", 0, n)), args)
                rows = cell_rows(fold_hours(ledger, first, end, horizon_s))
                where = clear.format("?", "?", _marks("?", 0, n))
                conn.execute(f"DELETE FROM compute_busy WHERE {where}", (first, end, *deployments))
                conn.execute(f"DELETE FROM compute_busy_hours WHERE {where}", (first, end, *deployments))
                conn.executemany(f"INSERT INTO compute_busy ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                conn.executemany(f"INSERT INTO compute_busy_hours ({_MARKS}) VALUES (?, ?, ?, ?, ?)", marks(seen))
                return len(rows)

            return await self._sqlite(work)

        async def pg_work(conn: Any) -> int:
            # Folders (the lease holder, `costwarden compute refold`) take turns: two transactions
            # replacing the same hours would both insert them (a unique violation).
            await conn.execute("SELECT pg_advisory_lock($1)", FOLD_LOCK)
            async with conn.transaction():
                seen = counted(await conn.fetch(counts_sql("${}", n, HOUR), first, end, *deployments))
                ledger = await conn.fetch(_LEDGER.format("$1", "$2", _marks("${}", 3, n)), *args)
                rows = cell_rows(fold_hours(ledger, first, end, horizon_s))
                where = clear.format("$1", "$2", _marks("${}", 3, n))
                await conn.execute(f"DELETE FROM compute_busy WHERE {where}", first, end, *deployments)
                await conn.execute(f"DELETE FROM compute_busy_hours WHERE {where}", first, end, *deployments)
                await conn.copy_records_to_table("compute_busy", records=rows, columns=_COLUMNS.split(", "))
                await conn.copy_records_to_table("compute_busy_hours", records=marks(seen), columns=_MARKS.split(", "))
            return len(rows)  # the session lock goes with the connection

        return int(await self._pg(pg_work))

    async def prune(self, before: int) -> int:
        """Delete the folds of the hours before `before` (the ledger's retention); the hours dropped."""
        sql = ("DELETE FROM compute_busy WHERE hour < {0}", "DELETE FROM compute_busy_hours WHERE hour < {0}")
        if self.sqlite:

            def work(conn: sqlite3.Connection) -> int:
                conn.execute(sql[0].format("?"), (before,))
                return conn.execute(sql[1].format("?"), (before,)).rowcount

            return await self._sqlite(work)

        async def pg_work(conn: Any) -> int:
            async with conn.transaction():
                await conn.execute(sql[0].format("$1"), before)
                status = await conn.execute(sql[1].format("$1"), before)
            return int(status.split()[-1])

        return int(await self._pg(pg_work))

    async def stale(self, deployments: Sequence[str], horizon_s: float) -> dict[str, list[int]]:
        """deployment -> the folded hours (with this horizon) whose rollup record count differs from
        the count their fold saw: hours that a record reached after they were folded."""
        if not deployments:
            return {}
        if self.sqlite:

            def work(conn: sqlite3.Connection) -> dict[str, list[int]]:
                def fetch(sql: str, args: tuple[Any, ...]) -> list[Any]:
                    return conn.execute(sql.replace("$", "?"), args).fetchall()

                return run_sync(fetch, deployments, horizon_s)

            return await self._sqlite(work)

        async def pg_work(conn: Any) -> dict[str, list[int]]:
            async def fetch(sql: str, args: tuple[Any, ...]) -> list[Any]:
                return list(await conn.fetch(sql, *args))

            return await run_async(fetch, deployments, horizon_s)

        return dict(await self._pg(pg_work))


__all__ = ["ALL_TEAMS", "BusyFolds", "BusyRow"]
