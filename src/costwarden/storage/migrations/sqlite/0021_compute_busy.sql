-- Request intervals folded per closed hour for allocation (issue 9): per hour, deployment and team
-- (team '' for all teams together), the request-nanoseconds spent in flight at each concurrency
-- level (concurrency >= 1), and on the concurrency 0 row the requests and tokens whose interval
-- starts in the hour. docs/compute.md explains why this keeps the exact split.
CREATE TABLE IF NOT EXISTS compute_busy (
    hour INTEGER NOT NULL,
    deployment TEXT NOT NULL,
    team TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    request_ns INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    PRIMARY KEY (team, deployment, hour, concurrency)
);
-- The hours folded, per deployment, and the horizon they were folded with (a request counts for
-- at most that long after its start): a window reads raw intervals for the hours not listed.
-- `records`: the ledger records of the deployment started in the hour, as the rollups counted them
-- when the fold read the ledger: the folder refolds an hour whose count has changed since (a late record).
CREATE TABLE IF NOT EXISTS compute_busy_hours (
    hour INTEGER NOT NULL,
    deployment TEXT NOT NULL,
    horizon_s REAL NOT NULL,
    folded_at REAL NOT NULL,
    records INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, deployment)
);
-- Refolds and retention delete by hour.
CREATE INDEX IF NOT EXISTS compute_busy_hour ON compute_busy (hour)
