CREATE TABLE alerts (
    id          TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    kind        TEXT NOT NULL,
    labels      TEXT NOT NULL DEFAULT '{}',
    severity    TEXT NOT NULL,
    observed    TEXT NOT NULL,
    threshold   TEXT NOT NULL,
    summary     TEXT NOT NULL DEFAULT '',
    started_at  REAL NOT NULL,
    resolved_at REAL
);
CREATE INDEX alerts_fingerprint ON alerts (fingerprint);
CREATE INDEX alerts_resolved_at ON alerts (resolved_at);
CREATE INDEX alerts_started_at ON alerts (started_at);
