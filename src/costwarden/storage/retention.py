"""Raw-ledger retention, in SQL: one bounded batch of the oldest records started before a cutoff.

Only raw records go; the rollups that already hold them stay, so reports over whole buckets and
budget rebuilds keep their totals. Each batch is its own short transaction, so a prune of months
never holds the ledger's write lock for long.
"""

from __future__ import annotations

SQLITE_PRUNE = (
    "DELETE FROM ledger WHERE rowid IN (SELECT rowid FROM ledger WHERE started_at < ? ORDER BY started_at LIMIT ?)"
)
POSTGRES_PRUNE = (
    "DELETE FROM ledger WHERE request_id IN "
    "(SELECT request_id FROM ledger WHERE started_at < $1 ORDER BY started_at LIMIT $2)"
)
POSTGRES_PRUNE_PARTITIONED = (  # storage/partitions.py: the key is (request_id, started_at)
    "DELETE FROM ledger WHERE (request_id, started_at) IN "
    "(SELECT request_id, started_at FROM ledger WHERE started_at < $1 ORDER BY started_at LIMIT $2)"
)
