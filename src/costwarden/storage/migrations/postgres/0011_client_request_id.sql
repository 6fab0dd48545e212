-- The client's own X-Request-Id (issue 12), kept beside the gateway's id for correlation across
-- services: at most 128 visible ASCII characters.
ALTER TABLE ledger ADD COLUMN client_request_id TEXT
