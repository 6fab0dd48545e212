"""Batch files after their upload: a team's listing (OpenAI's `GET /v1/files` query), and what one
retention round removed from the queue (finished batches, their jobs, their files).

Pure: values in, values out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_FILE_LIST = 10_000  # OpenAI's limit for `GET /v1/files`, and its default
PURGE_BYTES = 64 * 1024 * 1024  # file content deleted in one retention transaction (at least one file)


@dataclass(frozen=True, slots=True)
class FileQuery:
    """One page of a team's files, ordered by `created_at` (then id): newest first unless `ascending`;
    `after` is the id of the last file of the previous page; `purpose` filters (`batch`, `batch_output`)."""

    purpose: str | None = None
    after: str | None = None
    limit: int = MAX_FILE_LIST
    ascending: bool = False


@dataclass(frozen=True, slots=True)
class Pruned:
    """Rows one retention step (or a whole round) deleted from the queue's database."""

    batches: int = 0
    jobs: int = 0
    files: int = 0

    @property
    def total(self) -> int:
        return self.batches + self.jobs + self.files

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(self.batches + other.batches, self.jobs + other.jobs, self.files + other.files)


def within_bytes(files: Sequence[tuple[str, int]], most: int = PURGE_BYTES) -> list[str]:
    """The ids of the first `files` ((id, bytes), oldest first) whose content adds up to at most
    `most` bytes, and always the first: a transaction never frees much more than `most` bytes."""
    chosen: list[str] = []
    total = 0
    for file_id, size in files:
        if chosen and total + size > most:
            break
        chosen.append(file_id)
        total += size
    return chosen
