-- Narrow rollups (domain/rollup.py, docs/scale.md): cubes derived from the base cubes for the reads
-- that name few dimensions (the dashboard's 30-day panels): per team, project and environment and
-- per deployment and outcome (from `rollup`: minutes, hours, days, weeks), per key with its team
-- (from `rollup_key`: days and weeks). They have no pending cells of their own: reports read their
-- source cube's, and a fold adds those into them too. Filled from the source cubes' folded cells
-- right after this file runs (storage/rollup_write.py: derive_sqlite / derive_postgres).
CREATE TABLE rollup_team (
    grain          INTEGER NOT NULL,
    bucket         BIGINT NOT NULL,
    dim_key        TEXT NOT NULL,
    team           TEXT,
    project        TEXT,
    environment    TEXT,
    requests       BIGINT NOT NULL DEFAULT 0,
    errors         BIGINT NOT NULL DEFAULT 0,
    input_tokens   BIGINT NOT NULL DEFAULT 0,
    output_tokens  BIGINT NOT NULL DEFAULT 0,
    cached_tokens  BIGINT NOT NULL DEFAULT 0,
    items          BIGINT NOT NULL DEFAULT 0,
    cost_nanos     NUMERIC(30, 0) NOT NULL DEFAULT 0,
    latency        JSONB NOT NULL DEFAULT '{}',
    reasoning_tokens BIGINT NOT NULL DEFAULT 0,
    images           BIGINT NOT NULL DEFAULT 0,
    audio_ms         BIGINT NOT NULL DEFAULT 0,
    characters       BIGINT NOT NULL DEFAULT 0,
    documents        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (grain, bucket, dim_key)
);
CREATE INDEX rollup_team_team ON rollup_team (team, grain, bucket);
CREATE TABLE rollup_deployment (
    grain          INTEGER NOT NULL,
    bucket         BIGINT NOT NULL,
    dim_key        TEXT NOT NULL,
    deployment     TEXT,
    outcome        TEXT,
    requests       BIGINT NOT NULL DEFAULT 0,
    errors         BIGINT NOT NULL DEFAULT 0,
    input_tokens   BIGINT NOT NULL DEFAULT 0,
    output_tokens  BIGINT NOT NULL DEFAULT 0,
    cached_tokens  BIGINT NOT NULL DEFAULT 0,
    items          BIGINT NOT NULL DEFAULT 0,
    cost_nanos     NUMERIC(30, 0) NOT NULL DEFAULT 0,
    latency        JSONB NOT NULL DEFAULT '{}',
    reasoning_tokens BIGINT NOT NULL DEFAULT 0,
    images           BIGINT NOT NULL DEFAULT 0,
    audio_ms         BIGINT NOT NULL DEFAULT 0,
    characters       BIGINT NOT NULL DEFAULT 0,
    documents        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (grain, bucket, dim_key)
);
CREATE INDEX rollup_deployment_deployment ON rollup_deployment (deployment, grain, bucket);
CREATE TABLE rollup_key_total (
    grain          INTEGER NOT NULL,
    bucket         BIGINT NOT NULL,
    dim_key        TEXT NOT NULL,
    team           TEXT,
    key_id         TEXT,
    requests       BIGINT NOT NULL DEFAULT 0,
    errors         BIGINT NOT NULL DEFAULT 0,
    input_tokens   BIGINT NOT NULL DEFAULT 0,
    output_tokens  BIGINT NOT NULL DEFAULT 0,
    cached_tokens  BIGINT NOT NULL DEFAULT 0,
    items          BIGINT NOT NULL DEFAULT 0,
    cost_nanos     NUMERIC(30, 0) NOT NULL DEFAULT 0,
    latency        JSONB NOT NULL DEFAULT '{}',
    reasoning_tokens BIGINT NOT NULL DEFAULT 0,
    images           BIGINT NOT NULL DEFAULT 0,
    audio_ms         BIGINT NOT NULL DEFAULT 0,
    characters       BIGINT NOT NULL DEFAULT 0,
    documents        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (grain, bucket, dim_key)
);
CREATE INDEX rollup_key_total_key_id ON rollup_key_total (key_id, grain, bucket)
