-- The team cube with the outcome (domain/rollup.py): a budget scoped by team, project or environment
-- reads it (its rebuild groups by outcome) instead of the org cube. Emptied here and filled from
-- `rollup` right after this file runs (storage/rollup_write.py: derive_postgres). NOT NULL: an older
-- gateway's fold (no outcome) is refused, so the pending cells it took stay pending.
TRUNCATE rollup_team;
ALTER TABLE rollup_team ADD COLUMN outcome TEXT NOT NULL
