"""How the SQLite adapters connect: the long-lived WAL connections that a store keeps on its own worker
thread, and one-shot calls on a connection of their own for tables used every few seconds or minutes
(compute samples, busy folds), where holding a connection open would buy nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


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
