-- Rollups (domain/rollup.py): `rollup` by every report dimension but the key, per minute, hour and
-- UTC day, and `rollup_key` with the key, per UTC day. Filled from the ledger right after this file runs.
-- The key indexes keep a key-scoped report (a key budget's rebuild) to that key's cells and records.
CREATE TABLE rollup (
    grain          INTEGER NOT NULL,
    bucket         BIGINT NOT NULL,
    dim_key        TEXT NOT NULL,
    team           TEXT,
    project        TEXT,
    environment    TEXT,
    deployment     TEXT,
    protocol       TEXT,
    endpoint       TEXT,
    model          TEXT,
    outcome        TEXT,
    requests       BIGINT NOT NULL DEFAULT 0,
    errors         BIGINT NOT NULL DEFAULT 0,
    input_tokens   BIGINT NOT NULL DEFAULT 0,
    output_tokens  BIGINT NOT NULL DEFAULT 0,
    cached_tokens  BIGINT NOT NULL DEFAULT 0,
    items          BIGINT NOT NULL DEFAULT 0,
    cost_nanos     NUMERIC(30, 0) NOT NULL DEFAULT 0,
    latency        JSONB NOT NULL DEFAULT '{}',
    PRIMARY KEY (grain, bucket, dim_key)
);
CREATE TABLE rollup_key (
    grain          INTEGER NOT NULL,
    bucket         BIGINT NOT NULL,
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
    requests       BIGINT NOT NULL DEFAULT 0,
    errors         BIGINT NOT NULL DEFAULT 0,
    input_tokens   BIGINT NOT NULL DEFAULT 0,
    output_tokens  BIGINT NOT NULL DEFAULT 0,
    cached_tokens  BIGINT NOT NULL DEFAULT 0,
    items          BIGINT NOT NULL DEFAULT 0,
    cost_nanos     NUMERIC(30, 0) NOT NULL DEFAULT 0,
    latency        JSONB NOT NULL DEFAULT '{}',
    PRIMARY KEY (grain, bucket, dim_key)
);
CREATE FUNCTION costwarden_hist_merge(a JSONB, b JSONB) RETURNS JSONB LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(jsonb_object_agg(k, s), '{}'::jsonb) FROM (
        SELECT k, SUM(v) AS s FROM (
            SELECT key AS k, value::bigint AS v FROM jsonb_each_text(a)
            UNION ALL SELECT key, value::bigint FROM jsonb_each_text(b)
        ) AS both_sides GROUP BY k
    ) AS merged
$$;
CREATE INDEX rollup_key_key ON rollup_key (key_id, grain, bucket);
CREATE INDEX IF NOT EXISTS ledger_key ON ledger (key_id, started_at);
