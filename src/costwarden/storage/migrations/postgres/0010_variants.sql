-- Degrade to a cheaper variant (issue 7): the variant that served, and what the deployment itself
-- would have cost, as exact decimal text (NULL when the request was not degraded).
ALTER TABLE ledger ADD COLUMN variant TEXT;
ALTER TABLE ledger ADD COLUMN original_cost_usd TEXT;
