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
CREATE TABLE IF NOT EXISTS compute_busy_hours (
    hour INTEGER NOT NULL,
    deployment TEXT NOT NULL,
    horizon_s REAL NOT NULL,
    folded_at REAL NOT NULL,
    PRIMARY KEY (hour, deployment)
)
