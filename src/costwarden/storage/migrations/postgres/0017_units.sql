-- Modal units (issue 12, docs/modalities.md): reasoning tokens (part of output_tokens, kept apart),
-- generated images, input audio in milliseconds, speech input characters, reranked documents. Kept
-- in the ledger and summed in the rollups (pending and folded cells of both cubes), 0 for older rows.
ALTER TABLE ledger ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN images BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN audio_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN characters BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN documents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup ADD COLUMN images BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup ADD COLUMN audio_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup ADD COLUMN characters BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup ADD COLUMN documents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup_key ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup_key ADD COLUMN images BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup_key ADD COLUMN audio_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup_key ADD COLUMN characters BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup_key ADD COLUMN documents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup_delta ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup_delta ADD COLUMN images BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup_delta ADD COLUMN audio_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup_delta ADD COLUMN characters BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup_delta ADD COLUMN documents BIGINT NOT NULL DEFAULT 0
