-- Batch jobs (OpenAI Batch API, issue 7): a job's record carries its batch and job ids.
ALTER TABLE ledger ADD COLUMN batch_id TEXT;
ALTER TABLE ledger ADD COLUMN job_id TEXT;
CREATE INDEX ledger_by_batch ON ledger (batch_id) WHERE batch_id IS NOT NULL
