-- As PostgreSQL's migration 19: the oldest due run of each function, for claims
-- that take one of each first.
CREATE INDEX flow_runs_due_by_function ON flow_runs (function_id, not_before)
    WHERE status IN ('queued', 'sleeping', 'waiting', 'blocked');
