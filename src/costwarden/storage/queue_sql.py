"""The batch queue's schema, statements and row codecs, shared by the SQLite and PostgreSQL adapters.

Statements are written with `?` placeholders; `numbered` turns them into PostgreSQL's `$n`.
The queue owns its tables (created if missing), so it can live in the ledger's database or its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson

from costwarden.domain.batch import (
    TERMINAL,
    Batch,
    BatchDepth,
    BatchFile,
    BatchStatus,
    Job,
    JobResult,
    JobView,
    RequestCounts,
    output_line,
)
from costwarden.domain.batch_input import LineError

SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_files (
    id TEXT PRIMARY KEY, team TEXT NOT NULL, purpose TEXT NOT NULL, filename TEXT NOT NULL,
    bytes BIGINT NOT NULL, created_at DOUBLE PRECISION NOT NULL, content {blob} NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, team TEXT NOT NULL, key_id TEXT NOT NULL, endpoint TEXT NOT NULL,
    input_file_id TEXT NOT NULL, status TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL, times TEXT NOT NULL, output_file_id TEXT, error_file_id TEXT,
    metadata TEXT NOT NULL, errors TEXT NOT NULL, finished_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS batches_team ON batches (team, created_at);
CREATE INDEX IF NOT EXISTS batches_status ON batches (status);
CREATE INDEX IF NOT EXISTS batches_input ON batches (input_file_id);
CREATE INDEX IF NOT EXISTS batch_files_team ON batch_files (team, created_at);
CREATE INDEX IF NOT EXISTS batch_files_age ON batch_files (purpose, created_at);
CREATE TABLE IF NOT EXISTS batch_jobs (
    id TEXT PRIMARY KEY, batch_id TEXT NOT NULL, line INTEGER NOT NULL, custom_id TEXT, body {blob},
    state TEXT NOT NULL, request_id TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, owner TEXT,
    lease_until DOUBLE PRECISION, not_before DOUBLE PRECISION NOT NULL, enqueued_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION, status_code INTEGER, result {blob}, error_code TEXT, error_message TEXT
);
CREATE INDEX IF NOT EXISTS batch_jobs_batch ON batch_jobs (batch_id, line);
CREATE INDEX IF NOT EXISTS batch_jobs_queue ON batch_jobs (state, enqueued_at, line);
CREATE INDEX IF NOT EXISTS batch_jobs_leases ON batch_jobs (state, lease_until);
CREATE TABLE IF NOT EXISTS job_callbacks (
    job_id TEXT PRIMARY KEY, url TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION, last_error TEXT
);
CREATE INDEX IF NOT EXISTS job_callbacks_due ON job_callbacks (state, next_at)
"""

