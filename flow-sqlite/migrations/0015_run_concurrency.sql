-- As PostgreSQL's migration 17: the `run_concurrency` keys (a JSON array) a run
-- holds from its first start to its end, set when a claim first starts it. Claims
-- count the active runs of each key through this index, which holds only runs
-- that have such keys.
ALTER TABLE flow_runs ADD COLUMN active_keys TEXT;
CREATE INDEX flow_runs_active ON flow_runs (status) WHERE active_keys IS NOT NULL;
