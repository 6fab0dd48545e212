"""The spool: durable JSON lines per process, sealed segments, and orphan discovery by lock."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from costwarden.domain.record import UsageRecord
from costwarden.storage.spool import Spool, read_folder, remove_folder
from tests.unit.loop_calls import count_loop_lookups
from tests.unit.storage.sample import dead_folder, jsonl, record


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    live = Spool(tmp_path / "spool")
    yield live
    live.close(committed=False)


def lines(path: Path) -> list[UsageRecord]:
    return [UsageRecord.from_json_dict(orjson.loads(line)) for line in path.read_bytes().splitlines()]


def segments(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.jsonl"))


def test_a_folder_per_process_with_a_lock(spool: Spool) -> None:
    assert spool.folder.parent == spool.root
    assert spool.folder.name.startswith(f"{os.getpid()}-")
    assert (spool.folder / "lock").exists()
    assert segments(spool.folder) == ["000000000000.jsonl"]


def test_append_is_on_disk_when_it_returns(spool: Spool) -> None:
    first, second = record("a"), record("b", cost_usd=record("b").cost_usd * 3, tags={})
    spool.append(first)
    assert lines(spool.folder / "000000000000.jsonl") == [first]
    spool.append(second)
    assert lines(spool.folder / "000000000000.jsonl") == [first, second]


def test_the_json_line_is_exact(spool: Spool) -> None:
    spool.append(record("a"))
    data = orjson.loads((spool.folder / "000000000000.jsonl").read_bytes())
    assert data["cost_usd"] == "0.000123456"  # money as a string, never a float
    assert data["outcome"] == "served"
    assert data["tags"] == {"feature": "chat"}


def test_seal_and_commit(spool: Spool) -> None:
    spool.append(record("a"))
    spool.seal()
    spool.append(record("b"))
    assert segments(spool.folder) == ["000000000000.jsonl", "000000000001.jsonl"]
    spool.commit_sealed()
    assert segments(spool.folder) == ["000000000001.jsonl"]
    assert lines(spool.folder / "000000000001.jsonl") == [record("b")]


def test_close_committed_removes_the_folder(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(record("a"))
    spool.close(committed=True)
    assert not spool.folder.exists()


def test_close_uncommitted_keeps_the_folder_for_the_next_process(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(record("a"))
    spool.close(committed=False)
    assert read_folder(spool.folder).records == [record("a")]
    successor = Spool(tmp_path)
    try:
        with successor.adopt() as orphans:
            assert orphans == [spool.folder]  # its lock died with it
    finally:
        successor.close(committed=True)


def test_orphans_skip_live_folders_and_stray_files(spool: Spool) -> None:
    other_live = Spool(spool.root)
    try:
        dead = dead_folder(spool.root, "999999-deadbeef", jsonl(record("x")))
        (spool.root / "README").write_text("not a spool")
        with spool.adopt() as orphans:
            assert orphans == [dead]
            with other_live.adopt() as theirs:
                assert theirs == []  # held by the first adopter until its block ends
        with other_live.adopt() as theirs:
            assert theirs == [dead]
        # Looking did not take the folders: the live one is still locked by its owner.
        with spool.adopt() as orphans:
            assert orphans == [dead]
    finally:
        other_live.close(committed=False)


def test_read_folder_reads_segments_in_order_and_skips_a_torn_line(tmp_path: Path) -> None:
    a, b, c = record("a"), record("b"), record("c")
    torn = jsonl(record("d"))[:57]
    folder = dead_folder(tmp_path, "1-x", jsonl(a, b), jsonl(c) + torn)
    assert read_folder(folder).records == [a, b, c]
    assert read_folder(folder).bad_lines == []  # a torn last line is no record: never answered


def test_read_folder_reports_a_line_that_is_not_a_record(tmp_path: Path) -> None:
    garbage = b'{"request_id": "half"}\n' + b"\x00\xff not json\n" + b'{"cost_usd": "NaN?"}\n'
    folder = dead_folder(tmp_path, "1-x", garbage + jsonl(record("a")) + b"\n")
    contents = read_folder(folder)
    assert contents.records == [record("a")]
    assert [where for where, _ in contents.bad_lines] == [
        "000000000000.jsonl:1",
        "000000000000.jsonl:2",
        "000000000000.jsonl:3",
    ]  # kept for the quarantine, not dropped; the blank line is not reported
    assert contents.bad_lines[0][1] == '{"request_id": "half"}'


def test_remove_folder(tmp_path: Path) -> None:
    folder = dead_folder(tmp_path, "1-x", jsonl(record("a")), b"")
    remove_folder(folder)
    assert not folder.exists()


async def test_grouped_appends_of_one_loop_turn_are_one_write(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    real_write = os.write

    def counted(fd: int, data: bytes) -> int:
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr("costwarden.storage.spool.os.write", counted)
    a, b, c = record("a"), record("b"), record("c")
    waiting = [spool.append_grouped(r) for r in (a, b, c)]  # three requests completed in one turn
    assert not any(w.done() for w in waiting)
    assert lines(spool.folder / "000000000000.jsonl") == []  # nothing released before the write
    await asyncio.gather(*waiting)
    assert len(writes) == 1
    assert lines(spool.folder / "000000000000.jsonl") == [a, b, c]  # in order, the same lines
    assert writes[0] == jsonl(a, b, c)
    await spool.append_grouped(record("d"))  # the next turn: its own write
    assert len(writes) == 2


async def test_a_cancelled_wait_keeps_the_record_and_the_others(spool: Spool) -> None:
    first = spool.append_grouped(record("a"))
    second = spool.append_grouped(record("b"))
    first.cancel()  # its request was cancelled (the client left): the record is still written
    await second
    assert lines(spool.folder / "000000000000.jsonl") == [record("a"), record("b")]


async def test_seal_writes_the_queued_records_into_the_segment_it_seals(spool: Spool) -> None:
    waiting = spool.append_grouped(record("a"))
    spool.seal()  # the recorder sealed a batch holding record a: a belongs to segment 0
    assert waiting.done()
    spool.append(record("b"))
    assert lines(spool.folder / "000000000000.jsonl") == [record("a")]
    assert lines(spool.folder / "000000000001.jsonl") == [record("b")]


async def test_a_failed_grouped_write_fails_every_waiter(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("costwarden.storage.spool.os.write", full)
    waiting = [spool.append_grouped(record(name)) for name in "ab"]
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert [type(r) for r in results] == [OSError, OSError]
    assert results[0] is not results[1]  # each request raises its own


async def test_grouped_appends_ask_for_the_running_loop_once(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPython 3.11's `asyncio.get_running_loop()` makes a getpid() system call (1.6 us on this VM):
    the spool keeps its loop instead of asking on every request."""
    asked = count_loop_lookups(monkeypatch)
    for turn in range(5):
        await asyncio.gather(*(spool.append_grouped(record(f"{turn}-{i}")) for i in range(3)))
    assert len(asked) == 1  # 15 before
    assert len(lines(spool.folder / "000000000000.jsonl")) == 15
