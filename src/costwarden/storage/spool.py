"""The local append-only spool: every record is written here before its response is sent.

A spool directory holds one folder per gateway process, locked with flock for the life of the
process. Each folder holds numbered segment files of JSON lines. A segment is deleted only once
all its records are committed to the ledger. After a crash, the next process finds the unlocked
folders, replays them into the ledger (idempotent on request id) and deletes them.
The write is a plain `os.write` to the page cache: it survives the process being killed (not a
power cut), costs microseconds, and is the only I/O on the request path.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson

from costwarden.domain.record import UsageRecord

_LOCK = "lock"


class Spool:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.folder = self.root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.folder.mkdir()
        self._lock_fd = os.open(self.folder / _LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._segment = 0
        self._fd = self._open_segment()
        self._sealed: list[Path] = []

    def _segment_path(self, number: int) -> Path:
        return self.folder / f"{number:012d}.jsonl"

    def _open_segment(self) -> int:
        return os.open(self._segment_path(self._segment), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)

    def append(self, record: UsageRecord) -> None:
        os.write(self._fd, record.to_json_line())

    def seal(self) -> None:
        """Start a new segment; the current one waits for `commit_sealed`."""
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
        os.close(self._fd)
        if committed:
            for path in self.folder.iterdir():
                path.unlink(missing_ok=True)
            os.close(self._lock_fd)
            self.folder.rmdir()
        else:
            os.close(self._lock_fd)

    def orphans(self) -> Iterator[Path]:
        """Folders left by processes that died (their lock is free)."""
        for folder in sorted(self.root.iterdir()):
            if folder == self.folder or not folder.is_dir():
                continue
            lock = folder / _LOCK
            try:
                fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # a live gateway owns it
            os.close(fd)
            yield folder


def read_folder(folder: Path) -> list[UsageRecord]:
    """All complete records of a dead process's spool; a torn last line is skipped."""
    records: list[UsageRecord] = []
    for segment in sorted(folder.glob("*.jsonl")):
        for line in segment.read_bytes().splitlines():
            try:
                records.append(UsageRecord.from_json_dict(orjson.loads(line)))
            except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
                continue
    return records


def remove_folder(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink(missing_ok=True)
    folder.rmdir()
