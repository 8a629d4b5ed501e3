-- Fair claims across functions: a claim takes the oldest due run of each
-- function it serves first (one probe of this index per function), then fills
-- its slots in due order (`runs_due`), so one function's backlog does not hold
-- up another function's runs until it drains.
--
-- The runnable statuses are named by what they are not: a condition written so
-- implies this predicate and not `runs_due`'s, so the planner cannot probe a
-- function through `runs_due` (a scan of every due run, filtered, when the
-- function has none: the generic plan's guess made it do so).
CREATE INDEX runs_due_by_function ON flow.runs (function_id, not_before)
    WHERE status NOT IN ('running', 'completed', 'failed', 'cancelled', 'skipped');
