-- Compute collector samples (issue 8): a model-server process's CPU and memory, or a GPU's
-- utilisation, memory and power. `processes` is JSON ([pid, memory bytes, SM % or null] per GPU process).
CREATE TABLE IF NOT EXISTS compute_samples (
    at DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL,
    deployment TEXT,
    pid INTEGER,
    gpu INTEGER,
    cpu_seconds DOUBLE PRECISION,
    rss_bytes BIGINT,
    threads INTEGER,
    util_pct DOUBLE PRECISION,
    memory_bytes BIGINT,
    power_mw BIGINT,
    energy_mj BIGINT,
    processes TEXT
);
CREATE INDEX IF NOT EXISTS compute_samples_at ON compute_samples (at);
CREATE TABLE IF NOT EXISTS compute_collectors (
    name TEXT PRIMARY KEY,
    running BOOLEAN NOT NULL,
    last_sample_at DOUBLE PRECISION,
    samples BIGINT NOT NULL,
    last_error TEXT,
    updated_at DOUBLE PRECISION NOT NULL
)
