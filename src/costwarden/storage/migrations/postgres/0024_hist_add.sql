-- A cheaper sum of packed histograms for the rollup folds (storage/rollup_fold.py): `SUM` over NUMERIC
-- keeps an accumulator of every digit up to the highest bin's (~1,200 base-10000 digits at a 350 ms
-- latency), set up and carried once per group, so a fold paid that per cell of every grain even for
-- cells of one record. This one adds the histograms pairwise (`+`), paying only for the digits
-- between a group's bins. The result is the same exact NUMERIC. Only added: gateways from before it
-- do not use it.
DROP AGGREGATE IF EXISTS costwarden_hist_add(NUMERIC);
CREATE AGGREGATE costwarden_hist_add(NUMERIC) (
    SFUNC = numeric_add, STYPE = NUMERIC, COMBINEFUNC = numeric_add, PARALLEL = SAFE
)
