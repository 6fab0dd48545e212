-- Incremental key refresh: every insert or revocation takes the next value of one sequence (under
-- an advisory lock, so values commit in order), so a gateway re-reads only the keys changed since
-- its last refresh (issue 14).
CREATE SEQUENCE api_keys_change_seq;
ALTER TABLE api_keys ADD COLUMN change_seq BIGINT;
UPDATE api_keys SET change_seq = nextval('api_keys_change_seq');
ALTER TABLE api_keys ALTER COLUMN change_seq SET DEFAULT nextval('api_keys_change_seq');
ALTER TABLE api_keys ALTER COLUMN change_seq SET NOT NULL;
ALTER SEQUENCE api_keys_change_seq OWNED BY api_keys.change_seq;
CREATE INDEX api_keys_by_change ON api_keys (change_seq)
