-- The team cube with the outcome (domain/rollup.py): a budget scoped by team, project or environment reads
-- it (its rebuild groups by outcome) instead of the org cube. Filled from `rollup` right after this
-- file runs (storage/rollup_write.py: derive_sqlite / derive_postgres).
DROP TABLE rollup_team;
CREATE TABLE rollup_team (
    grain          INTEGER NOT NULL,
    bucket         BIGINT NOT NULL,
    dim_key        TEXT NOT NULL,
    team           TEXT,
    project        TEXT,
    environment    TEXT,
    outcome        TEXT NOT NULL,  -- an older gateway's fold (no outcome) is refused, its cells stay pending
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
CREATE INDEX rollup_team_team ON rollup_team (team, grain, bucket)
