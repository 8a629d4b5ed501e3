-- A failed run keeps its error structured: what kind of failure, and the step it
-- came from (the message stays in `error`).
ALTER TABLE flow_runs ADD COLUMN error_kind TEXT;
ALTER TABLE flow_runs ADD COLUMN error_step TEXT;

-- The last lease lost: which worker held it, when it was recovered, the step the
-- run was executing (known when it had been lost before) and the last step it had
-- checkpointed.
ALTER TABLE flow_runs ADD COLUMN lost_by TEXT;
ALTER TABLE flow_runs ADD COLUMN lost_at INTEGER;
ALTER TABLE flow_runs ADD COLUMN lost_step TEXT;
ALTER TABLE flow_runs ADD COLUMN lost_after TEXT;
