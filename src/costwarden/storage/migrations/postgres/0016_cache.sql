-- The response cache (issue 7): `exact` when the gateway answered from its cache (the record costs
-- nothing), and what forwarding the request would have cost, as exact decimal text (NULL otherwise).
ALTER TABLE ledger ADD COLUMN cache TEXT;
ALTER TABLE ledger ADD COLUMN cache_avoided_usd TEXT;
