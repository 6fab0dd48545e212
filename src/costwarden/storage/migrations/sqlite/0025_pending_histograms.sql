-- SQLite only: a write's pending cells of one cube, bucket and dimensions that fall in several
-- latency bins go in as one row holding their histogram (`latency`, JSON text as in the rollups:
-- bins by count) and the sums of them all, not a row a bin (storage/rollup_fold.py: sqlite_delta_rows).
-- A gateway's steady traffic hits the same few cells with a hundred bins each: their rows, which
-- every fold and report reads, fall from ~250 a write to ~2. A cell of one bin is a row as before
-- (`latency` NULL), as is every cell pending from before.
ALTER TABLE rollup_delta ADD COLUMN latency TEXT
