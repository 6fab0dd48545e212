"""The access log: one JSON line per record, written by a background task in a worker thread;
no key id, tags or bodies; bounded when the writer cannot keep up."""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from costwarden.config.observability import AccessLogConfig
from costwarden.domain.record import UsageRecord
from costwarden.observability import access_log as module
from costwarden.observability.access_log import AccessLog, LoggedSink
from tests.unit.storage.sample import record


class Collect:
    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def append(self, record: UsageRecord, fitted: bool = False) -> None:
        self.records.append(record)


async def test_lines_hold_attribution_usage_cost_and_timings_never_key_or_tags(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(AccessLogConfig(enabled=True, path=str(path), flush_ms=20))
    await log.start()
    ledger = Collect()
    sink = LoggedSink(ledger, log)
    sink.append(record("r1"))
    sink.append(record("r2", upstream_ms=None, status=401, team=None, cost_usd=Decimal(0)))
    units = {"reasoning_tokens": 40, "images": 2, "audio_ms": 1500, "characters": 900, "documents": 7}
    sink.append(record("r4", **units))
    await asyncio.sleep(0.2)  # the background flush writes them without a stop
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [line["request_id"] for line in lines] == ["r1", "r2", "r4"] and len(ledger.records) == 3
    assert {unit: lines[2][unit] for unit in units} == units and all(lines[0][unit] == 0 for unit in units)
    first = lines[0]
    assert first["team"] == "search" and first["deployment"] == "gpt" and first["status"] == 200
    assert first["cost_usd"] == "0.000123456" and first["input_tokens"] == 100 and first["outcome"] == "served"
    assert first["latency_ms"] == 512.5 and first["upstream_ms"] == 500.0 and first["gateway_ms"] == 12.5
    assert first["ts"] == "2023-11-14T22:13:20.750Z"
    assert "key_id" not in first and "tags" not in first and b"k1" not in path.read_bytes()
    assert lines[1]["upstream_ms"] is None and lines[1]["gateway_ms"] == 512.5 and lines[1]["team"] is None
    sink.append(record("r3"))
    await log.stop()  # flushes what is left
    assert len(path.read_bytes().splitlines()) == 4 and log.written == 4 and log.dropped == 0


async def test_lines_are_written_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    encode = module.encode

    def spy(records: list[UsageRecord]) -> bytes:
        threads.append(threading.get_ident())
        return encode(records)

    monkeypatch.setattr(module, "encode", spy)
    log = AccessLog(AccessLogConfig(enabled=True, path=str(tmp_path / "a.log"), flush_ms=10))
    await log.start()
    log.append(record("r1"))
    await log.stop()
    assert threads and threading.get_ident() not in threads


async def test_a_full_buffer_wakes_the_writer_and_an_overfull_one_drops_and_counts(tmp_path: Path) -> None:
    log = AccessLog(AccessLogConfig(enabled=True, path=str(tmp_path / "a.log"), flush_ms=60_000, buffer_lines=5))
    for i in range(60):  # not started: nothing drains the buffer, which holds 10 x buffer_lines
        log.append(record(f"r{i}"))
    assert log.dropped == 10
    await log.start()
    await log.stop()
    assert log.written == 50 and len((tmp_path / "a.log").read_bytes().splitlines()) == 50
    samples = {m.name: m.samples[0].value for m in log.collect()}
    assert samples == {"costwarden_access_log_lines": 50, "costwarden_access_log_dropped": 10}


def test_an_enabled_log_needs_exactly_one_target() -> None:
    with pytest.raises(ValidationError, match="either `path`"):
        AccessLogConfig(enabled=True)
    with pytest.raises(ValidationError, match="either `path`"):
        AccessLogConfig(enabled=True, path="/tmp/x", stderr=True)
    assert AccessLogConfig(enabled=True, stderr=True).path is None
    assert not AccessLogConfig().enabled


async def test_a_batch_that_cannot_be_written_is_counted_and_the_log_goes_on(tmp_path: Path) -> None:
    log = AccessLog(AccessLogConfig(enabled=True, path=str(tmp_path / "a.log"), flush_ms=10))
    await log.start()
    log.append(record("bad", cost_usd="not money"))  # what no caller sends: the batch cannot be encoded
    await asyncio.sleep(0.2)
    log.append(record("good"))
    await log.stop()
    assert log.dropped == 1 and log.written == 1
    assert [orjson.loads(line)["request_id"] for line in (tmp_path / "a.log").read_bytes().splitlines()] == ["good"]


async def test_stop_writes_what_arrived_during_the_last_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = AccessLog(AccessLogConfig(enabled=True, path=str(tmp_path / "a.log"), flush_ms=10))
    writing = threading.Event()
    write = log._write

    def slow(batch: list[UsageRecord]) -> None:
        writing.set()
        time.sleep(0.2)
        write(batch)

    monkeypatch.setattr(log, "_write", slow)
    await log.start()
    log.append(record("first"))
    assert await asyncio.to_thread(writing.wait, 5)
    log.append(record("during"))  # the writer thread is busy with `first`
    await log.stop()
    assert log.written == 2 and len((tmp_path / "a.log").read_bytes().splitlines()) == 2
