-- Metric history in chunks: one row per metric key per write, its points
-- packed (see store/history.rs), instead of one row per point. A batch of
-- 1,000 points becomes one row to insert and one to read back; a row per
-- point cost an index entry on write and a row through the driver on read.
-- The rows of the old table are converted by `Store::connect` (packing
-- floats is not something SQL can do), which then drops `metrics_legacy`.
CREATE TABLE metric_chunks (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    points BIGINT NOT NULL,
    data BYTEA NOT NULL
);
CREATE INDEX metric_chunks_by_run_key ON metric_chunks (run_id, key);
ALTER TABLE metrics RENAME TO metrics_legacy;
