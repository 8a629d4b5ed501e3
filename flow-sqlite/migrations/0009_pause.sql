-- Pausing a function, as in flow-postgres's migration 11.
ALTER TABLE flow_functions ADD COLUMN paused_at INTEGER;
