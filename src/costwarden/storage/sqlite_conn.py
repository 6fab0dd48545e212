"""How the SQLite adapters connect: the long-lived WAL connections that a store keeps on its own worker
thread, and one-shot calls on a connection of their own for tables used every few seconds or minutes
(compute samples, busy folds), where holding a connection open would buy nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
ROWS_PER_INSERT = 256  # the most rows one INSERT binds: 256 rows of 40 columns are 10,240 parameters (of 32,766)


def sqlite_path(url: str) -> str:
    """The file of a `sqlite:///path` URL (`costwarden.db` when the path is empty)."""
    return url.removeprefix("sqlite:///") or "costwarden.db"


def open_wal(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (the caller says BEGIN) to `path`, its folder made, the file
    in WAL mode; usable from the one worker thread the caller keeps for it."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


async def sqlite_call(path: str, fn: Callable[[sqlite3.Connection], T]) -> T:
    """`fn(conn)` in one transaction (committed when it returns, rolled back when it raises) on a
    connection of its own, opened and closed in a worker thread."""

    def call() -> T:
        conn = sqlite3.connect(path, timeout=30)
        try:
            with conn:
                return fn(conn)
        finally:
            conn.close()

    return await asyncio.to_thread(call)


@lru_cache(maxsize=64)
def _values_sql(into: str, width: int, rows: int, tail: str) -> str:
    row = f"({', '.join('?' * width)})"
    return f"INSERT INTO {into} VALUES {', '.join([row] * rows)}{tail}"


def insert_rows(conn: sqlite3.Connection, into: str, rows: Sequence[Sequence[Any]], tail: str = "") -> int:
    """Insert `rows` (each as wide as the columns of `into`, `table (columns...)`) with multi-row
    INSERTs: up to ROWS_PER_INSERT rows a statement, then the rest in halving powers of two, so a
    batch takes a few statements of a few shapes (each prepared once per connection: the statement
    cache) instead of one run a row. `tail`: what follows the VALUES (an ON CONFLICT clause). Returns
    the rows stored. Measured (bench/sqlite_write.py): cheaper for rows appended in index order (the
    pending cells: 5.2 -> 4.6 us a record, a fleet's), dearer for rows whose index entries land all
    over (a fleet's ledger rows: 12.6 -> 15.7 us), so the ledger's own INSERT runs once a row."""
    before = conn.total_changes
    width = len(rows[0]) if rows else 0
    start, count = 0, ROWS_PER_INSERT
    while start < len(rows):
        while count > len(rows) - start:
            count //= 2
        sql = _values_sql(into, width, count, tail)
        conn.execute(sql, list(chain.from_iterable(rows[start : start + count])))
        start += count
    return conn.total_changes - before
