-- A metric's history is read by step, then timestamp: an index in that
-- order serves pages of a long history without a sort.
DROP INDEX metrics_by_run_key;
CREATE INDEX metrics_history ON metrics (run_id, key, step, timestamp);
