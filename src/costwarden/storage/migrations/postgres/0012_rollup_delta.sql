-- Pending rollup cells (storage/rollup_fold.py): each ledger write appends the cells of the rows
-- it stored here, in its own transaction: the sums of its records per cube, finest bucket (cube 0:
-- `rollup`, minutes, cube 1: `rollup_key`, days), dimension values and latency bin. A fold moves
-- them into every grain of the rollups. Reports read both. Dimensions a cube has not (key_id for
-- cube 0) are NULL.
CREATE TABLE rollup_delta (
    cube           INTEGER NOT NULL,
    bucket         BIGINT NOT NULL,
    team           TEXT,
    project        TEXT,
    environment    TEXT,
    deployment     TEXT,
    key_id         TEXT,
    protocol       TEXT,
    endpoint       TEXT,
    model          TEXT,
    outcome        TEXT,
    bin            INTEGER NOT NULL,
    requests       BIGINT NOT NULL,
    errors         BIGINT NOT NULL,
    input_tokens   BIGINT NOT NULL,
    output_tokens  BIGINT NOT NULL,
    cached_tokens  BIGINT NOT NULL,
    items          BIGINT NOT NULL,
    cost_nanos     NUMERIC(30, 0) NOT NULL
)
;
CREATE INDEX rollup_delta_bucket ON rollup_delta (cube, bucket);
-- A queue table: vacuum it after every 10,000 dead rows (folds delete what writes append), so
-- reports reading pending cells do not walk dead ones.
ALTER TABLE rollup_delta SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000)
