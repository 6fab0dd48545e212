-- Rollups (domain/rollup.py): `rollup` by every report dimension but the key, per minute, hour and
-- UTC day, and `rollup_key` with the key, per UTC day. Filled from the ledger right after this file runs.
-- The key indexes keep a key-scoped report (a key budget's rebuild) to that key's cells and records.
CREATE TABLE rollup (
    grain          INTEGER NOT NULL,
    bucket         INTEGER NOT NULL,
    dim_key        TEXT NOT NULL,
    team           TEXT,
    project        TEXT,
    environment    TEXT,
    deployment     TEXT,
    protocol       TEXT,
    endpoint       TEXT,
    model          TEXT,
    outcome        TEXT,
    requests       INTEGER NOT NULL DEFAULT 0,
    errors         INTEGER NOT NULL DEFAULT 0,
    input_tokens   INTEGER NOT NULL DEFAULT 0,
    output_tokens  INTEGER NOT NULL DEFAULT 0,
    cached_tokens  INTEGER NOT NULL DEFAULT 0,
    items          INTEGER NOT NULL DEFAULT 0,
    cost_nanos     INTEGER NOT NULL DEFAULT 0,
    latency        TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (grain, bucket, dim_key)
) WITHOUT ROWID;
CREATE TABLE rollup_key (
    grain          INTEGER NOT NULL,
    bucket         INTEGER NOT NULL,
    dim_key        TEXT NOT NULL,
    team           TEXT,
    project        TEXT,
    environment    TEXT,
    deployment     TEXT,
    key_id         TEXT,
    protocol       TEXT,
    endpoint       TEXT,
    model          TEXT,
    outcome        TEXT,
    requests       INTEGER NOT NULL DEFAULT 0,
    errors         INTEGER NOT NULL DEFAULT 0,
    input_tokens   INTEGER NOT NULL DEFAULT 0,
    output_tokens  INTEGER NOT NULL DEFAULT 0,
    cached_tokens  INTEGER NOT NULL DEFAULT 0,
    items          INTEGER NOT NULL DEFAULT 0,
    cost_nanos     INTEGER NOT NULL DEFAULT 0,
    latency        TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (grain, bucket, dim_key)
) WITHOUT ROWID;
CREATE INDEX rollup_key_key ON rollup_key (key_id, grain, bucket);
CREATE INDEX IF NOT EXISTS ledger_key ON ledger (key_id, started_at);
