"""The local append-only spool: every record is written here before its response is sent.

A spool directory holds one folder per gateway process, locked with flock for the life of the
process. Each folder holds numbered segment files of JSON lines. A segment is deleted only once
all its records are committed to the ledger. A folder whose lock is free belongs to a process
that died: any live gateway sharing the root (at start and then periodically) adopts it, holding
its lock while it replays it into the ledger (idempotent on request id), then deletes it.
The write is a plain `os.write` to the page cache: it survives the process being killed (not a
power cut), costs microseconds, and is the only I/O on the request path.

On the gateway the writes are grouped (`append_grouped`): every record completed in one event-loop
turn is written by one `os.write` at the start of the next turn, and each request waits for that
write before its client gets the last byte, so the promise above holds with one syscall per turn
instead of one per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from costwarden.domain.record import UsageRecord

_LOCK = "lock"


class Spool:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # Locked before it appears under its name, so no other gateway can take it for an orphan.
        staging = self.root / f".{name}"
        staging.mkdir()
        self._lock_fd = os.open(staging / _LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.folder = self.root / name
        staging.rename(self.folder)
        self._segment = 0
        self._fd = self._open_segment()
        self._sealed: list[Path] = []
        self._lines: list[bytes] = []  # grouped: encoded, not yet written
        self._waiters: list[asyncio.Future[None]] = []  # grouped: their requests wait for the write
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop grouped writes run on

    def _segment_path(self, number: int) -> Path:
        return self.folder / f"{number:012d}.jsonl"

    def _open_segment(self) -> int:
        return os.open(self._segment_path(self._segment), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)

    def append(self, record: UsageRecord) -> None:
        """Write the record now: it is on disk when this returns."""
        _write_all(self._fd, record.to_json_line())

    def append_grouped(self, record: UsageRecord) -> asyncio.Future[None]:
        """Queue the record for this loop turn's one write; the future completes once it is on disk
        (or fails with the write's error). Cancelling the future does not take the record back."""
        loop = self._loop
        if loop is None or loop.is_closed():  # kept: CPython 3.11's get_running_loop makes a getpid() system call
            loop = self._loop = asyncio.get_running_loop()
        if not self._lines:
            loop.call_soon(self.write_grouped)
        self._lines.append(record.to_json_line())
        done = loop.create_future()
        self._waiters.append(done)
        return done

    def write_grouped(self) -> None:
        """Write the queued records with one `os.write` and release the requests that wait for it."""
        if not self._lines:
            return
        data = b"".join(self._lines)
        waiters = self._waiters
        self._lines, self._waiters = [], []
        try:
            _write_all(self._fd, data)
        except OSError as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(OSError(exc.errno, exc.strerror))  # one per waiter: none shared
            return
        for waiter in waiters:
            if not waiter.done():  # a waiter whose request was cancelled is cancelled already
                waiter.set_result(None)

    def seal(self) -> None:
        """Start a new segment; the current one waits for `commit_sealed`. Records queued for this
        turn's write go to the segment being sealed (their records are in the batch it seals)."""
        self.write_grouped()
        os.close(self._fd)
        self._sealed.append(self._segment_path(self._segment))
        self._segment += 1
        self._fd = self._open_segment()

    def commit_sealed(self) -> None:
        """Every record of every sealed segment is in the ledger: delete those segments."""
        for path in self._sealed:
            path.unlink(missing_ok=True)
        self._sealed.clear()

    def close(self, committed: bool) -> None:
        """Close this process's spool; remove it entirely if everything reached the ledger."""
        self.write_grouped()
        os.close(self._fd)
        if committed:
            for path in self.folder.iterdir():
                path.unlink(missing_ok=True)
            os.close(self._lock_fd)
            self.folder.rmdir()
        else:
            os.close(self._lock_fd)

    @contextlib.contextmanager
    def adopt(self) -> Iterator[list[Path]]:
        """Folders left by processes that died (their lock is free), locked for the caller until
        the block ends, so two live gateways never replay the same folder at once."""
        held: list[tuple[Path, int]] = []
        try:
            for folder in sorted(self.root.iterdir()):
                if folder == self.folder or folder.name.startswith(".") or not folder.is_dir():
                    continue
                fd = _try_lock(folder / _LOCK)
                if fd is not None:
                    held.append((folder, fd))
            yield [folder for folder, _ in held]
        finally:
            for _, fd in held:
                os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    while written < len(data):  # a regular file takes it all unless the disk fills: then this raises
        data = data[written:]
        written = os.write(fd, data)


def _try_lock(lock: Path) -> int | None:
    try:
        fd = os.open(lock, os.O_RDWR)  # never create: a folder without a lock is being made or removed
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None  # a live gateway owns it, or another one is adopting it
    return fd


@dataclass(slots=True)
class SpoolContents:
    """What a dead process's folder holds: its records, and lines that are not records
    (numbered `segment:line`), which are quarantined rather than dropped."""

    records: list[UsageRecord] = field(default_factory=list)
    bad_lines: list[tuple[str, str]] = field(default_factory=list)


def read_folder(folder: Path) -> SpoolContents:
    """All complete records of a dead process's spool. A torn last line (no newline: the process
    died mid-write, before its response was sent) is skipped; any other bad line is reported."""
    found = SpoolContents()
    for segment in sorted(folder.glob("*.jsonl")):
        data = segment.read_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        elif lines:
            lines.pop()  # torn
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                found.records.append(UsageRecord.from_json_dict(orjson.loads(line)))
            except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError, ArithmeticError):
                found.bad_lines.append((f"{segment.name}:{number}", line.decode("utf-8", "replace")))
    return found


def remove_folder(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink(missing_ok=True)
    folder.rmdir()
