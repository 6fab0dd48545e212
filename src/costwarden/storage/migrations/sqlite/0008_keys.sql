-- Incremental key refresh: every insert or revocation takes the next number of one counter, so a
-- gateway re-reads only the keys changed since its last refresh (issue 14).
ALTER TABLE api_keys ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
UPDATE api_keys SET change_seq = rowid;
CREATE INDEX api_keys_by_change ON api_keys (change_seq);
CREATE TABLE api_key_changes (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq    INTEGER NOT NULL
);
INSERT INTO api_key_changes (id, last_seq) SELECT 1, coalesce(max(change_seq), 0) FROM api_keys
