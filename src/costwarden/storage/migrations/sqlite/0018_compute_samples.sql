-- Compute collector samples (issue 8): a model-server process's CPU and memory, or a GPU's
-- utilisation, memory and power. `processes` is JSON ([pid, memory bytes, SM % or null] per GPU process).
CREATE TABLE IF NOT EXISTS compute_samples (
    at REAL NOT NULL,
    source TEXT NOT NULL,
    deployment TEXT,
    pid INTEGER,
    gpu INTEGER,
    cpu_seconds REAL,
    rss_bytes INTEGER,
    threads INTEGER,
    util_pct REAL,
    memory_bytes INTEGER,
    power_mw INTEGER,
    energy_mj INTEGER,
    processes TEXT
);
CREATE INDEX IF NOT EXISTS compute_samples_at ON compute_samples (at);
CREATE TABLE IF NOT EXISTS compute_collectors (
    name TEXT PRIMARY KEY,
    running INTEGER NOT NULL,
    last_sample_at REAL,
    samples INTEGER NOT NULL,
    last_error TEXT,
    updated_at REAL NOT NULL
)
