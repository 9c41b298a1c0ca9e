-- The largest single invocation of each interval, for headroom against a plugin's own limits: the most
-- instructions, the largest output, and the most invocations executing at once. Rows written before this
-- migration read 0 (unknown), which headroom reports as no use of those limits.
ALTER TABLE rollups ADD COLUMN instructions_max INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollups ADD COLUMN output_bytes_max INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollups ADD COLUMN concurrency_max INTEGER NOT NULL DEFAULT 0;
