"""A SQLite ledger's spend report is computed and encoded in a process of its own (storage/report_process.py):
the gateway's process only relays the bytes, so its probes do not wait for the report's Python and garbage."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from costwarden.app.spend_body import spend_body
from costwarden.domain.report import SpendQuery, SpendReport
from costwarden.storage.sqlite import SQLiteStore
from tests.unit.storage.sample import record

NOW = 1_800_000_000.0
QUERY = SpendQuery(group_by=("team", "deployment"), start=NOW - 86_400, end=NOW + 60)


def pid_of(report: SpendReport) -> bytes:
    """An encoder that says where it ran (module-level: the report process gets it by name)."""
    return f"{os.getpid()} {report.total.requests}".encode()


def refuse(report: SpendReport) -> bytes:
    raise ValueError(f"refused {report.total.requests}")


def slow(report: SpendReport) -> bytes:
    time.sleep(1)
    return b"slow"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    ledger = SQLiteStore(str(tmp_path / "ledger" / "costwarden.db"))
    await ledger.open()
    records = [replace(record(f"r{i}"), team=f"team-{i % 7}", started_at=NOW - 97 * i) for i in range(300)]
    assert await ledger.write(records) == 300
    yield ledger
    await ledger.close()


async def test_the_report_runs_in_a_child_process_that_is_kept(store: SQLiteStore) -> None:
    first = (await store.spend_encoded(QUERY, pid_of)).split()
    second = (await store.spend_encoded(QUERY, pid_of)).split()
    assert first[1] == second[1] == b"300"
    assert int(first[0]) != os.getpid()  # ran in this process before
    assert first[0] == second[0]


async def test_the_child_encodes_the_same_bytes_as_the_gateway_would(store: SQLiteStore) -> None:
    assert await store.spend_encoded(QUERY, spend_body) == spend_body(await store.spend(QUERY))


async def test_a_child_that_died_is_replaced_and_its_report_runs_here(store: SQLiteStore) -> None:
    child = int((await store.spend_encoded(QUERY, pid_of)).split()[0])
    os.kill(child, signal.SIGKILL)
    fallback = int((await store.spend_encoded(QUERY, pid_of)).split()[0])
    assert fallback == os.getpid()  # the broken pool's report ran in the reader thread
    replacement = int((await store.spend_encoded(QUERY, pid_of)).split()[0])
    assert replacement not in (child, os.getpid())


async def test_an_in_memory_ledger_reports_in_its_own_thread() -> None:
    memory = SQLiteStore(":memory:")
    await memory.open()
    try:
        assert await memory.write([replace(record("m"), started_at=NOW - 10)]) == 1
        assert (await memory.spend_encoded(QUERY, pid_of)).split() == [str(os.getpid()).encode(), b"1"]
    finally:
        await memory.close()


async def test_an_error_of_the_report_reaches_the_caller_and_the_child_goes_on(store: SQLiteStore) -> None:
    child = (await store.spend_encoded(QUERY, pid_of)).split()[0]
    with pytest.raises(ValueError, match="refused 300"):
        await store.spend_encoded(QUERY, refuse)
    assert (await store.spend_encoded(QUERY, pid_of)).split()[0] == child


async def test_a_report_given_up_on_does_not_answer_the_next_one(store: SQLiteStore) -> None:
    child = (await store.spend_encoded(QUERY, pid_of)).split()[0]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(store.spend_encoded(QUERY, slow), 0.2)  # its reply is read in its thread still
    assert (await store.spend_encoded(QUERY, pid_of)).split() == [child, b"300"]
