"""Closing a batch with nothing left to run: its final status and its output and error files.

Shared by the queue adapters; the file ids are derived from the batch id, so a close that is
repeated (a crash before its commit, two gateways racing) writes the same files, once.
"""

from __future__ import annotations

from dataclasses import dataclass

from costwarden.domain.batch import Batch, BatchFile, BatchStatus, status_time_field


def close_plan(batch: Batch, now: float) -> tuple[BatchStatus, str | None, str | None]:
    """(final status, error code, message) for the jobs that did not run: cancelled, expired, or
    completed (then no job is left unrun)."""
    if batch.status is BatchStatus.CANCELLING:
        return BatchStatus.CANCELLED, "batch_cancelled", "the batch was cancelled before this request ran"
    if batch.expires_at <= now:
        return BatchStatus.EXPIRED, "batch_expired", "the batch expired before this request ran"
    return BatchStatus.COMPLETED, None, None


@dataclass(frozen=True, slots=True)
class ResultFiles:
    files: tuple[tuple[BatchFile, bytes], ...]
    output_id: str | None
    error_id: str | None

    @staticmethod
    def stamp(status: BatchStatus) -> str:
        field = status_time_field(status)
        assert field is not None
        return field


def result_files(batch: Batch, output: bytes, errors: bytes, now: float) -> ResultFiles:
    """The output file (2xx responses) and the error file (the rest), each only if not empty."""
    suffix = batch.id.removeprefix("batch_")
    files: list[tuple[BatchFile, bytes]] = []
    ids: list[str | None] = []
    for kind, content in (("output", output), ("errors", errors)):
        if not content:
            ids.append(None)
            continue
        name = f"{batch.id}_{kind}.jsonl"
        file = BatchFile(f"file-{suffix}-{kind}", batch.team, "batch_output", name, len(content), now)
        files.append((file, content))
        ids.append(file.id)
    return ResultFiles(tuple(files), ids[0], ids[1])
