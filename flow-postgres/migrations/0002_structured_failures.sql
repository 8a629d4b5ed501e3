-- A failed run keeps its error structured: what kind of failure, and the step it
-- came from (the message stays in `error`).
ALTER TABLE flow.runs ADD COLUMN error_kind text, ADD COLUMN error_step text;
