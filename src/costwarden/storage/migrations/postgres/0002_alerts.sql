CREATE TABLE alerts (
    id          TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    kind        TEXT NOT NULL,
    labels      JSONB NOT NULL DEFAULT '{}',
    severity    TEXT NOT NULL,
    observed    NUMERIC NOT NULL,
    threshold   NUMERIC NOT NULL,
    summary     TEXT NOT NULL DEFAULT '',
    started_at  DOUBLE PRECISION NOT NULL,
    resolved_at DOUBLE PRECISION
);
CREATE INDEX alerts_fingerprint ON alerts (fingerprint);
CREATE INDEX alerts_resolved_at ON alerts (resolved_at);
CREATE INDEX alerts_started_at ON alerts (started_at);
