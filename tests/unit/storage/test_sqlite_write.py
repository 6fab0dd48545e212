"""The SQLite ledger writer's cost per record (issue 11): a write's pending cells go in by a few
multi-row INSERTs, not a statement run per cell, and a cell's bins as one row (migration 0025); the
writes stay exact: every row once, a request id named twice in a batch kept once, the first."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from costwarden.domain.latency_histogram import RELATIVE_ERROR
from costwarden.domain.record import UsageRecord
from costwarden.domain.report import SpendQuery, nearest_rank
from costwarden.storage.sqlite import SQLiteStore
from costwarden.storage.sqlite_conn import ROWS_PER_INSERT, insert_rows
from tests.unit.storage.sample import record

HISTOGRAM_ERROR = RELATIVE_ERROR * (1 + 1e-9)


def batch(n: int, first: int = 0) -> list[UsageRecord]:
    """`n` records over a few minutes, teams and latency bins: many pending cells."""
    return [
        replace(
            record(f"r{i:06d}"),
            started_at=1_700_000_000.25 + i * 0.5,
            team=f"team-{i % 7}",
            latency_ms=10.0 + (i % 40) * 3.5,
        )
        for i in range(first, first + n)
    ]


async def test_a_writes_pending_cells_go_in_by_a_few_statements(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "ledger.db"), background_fold=False)
    await store.open()
    runs: list[str] = []
    try:
        await store._run(lambda conn: conn.set_trace_callback(runs.append))
        assert await store.write(batch(1000)) == 1000
        await store._run(lambda conn: conn.set_trace_callback(None))
        rows = await store._run(lambda conn: conn.execute("SELECT COUNT(*) FROM rollup_delta").fetchone()[0])
    finally:
        await store.close()
    assert rows > 20  # several minutes and teams
    cells = [sql for sql in runs if sql.startswith("INSERT INTO rollup_delta")]
    # as 32 + 16 + ... + 1 rows a statement, at most 9 (one run a cell before: ~1,280)
    assert 1 <= len(cells) <= 9, (len(cells), rows)
    ledger = [sql for sql in runs if sql.startswith("INSERT INTO ledger")]
    assert len(ledger) == 1000  # one run a row (see storage/sqlite.py: _INSERT)


@pytest.mark.parametrize("n", [0, 1, 2, 3, ROWS_PER_INSERT - 1, ROWS_PER_INSERT, ROWS_PER_INSERT + 1, 1000, 1234])
def test_insert_rows_stores_every_row_once_in_order(n: int) -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b REAL)")
    rows = [(i, f"a{i}", i / 3) for i in range(n)]
    assert insert_rows(conn, "t (id, a, b)", rows) == n
    assert conn.execute("SELECT id, a, b FROM t ORDER BY rowid").fetchall() == rows


def test_insert_rows_keeps_the_first_of_a_key_named_twice() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    conn.execute("INSERT INTO t VALUES ('old', 0)")
    rows = [("x", 1), ("old", 2), ("y", 3), ("x", 4), *((f"z{i}", i) for i in range(300))]
    assert insert_rows(conn, "t (k, v)", rows, " ON CONFLICT (k) DO NOTHING") == 302
    assert dict(conn.execute("SELECT k, v FROM t").fetchall()) == {"old": 0, "x": 1, "y": 3} | {
        f"z{i}": i for i in range(300)
    }


async def test_a_batch_naming_an_id_twice_and_a_replay_count_each_record_once(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "ledger.db"), background_fold=False)
    await store.open()
    try:
        first = batch(600)
        assert await store.write([*first[:300], first[0], *first[300:]]) == 600
        assert await store.write([*batch(100, first=550), *batch(50, first=700)]) == 100  # 550-599 stored
        pending = "SELECT SUM(requests) FROM rollup_delta WHERE cube = 0"
        assert await store._run(lambda conn: conn.execute(pending).fetchone()[0]) == 700
        assert len(await store.records(None, None, 10_000)) == 700
    finally:
        await store.close()


async def test_a_cells_bins_from_one_write_are_one_pending_row_and_read_the_same(tmp_path: Path) -> None:
    """Migration 0025: the bins of a cube's bucket and dimensions seen by one write are one pending
    row with their histogram, so a gateway's steady traffic (one team, a hundred bins) leaves about
    two rows a write; reports read the same before and after the fold, as from the raw records."""
    store = SQLiteStore(str(tmp_path / "ledger.db"), background_fold=False)
    await store.open()
    records = [
        replace(record(f"r{i:06d}"), started_at=1_700_000_000.25 + i * 0.01, latency_ms=1.0 + (i % 97) * 0.37)
        for i in range(1000)
    ]  # 10 s: one minute, one day, 97 latency bins
    query = SpendQuery(group_by=("team",), start=1_699_999_980.0, end=1_700_000_040.0, percentiles=True)
    try:
        assert await store.write(records[:600]) == 600
        assert await store.write(records[600:]) == 400
        rows = "SELECT cube, requests, latency IS NOT NULL FROM rollup_delta ORDER BY rowid"
        pending = await store._run(lambda conn: conn.execute(rows).fetchall())
        assert pending == [(0, 600, 1), (1, 600, 1), (0, 400, 1), (1, 400, 1)]  # 388 rows before
        before = await store.spend(query)
        assert await store.fold(10_000) == 4
        after = await store.spend(query)
    finally:
        await store.close()
    assert before == after
    (row,) = after.rows
    assert row.requests == 1000
    latencies = sorted(r.latency_ms for r in records)
    for got, rank in ((row.p50_ms, 0.5), (row.p95_ms, 0.95)):
        exact = nearest_rank(latencies, rank)
        assert got is not None and exact is not None and abs(got - exact) <= exact * HISTOGRAM_ERROR
