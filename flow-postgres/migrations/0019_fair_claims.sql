-- Fair claims across functions: a claim takes the oldest due run of each
-- function it serves first (one probe of this index per function), then fills
-- its slots in due order (`runs_due`), so one function's backlog does not hold
-- up another function's runs until it drains.
CREATE INDEX runs_due_by_function ON flow.runs (function_id, not_before)
    WHERE status IN ('queued', 'sleeping', 'waiting', 'blocked');
