-- Compute samples rolled up per minute (issue 8): one row per minute and series (source, deployment,
-- and the pid or GPU index as `unit`). Raw samples are kept a short time, these rows for the retention.
CREATE TABLE IF NOT EXISTS compute_minutes (
    minute INTEGER NOT NULL,
    source TEXT NOT NULL,
    deployment TEXT NOT NULL,
    unit INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    busy_seconds REAL NOT NULL,
    covered_seconds REAL NOT NULL,
    peak_bytes INTEGER NOT NULL,
    sum_bytes REAL NOT NULL,
    energy_mj INTEGER NOT NULL,
    PRIMARY KEY (minute, source, deployment, unit)
)
