-- Concurrency limits, as in flow-postgres's migration 12: the keys (a JSON array
-- of strings) a run of a limited function counts under while it is running.
-- SQLite has one writer at a time, so its claim counts without locking keys.
ALTER TABLE flow_runs ADD COLUMN concurrency_keys TEXT;
