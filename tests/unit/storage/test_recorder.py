"""The recorder: spool on append, batch to the ledger on flush, retry on failure, replay orphans."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from costwarden.domain.limits import storable
from costwarden.domain.quarantine import Quarantined
from costwarden.domain.record import UsageRecord
from costwarden.storage import recorder as recorder_module
from costwarden.storage.recorder import LedgerProgress, Recorder
from costwarden.storage.spool import Spool
from tests.unit.clock import Clock
from tests.unit.storage.sample import MemoryLedger, dead_folder, jsonl, record


def spooled(folder: Path) -> dict[str, list[str]]:
    """Request ids per segment file, as they are on disk now."""
    return {
        p.name: [orjson.loads(line)["request_id"] for line in p.read_bytes().splitlines()]
        for p in sorted(folder.glob("*.jsonl"))
    }


@pytest.fixture
def ledger() -> MemoryLedger:
    return MemoryLedger()


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    live = Spool(tmp_path / "spool")
    yield live
    if live.folder.exists():
        live.close(committed=False)


def make(ledger: MemoryLedger, spool: Spool, batch_size: int = 3) -> Recorder:
    return Recorder(ledger, spool, interval_s=60.0, batch_size=batch_size)


async def test_a_record_is_spooled_before_append_returns(ledger: MemoryLedger, spool: Spool) -> None:
    recorder = make(ledger, spool)
    recorder.append(record("a"))
    assert (spool.folder / "000000000000.jsonl").read_bytes() == jsonl(record("a"))
    assert ledger.rows == {}  # nothing reached the ledger yet
    assert recorder.backlog == 1


async def test_flush_writes_batches_and_deletes_sealed_segments(ledger: MemoryLedger, spool: Spool) -> None:
    recorder = make(ledger, spool, batch_size=2)
    ids = [f"r{i}" for i in range(5)]
    for request_id in ids:
        recorder.append(record(request_id))
    assert await recorder.flush() is True
    assert ledger.batches == [["r0", "r1"], ["r2", "r3"], ["r4"]]
    assert sorted(ledger.rows) == ids
    assert recorder.written == 5 and recorder.backlog == 0
    assert spooled(spool.folder) == {"000000000001.jsonl": []}  # only the fresh, empty segment
    recorder.append(record("r5"))
    assert await recorder.flush() is True
    assert spooled(spool.folder) == {"000000000002.jsonl": []}
    assert sorted(ledger.rows) == [*ids, "r5"]


async def test_flush_with_nothing_to_do(ledger: MemoryLedger, spool: Spool) -> None:
    recorder = make(ledger, spool)
    assert await recorder.flush() is True
    assert ledger.batches == []
    assert spooled(spool.folder) == {"000000000000.jsonl": []}


async def test_a_failing_store_keeps_the_segments_and_retries(ledger: MemoryLedger, spool: Spool) -> None:
    recorder = make(ledger, spool, batch_size=10)
    recorder.append(record("a"))
    recorder.append(record("b"))
    ledger.fail = 2
    assert await recorder.flush() is False
    assert recorder.failures == 1
    assert spooled(spool.folder) == {"000000000000.jsonl": ["a", "b"], "000000000001.jsonl": []}
    recorder.append(record("c"))
    assert await recorder.flush() is False  # still down: a, b and c are all kept
    assert recorder.failures == 2
    assert recorder.backlog == 3
    assert spooled(spool.folder) == {
        "000000000000.jsonl": ["a", "b"],
        "000000000001.jsonl": ["c"],
        "000000000002.jsonl": [],
    }
    assert ledger.rows == {}
    assert await recorder.flush() is True  # back up
    assert ledger.batches == [["a", "b", "c"]]  # each record sent once, none twice
    assert sorted(ledger.rows) == ["a", "b", "c"]
    assert recorder.written == 3 and recorder.backlog == 0
    assert spooled(spool.folder) == {"000000000002.jsonl": []}


async def test_a_failure_in_a_later_batch_is_retried_idempotently(ledger: MemoryLedger, spool: Spool) -> None:
    recorder = make(ledger, spool, batch_size=2)
    for request_id in "abcd":
        recorder.append(record(request_id))
    ledger.fail_calls = {2}
    assert await recorder.flush() is False
    assert sorted(ledger.rows) == ["a", "b"]
    assert "000000000000.jsonl" in spooled(spool.folder)
    assert await recorder.flush() is True
    assert sorted(ledger.rows) == ["a", "b", "c", "d"]  # a and b were re-sent, stored once
    assert list(ledger.rows.values()) == [record(i) for i in "abcd"]


async def test_stop_flushes_and_removes_the_spool(ledger: MemoryLedger, spool: Spool) -> None:
    recorder = make(ledger, spool)
    recorder.start()
    recorder.append(record("a"))
    await recorder.stop()
    assert sorted(ledger.rows) == ["a"]
    assert not spool.folder.exists()


async def test_stop_with_the_ledger_down_keeps_the_spool(ledger: MemoryLedger, spool: Spool) -> None:
    recorder = make(ledger, spool)
    recorder.append(record("a"))
    ledger.fail = 1
    await recorder.stop()
    assert spool.folder.exists()
    assert spooled(spool.folder)["000000000000.jsonl"] == ["a"]
    successor = Spool(spool.root)
    try:
        assert await make(ledger, successor).recover() == 1
        assert sorted(ledger.rows) == ["a"]
    finally:
        successor.close(committed=True)


async def test_a_full_batch_wakes_the_background_flush(ledger: MemoryLedger, spool: Spool) -> None:
    recorder = make(ledger, spool, batch_size=2)
    recorder.start()
    try:
        recorder.append(record("a"))
        recorder.append(record("b"))
        for _ in range(200):
            if ledger.rows:
                break
            await asyncio.sleep(0.005)
        assert sorted(ledger.rows) == ["a", "b"]  # long before the 60 s interval
    finally:
        await recorder.stop()


async def test_recover_replays_an_orphan_including_a_torn_last_line(ledger: MemoryLedger, spool: Spool) -> None:
    a, b, c = record("a"), record("b"), record("c")
    torn = jsonl(record("d"))[:40]  # the process died mid-write
    dead = dead_folder(spool.root, "4242-0badcafe", jsonl(a, b), jsonl(c) + torn)
    recorder = make(ledger, spool, batch_size=2)
    assert await recorder.recover() == 3
    assert ledger.rows == {"a": a, "b": b, "c": c}
    assert ledger.batches == [["a", "b"], ["c"]]
    assert not dead.exists()
    assert spool.folder.exists()  # its own folder is not an orphan


async def test_recover_does_not_double_count(ledger: MemoryLedger, spool: Spool) -> None:
    # The dead process wrote "a" to the ledger but died before deleting its segment.
    ledger.rows["a"] = record("a")
    dead_folder(spool.root, "4242-0badcafe", jsonl(record("a"), record("b")))
    assert await make(ledger, spool).recover() == 1
    assert sorted(ledger.rows) == ["a", "b"]


async def test_recover_leaves_a_live_folder_alone(ledger: MemoryLedger, spool: Spool) -> None:
    other = Spool(spool.root)  # another gateway process, alive, with an unflushed record
    try:
        other.append(record("theirs"))
        dead_folder(spool.root, "4242-0badcafe", jsonl(record("dead")))
        assert await make(ledger, spool).recover() == 1
        assert sorted(ledger.rows) == ["dead"]
        assert spooled(other.folder) == {"000000000000.jsonl": ["theirs"]}
        assert (other.folder / "lock").exists()
    finally:
        other.close(committed=False)


async def test_recover_with_the_ledger_down_keeps_the_orphan(ledger: MemoryLedger, spool: Spool) -> None:
    dead = dead_folder(spool.root, "4242-0badcafe", jsonl(record("a")))
    ledger.fail = 1
    assert await make(ledger, spool).recover() == 0  # never raises: startup must not abort
    assert spooled(dead) == {"000000000000.jsonl": ["a"]}
    assert await make(ledger, spool).recover() == 1
    assert not dead.exists()


# --- poison records, quarantine, progress ---------------------------------------------------


def alerting(
    ledger: MemoryLedger, spool: Spool, batch_size: int, clock: Clock | None = None
) -> tuple[Recorder, list[Quarantined]]:
    seen: list[Quarantined] = []
    recorder = Recorder(
        ledger, spool, interval_s=0.1, batch_size=batch_size, on_quarantine=seen.extend, clock=clock or Clock(1000.0)
    )
    return recorder, seen


@pytest.mark.parametrize("position", [0, 3, 7])
async def test_a_poison_record_is_quarantined_and_the_rest_written(
    ledger: MemoryLedger, spool: Spool, position: int
) -> None:
    recorder, alerted = alerting(ledger, spool, batch_size=8)
    ids = [f"r{i}" for i in range(8)]
    ledger.poison = {ids[position]}
    for request_id in ids:
        recorder.append(record(request_id))
    assert await recorder.flush() is True
    assert sorted(ledger.rows) == sorted(set(ids) - {ids[position]})
    assert [e.request_id for e in ledger.quarantined] == [ids[position]]
    assert "value out of range" in ledger.quarantined[0].reason
    assert UsageRecord.from_json_dict(orjson.loads(ledger.quarantined[0].record)) == record(ids[position])
    assert alerted == ledger.quarantined
    assert (recorder.written, recorder.quarantined, recorder.backlog) == (7, 1, 0)
    assert recorder.progress().consecutive_failures == 0
    # It is never retried: the next flushes write the next records and leave it alone.
    calls = ledger.calls
    recorder.append(record("next"))
    assert await recorder.flush() is True
    assert ledger.calls == calls + 1 and "next" in ledger.rows
    assert len(ledger.quarantined) == 1
    assert spooled(spool.folder) == {"000000000002.jsonl": []}


async def test_several_poison_records_in_several_batches(ledger: MemoryLedger, spool: Spool) -> None:
    recorder, _ = alerting(ledger, spool, batch_size=4)
    ids = [f"r{i:02d}" for i in range(20)]
    ledger.poison = {"r00", "r05", "r06", "r19"}
    for request_id in ids:
        recorder.append(record(request_id))
    assert await recorder.flush() is True
    assert sorted(ledger.rows) == sorted(set(ids) - ledger.poison)
    assert sorted(e.request_id for e in ledger.quarantined) == sorted(ledger.poison)


async def test_a_record_out_of_range_never_reaches_the_database(ledger: MemoryLedger, spool: Spool) -> None:
    recorder, alerted = alerting(ledger, spool, batch_size=10)
    recorder.append(record("ok"))
    recorder.append(record("huge", items=2**64 - 1, cost_usd=Decimal(10**12)))
    assert await recorder.flush() is True
    assert list(ledger.rows) == ["ok"]
    assert ledger.batches == [["ok"]]
    (entry,) = ledger.quarantined
    assert entry.request_id == "huge" and "items=18446744073709551615" in entry.reason
    assert alerted == [entry]


async def test_a_transient_failure_is_retried_not_quarantined(ledger: MemoryLedger, spool: Spool) -> None:
    clock = Clock(1000.0)
    recorder, alerted = alerting(ledger, spool, batch_size=10, clock=clock)
    recorder.append(record("a"))
    ledger.fail = 3
    for attempt in range(1, 4):
        clock.now += 1.0
        assert await recorder.flush() is False
        progress = recorder.progress()
        assert progress.consecutive_failures == attempt
        assert progress.oldest_waiting_s == attempt
        assert progress.last_error is not None and "the ledger is down" in progress.last_error
    assert ledger.quarantined == [] and alerted == []
    assert await recorder.flush() is True
    assert list(ledger.rows) == ["a"]
    assert recorder.progress() == LedgerProgress(0, 0.0, 0, None)


async def test_the_quarantine_itself_unreachable_keeps_everything(ledger: MemoryLedger, spool: Spool) -> None:
    recorder, alerted = alerting(ledger, spool, batch_size=10)
    ledger.poison = {"bad"}
    ledger.fail_quarantine = 1
    recorder.append(record("good"))
    recorder.append(record("bad"))
    assert await recorder.flush() is False  # never dropped: kept for the next flush
    assert recorder.backlog == 2 and alerted == []
    assert "000000000000.jsonl" in spooled(spool.folder)
    assert await recorder.flush() is True
    assert list(ledger.rows) == ["good"]
    assert [e.request_id for e in ledger.quarantined] == ["bad"]


async def test_oldest_wait_follows_the_oldest_record(ledger: MemoryLedger, spool: Spool) -> None:
    clock = Clock(1000.0)
    recorder, _ = alerting(ledger, spool, batch_size=10, clock=clock)
    assert recorder.oldest_wait() == 0.0
    recorder.append(record("a"))
    clock.now += 2.0
    recorder.append(record("b"))
    clock.now += 3.0
    assert recorder.oldest_wait() == 5.0
    ledger.fail = 1
    assert await recorder.flush() is False
    clock.now += 1.0
    recorder.append(record("c"))
    assert recorder.oldest_wait() == 6.0  # "a" is still the oldest
    assert await recorder.flush() is True
    assert recorder.oldest_wait() == 0.0


async def test_recover_quarantines_bad_lines_and_poison_and_never_raises(ledger: MemoryLedger, spool: Spool) -> None:
    lines = jsonl(record("a")) + b"{not json\n" + jsonl(record("poison"), record("b"))
    lines += jsonl(record("huge", items=2**64 - 1))
    dead = dead_folder(spool.root, "4242-0badcafe", lines)
    ledger.poison = {"poison"}
    recorder, alerted = alerting(ledger, spool, batch_size=10)
    assert await recorder.recover() == 2
    assert sorted(ledger.rows) == ["a", "b"]
    assert sorted(e.request_id for e in ledger.quarantined) == ["4242-0badcafe/000000000000.jsonl:2", "huge", "poison"]
    bad_line = next(e for e in ledger.quarantined if e.request_id.startswith("4242"))
    assert bad_line.record == "{not json" and bad_line.reason == "unreadable spool line"
    assert alerted == ledger.quarantined
    assert not dead.exists()
    assert recorder.adopted == 1


async def test_a_live_gateway_adopts_an_orphan_periodically(ledger: MemoryLedger, spool: Spool) -> None:
    recorder = Recorder(ledger, spool, interval_s=0.02, batch_size=10)
    recorder.start(adopt_every_s=0.05)
    try:
        await asyncio.sleep(0.1)
        # A replica sharing the spool root is killed after this gateway started.
        other = Spool(spool.root)
        other.append(record("orphaned"))
        os.close(other._fd)
        os.close(other._lock_fd)  # what SIGKILL does to its lock
        for _ in range(100):
            if "orphaned" in ledger.rows:
                break
            await asyncio.sleep(0.02)
        assert "orphaned" in ledger.rows
        assert not other.folder.exists()
        assert spool.folder.exists()
    finally:
        await recorder.stop()


async def test_a_record_the_record_stage_fitted_is_not_checked_again(
    ledger: MemoryLedger, spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []

    def counting(r: UsageRecord) -> bool:
        checked.append(r.request_id)
        return storable(r)

    monkeypatch.setattr(recorder_module, "storable", counting)
    recorder, alerted = alerting(ledger, spool, batch_size=10)
    recorder.append(record("fit-1"), fitted=True)
    recorder.append(record("huge", items=2**64 - 1))  # not from `fit`: checked, and quarantined
    recorder.append(record("fit-2"), fitted=True)
    assert await recorder.flush() is True
    assert checked == ["huge"]
    assert sorted(ledger.rows) == ["fit-1", "fit-2"]
    assert [e.request_id for e in alerted] == ["huge"]
    recorder.append(record("later", items=2**64 - 1))  # a later record is checked, whatever its id
    assert await recorder.flush() is True
    assert checked == ["huge", "later"] and [e.request_id for e in alerted] == ["huge", "later"]
