"""Batches and their jobs (the OpenAI Batch API's model): statuses, files, jobs, result lines.

Pure: values in, values out (input lines are read in batch_input). Times are Unix seconds, passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

from costwarden.domain.batch_input import LineError

COMPLETION_WINDOW_S = 24 * 3600  # the only window OpenAI offers: "24h"
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


class BatchStatus(StrEnum):
    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


TERMINAL = frozenset({BatchStatus.FAILED, BatchStatus.COMPLETED, BatchStatus.EXPIRED, BatchStatus.CANCELLED})
_MOVES: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.VALIDATING: frozenset({BatchStatus.IN_PROGRESS, BatchStatus.FAILED, BatchStatus.CANCELLING}),
    BatchStatus.IN_PROGRESS: frozenset({BatchStatus.FINALIZING, BatchStatus.CANCELLING, BatchStatus.EXPIRED}),
    BatchStatus.FINALIZING: frozenset({BatchStatus.COMPLETED, BatchStatus.EXPIRED}),
    BatchStatus.CANCELLING: frozenset({BatchStatus.CANCELLED}),
}


def can_move(current: BatchStatus, to: BatchStatus) -> bool:
    """Whether a batch in `current` may go to `to` (a terminal status goes nowhere)."""
    return to in _MOVES.get(current, frozenset())


def status_time_field(status: BatchStatus) -> str | None:
    """The batch object's timestamp field set when it enters `status`."""
    return {
        BatchStatus.IN_PROGRESS: "in_progress_at",
        BatchStatus.FINALIZING: "finalizing_at",
        BatchStatus.COMPLETED: "completed_at",
        BatchStatus.FAILED: "failed_at",
        BatchStatus.EXPIRED: "expired_at",
        BatchStatus.CANCELLING: "cancelling_at",
        BatchStatus.CANCELLED: "cancelled_at",
    }.get(status)


@dataclass(frozen=True, slots=True)
class JobResult:
    """What one job's request got: the status and body the client of a realtime call would have."""

    status_code: int
    body: bytes
    request_id: str
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass(slots=True)
class RequestCounts:
    total: int = 0
    completed: int = 0
    failed: int = 0

    def to_json(self) -> dict[str, int]:
        return {"total": self.total, "completed": self.completed, "failed": self.failed}


def output_line(job_id: str, custom_id: str | None, result: JobResult | None, error: LineError | None) -> bytes:
    """One line of the output or error file, in OpenAI's shape."""
    response: dict[str, Any] | None = None
    err: dict[str, str] | None = None
    if result is not None:
        response = {"status_code": result.status_code, "request_id": result.request_id, "body": _json(result.body)}
        if result.error_code is not None:
            err = {"code": result.error_code, "message": result.error_message or ""}
    if error is not None:
        err = {"code": error.code, "message": error.message}
    line = {"id": job_id, "custom_id": custom_id, "response": response, "error": err}
    return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class BatchFile:
    """An uploaded input file or a generated output/error file (its content stored beside it)."""

    id: str
    team: str
    purpose: str  # batch | batch_output
    filename: str
    bytes: int
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": int(self.created_at),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


@dataclass(slots=True)
class Batch:
    """A batch as stored. `times` maps the batch object's `*_at` fields to Unix seconds."""

    id: str
    team: str
    key_id: str
    endpoint: str
    input_file_id: str
    status: BatchStatus
    created_at: float
    expires_at: float
    times: dict[str, float] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: RequestCounts = field(default_factory=RequestCounts)
    metadata: dict[str, str] = field(default_factory=dict)
    errors: tuple[LineError, ...] = ()

    def to_json(self) -> dict[str, Any]:
        stamps = {
            name: (int(self.times[name]) if name in self.times else None)
            for name in (
                "in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
                "cancelled_at",
            )
        }  # fmt: skip
        errors = None
        if self.errors:
            data = [{"code": e.code, "message": e.message, "line": e.line or None, "param": None} for e in self.errors]
            errors = {"object": "list", "data": data}
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": errors,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status.value,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": int(self.created_at),
            "expires_at": int(self.expires_at),
            **stamps,
            "request_counts": self.counts.to_json(),
            "metadata": self.metadata or None,
        }


@dataclass(frozen=True, slots=True)
class Job:
    """A queued request of a batch. `request_id` is fixed before the job first runs, so a re-run
    after a crash writes the same ledger record (deduplicated), never a second one."""

    id: str
    batch_id: str
    key_id: str
    endpoint: str
    custom_id: str
    body: bytes
    request_id: str
    attempts: int
    enqueued_at: float
    line: int = 0  # in the input file, 1-based


@dataclass(frozen=True, slots=True)
class BatchDepth:
    """Queue depth of one unfinished batch: jobs waiting, jobs running, and the oldest's age."""

    batch_id: str
    team: str
    status: BatchStatus
    pending: int
    leased: int
    done: int
    oldest_enqueued_at: float | None


@dataclass(frozen=True, slots=True)
class BatchRef:
    """What marks a request as a batch job's: its batch and job ids (recorded in the ledger), the
    key it runs as, and the batch price multiplier applied to its cost."""

    batch_id: str
    job_id: str
    key_id: str
    price_multiplier: Decimal


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as its owner reads it (`GET /v1/costwarden/jobs/{id}`): its state and, once done, its result."""

    id: str
    batch_id: str
    custom_id: str | None
    state: str  # pending | leased | done
    attempts: int
    enqueued_at: float
    finished_at: float | None
    result: JobResult | None  # the answer, once the job ran
    error: LineError | None  # why it did not run (bad line, cancelled, expired, purged)

    def to_json(self) -> dict[str, Any]:
        if self.state != "done":
            status = "queued" if self.state == "pending" else "running"
        else:
            status = "completed" if self.result is not None and self.result.ok else "failed"
        line = orjson.loads(output_line(self.id, self.custom_id, self.result, self.error))
        return {
            "id": self.id,
            "object": "costwarden.job",
            "batch_id": self.batch_id,
            "status": status,
            "attempts": self.attempts,
            "created_at": int(self.enqueued_at),
            "finished_at": None if self.finished_at is None else int(self.finished_at),
            "response": line["response"],
            "error": line["error"],
        }
