"""Keeping the rollup tables up to date: the deltas of newly stored records, upserted in the
ledger write's own transaction, and the one-off backfill of a ledger that predates them.

Only records the ledger actually stored count (the insert is idempotent on request_id), so a
replayed spool or a record written twice adds nothing. Rows are upserted in key order so two
PostgreSQL writers lock shared rows in the same order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from costwarden.domain import latency_histogram
from costwarden.domain.money import to_nanos
from costwarden.domain.record import UsageRecord
from costwarden.domain.rollup import DIMENSIONS, FACT_COLUMNS, Cell, CellKey, Fact, cells

MIGRATION = 6  # 0006_rollups: the migration after which the backfill runs, in the same transaction
_BACKFILL_BATCH = 50_000
_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "items", "cost_nanos")
_COLUMNS = ("grain", "bucket", "dim_key", *DIMENSIONS, *_SUMS, "latency")
_SET = ", ".join(f"{c} = rollup.{c} + excluded.{c}" for c in _SUMS)
_UPSERT_SQLITE = (
    f"INSERT INTO rollup ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    f"ON CONFLICT (grain, bucket, dim_key) DO UPDATE SET {_SET}, "
    "latency = cw_hist_merge(rollup.latency, excluded.latency)"
)
_TYPES = ("int4", "int8", "text", *("text" for _ in DIMENSIONS), *("int8" for _ in _SUMS[:-1]), "numeric", "jsonb")
_UPSERT_POSTGRES = (
    f"INSERT INTO rollup ({', '.join(_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'${i + 1}::{t}[]' for i, t in enumerate(_TYPES))}) "
    f"ON CONFLICT (grain, bucket, dim_key) DO UPDATE SET {_SET}, "
    "latency = costwarden_hist_merge(rollup.latency, excluded.latency)"
)
# Appended to the PostgreSQL ledger insert: the facts of the rows it stored, cost last.
RETURNING_POSTGRES = f" RETURNING {', '.join(FACT_COLUMNS)}, cost_usd"
_FACTS_SQLITE = f"SELECT {', '.join(FACT_COLUMNS)}, cost_nanos FROM ledger"
_FACTS_POSTGRES = f"SELECT {', '.join(FACT_COLUMNS)}, cost_usd FROM ledger"


def fact(r: UsageRecord) -> Fact:
    return (
        r.started_at,
        *(getattr(r, d) for d in DIMENSIONS[:-1]),
        r.outcome.value,
        r.latency_ms,
        r.input_tokens,
        r.output_tokens,
        r.cached_tokens,
        r.items,
        to_nanos(r.cost_usd),
    )


def _rows(deltas: dict[CellKey, Cell]) -> list[tuple[Any, ...]]:
    rows = []
    for (grain, bucket, dims), c in sorted(deltas.items(), key=lambda kv: (kv[0][0], kv[0][1], _dim_key(kv[0][2]))):
        rows.append(
            (
                grain,
                bucket,
                _dim_key(dims),
                *dims,
                c.requests,
                c.errors,
                c.input_tokens,
                c.output_tokens,
                c.cached_tokens,
                c.items,
                c.cost_nanos,
                latency_histogram.encode(c.latency),
            )
        )
    return rows


def _dim_key(dims: tuple[str | None, ...]) -> str:
    return orjson.dumps(dims).decode()


# SQLite: called on the store's worker thread, inside the write's BEGIN IMMEDIATE transaction.


def unseen_sqlite(conn: sqlite3.Connection, records: Sequence[UsageRecord]) -> list[UsageRecord]:
    """The records the coming insert will store: not in the ledger yet, first of each request_id."""
    ids = list(dict.fromkeys(r.request_id for r in records))
    stored: set[str] = set()
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        sql = f"SELECT request_id FROM ledger WHERE request_id IN ({', '.join('?' * len(chunk))})"
        stored.update(row[0] for row in conn.execute(sql, chunk))
    fresh: dict[str, UsageRecord] = {}
    for r in records:
        if r.request_id not in stored and r.request_id not in fresh:
            fresh[r.request_id] = r
    return list(fresh.values())


def add_sqlite(conn: sqlite3.Connection, facts: Iterable[Fact]) -> None:
    rows = _rows(cells(facts))
    if rows:
        conn.create_function("cw_hist_merge", 2, latency_histogram.merge_text, deterministic=True)
        conn.executemany(_UPSERT_SQLITE, rows)


def backfill_sqlite(conn: sqlite3.Connection) -> None:
    """Roll up every record already in the ledger (in the migration's transaction), in batches."""
    cursor = conn.execute(_FACTS_SQLITE)
    while batch := cursor.fetchmany(_BACKFILL_BATCH):
        add_sqlite(conn, batch)


# PostgreSQL: called inside the write's transaction, on its connection.


async def add_postgres(conn: asyncpg.Connection, stored: Iterable[Sequence[Any]]) -> None:
    """Upsert the deltas of `stored`: rows of FACT_COLUMNS then cost_usd (a Decimal)."""
    facts = ((*row[:-1], to_nanos(Decimal(row[-1]))) for row in stored)
    rows = _rows(cells(facts))
    if rows:
        columns = [list(col) for col in zip(*rows, strict=True)]
        await conn.execute(_UPSERT_POSTGRES, *columns)


async def backfill_postgres(conn: asyncpg.Connection) -> None:
    """Roll up every record already in the ledger; the caller holds the migration transaction."""
    await conn.execute("LOCK TABLE ledger IN SHARE MODE")  # writers wait until the backfill commits
    batch: list[Sequence[Any]] = []
    async for row in conn.cursor(_FACTS_POSTGRES, prefetch=10_000):
        batch.append(tuple(row))
        if len(batch) >= _BACKFILL_BATCH:
            await add_postgres(conn, batch)
            batch = []
    await add_postgres(conn, batch)
