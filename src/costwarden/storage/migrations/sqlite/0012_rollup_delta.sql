-- Pending rollup cells (storage/rollup_fold.py): each ledger write appends the cells of the rows
-- it stored here, in its own transaction: the sums of its records per cube, finest bucket (cube 0:
-- `rollup`, minutes, cube 1: `rollup_key`, days), dimension values and latency bin. A fold moves
-- them into every grain of the rollups. Reports read both. Dimensions a cube has not (key_id for
-- cube 0) are NULL.
CREATE TABLE rollup_delta (
    cube           INTEGER NOT NULL,
    bucket         INTEGER NOT NULL,
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
    requests       INTEGER NOT NULL,
    errors         INTEGER NOT NULL,
    input_tokens   INTEGER NOT NULL,
    output_tokens  INTEGER NOT NULL,
    cached_tokens  INTEGER NOT NULL,
    items          INTEGER NOT NULL,
    cost_nanos     INTEGER NOT NULL
)
;
CREATE INDEX rollup_delta_bucket ON rollup_delta (cube, bucket)