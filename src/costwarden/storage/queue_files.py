"""The batch queue's file listing, file deletion and retention, in SQL shared by the SQLite and
PostgreSQL adapters (`?` placeholders; `queue_sql.numbered` for PostgreSQL).

Retention deletes in short steps, each one transaction of at most `limit` job and batch rows: the
jobs of the batches that finished longest ago (their callbacks with them), each batch with its output
and error files once its last job is gone; then uploaded files past the cutoff that no kept batch
names as its input (at most `limit`, and about `PURGE_BYTES` of content, per step). No statement
here touches the ledger.
"""

from __future__ import annotations

from typing import Any

from costwarden.domain.batch_files import FileQuery
from costwarden.storage.queue_sql import FILE_COLUMNS

# Queues created before retention have no `finished_at`: the column is added at open and a finished
# batch's is set to its `expires_at` (its 24 h window's end: never before it finished, unless it
# expired and closed a poll later), so no batch is purged sooner than retention promises.
ADD_FINISHED = "ALTER TABLE batches ADD COLUMN finished_at DOUBLE PRECISION"
BACKFILL_FINISHED = (
    "UPDATE batches SET finished_at = expires_at "
    "WHERE finished_at IS NULL AND status IN ('failed', 'completed', 'expired', 'cancelled')"
)
FINISHED_INDEX = "CREATE INDEX IF NOT EXISTS batches_finished ON batches (finished_at)"

DELETE_FILE = "DELETE FROM batch_files WHERE id = ? AND team = ?"

# The batches that finished before the cutoff, longest ago first (unfinished ones have no finished_at).
FINISHED = "SELECT id, output_file_id, error_file_id FROM batches WHERE finished_at < ? ORDER BY finished_at LIMIT ?"
_SOME_JOBS = "SELECT id FROM batch_jobs WHERE batch_id = ? ORDER BY line LIMIT ?"
# A finished batch's jobs are all done, so nothing else writes them: both statements see the same rows.
DELETE_CALLBACKS = f"DELETE FROM job_callbacks WHERE job_id IN ({_SOME_JOBS})"
DELETE_JOBS = f"DELETE FROM batch_jobs WHERE id IN ({_SOME_JOBS})"
DELETE_BATCH = "DELETE FROM batches WHERE id = ?"
DELETE_FILE_ID = "DELETE FROM batch_files WHERE id = ?"  # a result file with its batch, or an old upload
# Uploads past the cutoff that no batch still kept was created from (results go with their batch).
STALE_UPLOADS = (
    "SELECT f.id, f.bytes FROM batch_files f WHERE f.purpose = 'batch' AND f.created_at < ? "
    "AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.input_file_id = f.id) ORDER BY f.created_at LIMIT ?"
)


def file_list(team: str, query: FileQuery, limit: int) -> tuple[str, tuple[Any, ...]]:
    """(statement, values) reading `limit` files of `team` for `query`, by (created_at, id) in its
    order. An `after` that is not one of the team's files yields nothing (the cursor is unknown)."""
    sql = f"SELECT {FILE_COLUMNS} FROM batch_files WHERE team = ?"
    values: list[Any] = [team]
    if query.purpose is not None:
        sql += " AND purpose = ?"
        values.append(query.purpose)
    side, order = (">", "ASC") if query.ascending else ("<", "DESC")
    if query.after is not None:
        sql += f" AND (created_at, id) {side} (SELECT created_at, id FROM batch_files WHERE id = ? AND team = ?)"
        values += [query.after, team]
    return f"{sql} ORDER BY created_at {order}, id {order} LIMIT ?", (*values, limit)
