-- Request intervals folded per closed hour for allocation (issue 9): per hour, deployment and team
-- (team '' for all teams together), the request-nanoseconds spent in flight at each concurrency
-- level (concurrency >= 1), and on the concurrency 0 row the requests and tokens whose interval
-- starts in the hour. docs/compute.md explains why this keeps the exact split.
CREATE TABLE IF NOT EXISTS compute_busy (
    hour BIGINT NOT NULL,
    deployment TEXT NOT NULL,
    team TEXT NOT NULL,
    concurrency BIGINT NOT NULL,
    request_ns BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    tokens BIGINT NOT NULL,
    PRIMARY KEY (team, deployment, hour, concurrency)
);
-- The hours folded, per deployment, and the horizon they were folded with (a request counts for
-- at most that long after its start): a window reads raw intervals for the hours not listed.
-- `records`: the ledger records of the deployment started in the hour, as the rollups counted them
-- when the fold read the ledger: the folder refolds an hour whose count has changed since (a late record).
CREATE TABLE IF NOT EXISTS compute_busy_hours (
    hour BIGINT NOT NULL,
    deployment TEXT NOT NULL,
    horizon_s DOUBLE PRECISION NOT NULL,
    folded_at DOUBLE PRECISION NOT NULL,
    records BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, deployment)
);
-- Refolds and retention delete by hour.
CREATE INDEX IF NOT EXISTS compute_busy_hour ON compute_busy (hour)
