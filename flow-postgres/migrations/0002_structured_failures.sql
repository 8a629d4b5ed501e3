-- A failed run keeps its error structured: what kind of failure, and the step it
-- came from (the message stays in `error`).
ALTER TABLE flow.runs ADD COLUMN error_kind text, ADD COLUMN error_step text;

-- The last lease lost: which worker held it, when it was recovered, the step the
-- run was executing (known when it had been lost before) and the last step it had
-- checkpointed.
ALTER TABLE flow.runs ADD COLUMN lost_by text, ADD COLUMN lost_at timestamptz,
    ADD COLUMN lost_step text, ADD COLUMN lost_after text;
