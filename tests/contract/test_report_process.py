"""A ledger's spend report is computed and encoded in a process of its own (storage/report_process.py):
the gateway's process only relays the bytes, so its probes do not wait for the report's Python and its
garbage. Both stores; a child that died, an error, a report given up on, PostgreSQL dropping the
child's connection."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from costwarden.app.spend_body import spend_body
from costwarden.domain.report import SpendQuery, SpendReport
from costwarden.ports import Store
from costwarden.storage import report_process
from costwarden.storage.postgres import PostgresStore
from costwarden.storage.report_children import APPLICATION
from costwarden.storage.sqlite import SQLiteStore
from tests.unit.storage.sample import record

NOW = 1_800_000_000.0
QUERY = SpendQuery(group_by=("team", "deployment"), start=NOW - 86_400, end=NOW + 60)


def pid_of(report: SpendReport) -> bytes:
    """An encoder that says where it ran (module-level: the report process gets it by name)."""
    return f"{os.getpid()} {report.total.requests}".encode()


def refuse(report: SpendReport) -> bytes:
    raise ValueError(f"refused {report.total.requests}")


def slow_pid(report: SpendReport) -> bytes:
    time.sleep(0.5)
    return pid_of(report)


def slow(report: SpendReport) -> bytes:
    time.sleep(0.5)
    return b"slow"


async def _filled(store: Store) -> Store:
    records = [replace(record(f"r{i}"), team=f"team-{i % 7}", started_at=NOW - 97 * i) for i in range(300)]
    assert await store.write(records) == 300
    return store


async def _where(store: Store) -> list[bytes]:
    return (await store.spend_encoded(QUERY, pid_of)).split()


async def test_the_report_runs_in_a_child_process_that_is_kept(store: Store) -> None:
    await _filled(store)
    first, second = await _where(store), await _where(store)
    assert first[1] == second[1] == b"300"
    assert int(first[0]) != os.getpid()  # ran in this process before
    assert first[0] == second[0]


async def test_the_child_encodes_the_same_bytes_as_the_gateway_would(store: Store) -> None:
    await _filled(store)
    assert await store.spend_encoded(QUERY, spend_body) == spend_body(await store.spend(QUERY))


async def test_a_child_that_died_between_reports_is_replaced(store: Store) -> None:
    await _filled(store)
    child = int((await _where(store))[0])
    os.kill(child, signal.SIGKILL)
    await asyncio.sleep(0.3)
    assert int((await _where(store))[0]) not in (child, os.getpid())


async def test_a_child_that_died_during_a_report_is_replaced_and_that_report_runs_here(store: Store) -> None:
    await _filled(store)
    child = int((await _where(store))[0])
    report = asyncio.ensure_future(store.spend_encoded(QUERY, slow_pid))
    await asyncio.sleep(0.2)  # the child is in the report's encoder
    os.kill(child, signal.SIGKILL)
    assert int((await report).split()[0]) == os.getpid()
    assert int((await _where(store))[0]) not in (child, os.getpid())


async def test_an_error_of_the_report_reaches_the_caller_and_the_child_goes_on(store: Store) -> None:
    await _filled(store)
    child = (await _where(store))[0]
    with pytest.raises(ValueError, match="refused 300"):
        await store.spend_encoded(QUERY, refuse)
    assert (await _where(store))[0] == child


async def test_a_report_given_up_on_does_not_answer_the_next_one(store: Store) -> None:
    await _filled(store)
    child = (await _where(store))[0]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(store.spend_encoded(QUERY, slow), 0.2)  # its reply is read in its thread still
    assert await _where(store) == [child, b"300"]


async def test_reports_that_queue_leave_asyncio_s_threads_free(store: Store) -> None:
    """Twenty reports at once wait in the report process's own thread, not in asyncio's executor (six
    threads here), which the metrics exposition and the stores' other work need meanwhile."""
    await _filled(store)
    await _where(store)  # the child is up
    flood = [asyncio.ensure_future(store.spend_encoded(QUERY, slow)) for _ in range(20)]
    await asyncio.sleep(0.1)
    started = time.monotonic()
    assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), 5) == 42
    assert time.monotonic() - started < 0.5  # waited for the flood's first reports to end before
    for report in flood:
        report.cancel()  # their exchanges still run to the end, in the report thread
    await asyncio.gather(*flood, return_exceptions=True)


@pytest.mark.parametrize("store", ["postgres"], indirect=True)  # a SQLite file has no connection to drop
async def test_the_child_connects_again_when_postgresql_dropped_its_connection(store: Store) -> None:
    assert isinstance(store, PostgresStore)
    await _filled(store)
    child = (await _where(store))[0]
    conn = await asyncpg.connect(store.dsn)
    try:
        dropped = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            APPLICATION,
        )
    finally:
        await conn.close()
    assert dropped == 1
    assert await _where(store) == [child, b"300"]  # the same child, on a new connection


async def test_an_in_memory_ledger_reports_in_its_own_thread() -> None:
    memory = SQLiteStore(":memory:")
    await memory.open()
    try:
        assert await memory.write([replace(record("m"), started_at=NOW - 10)]) == 1
        assert (await memory.spend_encoded(QUERY, pid_of)).split() == [str(os.getpid()).encode(), b"1"]
    finally:
        await memory.close()


async def test_children_that_cannot_start_are_given_up_after_three(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A Python that cannot run the child (here: one that exits at once) costs three starts, not one a
    report: then every report runs in the gateway, and the log says why once."""
    monkeypatch.setattr(report_process, "_BOOT", "import sys; sys.exit(3)")
    started: list[int] = []
    popen = subprocess.Popen

    def counted(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append(1)
        return popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", counted)
    sqlite = SQLiteStore(str(tmp_path / "ledger.db"))
    await sqlite.open()
    try:
        await _filled(sqlite)
        for _ in range(5):
            assert (await _where(sqlite)) == [str(os.getpid()).encode(), b"300"]
    finally:
        await sqlite.close()
    assert len(started) == report_process.GIVE_UP == 3
    assert sum("failed in a row" in r.message for r in caplog.records) == 1
