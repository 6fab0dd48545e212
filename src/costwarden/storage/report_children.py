"""What the report process (storage/report_process.py) runs: a spend report read over a connection of
the child's own, kept between reports, and encoded there. Module-level functions: they are pickled by
name."""

from __future__ import annotations

import asyncio
import atexit
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

from costwarden.domain.report import SpendQuery, SpendReport
from costwarden.storage.rollup_report import spend_postgres, spend_sqlite
from costwarden.storage.rollup_write import register_sqlite
from costwarden.storage.sqlite_conn import open_wal

if TYPE_CHECKING:
    import asyncpg

Encode = Callable[[SpendReport], bytes]

_SQLITE: dict[str, sqlite3.Connection] = {}  # in the child: a read connection per ledger
_POSTGRES: dict[str, tuple[asyncio.AbstractEventLoop, asyncpg.Connection]] = {}
APPLICATION = "costwarden-report"  # the child's connection, as pg_stat_activity names it
_SETTINGS = {"jit": "off", "application_name": APPLICATION}


def _close_all() -> None:
    """At the child's exit (the gateway closed its stdin): the connections end cleanly (PostgreSQL would
    log an unexpected end of each)."""
    for conn in _SQLITE.values():
        conn.close()
    for loop, pg in _POSTGRES.values():
        loop.run_until_complete(pg.close(timeout=2))
        loop.close()
    _SQLITE.clear()
    _POSTGRES.clear()


atexit.register(_close_all)  # a no-op in the gateway, which imports this module without connecting


def connect_sqlite(path: str) -> sqlite3.Connection:
    conn = open_wal(path)
    register_sqlite(conn)
    return conn


def spend_sqlite_encoded(path: str, query: SpendQuery, encode: Encode) -> bytes:
    conn = _SQLITE.get(path)
    if conn is None:
        conn = _SQLITE[path] = connect_sqlite(path)
    return encode(spend_sqlite(conn, query))


def spend_postgres_encoded(dsn: str, query: SpendQuery, encode: Encode) -> bytes:
    """On a connection with JIT off, as the store's read pool has it; made again once if it broke
    (PostgreSQL restarted since the last report)."""
    import asyncpg

    for attempt in (1, 2):
        loop, conn = _postgres(dsn)
        try:
            report = loop.run_until_complete(spend_postgres(conn, query))
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
            del _POSTGRES[dsn]
            loop.close()
            if attempt == 2:
                raise
        else:
            return encode(report)
    raise AssertionError("unreachable")


def _postgres(dsn: str) -> tuple[asyncio.AbstractEventLoop, asyncpg.Connection]:
    import asyncpg

    made = _POSTGRES.get(dsn)
    if made is None:
        loop = asyncio.new_event_loop()
        conn = loop.run_until_complete(asyncpg.connect(dsn, server_settings=_SETTINGS))
        made = _POSTGRES[dsn] = (loop, conn)
    return made
