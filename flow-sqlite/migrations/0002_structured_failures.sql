-- A failed run keeps its error structured: what kind of failure, and the step it
-- came from (the message stays in `error`).
ALTER TABLE flow_runs ADD COLUMN error_kind TEXT;
ALTER TABLE flow_runs ADD COLUMN error_step TEXT;
