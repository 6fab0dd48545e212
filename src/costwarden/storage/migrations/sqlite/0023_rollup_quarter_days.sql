-- A 6-hour grain for the org cube (issue 14, docs/scale.md): cells of 00:00, 06:00, 12:00 and 18:00
-- UTC (domain/rollup.py QUARTER_DAY), so a report's edges read at most 5 hour cells each. Added up from
-- its folded hour cells right after this file runs (storage/rollup_write.py: add_quarter_days_sqlite),
-- any made before (a backfill by this code) are replaced. (PostgreSQL also packs its histograms into
-- NUMERICs here, SQLite keeps them as JSON text, merged in Python either way.)
DELETE FROM rollup WHERE grain = 21600
