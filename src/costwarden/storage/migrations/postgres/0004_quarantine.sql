CREATE TABLE ledger_quarantine (
    request_id     TEXT NOT NULL,
    quarantined_at DOUBLE PRECISION NOT NULL,
    reason         TEXT NOT NULL,
    record         TEXT NOT NULL
);
CREATE INDEX ledger_quarantine_at ON ledger_quarantine (quarantined_at)
