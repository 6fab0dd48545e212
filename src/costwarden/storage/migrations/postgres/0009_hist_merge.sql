-- A faster latency-histogram merge for the rollup upserts: walk only the incoming histogram (a
-- batch's few bins) and overwrite those keys of the stored one, instead of unpacking, grouping
-- and rebuilding both. Same result: every bin's count is the sum of both sides.
CREATE OR REPLACE FUNCTION costwarden_hist_merge(a JSONB, b JSONB) RETURNS JSONB
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT a || COALESCE(
        (SELECT jsonb_object_agg(key, value::bigint + COALESCE((a ->> key)::bigint, 0)) FROM jsonb_each_text(b)),
        '{}'::jsonb
    )
$$
