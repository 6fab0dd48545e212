-- Compute samples rolled up per minute (issue 8): one row per minute and series (source, deployment,
-- and the pid or GPU index as `unit`). Raw samples are kept a short time, these rows for the retention.
CREATE TABLE IF NOT EXISTS compute_minutes (
    minute BIGINT NOT NULL,
    source TEXT NOT NULL,
    deployment TEXT NOT NULL,
    unit BIGINT NOT NULL,
    samples BIGINT NOT NULL,
    busy_seconds DOUBLE PRECISION NOT NULL,
    covered_seconds DOUBLE PRECISION NOT NULL,
    peak_bytes BIGINT NOT NULL,
    sum_bytes DOUBLE PRECISION NOT NULL,
    energy_mj BIGINT NOT NULL,
    PRIMARY KEY (minute, source, deployment, unit)
)