PENDING, LEASED, DONE = "pending", "leased", "done"
FILE_COLUMNS = "id, team, purpose, filename, bytes, created_at"
BATCH_COLUMNS = (
    "id, team, key_id, endpoint, input_file_id, status, created_at, expires_at, times, output_file_id, "
    "error_file_id, metadata, errors"
)
JOB_INSERT = (
    "INSERT INTO batch_jobs (id, batch_id, line, custom_id, body, state, request_id, not_before, enqueued_at, "
    "finished_at, error_code, error_message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
BATCH_INSERT = f"INSERT INTO batches ({BATCH_COLUMNS}, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
FILE_INSERT = (
    f"INSERT INTO batch_files ({FILE_COLUMNS}, content) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
COUNTS = (
    "SELECT COUNT(*), "
    "COALESCE(SUM(CASE WHEN state = 'done' AND status_code BETWEEN 200 AND 299 THEN 1 ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN state = 'done' AND (status_code IS NULL OR status_code NOT BETWEEN 200 AND 299) "
    "THEN 1 ELSE 0 END), 0) FROM batch_jobs WHERE batch_id = ?"
)
# Two claims, each walking an index in order and stopping at its LIMIT (no sort of the whole queue):
# jobs whose worker died (lease expired) first, then waiting jobs, oldest first.
EXPIRED = "j.state = 'leased' AND j.lease_until <= ? AND b.status = 'in_progress' ORDER BY j.state, j.lease_until"
WAITING = (
    "j.state = 'pending' AND j.not_before <= ? AND b.status = 'in_progress' "
    "ORDER BY j.state, j.enqueued_at, j.line"
)
JOB_FIELDS = (
    "j.id, j.batch_id, b.key_id, b.endpoint, j.custom_id, j.body, j.request_id, j.attempts, j.enqueued_at, j.line"
)
JOB_SELECT = (
    f"SELECT {JOB_FIELDS} FROM batch_jobs j JOIN batches b ON b.id = j.batch_id"
)
FINISH = (
    "UPDATE batch_jobs SET state = 'done', owner = NULL, lease_until = NULL, finished_at = ?, status_code = ?, "
    "result = ?, error_code = ?, error_message = ? WHERE id = ? AND state <> 'done'"
)
DEFER = (
    "UPDATE batch_jobs SET state = 'pending', owner = NULL, lease_until = NULL, request_id = ?, not_before = ? "
    "WHERE id = ? AND state = 'leased'"
)
# Batches with nothing left to run: no live lease, and cancelling, expired, or every job done.
CLOSABLE = (
    "SELECT b.id FROM batches b WHERE b.status IN ('in_progress', 'cancelling') {only} "
    "AND NOT EXISTS (SELECT 1 FROM batch_jobs j WHERE j.batch_id = b.id AND j.state = 'leased' AND j.lease_until > ?) "
    "AND (b.status = 'cancelling' OR b.expires_at <= ? "
    "OR NOT EXISTS (SELECT 1 FROM batch_jobs j WHERE j.batch_id = b.id AND j.state <> 'done'))"
)
CLOSE_LEFTOVERS = (
    "UPDATE batch_jobs SET state = 'done', owner = NULL, lease_until = NULL, finished_at = ?, error_code = ?, "
    "error_message = ? WHERE batch_id = ? AND state <> 'done'"
)
DONE_JOBS = (
    "SELECT id, custom_id, status_code, result, request_id, error_code, error_message, line "
    "FROM batch_jobs WHERE batch_id = ? ORDER BY line"
)
CLOSE_BATCH = (
    "UPDATE batches SET status = ?, times = ?, output_file_id = ?, error_file_id = ?, finished_at = ? WHERE id = ?"
)
DEPTH = (
    "SELECT b.id, b.team, b.status, "
    "COALESCE(SUM(CASE WHEN j.state = 'pending' THEN 1 ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN j.state = 'leased' THEN 1 ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN j.state = 'done' THEN 1 ELSE 0 END), 0), "
    "MIN(CASE WHEN j.state <> 'done' THEN j.enqueued_at END) "
    "FROM batches b JOIN batch_jobs j ON j.batch_id = b.id "
    "WHERE b.status IN ('validating', 'in_progress', 'finalizing', 'cancelling') "
    "GROUP BY b.id, b.team, b.status ORDER BY b.created_at"
)
PURGE = (
    "UPDATE batch_jobs SET state = 'done', finished_at = ?, error_code = 'purged', "
    "error_message = 'the job was purged from the queue by an operator' WHERE state = 'pending' {only}"
)
JOB_VIEW = (
    "SELECT j.id, j.batch_id, j.custom_id, j.state, j.attempts, j.enqueued_at, j.finished_at, j.status_code, "
    "j.result, j.request_id, j.error_code, j.error_message, j.line "
    "FROM batch_jobs j JOIN batches b ON b.id = j.batch_id WHERE j.id = ? AND b.team = ?"
)
# Callbacks of realtime jobs (X-Costwarden-Callback): due once their job is done; a claim pushes
# `next_at` past the attempt's timeout, so a gateway that dies mid-delivery leaves it to another try.
CALLBACK_INSERT = "INSERT INTO job_callbacks (job_id, url, state, attempts, next_at) VALUES (?, ?, 'pending', 0, ?)"
DUE_CALLBACKS = (
    "SELECT c.job_id, b.team, c.url, c.attempts FROM job_callbacks c JOIN batch_jobs j ON j.id = c.job_id "
    "JOIN batches b ON b.id = j.batch_id WHERE c.state = 'pending' AND c.next_at <= ? AND j.state = 'done' "
    "ORDER BY c.state, c.next_at LIMIT ?"
)
# Unfinished realtime batches (one job each, no input file) of a team, found by the status index.
QUEUED_REALTIME = "SELECT COUNT(*) FROM batches WHERE status = 'in_progress' AND team = ? AND input_file_id = ''"
CLAIM_CALLBACK = "UPDATE job_callbacks SET attempts = attempts + 1, next_at = ? WHERE job_id = ?"
CALLBACK_RESULT = "UPDATE job_callbacks SET state = ?, next_at = ?, finished_at = ?, last_error = ? WHERE job_id = ?"
CANCEL = "UPDATE batches SET status = 'cancelling', times = ? WHERE id = ? AND team = ? AND status = ?"



def callback_result_values(job_id: str, retry_at: float | None, now: float, error: str | None) -> tuple[Any, ...]:
    """CALLBACK_RESULT's values: delivered (no error), retried at `retry_at`, or given up."""
    if error is None:
        return ("delivered", now, now, None, job_id)
    if retry_at is not None:
        return ("pending", retry_at, None, error[:500], job_id)
    return ("failed", now, now, error[:500], job_id)


def numbered(sql: str) -> str:
    """`?` placeholders -> PostgreSQL's `$1, $2, ...` (our statements hold no `?` in literals)."""
    count = 0

    def nxt(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return re.sub(r"\?", nxt, sql)


def file_row(file: BatchFile, content: bytes) -> tuple[Any, ...]:
    return (file.id, file.team, file.purpose, file.filename, file.bytes, file.created_at, content)


def file_from_row(row: Sequence[Any]) -> BatchFile:
    return BatchFile(row[0], row[1], row[2], row[3], int(row[4]), float(row[5]))


def batch_row(batch: Batch) -> tuple[Any, ...]:
    """BATCH_INSERT's values; `finished_at` (what retention counts from) is set for a batch created
    finished (failed at validation)."""
    errors = [[e.line, e.custom_id, e.code, e.message] for e in batch.errors]
    finished = batch.created_at if batch.status in TERMINAL else None
    return (
        batch.id, batch.team, batch.key_id, batch.endpoint, batch.input_file_id, batch.status.value,
        batch.created_at, batch.expires_at, orjson.dumps(batch.times).decode(), batch.output_file_id,
        batch.error_file_id, orjson.dumps(batch.metadata).decode(), orjson.dumps(errors).decode(), finished,
    )  # fmt: skip


def batch_from_row(row: Sequence[Any], counts: Sequence[Any]) -> Batch:
    errors = tuple(LineError(int(e[0]), e[1], e[2], e[3]) for e in orjson.loads(row[12]))
    return Batch(
        id=row[0],
        team=row[1],
        key_id=row[2],
        endpoint=row[3],
        input_file_id=row[4],
        status=BatchStatus(row[5]),
        created_at=float(row[6]),
        expires_at=float(row[7]),
        times=orjson.loads(row[8]),
        output_file_id=row[9],
        error_file_id=row[10],
        counts=RequestCounts(int(counts[0]), int(counts[1]), int(counts[2])),
        metadata=orjson.loads(row[11]),
        errors=errors,
    )


def job_rows(batch: Batch, jobs: Sequence[Job], errors: Sequence[LineError], error_ids: Sequence[str]) -> list[Any]:
    """Rows for JOB_INSERT: the jobs (pending) and the bad lines (done, with their error)."""
    rows: list[tuple[Any, ...]] = []
    for job in jobs:
        rows.append(
            (job.id, batch.id, job.line, job.custom_id, job.body, PENDING, job.request_id, batch.created_at,
             batch.created_at, None, None, None)
        )  # fmt: skip
    for error, job_id in zip(errors, error_ids, strict=True):
        rows.append(
            (job_id, batch.id, error.line, error.custom_id, None, DONE, "", batch.created_at, batch.created_at,
             batch.created_at, error.code, error.message)
        )  # fmt: skip
    return rows


def job_from_row(row: Sequence[Any]) -> Job:
    """A claimed job from JOB_FIELDS, `attempts` read before the claim raised it."""
    attempts, enqueued_at, line = int(row[7]) + 1, float(row[8]), int(row[9])
    return Job(row[0], row[1], row[2], row[3], row[4], bytes(row[5]), row[6], attempts, enqueued_at, line)


def finish_values(job: Job, result: JobResult, now: float) -> tuple[Any, ...]:
    return (now, result.status_code, result.body, result.error_code, result.error_message, job.id)


def result_files(rows: Sequence[Sequence[Any]]) -> tuple[bytes, bytes]:
    """(output file, error file) content from DONE_JOBS rows: 2xx responses in the first."""
    output: list[bytes] = []
    errors: list[bytes] = []
    for job_id, custom_id, status, body, request_id, code, message, line in rows:
        if status is None:
            error = LineError(int(line), custom_id, code or "", message or "")
            errors.append(output_line(job_id, custom_id, None, error))
            continue
        result = JobResult(int(status), bytes(body or b""), request_id, code, message)
        (output if result.ok else errors).append(output_line(job_id, custom_id, result, None))
    return b"".join(output), b"".join(errors)


def depth_from_row(row: Sequence[Any]) -> BatchDepth:
    oldest = None if row[6] is None else float(row[6])
    return BatchDepth(row[0], row[1], BatchStatus(row[2]), int(row[3]), int(row[4]), int(row[5]), oldest)


def job_view_from_row(row: Sequence[Any]) -> JobView:
    job_id, batch_id, custom_id, state, attempts, enqueued, finished = row[:7]
    status, body, request_id, code, message, line = row[7:]
    result = None
    error = None
    if status is not None:
        result = JobResult(int(status), bytes(body or b""), request_id, code, message)
    elif code is not None:
        error = LineError(int(line), custom_id, code, message or "")
    ended = None if finished is None else float(finished)
    return JobView(job_id, batch_id, custom_id, state, int(attempts), float(enqueued), ended, result, error)
