-- Cheaper month reports (issue 14, docs/scale.md): histograms packed into NUMERICs and a 6-hour grain.
-- 1. Each cube's latency histogram, a `jsonb` object {"bin": count} until now, becomes one exact
--    NUMERIC holding bin i's count in its i-th field of 12 decimal digits (domain/latency_histogram.py:
--    pack), so a report sums a group's histograms with SUM and a fold merges two with `+`, instead of
--    expanding or parsing every bin. Converted in place (the tables are rewritten).
-- 2. The org cube's 6-hour cells (00:00, 06:00, 12:00, 18:00 UTC: domain/rollup.py QUARTER_DAY), added
--    up from its folded hour cells right after this file runs (storage/rollup_write.py:
--    add_quarter_days_postgres), replacing any a backfill by this code made before.
-- Gateways from before this migration cannot read or fold the new histograms: upgrade them together.
CREATE OR REPLACE FUNCTION costwarden_hist_pack(h JSONB) RETURNS NUMERIC LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(SUM(value::numeric * ('1e' || 12 * key::int)::numeric), 0) FROM jsonb_each_text(h)
$$;
ALTER TABLE rollup ALTER COLUMN latency DROP DEFAULT,
    ALTER COLUMN latency TYPE NUMERIC USING costwarden_hist_pack(latency), ALTER COLUMN latency SET DEFAULT 0;
ALTER TABLE rollup_key ALTER COLUMN latency DROP DEFAULT,
    ALTER COLUMN latency TYPE NUMERIC USING costwarden_hist_pack(latency), ALTER COLUMN latency SET DEFAULT 0;
ALTER TABLE rollup_team ALTER COLUMN latency DROP DEFAULT,
    ALTER COLUMN latency TYPE NUMERIC USING costwarden_hist_pack(latency), ALTER COLUMN latency SET DEFAULT 0;
ALTER TABLE rollup_deployment ALTER COLUMN latency DROP DEFAULT,
    ALTER COLUMN latency TYPE NUMERIC USING costwarden_hist_pack(latency), ALTER COLUMN latency SET DEFAULT 0;
ALTER TABLE rollup_key_total ALTER COLUMN latency DROP DEFAULT,
    ALTER COLUMN latency TYPE NUMERIC USING costwarden_hist_pack(latency), ALTER COLUMN latency SET DEFAULT 0;
DELETE FROM rollup WHERE grain = 21600
